/*
 * kvstore - a small single-threaded epoll key-value server, the example the
 * README's demo builds with mcr-clang. Its state is typical of real servers:
 * a global config and stats, a chained hash table of heap entries, and a
 * heap-allocated connection per client with a partially read input buffer.
 *
 * Protocol (one command a line):
 *   SET key value   -> OK
 *   GET key         -> VALUE value | NOTFOUND
 *   DEL key         -> DELETED | NOTFOUND
 *   COUNT           -> COUNT n
 *   STATS           -> STATS keys=n conns=n cmds=n
 *   VERSION         -> VERSION n (KV_VERSION at build time: the update tests build
 *                      version 2 of this server with -DKV_VERSION=2, a code change)
 *   HITS key        -> HITS n (version 3: GETs of the key since the update)
 *   SLOT            -> SLOT id served self same: serve()'s slot (element 1 of
 *                      the startup array `slots`, through a pointer on serve()'s
 *                      stack), its count of SLOT commands, whether its self
 *                      pointer is itself and whether it is &slots[1]
 *   SERVED          -> SERVED n ptr p: slots[1]'s count of SLOT commands, and
 *                      whether last_served points to it (1), is unset (-1) or
 *                      points elsewhere (0)
 *
 * Versions (-DKV_VERSION=N), for the update tests (tests/update/run.sh):
 *   1, 2  the same types (2 is a code change)
 *   3     changed types: struct entry reordered with a new field (its objects no
 *         longer fit their slots: they move), struct slot with a field inserted
 *         (the startup array slots converts in place; the new startup's
 *         references into its own array, on serve()'s stack, must come to the
 *         converted old one in the new layout), struct stats with a new field and
 *         `keys` narrowed to unsigned int (the values fit), struct config with a
 *         new field, an enum with reordered enumerators, a table that grew
 *   4     like 1 but stats.commands narrowed to unsigned char: overflows once the
 *         server has handled more than 255 commands (the update must refuse)
 *   5     like 1 but struct conn has a new field too big for the object's slot: a
 *         connection is also referenced from a byte buffer (last_conn) and from the
 *         kernel's epoll registration, neither known to be a pointer, so it cannot
 *         move and the update must refuse (pinned)
 *   8     like 1 but struct conn has a new small field after `fd`: converted in
 *         place (the slot has room), so the words of unknown meaning pointing to its
 *         start stay right: the update commits
 *   6     like 1 but listens with another backlog: the startup no longer matches
 *   7     like 1 but gives up right after writing its pid file, removing it on the
 *         way out (as lighttpd does when its startup fails): a rollback must put the
 *         old version's pid file back
 *   9     like 1 but the function every connection points to (conn.on_line, set to
 *         command) is renamed run_command: without a rename map the update must
 *         refuse (a pointer to a function the new version does not have); with
 *         mcr-ctl update --rename command=run_command it commits
 *   11    like 1 but counts commands in a MAP_SHARED|MAP_ANONYMOUS page mapped at
 *         startup (as nginx's shared memory), through a global pointer: SHARED -> n
 *   10    like 1 but forks a child at startup that stays (a worker process, as
 *         nginx's): an update of it is refused (a startup fork whose parent goes
 *         on) and must leave no process of the new version behind
 *   12    prefork, as nginx: the master listens, maps a MAP_SHARED page of
 *         counters, forks 2 workers and waits; each worker makes its own epoll
 *         instance and serves the shared listening socket with its own table.
 *         WORKER -> WORKER index pid master (the master's pid, kept in a
 *         pid_t global at the fork); CHANNEL -> CHANNEL n: lines the worker
 *         read on its socket pair with the master, which sends the other
 *         workers one line per worker it forks (as nginx's master passes each
 *         new worker's channel to the others); SHARED -> SHARED n (commands of all
 *         workers). The update of the process tree (docs/coordinator.md).
 *         Each worker probes EPOLLRDHUP on its new instance as nginx does
 *         (ngx_epoll_test_rdhup: a wait at startup) and prints the result.
 *         MOVEFD N -> MOVEFD n: the connection moves to descriptor N.
 *         Workers are forked by spawn_worker and serve inside it; a worker
 *         that dies is forked again by reap_children through spawn_worker, as
 *         nginx's ngx_reap_children respawns (-DKV_NO_RESPAWN: not).
 *         -L: the master also forks a loader at startup, after the workers,
 *         which exits with status 0 at once (as nginx's cache loader exits
 *         once the cache is loaded); the master reaps it and goes on.
 *         -S: the master also forks a standby at startup, from spawn_standby,
 *         which serves like a worker (WORKER 2 ...) through serve(): its wait
 *         is the workers' epoll_wait call at another stack, as nginx's cache
 *         manager waits at its workers' call
 *   13    like 12, a code change (VERSION answers 13); -DKV_WORKERS=N forks N
 *         workers instead of 2
 *   14    like 1 plus a global its startup sets (new_at_startup, NEWGLOBAL -> NEWGLOBAL
 *         n): an update from 1 refuses it (its value may belong to state the old
 *         process lacks) unless mcr-ctl update --keep-new new_at_startup says it is
 *         right
 *   15    like 1 but struct slot's `served` moved into a nested struct, as
 *         `counters.served` (memcached 1.6.38 moved LIBEVENT_THREAD's notify_event
 *         into `n`): matched by name it is a removed field, and the global
 *         last_served (SLOT sets it to &slot->served) points into it, so the
 *         update refuses; with mcr-ctl update --move-field
 *         slot.served=counters.served the count and the pointer carry over
 *   16    like 1 plus modules configured at startup, as nginx's: each module's
 *         configuration is carved from a pool by its own create function
 *         (pool_alloc, an allocator wrapper: tests/servers/kvstore.wrappers),
 *         the startup gives each module its index in table order, and a
 *         connection reaches the configuration through a context, as an nginx
 *         connection through its conf_ctx: ctx->confs[module.index]. The cycle
 *         (a piece of the pool too) counts commands.
 *         MODS -> MODS name=value ... (each module's setting, through the
 *         connection's context); REQS -> REQS n (the cycle's count);
 *         SCRATCH -> SCRATCH size cmd: the cycle's scratch piece (start and
 *         end, whose end is the next piece's start) holds the command's first
 *         bytes
 *   19    like 16 but struct mod_conf has a new field: the startup's pieces of that
 *         type (each module's configuration) and the ones MODS takes after the
 *         startup (recorded: runtime/pieces.h) are converted
 *   22    like 1 with a tick counter on serve()'s stack that a global points to
 *         (as nginx's cache manager keeps its timer event on its stack, in the
 *         global timer tree): TICKS -> TICKS n self s name NAME (the count of
 *         events served, whether its pointer to itself points to it, the string
 *         it points to); 23 the same with another struct tick declared before
 *         it in serve() (a code change: VERSION 23); 24 the same as 22
 *         with a new field in struct tick (a stack object of a changed type:
 *         an update from 22 or 23 is refused)
 *   20    like 16, and 21 like 19, but MODS takes its piece with pool_take, a
 *         wrapper declared without its size (kvstore.wrappers): such pieces are
 *         not recorded, so v20 -> v21 is refused
 *   18    like 1 but struct conn has a new field too big for its slot (as 5), and no
 *         byte buffer refers to connections: what refers to them without a type is
 *         the kernel's epoll registrations (their data). The update is refused
 *         unless mcr-ctl update --epoll-data-pointers declares the data pointers
 *   17    like 16 with a module inserted (count, 7) before log, whose default
 *         changes from 1 to 2 (as Debian's nginx inserts
 *         ngx_http_header_count_module): the configuration the new startup
 *         builds is another one, and the update needs mcr-ctl update --reinit
 * *
 * Every version: PIDFILE -> PIDFILE path, read through config.pidfile, which points
 * into the argument strings (-f's optarg): after an update, into the new process's
 * copy of the old one's (runtime/args.h).
 *
 * usage: kvstore [-p PORT] [-f PIDFILE] [-L] [-S]  (-L, -S: versions 12 and 13)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef KV_VERSION
#define KV_VERSION 1
#endif

#if KV_VERSION == 16 || KV_VERSION == 17 || KV_VERSION == 19 || KV_VERSION == 20 ||         \
    KV_VERSION == 21
#define KV_MODULES 1
#endif

#define NBUCKETS 1024
#define INBUF 4096

#if KV_VERSION == 3
struct entry {
  struct entry *next; /* moved first */
  char *key;
  unsigned long hits; /* new */
  char *value;
  size_t value_len;
};
#else
struct entry {
  char *key;
  char *value;
  size_t value_len;
  struct entry *next;
};
#endif

struct conn {
  int fd;
#if KV_VERSION == 5 || KV_VERSION == 18
  char trace[1100]; /* new: the connection no longer fits its slot */
#elif KV_VERSION == 8
  unsigned long long since; /* new: fits */
#endif
  size_t in_len;
  char in[INBUF]; /* bytes read but not yet handled */
  struct conn *next;
  void (*on_line)(struct conn *c, char *line); /* runs each complete line: command */
#ifdef KV_MODULES
  struct mod_ctx *ctx; /* the configuration, as an nginx connection's conf_ctx */
#endif
};

#if KV_VERSION == 3
struct stats {
  unsigned int keys;  /* narrowed: the values fit */
  unsigned long gets; /* new */
  unsigned long connections; /* renamed from conns: see the transformation below */
  unsigned long commands;
};
#define conns_count connections
#elif KV_VERSION == 4
struct stats {
  unsigned long keys;
  unsigned long conns;
  unsigned char commands; /* narrowed: overflows */
};
#else
struct stats {
  unsigned long keys;
  unsigned long conns;
  unsigned long commands;
};
#endif
#ifndef conns_count
#define conns_count conns
#endif

#if KV_VERSION == 3
enum mode { MODE_SERVING, MODE_IDLE, MODE_STOPPING }; /* reordered */
struct config {
  int port;
  const char *pidfile;
  int backlog; /* new: keeps this version's initial value */
};
static struct config config = {7400, NULL, 128};
static long latency_ms[8]; /* grew from 4, widened from int */
#else
enum mode { MODE_IDLE, MODE_SERVING, MODE_STOPPING };
struct config {
  int port;
  const char *pidfile;
};
static struct config config = {7400, NULL};
static int latency_ms[4];
#endif
static enum mode mode = MODE_IDLE;
static struct stats stats;
#if KV_VERSION == 12 || KV_VERSION == 13
#ifndef KV_WORKERS
#define KV_WORKERS 2
#endif
#define KV_PREFORK KV_WORKERS /* workers */
#endif
#if KV_VERSION == 11 || defined(KV_PREFORK)
static unsigned long *shared_count; /* a MAP_SHARED|MAP_ANONYMOUS page of startup */
#endif
#ifdef KV_PREFORK
static int worker_index = -1; /* -1 in the master */
static pid_t master_pid;      /* a worker's parent, as nginx's ngx_parent */
static int channel[KV_PREFORK][2]; /* master <-> worker socket pairs, as nginx's */
static unsigned long channel_msgs; /* lines a worker read on its channel */
static int channel_marker;         /* epoll data of a worker's channel */
#endif
static struct entry **table;
static struct conn *conns;

/* A startup array of a type version 3 changes; serve() keeps a pointer to
 * element 1 on its stack (SLOT). */
struct slot {
  int id;
#if KV_VERSION == 3
  long weight; /* inserted: served and self move */
#endif
#if KV_VERSION == 15
  struct {
    long hits;
    long served; /* was slot.served */
  } counters;
#define SERVED(s) ((s)->counters.served)
#else
  long served;
#define SERVED(s) ((s)->served)
#endif
  struct slot *self;
  char name[960]; /* 4 elements: the same heap slot in both layouts */
};
#define NSLOTS 4
static struct slot *slots;
static struct slot *cur_slot; /* serve()'s stack pointer, as of its last event */
#if KV_VERSION == 22 || KV_VERSION == 23 || KV_VERSION == 24
#define KV_TICK 1
struct tick {
  long count;
#if KV_VERSION == 24
  long last; /* the last wait's events */
#endif
  struct tick *self;
  const char *name;
};
static struct tick *ticker; /* serve()'s tick, on its stack */
#if KV_VERSION == 23
/* (its address escapes through a call: registered like serve()'s tick) */
__attribute__((noinline)) static void tick_init(struct tick *t, const char *name)
{
  t->count = -1;
  t->self = t;
  t->name = name;
}
#endif
#endif
static long *last_served;      /* into the field of the last slot SLOT counted in */
#if KV_VERSION != 18
static unsigned char last_conn[sizeof(void *)]; /* the newest connection, as bytes */
#endif
static volatile sig_atomic_t stopping;

#if KV_VERSION == 3
/* A renamed field is a semantic change mcr cannot infer (to it, conns was removed
 * and connections added): the update runs this to carry the value over. */
#include <mcr/transform.h>
struct stats_v1 {
  unsigned long keys, conns, commands;
};
MCR_TRANSFORM_GLOBAL(stats) {
  (void)new_size;
  if (old_size != sizeof(struct stats_v1))
    return 0; /* from another version: nothing renamed */
  ((struct stats *)new)->connections = ((const struct stats_v1 *)old)->conns;
  return 0;
}
#endif

static unsigned long hash(const char *s) {
  unsigned long h = 5381;
  while (*s)
    h = h * 33 + (unsigned char)*s++;
  return h;
}

static struct entry **find(const char *key) {
  struct entry **e = &table[hash(key) % NBUCKETS];
  while (*e && strcmp((*e)->key, key) != 0)
    e = &(*e)->next;
  return e;
}

static void set(const char *key, const char *value) {
  struct entry **slot = find(key);
  struct entry *e = *slot;
  if (!e) {
    e = calloc(1, sizeof(*e));
    if (!e)
      return;
    e->key = strdup(key);
    *slot = e;
    stats.keys++;
  }
  free(e->value);
  e->value_len = strlen(value);
  e->value = malloc(e->value_len + 1);
  memcpy(e->value, value, e->value_len + 1);
}

static int del(const char *key) {
  struct entry **slot = find(key);
  struct entry *e = *slot;
  if (!e)
    return 0;
  *slot = e->next;
  free(e->key);
  free(e->value);
  free(e);
  stats.keys--;
  return 1;
}

static void reply(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(struct conn *c, const char *fmt, ...) {
  char out[INBUF + 64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out, sizeof(out), fmt, ap);
  va_end(ap);
  if (n > 0 && write(c->fd, out, (size_t)n < sizeof(out) ? (size_t)n : sizeof(out) - 1) < 0)
    perror("kvstore: write");
}

#ifdef KV_MODULES
/* Modules (versions 16, 17; the comment at the top). The pool's header is at
 * the start of its block, as nginx's: the pieces start after it. */
struct pool {
  char *next, *end;
};
__attribute__((noinline)) void *pool_alloc(struct pool *p, size_t size) {
  size = (size + 15) & ~(size_t)15;
  if ((size_t)(p->end - p->next) < size)
    return NULL;
  void *r = p->next;
  p->next += size;
  return r;
}
/* the same, declared to mcr without its size (kvstore.wrappers) */
__attribute__((noinline)) void *pool_take(struct pool *p, size_t size) {
  return pool_alloc(p, size);
}
struct mod_conf {
  const char *name;
#if KV_VERSION == 19 || KV_VERSION == 21
  long weight; /* new: the pool pieces of this type are converted */
#endif
  long value;
};
struct module {
  const char *name;
  struct mod_conf *(*create)(struct pool *pool);
  int index; /* given by the startup */
};
static struct mod_conf *make_conf(struct pool *pool, const char *name, long value) {
  struct mod_conf *mc = pool_alloc(pool, sizeof(*mc));
  if (mc) {
    mc->name = name;
    mc->value = value;
  }
  return mc;
}
/* one create function a module: the call stacks of their allocations differ */
__attribute__((noinline)) static struct mod_conf *core_create(struct pool *pool) {
  return make_conf(pool, "core", 1);
}
#if KV_VERSION == 17
__attribute__((noinline)) static struct mod_conf *count_create(struct pool *pool) {
  return make_conf(pool, "count", 7);
}
#endif
__attribute__((noinline)) static struct mod_conf *log_create(struct pool *pool) {
  return make_conf(pool, "log", KV_VERSION == 17 ? 2 : 1);
}
__attribute__((noinline)) static struct mod_conf *stats_create(struct pool *pool) {
  return make_conf(pool, "stats", 3);
}
static struct module core_module = {"core", core_create, -1};
#if KV_VERSION == 17
static struct module count_module = {"count", count_create, -1};
#endif
static struct module log_module = {"log", log_create, -1};
static struct module stats_module = {"stats", stats_create, -1};
static struct module *modules[] = {&core_module,
#if KV_VERSION == 17
                                   &count_module,
#endif
                                   &log_module, &stats_module};
#define NMODULES ((int)(sizeof(modules) / sizeof(modules[0])))
struct mod_ctx {
  struct mod_conf **confs; /* NMODULES, by module index */
  struct cycle *cycle;     /* configuration pointing to state (as nginx's listening
                            * sockets to their connections) */
};
struct cycle {
  struct mod_ctx *ctx;
  long requests; /* changed by every command: the old process's is kept */
  /* the last command's first bytes, in a piece right before the first module's
   * configuration: scratch_end is the end of one piece and the start of the
   * next, which stays the new startup's in an update (--reinit) while scratch
   * is the old process's */
  char *scratch, *scratch_end;
};
static struct pool *conf_pool;
static struct cycle *cycle;

static int modules_init(void) {
  char *block = malloc(16384);
  if (!block)
    return -1;
  conf_pool = (struct pool *)block;
  conf_pool->next = block + 32;
  conf_pool->end = block + 16384;
  cycle = pool_alloc(conf_pool, sizeof(*cycle));
  if (!cycle || !(cycle->ctx = pool_alloc(conf_pool, sizeof(*cycle->ctx))) ||
      !(cycle->ctx->confs = pool_alloc(conf_pool, NMODULES * sizeof(struct mod_conf *))))
    return -1;
  cycle->ctx->cycle = cycle;
  cycle->requests = 0;
  if (!(cycle->scratch = pool_alloc(conf_pool, 16)))
    return -1;
  cycle->scratch_end = cycle->scratch + 16;
  for (int i = 0; i < NMODULES; i++) {
    modules[i]->index = i;
    if (!(cycle->ctx->confs[i] = modules[i]->create(conf_pool)))
      return -1;
  }
  return 0;
}
#endif

#if KV_VERSION == 9
#define command run_command /* renamed: only its name changes */
#endif
#if KV_VERSION == 14
static int new_at_startup; /* set by main: a new global with state from the startup */
#endif
static void command(struct conn *c, char *line) {
  char *save = NULL;
  char *cmd = strtok_r(line, " \r", &save);
  char *key = strtok_r(NULL, " \r", &save);
  char *value = strtok_r(NULL, "\r", &save);
  stats.commands++;
  latency_ms[stats.commands % 4] = (int)(stats.commands % 1000);
#ifdef KV_MODULES
  cycle->requests++;
  snprintf(cycle->scratch, (size_t)(cycle->scratch_end - cycle->scratch), "%s", line);
#endif
#if KV_VERSION == 11
  shared_count[0]++;
#elif defined(KV_PREFORK)
  __atomic_add_fetch(&shared_count[0], 1, __ATOMIC_RELAXED);
#endif
  if (!cmd) {
    return;
  } else if (!strcmp(cmd, "SET") && key && value) {
    set(key, value);
    reply(c, "OK\n");
  } else if (!strcmp(cmd, "GET") && key) {
    struct entry *e = *find(key);
#if KV_VERSION == 3
    stats.gets++;
    if (e)
      e->hits++;
#endif
    if (e)
      reply(c, "VALUE %s\n", e->value);
    else
      reply(c, "NOTFOUND\n");
  } else if (!strcmp(cmd, "DEL") && key) {
    reply(c, del(key) ? "DELETED\n" : "NOTFOUND\n");
  } else if (!strcmp(cmd, "COUNT")) {
    reply(c, "COUNT %lu\n", (unsigned long)stats.keys);
  } else if (!strcmp(cmd, "VERSION")) {
    reply(c, "VERSION %d\n", KV_VERSION);
  } else if (!strcmp(cmd, "PIDFILE")) {
    reply(c, "PIDFILE %s\n", config.pidfile ? config.pidfile : "-");
#ifdef KV_MODULES
  } else if (!strcmp(cmd, "MODS")) {
    char out[256];
    size_t o = 0;
    /* a piece of the pool after the startup, as nginx's requests take theirs */
#if KV_VERSION == 20 || KV_VERSION == 21
    struct mod_conf *last = pool_take(conf_pool, sizeof(*last));
#else
    struct mod_conf *last = pool_alloc(conf_pool, sizeof(*last));
#endif
    if (last)
      *last = *c->ctx->confs[0];
    for (int i = 0; i < NMODULES && o < sizeof(out); i++) {
      const struct mod_conf *mc = c->ctx->confs[modules[i]->index];
      o += (size_t)snprintf(out + o, sizeof(out) - o, " %s=%ld", mc->name, mc->value);
    }
    reply(c, "MODS%s\n", out);
  } else if (!strcmp(cmd, "REQS")) {
    reply(c, "REQS %ld\n", c->ctx->cycle->requests); /* through the configuration */
  } else if (!strcmp(cmd, "SCRATCH")) {
    reply(c, "SCRATCH %ld %s\n", (long)(cycle->scratch_end - cycle->scratch), cycle->scratch);
#endif
#if KV_VERSION == 14
  } else if (!strcmp(cmd, "NEWGLOBAL")) {
    reply(c, "NEWGLOBAL %d\n", new_at_startup);
#endif
#if KV_VERSION == 11 || defined(KV_PREFORK)
  } else if (!strcmp(cmd, "SHARED")) {
    reply(c, "SHARED %lu\n", __atomic_load_n(&shared_count[0], __ATOMIC_RELAXED));
#endif
#ifdef KV_PREFORK
  } else if (!strcmp(cmd, "CHANNEL")) {
    reply(c, "CHANNEL %lu\n", channel_msgs);
  } else if (!strcmp(cmd, "WORKER")) {
    reply(c, "WORKER %d %d %d\n", worker_index, (int)getpid(), (int)master_pid);
  } else if (!strcmp(cmd, "MOVEFD") && key) {
    /* the connection moves to descriptor N (a busy worker's high numbers); its
     * epoll registration stays with the open file */
    int to = atoi(key);
    if (to > 2 && to != c->fd && dup3(c->fd, to, O_CLOEXEC) == to) {
      close(c->fd);
      c->fd = to;
    }
    reply(c, "MOVEFD %d\n", c->fd);
#endif
  } else if (!strcmp(cmd, "SLOT")) {
    struct slot *sl = cur_slot;
    SERVED(sl)++;
    last_served = &SERVED(sl);
    reply(c, "SLOT %d %ld self %d same %d\n", sl->id, SERVED(sl), sl->self == sl,
          sl == &slots[1]);
#ifdef KV_TICK
  } else if (!strcmp(cmd, "TICKS")) {
    reply(c, "TICKS %ld self %d name %s\n", ticker->count, ticker->self == ticker, ticker->name);
#endif
  } else if (!strcmp(cmd, "SERVED")) {
    reply(c, "SERVED %ld ptr %d\n", SERVED(&slots[1]),
          last_served ? last_served == &SERVED(&slots[1]) : -1);
#if KV_VERSION == 3
  } else if (!strcmp(cmd, "HITS") && key) {
    struct entry *e = *find(key);
    reply(c, "HITS %lu\n", e ? e->hits : 0);
  } else if (!strcmp(cmd, "STATS")) {
    reply(c, "STATS keys=%lu conns=%lu cmds=%lu mode=%d latency=%ld,%ld,%ld,%ld gets=%lu\n",
          (unsigned long)stats.keys, stats.connections, (unsigned long)stats.commands, (int)mode,
          latency_ms[0], latency_ms[1], latency_ms[2], latency_ms[3], stats.gets);
#else
  } else if (!strcmp(cmd, "STATS")) {
    reply(c, "STATS keys=%lu conns=%lu cmds=%lu mode=%d latency=%d,%d,%d,%d\n",
          (unsigned long)stats.keys, stats.conns, (unsigned long)stats.commands, (int)mode,
          latency_ms[0], latency_ms[1], latency_ms[2], latency_ms[3]);
#endif
  } else {
    reply(c, "ERROR unknown command\n");
  }
}

static void close_conn(int ep, struct conn *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  for (struct conn **p = &conns; *p; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      break;
    }
  stats.conns_count--;
  free(c);
}

/* Reads what is there, runs every complete line, keeps the rest. */
#ifdef KV_PREFORK
/* nginx's EPOLLRDHUP probe (ngx_epoll_test_rdhup), on the worker's instance at
 * its startup: a socket pair, one end registered edge-triggered, the other
 * closed, one wait. In the new version of an update the instance is the old
 * worker's, and the probe must see its socket pair's event, not one of the old
 * worker's (update-prefork checks the line). noinline: its wait is not the
 * quiescent point in main. */
__attribute__((noinline)) static void probe_rdhup(int ep) {
  static int marker;
  struct epoll_event ee = {.events = EPOLLET | EPOLLIN | EPOLLRDHUP, .data.ptr = &marker};
  const char *what = "epoll_ctl failed";
  int s[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s) < 0)
    return;
  int added = epoll_ctl(ep, EPOLL_CTL_ADD, s[0], &ee) == 0;
  close(s[1]);
  if (added) {
    int n = epoll_wait(ep, &ee, 1, 1000);
    what = n < 0 ? "epoll_wait failed" : n == 0 ? "no event"
           : ee.data.ptr != &marker ? "another descriptor's event"
           : ee.events & EPOLLRDHUP ? "rdhup" : "no rdhup";
  }
  close(s[0]);
  fprintf(stderr, "kvstore: pid %d epoll probe: %s\n", getpid(), what);
}
#endif

static void readable(int ep, struct conn *c) {
  ssize_t n = read(c->fd, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len);
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    close_conn(ep, c);
    return;
  }
  c->in_len += (size_t)n;
  c->in[c->in_len] = 0;
  char *start = c->in, *nl;
  while ((nl = memchr(start, '\n', c->in + c->in_len - start))) {
    *nl = 0;
    c->on_line(c, start);
    start = nl + 1;
  }
  c->in_len -= (size_t)(start - c->in);
  memmove(c->in, start, c->in_len);
  if (c->in_len == sizeof(c->in) - 1) /* a line longer than the buffer */
    close_conn(ep, c);
}

static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

/* Makes the epoll instance and serves until SIGTERM. noinline: in a prefork
 * worker it runs inside spawn_worker, as nginx's worker cycle runs inside
 * ngx_spawn_process, so that a respawned worker's startup calls have another
 * call stack (reap_children's) than a startup worker's. */
__attribute__((noinline)) static void serve(int lfd) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
#ifdef KV_PREFORK
  probe_rdhup(ep); /* as nginx, right after it made the instance */
#endif
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
#ifdef KV_PREFORK
  struct epoll_event chev = {.events = EPOLLIN, .data.ptr = &channel_marker};
  if (worker_index < KV_PREFORK) /* the standby (-S) has no channel */
    epoll_ctl(ep, EPOLL_CTL_ADD, channel[worker_index][1], &chev);
#endif
  fprintf(stderr, "kvstore: pid %d listening on 127.0.0.1:%d\n", getpid(), config.port);
  mode = MODE_SERVING;
  struct slot *volatile slot = &slots[1]; /* on this stack across the wait */
#ifdef KV_TICK
#if KV_VERSION == 23
  /* (paired by name: the old tick goes into tick, not into this first one) */
  struct tick spare;
  tick_init(&spare, "spare");
#endif
  struct tick tick = {.count = 0, .self = NULL, .name = "serve's tick"};
  tick.self = &tick;
  ticker = &tick;
#endif
  /* on the heap, as nginx's event_list: the wait's output buffer */
  struct epoll_event *events = malloc(64 * sizeof(*events));
  if (!events)
    return;

  while (!stopping) {
    int n = epoll_wait(ep, events, 64, -1);
    cur_slot = slot;
#ifdef KV_TICK
    /* (through the variable: after an update the global must point to it) */
    tick.count += n > 0 ? n : 0;
#if KV_VERSION == 24
    tick.last = n;
#endif
#endif
    for (int i = 0; i < n; i++) {
      struct conn *c = events[i].data.ptr;
#ifdef KV_PREFORK
      if (c == (void *)&channel_marker) {
        char buf[256];
        ssize_t got = read(channel[worker_index][1], buf, sizeof(buf));
        for (ssize_t k = 0; k < got; k++)
          channel_msgs += buf[k] == '\n';
        continue;
      }
#endif
      if (c) {
        readable(ep, c);
        continue;
      }
      int fd;
      while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        c = calloc(1, sizeof(*c));
        if (!c) {
          close(fd);
          continue;
        }
        c->fd = fd;
        c->on_line = command;
#ifdef KV_MODULES
        c->ctx = cycle->ctx;
#endif
        c->next = conns;
        conns = c;
#if KV_VERSION != 18
        memcpy(last_conn, &c, sizeof(c));
#endif
        stats.conns_count++;
        struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
      }
    }
  }
}

#ifdef KV_PREFORK
static pid_t workers[KV_PREFORK];
static volatile sig_atomic_t child_died;

static void on_child(int sig) {
  (void)sig;
  child_died = 1;
}

/* A forked child's life: it serves as worker index (its channel's; the
 * standby has none) and exits. Inlined: the quiescent point's stack is its
 * caller's (main > spawn_worker > serve, main > spawn_standby > serve). */
__attribute__((always_inline)) static inline void child_serve(int index, int lfd) {
  worker_index = index;
  master_pid = getppid();
  sigset_t ours; /* blocked by the master outside its wait */
  sigemptyset(&ours);
  sigaddset(&ours, SIGCHLD);
  sigaddset(&ours, SIGTERM);
  sigprocmask(SIG_UNBLOCK, &ours, NULL);
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  serve(lfd);
  exit(0);
}

/* Forks worker i with its channel, as nginx's ngx_spawn_process: the child
 * serves and exits, never returning. The other workers hear of the new one
 * (one line each on their channel). Returns 0 or -1. noinline: the startup and
 * the respawns fork here. */
__attribute__((noinline)) static int spawn_worker(int i, int lfd) {
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, channel[i]) < 0) {
    fprintf(stderr, "kvstore: socketpair: %s\n", strerror(errno));
    return -1;
  }
  pid_t pid = fork();
  if (pid == 0)
    child_serve(i, lfd);
  if (pid < 0) {
    fprintf(stderr, "kvstore: fork of worker %d: %s\n", i, strerror(errno));
    return -1;
  }
  workers[i] = pid;
  for (int k = 0; k < KV_PREFORK; k++) {
    if (k == i || workers[k] <= 0)
      continue;
    char line[32];
    int n = snprintf(line, sizeof(line), "worker %d\n", i);
    struct iovec iov = {line, (size_t)n};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (sendmsg(channel[k][0], &mh, 0) != n)
      fprintf(stderr, "kvstore: sendmsg: %s\n", strerror(errno));
  }
  return 0;
}

/* The master, after SIGCHLD: a worker that died is forked again through
 * spawn_worker, as nginx's ngx_reap_children respawns (-DKV_NO_RESPAWN: not). */
__attribute__((noinline)) static void reap_children(int lfd) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
    for (int i = 0; i < KV_PREFORK; i++) {
      if (workers[i] != pid)
        continue;
      workers[i] = 0;
      close(channel[i][0]);
      close(channel[i][1]);
#ifndef KV_NO_RESPAWN
      fprintf(stderr, "kvstore: worker %d (pid %d) died (%s %d)\n", i, (int)pid,
              WIFSIGNALED(status) ? "signal" : "exit status",
              WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
      if (!stopping && spawn_worker(i, lfd) == 0)
        fprintf(stderr, "kvstore: worker %d respawned as pid %d\n", i, (int)workers[i]);
#else
      (void)lfd;
#endif
    }
}
#endif

#ifdef KV_PREFORK
/* -L: a child of the startup that finishes its work and exits 0 (nginx's
 * cache loader); reap_children reaps it with the workers' deaths. */
__attribute__((noinline)) static void spawn_loader(void) {
  pid_t pid = fork();
  if (pid == 0)
    _exit(0);
  if (pid < 0)
    fprintf(stderr, "kvstore: fork of the loader: %s\n", strerror(errno));
}

/* -S: a child of the startup that serves through serve() as the workers do,
 * forked by another function: its quiescent point is the workers' call at
 * another stack. */
__attribute__((noinline)) static void spawn_standby(int lfd) {
  pid_t pid = fork();
  if (pid == 0)
    child_serve(KV_PREFORK, lfd);
  if (pid < 0)
    fprintf(stderr, "kvstore: fork of the standby: %s\n", strerror(errno));
}
#endif

int main(int argc, char **argv) {
  int opt, loader = 0, standby = 0;
  while ((opt = getopt(argc, argv, "p:f:LS")) != -1) {
    if (opt == 'p')
      config.port = atoi(optarg);
    else if (opt == 'f')
      config.pidfile = optarg;
    else if (opt == 'L')
      loader = 1;
    else if (opt == 'S')
      standby = 1;
    else {
      fprintf(stderr, "usage: %s [-p PORT] [-f PIDFILE] [-L] [-S]\n", argv[0]);
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
#if KV_VERSION == 14
  new_at_startup = 14;
#endif
#ifdef KV_MODULES
  if (modules_init() != 0) {
    fprintf(stderr, "kvstore: out of memory configuring the modules\n");
    return 1;
  }
#endif
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  table = calloc(NBUCKETS, sizeof(*table));
  slots = calloc(NSLOTS, sizeof(*slots));
  for (int i = 0; i < NSLOTS; i++) {
    slots[i].id = i;
    slots[i].self = &slots[i];
    snprintf(slots[i].name, sizeof(slots[i].name), "slot %d", i);
  }
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(config.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
#if KV_VERSION == 6
  int backlog = 64;
#else
  int backlog = 128;
#endif
  if (!table || lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
      listen(lfd, backlog) < 0) {
    fprintf(stderr, "kvstore: cannot listen on 127.0.0.1:%d: %s\n", config.port,
            strerror(errno));
    return 1;
  }
  if (config.pidfile) {
    FILE *f = fopen(config.pidfile, "w");
    if (f) {
      fprintf(f, "%d\n", getpid());
      fclose(f);
    }
  }
#if KV_VERSION == 7
  static volatile int give_up = 1; /* opaque: the loop below must stay compiled */
  if (give_up) {
    fprintf(stderr, "kvstore: version 7 gives up at startup\n");
    if (config.pidfile)
      unlink(config.pidfile);
    return 1;
  }
#endif
#if KV_VERSION == 11 || defined(KV_PREFORK)
  shared_count = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared_count == MAP_FAILED) {
    fprintf(stderr, "kvstore: mmap: %s\n", strerror(errno));
    return 1;
  }
#endif
#if KV_VERSION == 10
  pid_t worker = fork();
  if (worker == 0) { /* a worker that only waits for its parent to end */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (;;)
      pause();
  }
  if (worker < 0)
    fprintf(stderr, "kvstore: fork: %s\n", strerror(errno));
#endif
#ifdef KV_PREFORK
  struct sigaction sc = {0};
  sc.sa_handler = on_child;
  sigaction(SIGCHLD, &sc, NULL);
  /* the master waits in sigsuspend with SIGCHLD and SIGTERM blocked outside it,
   * as nginx's: a child that dies before the wait (the loader exits at once)
   * is not missed; the children unblock them (child_serve, spawn_loader) */
  sigset_t block, waitmask;
  sigemptyset(&block);
  sigaddset(&block, SIGCHLD);
  sigaddset(&block, SIGTERM);
  sigprocmask(SIG_BLOCK, &block, &waitmask);
  sigdelset(&waitmask, SIGCHLD);
  sigdelset(&waitmask, SIGTERM);
  for (int i = 0; i < KV_PREFORK; i++)
    if (spawn_worker(i, lfd) != 0)
      return 1;
  if (loader)
    spawn_loader();
  if (standby)
    spawn_standby(lfd);
  /* the master: waits for the end, then ends its workers */
  fprintf(stderr, "kvstore: master %d listening on 127.0.0.1:%d\n", getpid(), config.port);
  while (!stopping) {
    if (!child_died)
      sigsuspend(&waitmask);
    if (child_died) {
      child_died = 0;
      reap_children(lfd);
    }
  }
  for (int i = 0; i < KV_PREFORK; i++)
    if (workers[i] > 0)
      kill(workers[i], SIGTERM);
#else
  (void)loader;
  (void)standby;
  serve(lfd);
#endif
  if (config.pidfile)
    unlink(config.pidfile);
  return 0;
}
