/*
 * stackid.c - call-stack IDs from function names; see stackid.h.
 *
 * A return address is turned into a name once: the loaded object that contains
 * it is found with dl_iterate_phdr (outside our lock: a thread inside dlopen
 * holds the loader lock and may allocate, which asks for a stack ID), then the
 * object's symbol table is searched (elfsym.h: the executable's .symtab has its
 * static functions; stripped libraries fall back to .dynsym). A frame without a
 * symbol is named by its object's file name alone ("libc.so.6"): an offset would
 * differ between builds. Compiler suffixes (".constprop.0", ".llvm.123") are cut
 * off, as they differ between builds too.
 *
 * Names live in an append-only pool and the memo (return address -> name) is an
 * open-addressing table whose slots are claimed with a compare-and-swap, both in
 * memory mapped at first use (never malloc: the allocator asks us for IDs).
 * Readers take no lock; a slot's name is published after its key, and a reader
 * that finds the key without the name symbolizes the address itself.
 */
#define _GNU_SOURCE
#include "fnv.h"
#include "heap.h"
#include "stackid.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "elfsym.h"

#define MAX_FRAMES 128    /* frames hashed per stack (deeper ones are cut) */
#define SEARCH_FRAMES 16  /* where the caller's return address is looked for */
#define MEMO_SLOTS 16384  /* a power of two */
#define MEMO_PROBES 32
#define POOL_BYTES (4u << 20)
#define NAME_MAX_ 200     /* longer names are cut (the hash sees the cut name) */
#define OBJ_CACHE 16      /* open symbol tables */
#define TMP_NAMES 8
#define MAX_DESC 64       /* frames in a description */

__thread int mcr_in_runtime __attribute__((tls_model("initial-exec")));

/* An interned frame name. */
struct name_rec {
  uint64_t hash;
  unsigned len;
  char name[];
};

struct memo_slot {
  uintptr_t key;                /* return address; 0: free */
  const struct name_rec *val;   /* published after key (release) */
};

struct obj_cache {
  char path[512];
  int ok; /* 1: sym is open; -1: the file could not be read */
  struct mcr_elfsym sym;
};

static mcr_backtrace_fn unwind;
static char unwind_obj[256];
static pthread_once_t unwind_once = PTHREAD_ONCE_INIT;

static struct memo_slot *memo; /* MEMO_SLOTS */
static unsigned char *pool;    /* POOL_BYTES, under sym_lock */
static size_t pool_used;
static struct obj_cache objs[OBJ_CACHE]; /* under sym_lock */
static unsigned obj_next;
static pthread_mutex_t sym_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t memo_once = PTHREAD_ONCE_INIT;
static unsigned long n_misses, n_unnamed, n_memo;


/* ---- the unwinder (shared with threads.c and profile.c) ---- */

static void unwind_init(void)
{
  void *h, *buf[4];
  Dl_info dli;

  mcr_in_runtime++; /* dlopen allocates: not the program's allocation */
  h = dlopen("libunwind.so.8", RTLD_LAZY | RTLD_LOCAL);
  unwind = h ? (mcr_backtrace_fn)dlsym(h, "unw_backtrace") : NULL;
  if (!unwind)
    unwind = backtrace;
  unwind(buf, 4); /* glibc's backtrace loads libgcc_s on its first call */
  if (dladdr((void *)unwind, &dli) && dli.dli_fname) {
    const char *base = strrchr(dli.dli_fname, '/');
    snprintf(unwind_obj, sizeof(unwind_obj), "%s", base ? base + 1 : dli.dli_fname);
  }
  mcr_in_runtime--;
}

mcr_backtrace_fn mcr_unwinder(void)
{
  pthread_once(&unwind_once, unwind_init);
  return unwind;
}

const char *mcr_unwinder_object(void)
{
  pthread_once(&unwind_once, unwind_init);
  return unwind_obj;
}

/* ---- names ---- */

uint64_t mcr_stack_name_hash(const char *name)
{
  size_t n = strcspn(name, ".");
  uint64_t h;

  if (n > NAME_MAX_)
    n = NAME_MAX_;
  h = mcr_fnv(MCR_FNV_OFFSET, name, n);
  return h ? h : 1;
}

static void fork_prepare(void)
{
  pthread_mutex_lock(&sym_lock);
}

static void fork_parent(void)
{
  pthread_mutex_unlock(&sym_lock);
}

static void fork_child(void)
{
  pthread_mutex_init(&sym_lock, NULL);
}

static void *map(size_t n)
{
  void *p = mcr_map_anon(n, MAP_NORESERVE);
  return p == MAP_FAILED ? NULL : p;
}

static void memo_init(void)
{
  mcr_in_runtime++;
  memo = map(MEMO_SLOTS * sizeof(*memo));
  pool = map(POOL_BYTES);
  pthread_atfork(fork_prepare, fork_parent, fork_child);
  mcr_in_runtime--;
}

/* Under sym_lock: the symbol table of path, opened on first use. */
static const struct mcr_elfsym *object_syms(const char *path)
{
  struct obj_cache *c;

  for (unsigned i = 0; i < OBJ_CACHE; i++)
    if (objs[i].ok && !strcmp(objs[i].path, path))
      return objs[i].ok > 0 ? &objs[i].sym : NULL;
  c = &objs[obj_next++ % OBJ_CACHE];
  if (c->ok > 0)
    mcr_elfsym_close(&c->sym);
  snprintf(c->path, sizeof(c->path), "%s", path);
  c->ok = mcr_elfsym_open(&c->sym, path) == 0 ? 1 : -1;
  return c->ok > 0 ? &c->sym : NULL;
}

/* The name of the function that return address ra returns into, written to
 * buf (normalized, at most NAME_MAX_ characters). */
static void symbolize(uintptr_t ra, char *buf, size_t len)
{
  struct {
    uintptr_t addr, bias;
    char path[512];
  } f = {.addr = ra - 1}; /* a call may be the function's last instruction */
  const struct mcr_elfsym *s;
  const char *name = NULL, *base;
  size_t n;

  snprintf(buf, len, "?");
  if (!ra || mcr_elf_object_of(f.addr, &f.bias, f.path, sizeof(f.path)) != 0)
    return;
  pthread_mutex_lock(&sym_lock);
  s = object_syms(f.path);
  if (s)
    name = mcr_elfsym_lookup(s, f.addr - f.bias);
  if (name && *name)
    snprintf(buf, len, "%.*s", (int)strcspn(name, "."), name);
  pthread_mutex_unlock(&sym_lock);
  if (name && *name)
    return;
  __atomic_fetch_add(&n_unnamed, 1, __ATOMIC_RELAXED);
  base = strcmp(f.path, "/proc/self/exe") ? strrchr(f.path, '/') : NULL;
  name = base ? base + 1 : strcmp(f.path, "/proc/self/exe") ? f.path : "exe";
  n = strnlen(name, len - 1);
  memcpy(buf, name, n);
  buf[n] = '\0';
}

static unsigned memo_index(uintptr_t ra)
{
  uint64_t h = (uint64_t)ra * 0x9e3779b97f4a7c15ull;
  return (unsigned)(h >> 32) & (MEMO_SLOTS - 1);
}

/* The interned name of ra; tmp (NAME_MAX_ + 1 bytes plus a header) is used when
 * the memo or the pool is full. */
static const struct name_rec *frame_name(uintptr_t ra, struct name_rec *tmp)
{
  char buf[NAME_MAX_ + 1];
  unsigned i = memo_index(ra);
  struct memo_slot *slot = NULL;
  struct name_rec *r;
  size_t n, need;

  pthread_once(&memo_once, memo_init);
  if (memo) {
    for (unsigned p = 0; p < MEMO_PROBES; p++, i = (i + 1) & (MEMO_SLOTS - 1)) {
      uintptr_t k = __atomic_load_n(&memo[i].key, __ATOMIC_ACQUIRE);
      if (k == ra) {
        const struct name_rec *v = __atomic_load_n(&memo[i].val, __ATOMIC_ACQUIRE);
        if (v)
          return v;
        break; /* being filled by another thread: symbolize it ourselves */
      }
      if (k == 0) {
        uintptr_t zero = 0;
        if (__atomic_compare_exchange_n(&memo[i].key, &zero, ra, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
          slot = &memo[i];
          break;
        }
        if (zero == ra)
          break;
      }
    }
  }
  symbolize(ra, buf, sizeof(buf));
  n = strlen(buf);
  need = (sizeof(struct name_rec) + n + 1 + 7) & ~(size_t)7;
  r = NULL;
  if (slot && pool) {
    pthread_mutex_lock(&sym_lock);
    if (pool_used + need <= POOL_BYTES) {
      r = (struct name_rec *)(pool + pool_used);
      pool_used += need;
    }
    pthread_mutex_unlock(&sym_lock);
  }
  if (!r)
    r = tmp;
  memcpy(r->name, buf, n + 1);
  r->len = (unsigned)n;
  r->hash = mcr_stack_name_hash(buf);
  if (slot && r != tmp) {
    __atomic_store_n(&slot->val, r, __ATOMIC_RELEASE);
    __atomic_fetch_add(&n_memo, 1, __ATOMIC_RELAXED);
  }
  return r;
}

/* ---- stacks ---- */

/* Walks the calling thread's stack; returns the number of frames from the one
 * ra returns into (frames[0]) outward, or -1 if ra was not found. */
static int walk(uintptr_t ra, void **frames, int max)
{
  void *buf[MAX_FRAMES + SEARCH_FRAMES];
  int n, first = -1;

  n = mcr_unwinder()(buf, MAX_FRAMES + SEARCH_FRAMES);
  for (int i = 0; i < n && i < SEARCH_FRAMES; i++)
    if ((uintptr_t)buf[i] == ra) {
      first = i;
      break;
    }
  if (first < 0) {
    __atomic_fetch_add(&n_misses, 1, __ATOMIC_RELAXED);
    return -1;
  }
  n -= first;
  if (n > max)
    n = max;
  memcpy(frames, buf + first, (size_t)n * sizeof(void *));
  return n;
}

static int is_base(const char *name)
{
  return !strcmp(name, "main") || !strcmp(name, "mcr_thread_trampoline") ||
         !strcmp(name, "start_thread");
}

/* Writes names[0..n) (innermost first) outermost first; drops the outermost
 * ones that do not fit. */
static int render(const struct name_rec **names, int n, char *buf, size_t len)
{
  size_t total = 0, used = 0;
  int from = n; /* names[0..from) are written */

  if (!len)
    return -1;
  buf[0] = '\0';
  for (int i = 0; i < n; i++)
    total += names[i]->len + (i ? 3 : 0);
  while (from > 0 && total + (from < n ? 6 : 0) >= len) {
    from--;
    total -= names[from]->len + (from ? 3 : 0);
  }
  if (from < n)
    used += (size_t)snprintf(buf, len, "... > ");
  for (int i = from; i-- > 0;) {
    int w = snprintf(buf + used, len - used, "%s%s", names[i]->name, i ? " > " : "");
    if (w < 0 || (size_t)w >= len - used)
      break;
    used += (size_t)w;
  }
  return (int)used;
}

/* The ID of the stack above ra and, if buf, its description. */
static uint64_t id_describe_from(uintptr_t ra, unsigned skip, uint64_t inner_hash, char *buf,
                                 size_t len)
{
  void *frames[MAX_FRAMES];
  const struct name_rec *names[MAX_DESC];
  struct name_rec *tmp;
  /* used only when the memo or the name pool is full: the hash stays right, a
   * description longer than TMP_NAMES frames may then repeat names */
  char tmpmem[TMP_NAMES][sizeof(struct name_rec) + NAME_MAX_ + 1] __attribute__((aligned(8)));
  uint64_t h = MCR_FNV_OFFSET;
  int n, ndesc = 0, base_seen = 0;

  if (buf && len)
    buf[0] = '\0';
  mcr_in_runtime++;
  n = walk(ra, frames, MAX_FRAMES);
  if (n < 0) {
    mcr_in_runtime--;
    return 0;
  }
  for (int i = (int)skip; i < n; i++) {
    tmp = (struct name_rec *)tmpmem[(i - (int)skip) % TMP_NAMES];
    const struct name_rec *r = frame_name((uintptr_t)frames[i], tmp);
    if (i == (int)skip && inner_hash && r->hash == inner_hash)
      continue; /* the call's own function, not inlined this time (see header) */
    h = mcr_fnv(h, &r->hash, sizeof(r->hash));
    if (buf && !base_seen) {
      /* main is shown; the thread's start (our trampoline, libc's) is not */
      base_seen = is_base(r->name);
      if (!base_seen || !strcmp(r->name, "main"))
        names[ndesc++] = r;
      if (ndesc == MAX_DESC)
        base_seen = 1;
    }
  }
  if (buf)
    render(names, ndesc, buf, len);
  mcr_in_runtime--;
  return h ? h : 1;
}

static uint64_t id_describe(uintptr_t ra, unsigned skip, char *buf, size_t len)
{
  return id_describe_from(ra, skip, 0, buf, len);
}

__attribute__((noinline)) uint64_t mcr_stack_id_outside(uintptr_t ra, const char *function)
{
  return id_describe_from(ra, 0, function && *function ? mcr_stack_name_hash(function) : 0,
                          NULL, 0);
}

__attribute__((noinline)) uint64_t mcr_stack_id(unsigned skip)
{
  return id_describe((uintptr_t)__builtin_return_address(0), skip, NULL, 0);
}

__attribute__((noinline)) uint64_t mcr_stack_id_at(uintptr_t ra)
{
  return id_describe(ra, 0, NULL, 0);
}

__attribute__((noinline)) int mcr_stack_describe(char *buf, size_t len)
{
  if (!id_describe((uintptr_t)__builtin_return_address(0), 0, buf, len))
    return -1;
  return (int)strlen(buf);
}

__attribute__((noinline)) int mcr_stack_describe_at(uintptr_t ra, char *buf, size_t len)
{
  if (!id_describe(ra, 0, buf, len))
    return -1;
  return (int)strlen(buf);
}

__attribute__((noinline)) uint64_t mcr_stack_id_describe_at(uintptr_t ra, char *buf, size_t len)
{
  return id_describe(ra, 0, buf, len);
}

void mcr_stackid_stats(struct mcr_stackid_stats *out)
{
  out->misses = __atomic_load_n(&n_misses, __ATOMIC_RELAXED);
  out->unnamed = __atomic_load_n(&n_unnamed, __ATOMIC_RELAXED);
  out->memo_used = __atomic_load_n(&n_memo, __ATOMIC_RELAXED);
}
