/*
 * control.c - the control thread and its request handlers; see control.h.
 *
 * One connection at a time, one request after another on it. Every request is
 * answered with a Reply, or, for bytes that are not a request (garbage, a length
 * prefix over the limit), an error Reply and the connection closed. Clients of
 * another user are closed without a word. A client that stalls is dropped after
 * IO_TIMEOUT_SEC, so it cannot hold the control thread.
 *
 * Adding a request: a message in proto/control.proto (Request.kind and Reply.kind),
 * a handler below, a line in the handlers table.
 */
#define _GNU_SOURCE
#include "control.h"
#include "update.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control.pb-c.h"
#include "elfsym.h"
#include "procstat.h"
#include "quiesce.h"
#include "rename.h"
#include "threads.h"

#ifndef MCR_VERSION
#define MCR_VERSION "unknown"
#endif

#define IO_TIMEOUT_SEC 5
#define QUIESCE_MAX_MS 600000u     /* hold and timeout limits */
#define QUIESCE_DEFAULT_TIMEOUT_MS 2000u
#define HANDED_OFF 2               /* a handler took over the connection */
#define FD_FLOOR_MAX 65536 /* our descriptors move up to 7/8 of RLIMIT_NOFILE, at most here */

typedef Mcr__Control__Request Request;
typedef Mcr__Control__Reply Reply;

static int listen_fd = -1;
static dev_t listen_dev; /* identity of our socket: the server may close and reuse */
static ino_t listen_ino; /* its fd number (daemons close every fd) */
static pid_t control_tid;
static int client_fd = -1; /* the connection being served */
static int quiesce_active; /* a quiesce worker is running (atomic) */
static int quiesce_fd = -1; /* the connection it serves */
static struct timespec started;

/* ---- per-request memory: everything a reply holds, freed at once ---- */

struct arena {
  void **blocks;
  size_t n, cap;
  int failed;
};

static void *arena_alloc(struct arena *a, size_t size)
{
  void *p;

  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 64;
    void **b = realloc(a->blocks, cap * sizeof(*b));
    if (!b) {
      a->failed = 1;
      return NULL;
    }
    a->blocks = b;
    a->cap = cap;
  }
  p = calloc(1, size ? size : 1);
  if (!p) {
    a->failed = 1;
    return NULL;
  }
  a->blocks[a->n++] = p;
  return p;
}

static char *arena_str(struct arena *a, const char *s)
{
  size_t len = strlen(s);
  char *p = arena_alloc(a, len + 1);

  if (p)
    memcpy(p, s, len + 1);
  return p;
}

static void arena_free(struct arena *a)
{
  for (size_t i = 0; i < a->n; i++)
    free(a->blocks[i]);
  free(a->blocks);
  memset(a, 0, sizeof(*a));
}

/* ---- status ---- */

/* Reads a small /proc file into buf (NUL-terminated, trailing newline cut). */
static int read_small(const char *path, char *buf, size_t len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n;

  if (fd < 0)
    return -1;
  n = read(fd, buf, len - 1);
  close(fd);
  if (n < 0)
    return -1;
  buf[n] = '\0';
  if (n > 0 && buf[n - 1] == '\n')
    buf[n - 1] = '\0';
  return 0;
}

/* Field 3 of /proc/self/task/TID/stat: the state letter after "(comm) ". */
static void task_state(pid_t tid, char *out, size_t len)
{
  char path[64], buf[512];
  const char *p;

  snprintf(out, len, "?");
  snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
  if (read_small(path, buf, sizeof(buf)) || !(p = strrchr(buf, ')')) || p[1] != ' ' || !p[2])
    return;
  snprintf(out, len, "%c", p[2]);
}

static Mcr__Control__QuiescentPoint *qp_entry(struct arena *a, const struct mcr_qp *q)
{
  Mcr__Control__QuiescentPoint *p = arena_alloc(a, sizeof(*p));

  if (!p)
    return NULL;
  mcr__control__quiescent_point__init(p);
  p->has_id = 1;
  p->id = q->id;
  p->thread_class = arena_str(a, q->thread_class ? q->thread_class : "");
  p->stack = arena_str(a, q->stack ? q->stack : "");
  p->blocking_function =
      arena_str(a, q->blockfn < MCR_BLOCK_COUNT ? mcr_blockfn_names[q->blockfn] : "?");
  p->caller = arena_str(a, q->caller ? q->caller : "");
  p->callee = arena_str(a, q->callee ? q->callee : "");
  p->file = arena_str(a, q->file ? q->file : "");
  p->has_line = 1;
  p->line = q->line;
  return p;
}

static Mcr__Control__ThreadInfo *thread_entry(struct arena *a, struct mcr_symbolizer *sym,
                                              pid_t tid, const struct mcr_thread_info *t)
{
  Mcr__Control__ThreadInfo *ti = arena_alloc(a, sizeof(*ti));
  char path[64], buf[4096];

  if (!ti)
    return NULL;
  mcr__control__thread_info__init(ti);
  ti->tid = tid;
  snprintf(path, sizeof(path), "/proc/self/task/%d/comm", tid);
  ti->name = arena_str(a, read_small(path, buf, sizeof(buf)) ? "?" : buf);
  task_state(tid, buf, sizeof(buf));
  ti->state = arena_str(a, buf);
  ti->has_registered = 1;
  ti->registered = t != NULL;
  if (!t)
    return ti;
  mcr_threads_class(sym, t, buf, sizeof(buf));
  ti->thread_class = arena_str(a, buf);
  if (t->is_main)
    snprintf(buf, sizeof(buf), "main");
  else
    mcr_symbolize(sym, t->start, buf, sizeof(buf));
  ti->start_routine = arena_str(a, buf);
  ti->has_start_address = 1;
  ti->start_address = t->start;
  ti->has_created_us = 1;
  ti->created_us = t->created_us;
  ti->has_pthread_id = 1;
  ti->pthread_id = t->pthread;
  ti->quiesce_state = arena_str(a, mcr_quiesce_state_name(t->qstate));
  if (t->qp_at)
    ti->point = qp_entry(a, t->qp_at);
  ti->creation_stack = arena_alloc(a, (t->nframes ? t->nframes : 1) * sizeof(char *));
  if (ti->creation_stack) {
    for (unsigned i = 0; i < t->nframes; i++) {
      mcr_symbolize(sym, t->frames[i] - 1, buf, sizeof(buf));
      if (!(ti->creation_stack[i] = arena_str(a, buf)))
        break;
      ti->n_creation_stack = i + 1;
    }
  }
  return ti;
}

static int cmp_tid(const void *x, const void *y)
{
  pid_t a = ((const struct mcr_thread_info *)x)->tid, b = ((const struct mcr_thread_info *)y)->tid;
  return a < b ? -1 : a > b;
}

static int handle_status(struct arena *a, const Request *req, Reply *rep)
{
  Mcr__Control__StatusReply *st = arena_alloc(a, sizeof(*st));
  struct mcr_symbolizer sym = {0};
  struct mcr_thread_info *reg = NULL;
  size_t nreg = 0, cap = 0;
  struct timespec now;
  char buf[4096];
  ssize_t len;
  DIR *d;
  struct dirent *de;

  (void)req;
  if (!st)
    return -1;
  mcr__control__status_reply__init(st);
  st->pid = getpid();
  len = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  buf[len > 0 ? len : 0] = '\0';
  st->program = arena_str(a, buf);
  st->runtime_version = arena_str(a, MCR_VERSION);
  clock_gettime(CLOCK_MONOTONIC, &now);
  st->has_uptime_ms = 1;
  st->uptime_ms = (uint64_t)(((int64_t)now.tv_sec - started.tv_sec) * 1000 +
                             ((int64_t)now.tv_nsec - started.tv_nsec) / 1000000);
  st->has_untracked = 1;
  st->untracked = mcr_threads_untracked();
  st->has_quiescing = 1;
  st->quiescing = __atomic_load_n(&mcr_quiescing, __ATOMIC_SEQ_CST) != 0;
  {
    size_t np = mcr_quiesce_points(NULL, 0);
    const struct mcr_qp **pts = np ? arena_alloc(a, np * sizeof(*pts)) : NULL;
    if (pts) {
      np = mcr_quiesce_points(pts, np);
      st->points = arena_alloc(a, np * sizeof(*st->points));
      for (size_t i = 0; st->points && i < np; i++)
        if ((st->points[i] = qp_entry(a, pts[i])))
          st->n_points = i + 1;
    }
  }

  /* the registry, sorted by tid */
  for (;;) {
    size_t n = mcr_threads_snapshot(reg, cap);
    if (n <= cap) {
      nreg = n;
      break;
    }
    cap = n + 16;
    if (!(reg = arena_alloc(a, cap * sizeof(*reg))))
      return -1;
  }
  if (nreg)
    qsort(reg, nreg, sizeof(*reg), cmp_tid);

  /* every task of the process, matched with the registry */
  d = opendir("/proc/self/task");
  if (d) {
    size_t ntasks = 0, tcap = 0;
    Mcr__Control__ThreadInfo **list = NULL;
    while ((de = readdir(d))) {
      char *end;
      long tid = strtol(de->d_name, &end, 10);
      struct mcr_thread_info key, *t;
      if (de->d_name[0] < '0' || de->d_name[0] > '9' || *end || tid == control_tid)
        continue;
      key.tid = (pid_t)tid;
      t = nreg ? bsearch(&key, reg, nreg, sizeof(*reg), cmp_tid) : NULL;
      if (ntasks == tcap) {
        size_t ncap = tcap ? tcap * 2 : 32;
        Mcr__Control__ThreadInfo **nl = arena_alloc(a, ncap * sizeof(*nl));
        if (!nl)
          break;
        if (ntasks)
          memcpy(nl, list, ntasks * sizeof(*nl));
        list = nl;
        tcap = ncap;
      }
      if (!(list[ntasks] = thread_entry(a, &sym, (pid_t)tid, t)))
        break;
      ntasks++;
    }
    closedir(d);
    st->threads = list;
    st->n_threads = ntasks;
  }
  mcr_symbolizer_close(&sym);
  if (a->failed)
    return -1;
  rep->kind_case = MCR__CONTROL__REPLY__KIND_STATUS;
  rep->status = st;
  return 0;
}

/* ---- quiesce: served by a worker thread, so that the control thread keeps
 * answering (status shows the parked threads; a second quiesce is refused) ---- */

struct quiesce_job {
  int fd;
  unsigned hold_ms, timeout_ms;
};

static void set_error(struct arena *a, Reply *rep, Mcr__Control__Error__Code code,
                      const char *msg);
static int send_reply(int fd, Reply *rep);

static uint64_t mono_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The reply's per-thread part, built after the resume (symbolizing is slow). */
static int arrivals(struct arena *a, const struct mcr_qresult *res, Mcr__Control__QuiesceReply *qr)
{
  struct mcr_symbolizer sym = {0};
  struct mcr_thread_info *reg = NULL;
  size_t nreg = mcr_threads_snapshot(NULL, 0) + 16;
  char buf[4096], path[64];

  if (!(reg = arena_alloc(a, nreg * sizeof(*reg))))
    return -1;
  nreg = mcr_threads_snapshot(reg, nreg);
  qr->threads = arena_alloc(a, (res->nthreads ? res->nthreads : 1) * sizeof(*qr->threads));
  if (!qr->threads)
    return -1;
  for (size_t i = 0; i < res->nthreads; i++) {
    const struct mcr_qarrival *r = &res->threads[i];
    Mcr__Control__ThreadArrival *t = arena_alloc(a, sizeof(*t));
    if (!t)
      break;
    mcr__control__thread_arrival__init(t);
    t->tid = r->tid;
    snprintf(path, sizeof(path), "/proc/self/task/%d/comm", r->tid);
    t->name = arena_str(a, read_small(path, buf, sizeof(buf)) ? "?" : buf);
    for (size_t k = 0; k < nreg; k++)
      if (reg[k].tid == r->tid) {
        mcr_threads_class(&sym, &reg[k], buf, sizeof(buf));
        t->thread_class = arena_str(a, buf);
        break;
      }
    t->has_arrived = 1;
    t->arrived = r->arrived != 0;
    t->state = arena_str(a, mcr_quiesce_state_name(r->state));
    if (r->arrived) {
      t->has_arrival_us = 1;
      t->arrival_us = r->arrival_us;
      if (r->at)
        t->point = qp_entry(a, r->at);
    } else {
      t->where = arena_str(a, r->where);
    }
    qr->threads[qr->n_threads++] = t;
  }
  mcr_symbolizer_close(&sym);
  return a->failed ? -1 : 0;
}

/* ---- jobs: a quiesce, an update or an update partner, one at a time ----
 * Each runs on a thread of its own with the connection that asked (the job's
 * fd); the process has one slot for them (quiesce_active). */

/* Takes the slot for the current connection: 0, or -1 with a REFUSED reply
 * saying busy (what the running job is). */
static int job_claim(struct arena *a, Reply *rep, const char *busy)
{
  if (__atomic_exchange_n(&quiesce_active, 1, __ATOMIC_SEQ_CST)) {
    set_error(a, rep, MCR__CONTROL__ERROR__CODE__REFUSED, busy);
    return -1;
  }
  quiesce_fd = client_fd;
  return 0;
}

/* Frees the slot (the job's end, or a failure before it started). */
static void job_release(void)
{
  quiesce_fd = -1;
  __atomic_store_n(&quiesce_active, 0, __ATOMIC_SEQ_CST);
}

/* Runs fn(job) on a thread of its own: HANDED_OFF, or 0 with an INTERNAL reply
 * (job freed, the slot released). */
static int job_start(struct arena *a, Reply *rep, void *(*fn)(void *), void *job)
{
  pthread_t t;

  if (mcr_threads_start_internal(&t, fn, job) != 0) {
    free(job);
    job_release();
    set_error(a, rep, MCR__CONTROL__ERROR__CODE__INTERNAL, "cannot start a thread");
    return 0;
  }
  pthread_detach(t);
  return HANDED_OFF;
}

static void *quiesce_worker(void *p)
{
  struct quiesce_job *job = p;
  Mcr__Control__QuiesceReply *qr;
  Reply rep = MCR__CONTROL__REPLY__INIT;
  struct mcr_qresult res;
  struct arena a = {0};
  uint64_t t_hold, t_end;

  pthread_setname_np(pthread_self(), "mcr-quiesce");
  rep.has_protocol = 1;
  rep.protocol = MCR_CONTROL_PROTOCOL;
  if (mcr_quiesce_begin(job->timeout_ms, &res) == 0) {
    struct timespec ts = {(time_t)(job->hold_ms / 1000), (long)(job->hold_ms % 1000) * 1000000L};
    t_hold = mono_us();
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
      ;
    t_end = mono_us();
    mcr_quiesce_end();
  } else {
    t_hold = t_end = mono_us();
  }
  if (res.error[0]) {
    set_error(&a, &rep, MCR__CONTROL__ERROR__CODE__REFUSED, res.error);
  } else if ((qr = arena_alloc(&a, sizeof(*qr)))) {
    mcr__control__quiesce_reply__init(qr);
    qr->has_quiesced = 1;
    qr->quiesced = res.ok != 0;
    qr->has_time_to_quiescence_us = 1;
    qr->time_to_quiescence_us = res.quiesce_us;
    qr->has_grace_period_us = 1;
    qr->grace_period_us = res.grace_us;
    qr->has_held_us = 1;
    qr->held_us = t_end - t_hold;
    qr->has_resume_us = 1;
    qr->resume_us = mono_us() - t_end;
    if (arrivals(&a, &res, qr) == 0) {
      rep.kind_case = MCR__CONTROL__REPLY__KIND_QUIESCE;
      rep.quiesce = qr;
    }
  }
  if (rep.kind_case == MCR__CONTROL__REPLY__KIND__NOT_SET) {
    arena_free(&a);
    set_error(&a, &rep, MCR__CONTROL__ERROR__CODE__INTERNAL, "out of memory");
  }
  /* Ready for the next quiesce before the client has this reply: a client that
   * asks again as soon as it has it (mcr-ctl in a loop) must not find this
   * worker still cleaning up and be refused as "in progress". */
  job_release();
  send_reply(job->fd, &rep);
  close(job->fd);
  arena_free(&a);
  mcr_qresult_free(&res);
  free(job);
  return NULL;
}

static int handle_quiesce(struct arena *a, const Request *req, Reply *rep)
{
  const Mcr__Control__QuiesceRequest *q = req->quiesce;
  struct quiesce_job *job;
  char msg[160];

  if (q->has_hold_ms && q->hold_ms > QUIESCE_MAX_MS) {
    snprintf(msg, sizeof(msg), "hold of %u ms is over the limit of %u ms", q->hold_ms, QUIESCE_MAX_MS);
    set_error(a, rep, MCR__CONTROL__ERROR__CODE__MALFORMED, msg);
    return 0;
  }
  if (q->has_timeout_ms && (q->timeout_ms == 0 || q->timeout_ms > QUIESCE_MAX_MS)) {
    snprintf(msg, sizeof(msg), "timeout must be 1 to %u ms", QUIESCE_MAX_MS);
    set_error(a, rep, MCR__CONTROL__ERROR__CODE__MALFORMED, msg);
    return 0;
  }
  if (job_claim(a, rep, "another quiesce is in progress in this process; try again when it ends"))
    return 0;
  job = malloc(sizeof(*job));
  if (!job) {
    job_release();
    return -1;
  }
  job->fd = client_fd;
  job->hold_ms = q->has_hold_ms ? q->hold_ms : 0;
  job->timeout_ms = q->has_timeout_ms ? q->timeout_ms : QUIESCE_DEFAULT_TIMEOUT_MS;
  return job_start(a, rep, quiesce_worker, job);
}

/* ---- update: served by a worker thread, like a quiesce (and excluding it) ---- */

struct update_job {
  int fd;
  unsigned timeout_ms;
  char path[4096];
  char fault[128];
  char renames[MCR_RENAME_SPEC_MAX]; /* rename.h: "OLD=NEW OLD=NEW" */
};

#define UPDATE_DEFAULT_TIMEOUT_MS 10000u

static int update_conflicts(struct arena *a, const struct mcr_update_result *r,
                            Mcr__Control__UpdateReply *ur)
{
  ur->conflicts = arena_alloc(a, (r->nconflicts + 1) * sizeof(*ur->conflicts));
  if (!ur->conflicts)
    return -1;
  for (size_t i = 0; i < r->nconflicts; i++) {
    const struct mcr_update_conflict *c = &r->conflicts[i];
    Mcr__Report__Conflict *m = arena_alloc(a, sizeof(*m));
    if (!m)
      return -1;
    mcr__report__conflict__init(m);
    m->kind = arena_str(a, mcr_update_conflict_get(c, MCR_CF_KIND));
    m->message = arena_str(a, mcr_update_conflict_get(c, MCR_CF_MESSAGE));
    m->object = arena_str(a, mcr_update_conflict_get(c, MCR_CF_OBJECT));
    m->old_type = arena_str(a, mcr_update_conflict_get(c, MCR_CF_OLD_TYPE));
    m->new_type = arena_str(a, mcr_update_conflict_get(c, MCR_CF_NEW_TYPE));
    m->old_location = arena_str(a, mcr_update_conflict_get(c, MCR_CF_OLD_LOCATION));
    m->new_location = arena_str(a, mcr_update_conflict_get(c, MCR_CF_NEW_LOCATION));
    m->stack = arena_str(a, mcr_update_conflict_get(c, MCR_CF_STACK));
    m->fix = arena_str(a, mcr_update_conflict_get(c, MCR_CF_FIX));
    ur->conflicts[ur->n_conflicts++] = m;
    /* for clients that only know the text lines */
    ur->reasons[ur->n_reasons++] = m->message;
  }
  return a->failed ? -1 : 0;
}

static int update_reply(struct arena *a, const struct mcr_update_result *r, Reply *rep)
{
  Mcr__Control__UpdateReply *ur = arena_alloc(a, sizeof(*ur));
  if (!ur)
    return -1;
  mcr__control__update_reply__init(ur);
  ur->has_committed = 1;
  ur->committed = r->committed != 0;
  ur->has_new_pid = r->committed || r->spawned_pid > 0;
  ur->new_pid = (uint32_t)(r->committed ? r->new_pid : r->spawned_pid);
  ur->has_pause_us = 1;
  ur->pause_us = r->pause_us;
  ur->has_total_us = 1;
  ur->total_us = r->total_us;
  ur->phases = arena_alloc(a, (r->nphases + 1) * sizeof(*ur->phases));
  ur->reasons = arena_alloc(a, (r->nconflicts + 1) * sizeof(char *));
  ur->notes = arena_alloc(a, (r->nnotes + 2) * sizeof(char *));
  if (!ur->phases || !ur->reasons || !ur->notes)
    return -1;
  for (size_t i = 0; i < r->nphases; i++) {
    Mcr__Control__UpdatePhase *p = arena_alloc(a, sizeof(*p));
    if (!p)
      return -1;
    mcr__control__update_phase__init(p);
    p->name = arena_str(a, r->phases[i].name);
    p->has_us = 1;
    p->us = r->phases[i].us;
    p->detail = arena_str(a, r->phases[i].detail);
    ur->phases[ur->n_phases++] = p;
  }
  if (update_conflicts(a, r, ur) != 0)
    return -1;
  for (size_t i = 0; i < r->nnotes; i++)
    ur->notes[ur->n_notes++] = arena_str(a, r->notes[i]);
  if (r->nconflicts_lost) {
    char more[96];
    snprintf(more, sizeof(more), "%zu more conflicts were not kept (at most %d per update)",
             r->nconflicts_lost, MCR_UPDATE_MAX_CONFLICTS);
    ur->notes[ur->n_notes++] = arena_str(a, more);
  }
  rep->kind_case = MCR__CONTROL__REPLY__KIND_UPDATE;
  rep->update = ur;
  return a->failed ? -1 : 0;
}

static void *update_worker(void *p)
{
  struct update_job *job = p;
  Reply rep = MCR__CONTROL__REPLY__INIT;
  struct arena a = {0};
  static struct mcr_update_result res; /* large; one update at a time */

  pthread_setname_np(pthread_self(), "mcr-update");
  rep.has_protocol = 1;
  rep.protocol = MCR_CONTROL_PROTOCOL;
  mcr_update_run(job->path, job->timeout_ms, job->fault, job->renames, &res);
  if (res.refused)
    set_error(&a, &rep, MCR__CONTROL__ERROR__CODE__REFUSED,
              res.nconflicts ? mcr_update_conflict_get(&res.conflicts[0], MCR_CF_MESSAGE)
                             : "refused");
  else if (update_reply(&a, &res, &rep) != 0)
    set_error(&a, &rep, MCR__CONTROL__ERROR__CODE__INTERNAL, "out of memory");
  if (!res.committed)
    job_release();
  send_reply(job->fd, &rep);
  close(job->fd);
  arena_free(&a);
  if (res.committed)
    mcr_update_finish(&res); /* does not return */
  free(job);
  return NULL;
}

/* The request's renames ("OLD=NEW" each) joined into job->renames, checked as
 * the new version will parse them: 0, or -1 with why. */
static int update_renames(struct update_job *job, const Mcr__Control__UpdateRequest *u,
                          char *why, size_t whylen)
{
  static struct mcr_renames parsed; /* only the control thread handles requests */

  job->renames[0] = '\0';
  for (size_t i = 0; i < u->n_renames; i++) {
    size_t len = strlen(job->renames), n = strlen(u->renames[i]);
    if (len + 1 + n + 1 > sizeof(job->renames)) {
      snprintf(why, whylen, "the rename map is too long (at most %zu bytes)",
               sizeof(job->renames) - 1);
      return -1;
    }
    if (len)
      job->renames[len++] = ' ';
    memcpy(job->renames + len, u->renames[i], n + 1);
  }
  return mcr_renames_parse(&parsed, job->renames, why, whylen);
}

static int handle_update(struct arena *a, const Request *req, Reply *rep)
{
  const Mcr__Control__UpdateRequest *u = req->update;
  struct update_job *job;
  char msg[400];

  if (!u->path || u->path[0] != '/' || strlen(u->path) >= sizeof(job->path)) {
    set_error(a, rep, MCR__CONTROL__ERROR__CODE__MALFORMED,
              "the new version's path must be absolute");
    return 0;
  }
  if (u->has_timeout_ms && (u->timeout_ms == 0 || u->timeout_ms > QUIESCE_MAX_MS)) {
    snprintf(msg, sizeof(msg), "timeout must be 1 to %u ms", QUIESCE_MAX_MS);
    set_error(a, rep, MCR__CONTROL__ERROR__CODE__MALFORMED, msg);
    return 0;
  }
  if (job_claim(a, rep, "another update or quiesce is in progress in this process; try again "
                        "when it ends"))
    return 0;
  job = calloc(1, sizeof(*job));
  if (!job) {
    job_release();
    return -1;
  }
  job->fd = client_fd;
  job->timeout_ms = u->has_timeout_ms ? u->timeout_ms : UPDATE_DEFAULT_TIMEOUT_MS;
  snprintf(job->path, sizeof(job->path), "%s", u->path);
  snprintf(job->fault, sizeof(job->fault), "%s", u->fault ? u->fault : "");
  if (update_renames(job, u, msg, sizeof(msg)) != 0) {
    free(job);
    job_release();
    set_error(a, rep, MCR__CONTROL__ERROR__CODE__MALFORMED, msg);
    return 0;
  }
  return job_start(a, rep, update_worker, job);
}


struct partner_job {
  int fd;
  pid_t peer;
  unsigned timeout_ms;
};

static void *partner_worker(void *p)
{
  struct partner_job *job = p;

  pthread_setname_np(pthread_self(), "mcr-update");
  mcr_update_partner(job->fd, job->peer, job->timeout_ms); /* returns on a rollback only */
  close(job->fd);
  job_release();
  free(job);
  return NULL;
}

/* A child of the new version's root asks this process, the old child it
 * replaces, to take part in the update of the tree (docs/coordinator.md): only
 * from a grandchild of our parent (the old root spawned the new root, whose
 * startup forked the asker). The connection becomes the pair's channel. */
static int handle_update_partner(struct arena *a, const Request *req, Reply *rep)
{
  const Mcr__Control__UpdatePartnerRequest *u = req->update_partner;
  struct ucred cred;
  socklen_t len = sizeof(cred);
  struct partner_job *job;
  pid_t mid;

  if (getsockopt(client_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
      (mid = mcr_proc_parent(cred.pid, 0)) <= 0 || mcr_proc_parent(mid, 0) != getppid() || getppid() <= 1) {
    set_error(a, rep, MCR__CONTROL__ERROR__CODE__REFUSED,
              "an update partner must be a child of a process that this process's parent "
              "started");
    return 0;
  }
  if (job_claim(a, rep, "another update or quiesce is in progress in this process"))
    return 0;
  job = calloc(1, sizeof(*job));
  if (!job) {
    job_release();
    return -1;
  }
  job->fd = client_fd;
  job->peer = cred.pid;
  job->timeout_ms = u->has_timeout_ms && u->timeout_ms && u->timeout_ms <= QUIESCE_MAX_MS
                        ? u->timeout_ms
                        : UPDATE_DEFAULT_TIMEOUT_MS;
  return job_start(a, rep, partner_worker, job);
}

int mcr_control_fd_is_own(int fd)
{
  return fd >= 0 && (fd == listen_fd || fd == client_fd || fd == quiesce_fd);
}

/* ---- dispatch ---- */

static const struct handler {
  Mcr__Control__Request__KindCase kind;
  int (*run)(struct arena *a, const Request *req, Reply *rep);
} handlers[] = {
    {MCR__CONTROL__REQUEST__KIND_STATUS, handle_status},
    {MCR__CONTROL__REQUEST__KIND_QUIESCE, handle_quiesce},
    {MCR__CONTROL__REQUEST__KIND_UPDATE, handle_update},
    {MCR__CONTROL__REQUEST__KIND_UPDATE_PARTNER, handle_update_partner},
};

static void set_error(struct arena *a, Reply *rep, Mcr__Control__Error__Code code,
                      const char *msg)
{
  static Mcr__Control__Error fallback = MCR__CONTROL__ERROR__INIT;
  Mcr__Control__Error *e = arena_alloc(a, sizeof(*e));

  if (!e) {
    e = &fallback; /* out of memory: a reply without text */
  } else {
    mcr__control__error__init(e);
    e->message = arena_str(a, msg);
  }
  e->has_code = 1;
  e->code = code;
  rep->kind_case = MCR__CONTROL__REPLY__KIND_ERROR;
  rep->error = e;
}

/* ---- the connection ---- */

static int write_all(int fd, const unsigned char *p, size_t n)
{
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* 1 read, 0 end of stream before any byte, -1 error or short read */
static int read_all(int fd, unsigned char *p, size_t n)
{
  size_t got = 0;

  while (got < n) {
    ssize_t r = recv(fd, p + got, n - got, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return r == 0 && got == 0 ? 0 : -1;
    got += (size_t)r;
  }
  return 1;
}

static int send_reply(int fd, Reply *rep)
{
  size_t n = mcr__control__reply__get_packed_size(rep);
  unsigned char *buf = malloc(n + 4);
  int rc;

  if (!buf)
    return -1;
  mcr_control_put_len(buf, (uint32_t)n);
  mcr__control__reply__pack(rep, buf + 4);
  rc = write_all(fd, buf, n + 4);
  free(buf);
  return rc;
}

/* Serves one request; returns 0 to go on with the connection, -1 to close it,
 * HANDED_OFF when a handler took it over (do not close it). */
static int serve_one(int fd)
{
  unsigned char hdr[4], *body = NULL;
  Reply rep = MCR__CONTROL__REPLY__INIT;
  struct arena a = {0};
  Request *req = NULL;
  uint32_t len;
  int rc = -1;

  if (read_all(fd, hdr, 4) != 1)
    return -1;
  rep.has_protocol = 1;
  rep.protocol = MCR_CONTROL_PROTOCOL;
  len = mcr_control_get_len(hdr);
  if (len > MCR_CONTROL_MAX_REQUEST) {
    char msg[128];
    snprintf(msg, sizeof(msg), "request of %u bytes is over the limit of %u", len,
             (unsigned)MCR_CONTROL_MAX_REQUEST);
    set_error(&a, &rep, MCR__CONTROL__ERROR__CODE__TOO_LARGE, msg);
    send_reply(fd, &rep);
    goto out; /* the rest of the stream cannot be framed: close */
  }
  body = malloc(len ? len : 1);
  if (!body || read_all(fd, body, len) != 1)
    goto out;
  req = mcr__control__request__unpack(NULL, len, body);
  if (!req) {
    set_error(&a, &rep, MCR__CONTROL__ERROR__CODE__MALFORMED, "request does not decode");
    send_reply(fd, &rep);
    goto out;
  }
  rc = 0;
  for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
    if (handlers[i].kind == req->kind_case) {
      int h = handlers[i].run(&a, req, &rep);
      if (h == HANDED_OFF) {
        rc = HANDED_OFF; /* the connection is the handler's now */
        goto out;
      }
      if (h != 0) {
        rep.kind_case = MCR__CONTROL__REPLY__KIND__NOT_SET;
        arena_free(&a);
        set_error(&a, &rep, MCR__CONTROL__ERROR__CODE__INTERNAL, "out of memory");
      }
      break;
    }
  if (rep.kind_case == MCR__CONTROL__REPLY__KIND__NOT_SET)
    set_error(&a, &rep, MCR__CONTROL__ERROR__CODE__UNSUPPORTED,
              "unknown request (a newer mcr-ctl than this runtime?)");
  if (send_reply(fd, &rep) != 0)
    rc = -1;
out:
  if (req)
    mcr__control__request__free_unpacked(req, NULL);
  free(body);
  arena_free(&a);
  return rc;
}

static int serve(int fd)
{
  int rc;
  struct ucred cred;
  socklen_t clen = sizeof(cred);
  struct timeval tv = {.tv_sec = IO_TIMEOUT_SEC};

  /* only our own uid, or root */
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) || clen != sizeof(cred) ||
      (cred.uid != 0 && cred.uid != geteuid() && cred.uid != getuid()))
    return -1;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  while ((rc = serve_one(fd)) == 0)
    ;
  return rc;
}

/* ---- the socket and the thread ---- */

/* Moves fd to a high number, out of the range the server hands out (and expects:
 * programs close 0-2 and count on the next open landing there). Returns the new
 * descriptor, fd itself when there is no room up there, or -1 (fd closed) when fd
 * would stay in 0-2. */
/* The descriptors mcr_fd_move_high returned, with their file's identity: a
 * number the runtime closed and the program reused is not the runtime's. */
#define RUNTIME_FDS 256
static struct {
  int fd;
  dev_t dev;
  ino_t ino;
} runtime_fds[RUNTIME_FDS];
static unsigned runtime_fds_next;

static void runtime_fd_note(int fd)
{
  struct stat sb;
  if (fd < 0 || fstat(fd, &sb) != 0)
    return;
  unsigned i, n = __atomic_load_n(&runtime_fds_next, __ATOMIC_RELAXED), freed = RUNTIME_FDS;
  for (i = 0; i < RUNTIME_FDS && i < n; i++) {
    if (runtime_fds[i].fd == fd)
      break;
    if (runtime_fds[i].fd < 0 && freed == RUNTIME_FDS)
      freed = i;
  }
  if (i == RUNTIME_FDS || i == n) /* a new number: a slot mcr_fd_close freed, else the
                                    * next one (round robin when full) */
    i = freed < RUNTIME_FDS ? freed
                            : __atomic_fetch_add(&runtime_fds_next, 1, __ATOMIC_RELAXED) % RUNTIME_FDS;
  runtime_fds[i].dev = sb.st_dev;
  runtime_fds[i].ino = sb.st_ino;
  runtime_fds[i].fd = fd;
}

int mcr_fd_is_runtime(int fd)
{
  struct stat sb;
  unsigned n = __atomic_load_n(&runtime_fds_next, __ATOMIC_RELAXED);
  for (unsigned i = 0; i < RUNTIME_FDS && i < n; i++)
    if (runtime_fds[i].fd == fd)
      return fstat(fd, &sb) == 0 && sb.st_dev == runtime_fds[i].dev &&
             sb.st_ino == runtime_fds[i].ino;
  return 0;
}

int mcr_fd_close(int fd)
{
  unsigned n = __atomic_load_n(&runtime_fds_next, __ATOMIC_RELAXED);
  for (unsigned i = 0; i < RUNTIME_FDS && i < n; i++)
    if (runtime_fds[i].fd == fd)
      runtime_fds[i].fd = -1;
  return close(fd);
}

static int fd_move_high(int fd);

int mcr_fd_move_high(int fd)
{
  int r = fd_move_high(fd);
  runtime_fd_note(r);
  return r;
}

/* Where the runtime's descriptors go: 7/8 of RLIMIT_NOFILE (896 at the usual
 * 1024), at most 65536 (the kernel's table grows to the highest number in use:
 * 512 KiB there). As high as that because a process tree's new child takes its
 * old counterpart's descriptors at their numbers (docs/coordinator.md): a busy
 * worker's connections must not find the runtime's there. */
static rlim_t fd_floor(void)
{
  struct rlimit rl;
  rlim_t floor;

  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
    return FD_FLOOR_MAX;
  floor = rl.rlim_cur - rl.rlim_cur / 8;
  return floor > FD_FLOOR_MAX ? FD_FLOOR_MAX : floor;
}

static int fd_move_high(int fd)
{
  rlim_t floor = fd_floor();
  int high;

  if ((rlim_t)fd < floor && (high = fcntl(fd, F_DUPFD_CLOEXEC, (int)floor)) >= 0) {
    close(fd);
    return high;
  }
  if (fd <= STDERR_FILENO) {
    close(fd);
    return -1;
  }
  return fd;
}

static int open_socket(void)
{
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  struct stat sb;
  int fd, n;

  n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, MCR_CONTROL_NAME, (int)getpid());
  /* non-blocking: the thread waits in poll, not in accept (see control_main) */
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0 || (fd = mcr_fd_move_high(fd)) < 0)
    return -1;
  if (bind(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) ||
      listen(fd, 8) || fstat(fd, &sb)) {
    close(fd);
    return -1;
  }
  listen_dev = sb.st_dev;
  listen_ino = sb.st_ino;
  listen_fd = fd;
  return 0;
}

/* Whether listen_fd is still our socket (a daemon may have closed it, and the
 * number may now be one of the server's own files). */
static int socket_is_ours(void)
{
  struct stat sb;

  return listen_fd >= 0 && !fstat(listen_fd, &sb) && sb.st_dev == listen_dev &&
         sb.st_ino == listen_ino;
}

/* The thread waits in poll, never blocked in accept: Linux reserves the lowest
 * free descriptor number when accept is called, not when a client arrives, so a
 * thread parked in accept would hold a number the program expects to get itself
 * (a program that closes fd 1 and accepts, expecting 1, gets 3). accept4 is only
 * called once a client is waiting, and its descriptor is moved up at once. */
static void *control_main(void *arg)
{
  (void)arg;
  control_tid = gettid();
  pthread_setname_np(pthread_self(), "mcr-control");
  for (;;) {
    struct pollfd p = {.fd = listen_fd, .events = POLLIN};
    int c;
    if (!socket_is_ours()) {
      /* The program closed our descriptor (a daemon closing everything, a
       * program making room for its own fds): the number may be one of its own
       * files now, so never touch it again, and take no new descriptor behind
       * its back either. No control socket from here on. */
      listen_fd = -1;
      return NULL;
    }
    if (poll(&p, 1, -1) < 0) {
      if (errno != EINTR)
        sleep(1);
      continue;
    }
    if (!socket_is_ours())
      continue;
    /* No request while the heap is being handed over (old side, from the
     * export to the end of the copy) or taken over (new side): serving one
     * allocates. The client waits in its connect/read timeout. */
    if (__atomic_load_n(&mcr_update_heap_frozen, __ATOMIC_SEQ_CST) ||
        __atomic_load_n(&mcr_update_parking, __ATOMIC_SEQ_CST)) {
      struct timespec ts = {0, 10 * 1000 * 1000};
      nanosleep(&ts, NULL);
      continue;
    }
    c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (c >= 0)
      c = mcr_fd_move_high(c); /* it took the lowest free number meanwhile */
    if (c < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        sleep(1); /* out of descriptors or memory: do not spin */
      continue;
    }
    client_fd = c;
    if (serve(c) != HANDED_OFF)
      close(c);
    client_fd = -1;
  }
  return NULL;
}

static void start(void)
{
  pthread_t t;
  const char *env = getenv("MCR_CONTROL");

  control_tid = 0;
  clock_gettime(CLOCK_MONOTONIC, &started);
  if (env && !strcmp(env, "off"))
    return;
  if (open_socket() != 0)
    return;
  if (mcr_threads_start_internal(&t, control_main, NULL) != 0) {
    close(listen_fd);
    listen_fd = -1;
    return;
  }
  pthread_detach(t);
}

/* In the child of fork. The child has one thread (the one that forked), so it is
 * safe to create one here as far as glibc goes (its thread list and locks have been
 * reset before handlers run); a child that goes on to exec loses it anyway. The
 * heap's and the registry's child handlers were registered earlier and have run. */
static void control_fork_child(void)
{
  if (listen_fd >= 0 && socket_is_ours())
    close(listen_fd); /* the parent's socket: the parent keeps serving on it */
  listen_fd = -1;
  if (client_fd >= 0)
    close(client_fd); /* a connection the parent was serving */
  client_fd = -1;
  if (quiesce_active && quiesce_fd >= 0)
    close(quiesce_fd); /* the parent's worker and its client stay the parent's */
  quiesce_fd = -1;
  quiesce_active = 0;
  start();
}

__attribute__((constructor(201))) static void control_init(void)
{
  free(malloc(1)); /* the heap's fork handlers first (see threads.c) */
  pthread_atfork(NULL, NULL, control_fork_child);
  start();
}
