/*
 * pool.c - a thread pool on a condition variable, a maintenance thread that
 * sleeps between rounds, and a main thread that hands out jobs; for
 * mcr-profile's tests. Each job "works" by sleeping briefly (a blocking call
 * made while handling a job). Exits after JOBS jobs.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 3
#define JOBS 60

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t more = PTHREAD_COND_INITIALIZER;
static int queued, done, stop;

static void run_job(void)
{
  struct timespec ts = {0, 200 * 1000}; /* 0.2 ms of "work" */
  nanosleep(&ts, NULL);
}

static void *worker(void *arg)
{
  (void)arg;
  pthread_mutex_lock(&lock);
  for (;;) {
    while (!queued && !stop)
      pthread_cond_wait(&more, &lock);
    if (!queued)
      break; /* stopped, and every job is done */
    queued--;
    pthread_mutex_unlock(&lock);
    run_job();
    pthread_mutex_lock(&lock);
    done++;
  }
  pthread_mutex_unlock(&lock);
  return NULL;
}

static void *maintenance(void *arg)
{
  (void)arg;
  for (;;)
    usleep(20 * 1000);
  return NULL;
}

static void start_pool(pthread_t *t)
{
  for (int i = 0; i < WORKERS; i++)
    pthread_create(&t[i], NULL, worker, NULL);
}

static void start_maintenance(void)
{
  pthread_t t;
  pthread_create(&t, NULL, maintenance, NULL);
  pthread_detach(t);
}

static void produce(void)
{
  for (int i = 0; i < JOBS; i++) {
    usleep(10 * 1000);
    pthread_mutex_lock(&lock);
    queued++;
    pthread_cond_signal(&more);
    pthread_mutex_unlock(&lock);
  }
}

int main(void)
{
  pthread_t t[WORKERS];

  start_pool(t);
  start_maintenance();
  produce();
  pthread_mutex_lock(&lock);
  stop = 1;
  pthread_cond_broadcast(&more);
  pthread_mutex_unlock(&lock);
  for (int i = 0; i < WORKERS; i++)
    pthread_join(t[i], NULL);
  printf("%d jobs done\n", done);
  return 0;
}
