/*
 * poolkv - the key-value server of kvstore.c with a thread pool, for the live
 * update tests (tests/update/run.sh, case "pool"): its threads wait in three
 * kinds of quiescent points and keep pointers to heap objects in locals.
 *
 * The main thread waits in epoll_wait; each connection is registered with
 * EPOLLONESHOT, and when it becomes readable the main thread queues a job for
 * it. WORKERS threads (created at startup) take jobs from the queue, waiting in
 * pthread_cond_wait on a mutex and a condition variable that live in the heap
 * (struct pool, reached through a global pointer), run the connection's
 * complete lines and re-arm it. Each worker's start routine gets a heap
 * struct worker of its own and keeps it in a local for its whole life. A
 * maintenance thread wakes every 100 ms (pthread_cond_timedwait on a global
 * mutex and condition variable) and counts ticks in a heap object that it
 * also keeps in a local.
 *
 * Thread-specific data, as memcached's per-worker logger: each worker allocates
 * a struct worker_log at its start, keeps it in a pthread key and lists it in
 * the pool; main waits (a condition variable, not a quiescent point) until
 * every worker has registered, as memcached's wait_for_thread_registration.
 * Each command counts in the log its thread's key gives.
 *
 * Thread-local variables: each worker also counts its commands in a __thread
 * counter, in a heap note that a __thread pointer of its own holds (made at
 * its first command), and in a __thread mark it reaches through another __thread
 * pointer (set at its start: a pointer into its own thread's variables). The
 * counter is 32 bits wide in version 1 and 64 in the others, so an update
 * converts it. After an update each worker must find the variables
 * of the old worker it took over.
 *
 * Protocol (one command a line):
 *   SET key value   -> OK
 *   GET key         -> VALUE value | NOTFOUND
 *   COUNT           -> COUNT n
 *   VERSION         -> VERSION n (POOL_VERSION at build time)
 *   TICKS           -> TICKS n (maintenance rounds so far)
 *   WORKERS         -> WORKERS n total=T id:handled id:handled ...
 *                      T counts every command of every worker; each worker
 *                      counts its own in its struct worker: the sum of the
 *                      handled counts is T only if every worker counts in the
 *                      struct that the pool lists
 *   WHO             -> WHO id handled (the worker that runs it, from its own local)
 *   LOGS            -> LOGS total=T sum=S: S adds up the lines counted in the
 *                      logs the pool lists; S = T only if every worker counts in
 *                      a listed log through its thread-specific data
 *   TLS             -> TLS id handled lines note_id note_lines mark: the worker
 *                      that runs it, its count in its struct worker, its __thread
 *                      counter, its __thread note's id and count, its mark; all
 *                      four counts are equal and note_id = id unless a worker
 *                      lost its thread-local variables
 *
 *   STACKREF        -> STACKREF ok: once the command is done, the worker that
 *                      ran it stores in the global stack_ref the address of a
 *                      local of its start routine, its count of jobs (a pointer
 *                      into its stack, as nginx's cache manager leaves its timer
 *                      event's): an update moves it to the new worker's
 *   STACKVAL        -> STACKVAL n: what stack_ref points to (-1: unset)
 *   UNSTACKREF      -> UNSTACKREF ok: stack_ref = NULL
 *
 * Version 3 (POOL_VERSION=3) starts its maintenance thread at the first TICKS,
 * not at startup: an update to it would lose a thread class the old version's
 * startup made, and is refused.
 *
 * usage: poolkv [-p PORT] [-f PIDFILE] [-w WORKERS]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef POOL_VERSION
#define POOL_VERSION 1
#endif

#define NBUCKETS 1024
#define INBUF 4096
#define MAX_WORKERS 64

struct entry {
  char *key;
  char *value;
  struct entry *next;
};

struct conn {
  int fd;
  size_t in_len;
  char in[INBUF]; /* bytes read but not yet handled */
};

struct job {
  struct conn *conn;
  struct job *next;
};

struct worker_log {
  int id;
  unsigned long lines; /* commands, under pool->table_lock */
};

struct worker {
  int id;
  unsigned long handled; /* commands, under pool->table_lock */
  unsigned long jobs;
  struct pool *pool;
};

struct pool {
  pthread_mutex_t lock; /* the queue */
  pthread_cond_t ready;
  struct job *head, *tail;
  pthread_mutex_t table_lock; /* the table and the counters */
  struct entry **table;
  unsigned long keys, commands;
  int ep;
  int nworkers;
  struct worker *workers[MAX_WORKERS];
  struct worker_log *logs[MAX_WORKERS]; /* under lock; each worker's key holds its own */
  int registered;
  pthread_cond_t registered_cond;
};

struct ticks {
  unsigned long count;
};

struct tls_note {
  int id;
  unsigned long lines;
};

#if POOL_VERSION == 1
static __thread unsigned tls_lines;
#else
static __thread unsigned long tls_lines;
#endif
static __thread struct tls_note *tls_note;
static __thread unsigned long tls_mark, *tls_mark_at; /* tls_mark_at = &tls_mark */

static struct pool *pool;
static pthread_key_t log_key; /* a worker's struct worker_log */
static struct ticks *ticks;
static pthread_mutex_t maint_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t maint_cond = PTHREAD_COND_INITIALIZER;
static int port = 7401;
static const char *pidfile;

static unsigned long hash(const char *s)
{
  unsigned long h = 5381;
  while (*s)
    h = h * 33 + (unsigned char)*s++;
  return h;
}

static struct entry **find(struct pool *p, const char *key)
{
  struct entry **e = &p->table[hash(key) % NBUCKETS];
  while (*e && strcmp((*e)->key, key) != 0)
    e = &(*e)->next;
  return e;
}

static void set(struct pool *p, const char *key, const char *value)
{
  struct entry **slot = find(p, key);
  struct entry *e = *slot;
  if (!e) {
    if (!(e = calloc(1, sizeof(*e))) || !(e->key = strdup(key))) {
      free(e);
      return;
    }
    *slot = e;
    p->keys++;
  }
  free(e->value);
  e->value = strdup(value);
}

/* Appends to out (len bytes used of cap). */
static void put(char *out, size_t *len, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(char *out, size_t *len, size_t cap, const char *fmt, ...)
{
  va_list ap;
  if (*len >= cap)
    return;
  va_start(ap, fmt);
  int n = vsnprintf(out + *len, cap - *len, fmt, ap);
  va_end(ap);
  if (n > 0)
    *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

#if POOL_VERSION == 3
static void start_maintenance(void);
#endif

static int want_stack_ref;  /* STACKREF asked: the worker sets stack_ref */
static long *stack_ref;     /* into a worker's stack, or NULL */

static void command(struct worker *w, char *line, char *out, size_t *len, size_t cap)
{
  struct pool *p = w->pool;
  char *save = NULL;
  char *cmd = strtok_r(line, " \r", &save);
  char *key = strtok_r(NULL, " \r", &save);
  char *value = strtok_r(NULL, "\r", &save);

  if (!cmd)
    return;
  pthread_mutex_lock(&p->table_lock);
  p->commands++;
  w->handled++;
  struct worker_log *lg = pthread_getspecific(log_key);
  if (lg)
    lg->lines++;
  tls_lines++;
  /* made at the first command, not at startup: a second startup calloc of the
   * same size in worker_main would share the log's call-stack ID, and the
   * workers race to it, so the update could pair a new log with an old note */
  if (!tls_note && (tls_note = calloc(1, sizeof(*tls_note))))
    tls_note->id = w->id;
  if (tls_note)
    tls_note->lines++;
  (*tls_mark_at)++;
  if (!strcmp(cmd, "SET") && key && value) {
    set(p, key, value);
    put(out, len, cap, "OK\n");
  } else if (!strcmp(cmd, "GET") && key) {
    struct entry *e = *find(p, key);
    if (e)
      put(out, len, cap, "VALUE %s\n", e->value);
    else
      put(out, len, cap, "NOTFOUND\n");
  } else if (!strcmp(cmd, "COUNT")) {
    put(out, len, cap, "COUNT %lu\n", p->keys);
  } else if (!strcmp(cmd, "VERSION")) {
    put(out, len, cap, "VERSION %d\n", POOL_VERSION);
  } else if (!strcmp(cmd, "TICKS")) {
#if POOL_VERSION == 3
    static pthread_once_t started = PTHREAD_ONCE_INIT;
    pthread_once(&started, start_maintenance);
#endif
    pthread_mutex_lock(&maint_lock);
    put(out, len, cap, "TICKS %lu\n", ticks->count);
    pthread_mutex_unlock(&maint_lock);
  } else if (!strcmp(cmd, "WORKERS")) {
    put(out, len, cap, "WORKERS %d total=%lu", p->nworkers, p->commands);
    for (int i = 0; i < p->nworkers; i++)
      put(out, len, cap, " %d:%lu", p->workers[i]->id, p->workers[i]->handled);
    put(out, len, cap, "\n");
  } else if (!strcmp(cmd, "LOGS")) {
    unsigned long sum = 0;
    for (int i = 0; i < p->nworkers; i++)
      sum += p->logs[i] ? p->logs[i]->lines : 0;
    put(out, len, cap, "LOGS total=%lu sum=%lu\n", p->commands, sum);
  } else if (!strcmp(cmd, "TLS")) {
    put(out, len, cap, "TLS %d %lu %lu %d %lu %lu\n", w->id, w->handled, (unsigned long)tls_lines,
        tls_note ? tls_note->id : -1, tls_note ? tls_note->lines : 0, tls_mark);
  } else if (!strcmp(cmd, "STACKREF")) {
    __atomic_store_n(&want_stack_ref, 1, __ATOMIC_SEQ_CST);
    put(out, len, cap, "STACKREF ok\n");
  } else if (!strcmp(cmd, "STACKVAL")) {
    long *r = __atomic_load_n(&stack_ref, __ATOMIC_SEQ_CST);
    put(out, len, cap, "STACKVAL %ld\n", r ? *r : -1L);
  } else if (!strcmp(cmd, "UNSTACKREF")) {
    __atomic_store_n(&stack_ref, NULL, __ATOMIC_SEQ_CST);
    put(out, len, cap, "UNSTACKREF ok\n");
  } else if (!strcmp(cmd, "WHO")) {
    put(out, len, cap, "WHO %d %lu\n", w->id, w->handled);
  } else {
    put(out, len, cap, "ERROR unknown command\n");
  }
  pthread_mutex_unlock(&p->table_lock);
}

static void write_all(int fd, const char *b, size_t n)
{
  while (n) {
    ssize_t k = write(fd, b, n);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0 && errno == EAGAIN) { /* a slow client: the tests' replies are small */
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
      continue;
    }
    if (k <= 0)
      return;
    b += k;
    n -= (size_t)k;
  }
}

/* Reads what is there, runs every complete line, keeps the rest; re-arms the
 * connection, or closes it at EOF. */
static void serve(struct worker *w, struct conn *c)
{
  char out[16384];
  for (;;) {
    ssize_t n = read(c->fd, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      break;
    if (n <= 0)
      goto close;
    c->in_len += (size_t)n;
    c->in[c->in_len] = 0;
    size_t len = 0;
    char *start = c->in, *nl;
    while ((nl = memchr(start, '\n', (size_t)(c->in + c->in_len - start)))) {
      *nl = 0;
      command(w, start, out, &len, sizeof(out));
      start = nl + 1;
      if (len > sizeof(out) - INBUF - 64) { /* room for one more reply */
        write_all(c->fd, out, len);
        len = 0;
      }
    }
    write_all(c->fd, out, len);
    c->in_len -= (size_t)(start - c->in);
    memmove(c->in, start, c->in_len);
    if (c->in_len == sizeof(c->in) - 1) /* a line longer than the buffer */
      goto close;
  }
  struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.ptr = c};
  epoll_ctl(w->pool->ep, EPOLL_CTL_MOD, c->fd, &ev);
  return;
close:
  epoll_ctl(w->pool->ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c);
}

static void *worker_main(void *arg)
{
  struct worker *w = arg; /* kept for the thread's life */
  long on_stack = 0;      /* its count of jobs: what STACKREF points stack_ref to */
  struct pool *p = w->pool;
  struct worker_log *lg = calloc(1, sizeof(*lg));

  if (lg) {
    lg->id = w->id;
    pthread_setspecific(log_key, lg);
  }
  tls_mark_at = &tls_mark;
  pthread_mutex_lock(&p->lock);
  p->logs[w->id] = lg;
  p->registered++;
  pthread_cond_broadcast(&p->registered_cond);
  pthread_mutex_unlock(&p->lock);
  for (;;) {
    pthread_mutex_lock(&p->lock);
    while (!p->head)
      pthread_cond_wait(&p->ready, &p->lock);
    struct job *j = p->head;
    if (!(p->head = j->next))
      p->tail = NULL;
    pthread_mutex_unlock(&p->lock);
    w->jobs++;
    on_stack++;
    serve(w, j->conn);
    free(j);
    if (__atomic_exchange_n(&want_stack_ref, 0, __ATOMIC_SEQ_CST))
      __atomic_store_n(&stack_ref, &on_stack, __ATOMIC_SEQ_CST);
  }
  return NULL;
}

static void *maintenance_main(void *arg)
{
  struct ticks *t = arg; /* kept for the thread's life */

  pthread_mutex_lock(&maint_lock);
  for (;;) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    while (pthread_cond_timedwait(&maint_cond, &maint_lock, &ts) != ETIMEDOUT)
      ;
    t->count++;
  }
  pthread_mutex_unlock(&maint_lock);
  return NULL;
}

#if POOL_VERSION == 3
static void start_maintenance(void)
{
  pthread_t t;
  if (pthread_create(&t, NULL, maintenance_main, ticks) == 0)
    pthread_detach(t);
}
#endif

static void queue(struct pool *p, struct conn *c)
{
  struct job *j = malloc(sizeof(*j));
  if (!j)
    return; /* the connection stays disarmed: the client times out */
  j->conn = c;
  j->next = NULL;
  pthread_mutex_lock(&p->lock);
  if (p->tail)
    p->tail->next = j;
  else
    p->head = j;
  p->tail = j;
  pthread_cond_signal(&p->ready);
  pthread_mutex_unlock(&p->lock);
}

static void event_loop(struct pool *p, int lfd)
{
  for (;;) {
    struct epoll_event events[64];
    int n = epoll_wait(p->ep, events, 64, -1);
    for (int i = 0; i < n; i++) {
      struct conn *c = events[i].data.ptr;
      if (c) {
        queue(p, c);
        continue;
      }
      int fd;
      while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        if (!(c = calloc(1, sizeof(*c)))) {
          close(fd);
          continue;
        }
        c->fd = fd;
        struct epoll_event cev = {.events = EPOLLIN | EPOLLONESHOT, .data.ptr = c};
        epoll_ctl(p->ep, EPOLL_CTL_ADD, fd, &cev);
      }
    }
  }
}

int main(int argc, char **argv)
{
  int opt, nworkers = 4;
  while ((opt = getopt(argc, argv, "p:f:w:")) != -1) {
    if (opt == 'p')
      port = atoi(optarg);
    else if (opt == 'f')
      pidfile = optarg;
    else if (opt == 'w')
      nworkers = atoi(optarg);
    else {
      fprintf(stderr, "usage: %s [-p PORT] [-f PIDFILE] [-w WORKERS]\n", argv[0]);
      return 2;
    }
  }
  if (nworkers < 1 || nworkers > MAX_WORKERS) {
    fprintf(stderr, "poolkv: -w takes 1 to %d\n", MAX_WORKERS);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);

  struct pool *p = calloc(1, sizeof(*p));
  if (!p || !(p->table = calloc(NBUCKETS, sizeof(*p->table))) ||
      !(ticks = calloc(1, sizeof(*ticks)))) {
    fprintf(stderr, "poolkv: out of memory\n");
    return 1;
  }
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->ready, NULL);
  pthread_mutex_init(&p->table_lock, NULL);
  pthread_cond_init(&p->registered_cond, NULL);
  if (pthread_key_create(&log_key, NULL) != 0) {
    fprintf(stderr, "poolkv: pthread_key_create failed\n");
    return 1;
  }
  pool = p;

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 128) < 0) {
    fprintf(stderr, "poolkv: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
    return 1;
  }
  p->ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  if (p->ep < 0 || epoll_ctl(p->ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
    fprintf(stderr, "poolkv: epoll: %s\n", strerror(errno));
    return 1;
  }

  p->nworkers = nworkers;
  for (int i = 0; i < nworkers; i++) {
    pthread_t t;
    struct worker *w = calloc(1, sizeof(*w));
    if (!w) {
      fprintf(stderr, "poolkv: out of memory\n");
      return 1;
    }
    w->id = i;
    w->pool = p;
    p->workers[i] = w;
    if ((errno = pthread_create(&t, NULL, worker_main, w)) != 0) {
      fprintf(stderr, "poolkv: pthread_create: %s\n", strerror(errno));
      return 1;
    }
    pthread_detach(t);
  }
  /* every worker has its log before main goes on */
  pthread_mutex_lock(&p->lock);
  while (p->registered < nworkers)
    pthread_cond_wait(&p->registered_cond, &p->lock);
  pthread_mutex_unlock(&p->lock);
#if POOL_VERSION != 3
  {
    pthread_t t;
    if ((errno = pthread_create(&t, NULL, maintenance_main, ticks)) != 0) {
      fprintf(stderr, "poolkv: pthread_create: %s\n", strerror(errno));
      return 1;
    }
    pthread_detach(t);
  }
#endif
  if (pidfile) {
    FILE *f = fopen(pidfile, "w");
    if (f) {
      fprintf(f, "%d\n", getpid());
      fclose(f);
    }
  }
  fprintf(stderr, "poolkv: pid %d listening on 127.0.0.1:%d with %d workers (version %d)\n",
          getpid(), port, nworkers, POOL_VERSION);
  event_loop(p, lfd);
  return 0;
}
