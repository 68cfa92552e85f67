/* threadlib.c - an uninstrumented shared library (built with plain clang-16) that
 * starts a thread of its own: the runtime must register it too. */
#include <pthread.h>
#include <unistd.h>

static void *lib_worker(void *arg)
{
  (void)arg;
  for (;;)
    sleep(1);
  return NULL;
}

/* Not a tail call: the frame must stay on the creation stack. */
__attribute__((noinline)) int lib_start_worker(void)
{
  pthread_t t;
  int rc = pthread_create(&t, NULL, lib_worker, NULL);
  __asm__ volatile("" ::: "memory");
  return rc;
}
