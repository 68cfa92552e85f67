/*
 * image.c - old image addresses to new ones; see image.h.
 *
 * Open: both processes' /proc/PID/maps are grouped into objects. A loaded ELF object
 * (executable, library, vDSO) starts at a readable private mapping of file offset 0
 * whose memory holds an ELF header; its program headers (read from that memory)
 * give its load bias and its segments, .bss included, and a segment with PF_X must
 * be mapped executable from the same file at the matching offset (which tells a
 * loaded object from a plain read-only mmap of the same file, like the one
 * runtime/elfsym.c makes to read symbols). Other readable private file mappings are
 * objects of their own, translated by file offset. The old side's segments, sorted,
 * are what mcr_image_is_old tests (merged) and what mcr_image_translate searches.
 *
 * The executables' .symtab (through elfsym.c, files mapped read-only) become two
 * arrays: the old one sorted by address with a running maximum of symbol ends (so
 * the symbols containing an address are found by a binary search and a short walk
 * back), each with a hash table by name. String literals have no symbols: the old
 * bytes (process_vm_readv) are looked up in a hash table of the NUL-terminated
 * strings of the new executable's .rodata sections (built on first use), then
 * searched anywhere in them.
 *
 * Everything is allocated in the caller's arena: no malloc (the program's heap is
 * being overwritten), no qsort (glibc's may malloc), no stdio streams.
 */
#define _GNU_SOURCE
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include "args.h"
#include "arena.h"
#include "elfsym.h"
#include "rename.h"

#define PAGE 4096u
#define NONE UINT32_MAX
#define STR_BACK 4096u    /* how far back from an address a literal's start is sought */
#define STR_MAX 65536u    /* longest literal translated by content */
#define MAX_CANDIDATES 16 /* symbols containing one address (aliases, labels) */
#define GRANULE_SHIFT 21  /* 2 MiB */
#define GRANULE_BITS 4096u

struct mapping {
  uintptr_t start, end;
  uint64_t off;
  uint64_t dev, ino;
  char r, w, x, shared;
  const char *path; /* "" when anonymous */
  int obj;          /* owning object, or -1 */
};

enum { OBJ_ELF, OBJ_FILE };

struct object {
  int kind;
  const char *path;
  const struct mapping *map; /* ELF: the mapping of offset 0; FILE: the mapping */
  uintptr_t bias;            /* ELF: run-time address - link-time address */
  uintptr_t lo, hi;          /* the span of its segments / the mapping */
  unsigned char *hdr;        /* ELF: header and program headers, from memory */
  size_t hdrlen;
  int peer;        /* old side: the same object in the new process, or -1 */
  const char *why; /* old side, peer < 0: why there is none */
};

struct isym {
  uint64_t value, size;
  const char *name;
  const char *file; /* STT_FILE before it, for locals; NULL otherwise */
  uint32_t hash;
  unsigned char type, bind;
};

struct side {
  pid_t pid;
  const char *label; /* "old" / "new" */
  struct mapping *maps;
  size_t nmaps;
  struct object *objs;
  size_t nobjs;
  int exe;
  char exe_path[512]; /* as /proc/PID/exe reads (and maps shows) */
  struct mcr_elfsym elf;
  struct isym *syms; /* sorted by value */
  size_t nsyms;
  uint64_t *maxend; /* max(value + size) over syms[0..i] */
  uint32_t *head, *next;
  size_t hmask;
};

struct range {
  uintptr_t lo, hi;
  int obj;
};

enum { HOW_SYMBOL = 1, HOW_LIBRARY, HOW_STRING, HOW_ARGS };
#define OBJ_STACK (-100) /* a range's obj: the old main thread's stack (args: -2, -3) */
#define OBJ_THREAD_STACK (-101) /* another thread's stack (mcr_image_set_thread_stacks) */

struct memo {
  uintptr_t key; /* 0: empty slot */
  uintptr_t val;
  const char *why; /* NULL when translated */
  int how;
};

struct strent {
  const char *p; /* NULL: empty slot */
  size_t len;    /* NUL included */
  uint32_t hash;
};

struct mcr_image_map {
  struct mcr_arena *a;
  struct side side[2];
  struct range *ranges; /* old side, sorted, disjoint */
  size_t nranges;
  uintptr_t *lo, *hi; /* merged ranges for is_old, padded to npow */
  size_t npow;
  uintptr_t min, span;
  uint64_t granules[GRANULE_BITS / 64]; /* granules meeting a range, see is_old */
  struct memo *memo;
  size_t memo_mask, memo_n;
  struct strent *strs; /* new .rodata strings; NULL until first needed */
  size_t str_mask;
  char *scratch; /* STR_BACK + STR_MAX bytes */
  const struct mcr_renames *renames; /* renamed functions, or NULL */
  uint32_t *renamed_to;              /* per rename: the new symbol, or NONE */
  /* the argument block (args.h): its pointer arrays [0] and strings [1] in the
   * old process, at args_new in this one (ranges of obj -2 - k) */
  uintptr_t args_old[2], args_len[2], args_new[2];
  int nargs;
  /* the old main thread's stack below the argument block (range obj
   * OBJ_STACK): its locals have other addresses in the new process */
  uintptr_t stack_lo, stack_hi;
  struct mcr_image_stats st;
};

static const struct mcr_renames *image_renames; /* mcr_image_set_renames */
static const uintptr_t *thread_stack_lo, *thread_stack_hi; /* mcr_image_set_thread_stacks */
static size_t nthread_stacks;
static const uintptr_t *sobj_old, *sobj_new; /* mcr_image_set_stack_objects */
static const uint64_t *sobj_size;
static uint8_t *sobj_used;
static size_t nsobj;
static uintptr_t sobj_min, sobj_max; /* [min, max): all of them, checked first */

/* ---- small helpers ---- */

static void msg(char *buf, size_t len, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
static void msg(char *buf, size_t len, const char *fmt, ...)
{
  va_list ap;
  if (!buf || !len)
    return;
  va_start(ap, fmt);
  vsnprintf(buf, len, fmt, ap);
  va_end(ap);
}

static uint32_t hash_bytes(const void *p, size_t n)
{
  const unsigned char *s = p;
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++)
    h = (h ^ s[i]) * 1099511628211ULL;
  return (uint32_t)(h ^ (h >> 32));
}

static size_t pow2_at_least(size_t n)
{
  size_t p = 1;
  while (p < n)
    p <<= 1;
  return p;
}

static const char *base_name(const char *p)
{
  const char *b = strrchr(p, '/');
  return b ? b + 1 : p;
}

/* Bytes of another process (or this one) at addr: how many were read, or -1. */
static ssize_t peek(pid_t pid, uintptr_t addr, void *buf, size_t len)
{
  struct iovec local = {buf, len}, remote = {(void *)addr, len};
  return process_vm_readv(pid, &local, 1, &remote, 1, 0);
}

/* The whole of a /proc file into the arena, NUL-terminated. */
static int slurp(struct mcr_arena *a, const char *path, char **out, char *err, size_t errlen)
{
  size_t cap = 64 * 1024, len = 0;
  char *buf = mcr_arena_alloc(a, cap, 1);
  int fd = open(path, O_RDONLY | O_CLOEXEC);

  if (fd < 0 || !buf) {
    msg(err, errlen, "%s: %s", path, strerror(fd < 0 ? errno : ENOMEM));
    if (fd >= 0)
      close(fd);
    return -1;
  }
  for (;;) {
    if (cap - len < 4096) { /* grow: the old buffer stays in the arena, unused */
      char *bigger = mcr_arena_alloc(a, cap * 2, 1);
      if (!bigger) {
        msg(err, errlen, "%s: %s", path, strerror(ENOMEM));
        close(fd);
        return -1;
      }
      memcpy(bigger, buf, len);
      buf = bigger;
      cap *= 2;
    }
    ssize_t n = read(fd, buf + len, cap - len - 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      msg(err, errlen, "%s: %s", path, strerror(errno));
      close(fd);
      return -1;
    }
    if (n == 0)
      break;
    len += (size_t)n;
  }
  close(fd);
  buf[len] = '\0';
  *out = buf;
  return 0;
}

/* ---- /proc/PID/maps ---- */

static int parse_maps(struct mcr_arena *a, struct side *s, char *text, char *err, size_t errlen)
{
  size_t lines = 0;
  for (char *p = text; *p; p++)
    lines += *p == '\n';
  s->maps = mcr_arena_alloc(a, (lines + 1) * sizeof(*s->maps), 0);
  if (!s->maps) {
    msg(err, errlen, "%s process maps: %s", s->label, strerror(ENOMEM));
    return -1;
  }
  s->nmaps = 0;
  for (char *line = text; *line;) {
    char *eol = strchr(line, '\n'), *p = line, *q;
    struct mapping *m = &s->maps[s->nmaps];
    if (eol)
      *eol = '\0';
    memset(m, 0, sizeof(*m));
    m->obj = -1;
    m->start = strtoull(p, &q, 16);
    if (*q != '-')
      goto bad;
    m->end = strtoull(q + 1, &q, 16);
    if (*q != ' ' || strlen(q) < 6 || m->end <= m->start)
      goto bad;
    m->r = q[1] == 'r';
    m->w = q[2] == 'w';
    m->x = q[3] == 'x';
    m->shared = q[4] == 's';
    m->off = strtoull(q + 5, &q, 16);
    unsigned long long maj = strtoull(q, &q, 16);
    if (*q != ':')
      goto bad;
    unsigned long long min = strtoull(q + 1, &q, 16);
    m->dev = (uint64_t)maj << 32 | (uint32_t)min;
    m->ino = strtoull(q, &q, 10);
    while (*q == ' ')
      q++;
    m->path = q;
    s->nmaps++;
    if (!eol)
      break;
    line = eol + 1;
    continue;
  bad:
    msg(err, errlen, "%s process maps: cannot parse line '%.80s'", s->label, line);
    return -1;
  }
  return 0;
}

static int same_file(const struct mapping *a, const struct mapping *b)
{
  if (a->ino || b->ino)
    return a->ino == b->ino && a->dev == b->dev;
  return a->path[0] == '[' && strcmp(a->path, b->path) == 0; /* [vdso] */
}

static int image_candidate(const struct mapping *m)
{
  return m->r && !m->shared && (m->ino || strcmp(m->path, "[vdso]") == 0);
}

/* ---- objects ---- */

static struct object *new_object(struct side *s, int kind, const struct mapping *m)
{
  struct object *o = &s->objs[s->nobjs++];
  memset(o, 0, sizeof(*o));
  o->kind = kind;
  o->path = m->path;
  o->map = m;
  o->peer = -1;
  return o;
}

/* The mapping of s containing addr, or NULL. */
static const struct mapping *mapping_at(const struct side *s, uintptr_t addr)
{
  size_t lo = 0, hi = s->nmaps;
  while (lo < hi) { /* maps are sorted by address */
    size_t mid = lo + (hi - lo) / 2;
    if (s->maps[mid].end <= addr)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < s->nmaps && s->maps[lo].start <= addr ? &s->maps[lo] : NULL;
}

/* Makes mapping mi (file offset 0) an ELF object if it is a loaded one: 1 if it is,
 * 0 if not, -1 when the process is gone. */
static int try_elf(struct mcr_arena *a, struct side *s, size_t mi)
{
  struct mapping *m = &s->maps[mi];
  Elf64_Ehdr eh;
  ssize_t n = peek(s->pid, m->start, &eh, sizeof(eh));

  if (n < 0 && errno == ESRCH)
    return -1;
  if (n != (ssize_t)sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
      eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr) ||
      eh.e_phnum == 0 || eh.e_phnum > 256 || eh.e_phoff > m->end - m->start ||
      (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > m->end - m->start - eh.e_phoff)
    return 0;
  size_t hdrlen = eh.e_phoff + eh.e_phnum * sizeof(Elf64_Phdr);
  unsigned char *hdr = mcr_arena_alloc(a, hdrlen, 8);
  if (!hdr || peek(s->pid, m->start, hdr, hdrlen) != (ssize_t)hdrlen)
    return 0;
  const Elf64_Phdr *ph = (const Elf64_Phdr *)(hdr + eh.e_phoff);

  /* the lowest PT_LOAD is the one mapped at file offset 0 */
  const Elf64_Phdr *first = NULL;
  for (size_t i = 0; i < eh.e_phnum; i++)
    if (ph[i].p_type == PT_LOAD && (!first || ph[i].p_vaddr < first->p_vaddr))
      first = &ph[i];
  if (!first || (first->p_offset & ~(uint64_t)(PAGE - 1)) != 0)
    return 0;
  uintptr_t bias = m->start - (first->p_vaddr & ~(uint64_t)(PAGE - 1));
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (size_t i = 0; i < eh.e_phnum; i++) {
    if (ph[i].p_type != PT_LOAD)
      continue;
    uintptr_t start = bias + ph[i].p_vaddr, end = start + ph[i].p_memsz;
    if (end < start || end > UINTPTR_MAX - PAGE)
      return 0;
    if (ph[i].p_flags & PF_X && ph[i].p_filesz) { /* loaded, not just mmap'd */
      const struct mapping *x = mapping_at(s, start);
      if (!x || !x->x || !same_file(x, m) ||
          x->off + ((start & ~(uintptr_t)(PAGE - 1)) - x->start) !=
              (ph[i].p_offset & ~(uint64_t)(PAGE - 1)))
        return 0;
    }
    start &= ~(uintptr_t)(PAGE - 1);
    end = (end + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
    lo = start < lo ? start : lo;
    hi = end > hi ? end : hi;
  }
  struct object *o = new_object(s, OBJ_ELF, m);
  o->bias = bias;
  o->lo = lo;
  o->hi = hi;
  o->hdr = hdr;
  o->hdrlen = hdrlen;
  /* its own mappings, its .bss and the gaps between segments are part of it */
  for (size_t j = 0; j < s->nmaps; j++) {
    struct mapping *x = &s->maps[j];
    if (x->start >= lo && x->end <= hi && x->obj < 0 && (same_file(x, m) || !x->ino))
      x->obj = (int)(o - s->objs);
  }
  return 1;
}

/* The PT_LOAD segments of ELF object o (run-time, page-rounded) into out, which
 * has room for one per program header; returns how many. */
static size_t elf_segments(const struct object *o, struct range *out, int idx)
{
  const Elf64_Ehdr *eh = (const Elf64_Ehdr *)o->hdr;
  const Elf64_Phdr *ph = (const Elf64_Phdr *)(o->hdr + eh->e_phoff);
  size_t n = 0;
  for (size_t i = 0; i < eh->e_phnum; i++) {
    if (ph[i].p_type != PT_LOAD || ph[i].p_memsz == 0)
      continue;
    uintptr_t start = o->bias + ph[i].p_vaddr;
    out[n].lo = start & ~(uintptr_t)(PAGE - 1);
    out[n].hi = (start + ph[i].p_memsz + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
    out[n].obj = idx;
    n++;
  }
  return n;
}

static int build_objects(struct mcr_arena *a, struct side *s, char *err, size_t errlen)
{
  char link[64];
  struct stat st;
  ssize_t n;

  snprintf(link, sizeof(link), "/proc/%d/exe", (int)s->pid);
  n = readlink(link, s->exe_path, sizeof(s->exe_path) - 1);
  if (n < 0 || stat(link, &st)) {
    msg(err, errlen, "%s process %d: %s: %s", s->label, (int)s->pid, link, strerror(errno));
    return -1;
  }
  s->exe_path[n] = '\0';
  s->objs = mcr_arena_alloc(a, (s->nmaps + 1) * sizeof(*s->objs), 0);
  if (!s->objs) {
    msg(err, errlen, "%s process: %s", s->label, strerror(ENOMEM));
    return -1;
  }
  for (size_t i = 0; i < s->nmaps; i++) {
    if (s->maps[i].obj >= 0 || s->maps[i].off != 0 || !image_candidate(&s->maps[i]))
      continue;
    if (try_elf(a, s, i) < 0) {
      msg(err, errlen, "%s process %d: %s", s->label, (int)s->pid, strerror(ESRCH));
      return -1;
    }
  }
  for (size_t i = 0; i < s->nmaps; i++) {
    struct mapping *m = &s->maps[i];
    if (m->obj >= 0 || !image_candidate(m))
      continue;
    struct object *o = new_object(s, OBJ_FILE, m);
    o->lo = m->start;
    o->hi = m->end;
    m->obj = (int)(o - s->objs);
  }
  /* the executable: by the path /proc/PID/exe names, else by device and inode */
  s->exe = -1;
  for (int pass = 0; pass < 2 && s->exe < 0; pass++)
    for (size_t i = 0; i < s->nobjs && s->exe < 0; i++) {
      const struct object *o = &s->objs[i];
      if (o->kind == OBJ_ELF &&
          (pass == 0 ? strcmp(o->path, s->exe_path) == 0
                     : o->map->ino == (uint64_t)st.st_ino &&
                           o->map->dev == ((uint64_t)major(st.st_dev) << 32 | minor(st.st_dev))))
        s->exe = (int)i;
    }
  if (s->exe < 0) {
    msg(err, errlen, "%s process %d: its executable %s is not among its mappings", s->label,
        (int)s->pid, s->exe_path);
    return -1;
  }
  return 0;
}

/* ---- the executables' symbols ---- */

static int keep_symbol(const Elf64_Sym *sym, const char *name)
{
  int type = ELF64_ST_TYPE(sym->st_info);
  return (type == STT_FUNC || type == STT_OBJECT || type == STT_NOTYPE ||
          type == STT_GNU_IFUNC) &&
         sym->st_shndx != SHN_UNDEF && sym->st_shndx < SHN_LORESERVE && name[0] &&
         name[0] != '$';
}

static int sym_before(const struct isym *x, const struct isym *y)
{
  return x->value < y->value || (x->value == y->value && x->size < y->size);
}

static void sift(struct isym *v, size_t i, size_t n)
{
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n)
      return;
    if (c + 1 < n && sym_before(&v[c], &v[c + 1]))
      c++;
    if (!sym_before(&v[i], &v[c]))
      return;
    struct isym t = v[i];
    v[i] = v[c];
    v[c] = t;
    i = c;
  }
}

static void sort_syms(struct isym *v, size_t n)
{
  for (size_t i = n / 2; i-- > 0;)
    sift(v, i, n);
  for (size_t end = n; end > 1; end--) {
    struct isym t = v[0];
    v[0] = v[end - 1];
    v[end - 1] = t;
    sift(v, 0, end - 1);
  }
}

static int load_symbols(struct mcr_arena *a, struct side *s, char *err, size_t errlen)
{
  char path[64];
  Elf64_Sym sym;
  const char *name, *file = NULL;
  size_t n = 0;

  snprintf(path, sizeof(path), "/proc/%d/exe", (int)s->pid);
  if (mcr_elfsym_open(&s->elf, path)) {
    msg(err, errlen, "%s executable %s: no readable ELF symbol table", s->label, s->exe_path);
    return -1;
  }
  for (size_t i = 0; mcr_elfsym_symbol(&s->elf, i, &sym, &name) == 0; i++)
    n += keep_symbol(&sym, name);
  s->syms = mcr_arena_alloc(a, (n + 1) * sizeof(*s->syms), 0);
  s->maxend = mcr_arena_alloc(a, (n + 1) * sizeof(*s->maxend), 0);
  s->hmask = pow2_at_least(2 * n + 2) - 1;
  s->head = mcr_arena_alloc(a, (s->hmask + 1) * sizeof(*s->head), 0);
  s->next = mcr_arena_alloc(a, (n + 1) * sizeof(*s->next), 0);
  if (!s->syms || !s->maxend || !s->head || !s->next) {
    msg(err, errlen, "%s executable symbols: %s", s->label, strerror(ENOMEM));
    return -1;
  }
  s->nsyms = 0;
  for (size_t i = 0; mcr_elfsym_symbol(&s->elf, i, &sym, &name) == 0; i++) {
    if (ELF64_ST_TYPE(sym.st_info) == STT_FILE) {
      file = name[0] ? name : NULL;
      continue;
    }
    if (!keep_symbol(&sym, name))
      continue;
    struct isym *v = &s->syms[s->nsyms++];
    v->value = sym.st_value;
    v->size = sym.st_size;
    v->name = name;
    v->bind = ELF64_ST_BIND(sym.st_info);
    v->type = ELF64_ST_TYPE(sym.st_info);
    v->file = v->bind == STB_LOCAL ? file : NULL;
    v->hash = hash_bytes(name, strlen(name));
  }
  sort_syms(s->syms, s->nsyms);
  memset(s->head, 0xff, (s->hmask + 1) * sizeof(*s->head));
  uint64_t maxend = 0;
  for (size_t i = 0; i < s->nsyms; i++) {
    uint64_t end = s->syms[i].value + s->syms[i].size;
    maxend = end > maxend ? end : maxend;
    s->maxend[i] = maxend;
    size_t h = s->syms[i].hash & s->hmask;
    s->next[i] = s->head[h];
    s->head[h] = (uint32_t)i;
  }
  return 0;
}

static int is_code(const struct isym *v)
{
  return v->type == STT_FUNC || v->type == STT_GNU_IFUNC;
}

static const char *kind_of(const struct isym *v)
{
  return is_code(v) ? "function" : v->type == STT_OBJECT ? "object" : "label";
}

/* Symbols of s named name (and, when local_file is given, locals of that file).
 * Fills up to max indexes; returns how many there are in all. */
static size_t by_name(const struct side *s, const char *name, int locals, const char *file,
                      uint32_t *out, size_t max)
{
  uint32_t h = hash_bytes(name, strlen(name));
  size_t n = 0;
  for (uint32_t i = s->head[h & s->hmask]; i != NONE; i = s->next[i]) {
    const struct isym *v = &s->syms[i];
    if (v->hash != h || strcmp(v->name, name))
      continue;
    if (locals != (v->bind == STB_LOCAL))
      continue;
    if (locals && file && (!v->file || strcmp(v->file, file)))
      continue;
    if (n < max)
      out[n] = i;
    n++;
  }
  return n;
}

/* Ranking of the symbols that contain an address: the most specific first. */
static int rank(const struct isym *v, uint64_t vaddr)
{
  int r = 0;
  if (v->size && vaddr - v->value < v->size)
    r += 8; /* contains it, rather than a label at it */
  if (v->type != STT_NOTYPE)
    r += 4;
  if (v->bind != STB_LOCAL)
    r += 2;
  return r;
}

/* The symbols of the old executable containing link-time address vaddr, best
 * first; returns how many (at most MAX_CANDIDATES). */
static size_t containing(const struct side *s, uint64_t vaddr, uint32_t *out)
{
  size_t lo = 0, hi = s->nsyms, n = 0;
  while (lo < hi) { /* first symbol above vaddr */
    size_t mid = lo + (hi - lo) / 2;
    if (s->syms[mid].value <= vaddr)
      lo = mid + 1;
    else
      hi = mid;
  }
  for (size_t i = lo; i-- > 0 && n < MAX_CANDIDATES;) {
    const struct isym *v = &s->syms[i];
    if (s->maxend[i] <= vaddr && v->value != vaddr)
      break; /* nothing at or below i reaches vaddr */
    if ((v->size && vaddr - v->value < v->size) || (!v->size && v->value == vaddr))
      out[n++] = (uint32_t)i;
  }
  for (size_t i = 1; i < n; i++) /* insertion sort by rank, then smaller size */
    for (size_t j = i; j > 0; j--) {
      const struct isym *x = &s->syms[out[j - 1]], *y = &s->syms[out[j]];
      int rx = rank(x, vaddr), ry = rank(y, vaddr);
      if (rx > ry || (rx == ry && x->size <= y->size))
        break;
      uint32_t t = out[j - 1];
      out[j - 1] = out[j];
      out[j] = t;
    }
  return n;
}

/* Describes symbol v for a reason: "static object 'counter' (a.c)". */
static void describe(char *buf, size_t len, const struct isym *v)
{
  if (v->bind == STB_LOCAL)
    msg(buf, len, "static %s '%s' (%s)", kind_of(v), v->name, v->file ? v->file : "?");
  else
    msg(buf, len, "%s '%s'", kind_of(v), v->name);
}

/* Old symbol index oi, offset off into it -> new address; 0, or -1 with why. */
static int match_symbol(struct mcr_image_map *m, uint32_t oi, uint64_t off, uintptr_t *out,
                        char *why, size_t whylen)
{
  const struct side *os = &m->side[0], *ns = &m->side[1];
  const struct isym *o = &os->syms[oi];
  uint32_t cand[2];
  char d[400];
  size_t n;
  int local = o->bind == STB_LOCAL;

  describe(d, sizeof(d), o);
  for (size_t i = 0; m->renames && is_code(o) && i < m->renames->n; i++) {
    if (strcmp(m->renames->old_name[i], o->name))
      continue;
    if (m->renamed_to[i] == NONE) {
      msg(why, whylen, "%s+0x%llx: renamed to '%s', which is not one function of the new "
                       "executable", d, (unsigned long long)off, m->renames->new_name[i]);
      return -1;
    }
    cand[0] = m->renamed_to[i];
    n = 1;
    goto found;
  }
  if (local && by_name(os, o->name, 1, o->file, cand, 2) > 1) {
    msg(why, whylen, "%s: several statics of that name in %s in the old executable", d,
        o->file ? o->file : "files without a name");
    return -1;
  }
  /* same linkage first (statics: same source file), then the other linkage if unique */
  n = by_name(ns, o->name, local, local ? o->file : NULL, cand, 2);
  if (n == 0)
    n = by_name(ns, o->name, !local, NULL, cand, 2);
  /* a static that was the only one of its name, moved to another file */
  if (n == 0 && local && by_name(os, o->name, 1, NULL, cand, 2) == 1)
    n = by_name(ns, o->name, 1, NULL, cand, 2);
  if (n == 0) {
    msg(why, whylen, "%s+0x%llx: not in the new executable", d, (unsigned long long)off);
    return -1;
  }
  if (n > 1 && (local || ns->syms[cand[0]].bind == STB_LOCAL)) {
    msg(why, whylen, "%s: %zu statics of that name%s%s in the new executable, cannot tell which",
        d, n, local && o->file ? " in " : "", local && o->file ? o->file : "");
    return -1;
  }
found:;
  const struct isym *v = &ns->syms[cand[0]];
  if (o->type != STT_NOTYPE && v->type != STT_NOTYPE && is_code(o) != is_code(v)) {
    msg(why, whylen, "%s: a %s in the new executable", d, kind_of(v));
    return -1;
  }
  if (v->size ? off >= v->size : off != 0) {
    msg(why, whylen, "%s+0x%llx: beyond its new size %llu", d, (unsigned long long)off,
        (unsigned long long)v->size);
    return -1;
  }
  if (is_code(o) && off && o->size != v->size) { /* an instruction inside changed code */
    msg(why, whylen,
        "%s+0x%llx: inside a function whose size changed (%llu -> %llu), no equivalent "
        "instruction",
        d, (unsigned long long)off, (unsigned long long)o->size, (unsigned long long)v->size);
    return -1;
  }
  *out = ns->objs[ns->exe].bias + v->value + off;
  m->st.renamed += strcmp(o->name, v->name) != 0;
  return 0;
}

/* ---- string literals ---- */

static int is_rodata(const Elf64_Shdr *sh, const char *name)
{
  return (sh->sh_flags & SHF_ALLOC) && !(sh->sh_flags & (SHF_WRITE | SHF_EXECINSTR)) &&
         sh->sh_type == SHT_PROGBITS && strncmp(name, ".rodata", 7) == 0;
}

/* The new executable's .rodata sections (run-time, in this process's memory) one
 * by one: 0 and the next, -1 at the end. */
static int next_rodata(const struct side *ns, size_t *i, const char **lo, size_t *len)
{
  Elf64_Shdr sh;
  const char *name;
  const struct object *exe = &ns->objs[ns->exe];
  while (mcr_elfsym_section(&ns->elf, (*i)++, &sh, &name) == 0) {
    uintptr_t start = exe->bias + sh.sh_addr, end = start + sh.sh_size;
    if (!is_rodata(&sh, name) || end <= start || start < exe->lo || end > exe->hi)
      continue;
    const struct mapping *mp = mapping_at(ns, start); /* mapped readable, all of it */
    if (!mp || !mp->r || mp->end < end)
      continue;
    *lo = (const char *)start;
    *len = sh.sh_size;
    return 0;
  }
  return -1;
}

static int build_strings(struct mcr_image_map *m)
{
  const struct side *ns = &m->side[1];
  const char *lo;
  size_t len, i = 0, n = 0;

  while (next_rodata(ns, &i, &lo, &len) == 0)
    for (const char *p = lo, *e = lo + len, *z; p < e && (z = memchr(p, 0, e - p)); p = z + 1)
      n += z > p;
  m->str_mask = pow2_at_least(2 * n + 2) - 1;
  m->strs = mcr_arena_alloc(m->a, (m->str_mask + 1) * sizeof(*m->strs), 0);
  if (!m->strs)
    return -1;
  i = 0;
  while (next_rodata(ns, &i, &lo, &len) == 0)
    for (const char *p = lo, *e = lo + len, *z; p < e && (z = memchr(p, 0, e - p)); p = z + 1) {
      if (z == p)
        continue;
      size_t l = (size_t)(z - p) + 1;
      uint32_t h = hash_bytes(p, l);
      size_t k = h & m->str_mask;
      for (; m->strs[k].p; k = (k + 1) & m->str_mask)
        if (m->strs[k].hash == h && m->strs[k].len == l && !memcmp(m->strs[k].p, p, l))
          break; /* the same string again: the first one stays */
      if (!m->strs[k].p)
        m->strs[k] = (struct strent){p, l, h};
    }
  return 0;
}

static const char *find_string(const struct mcr_image_map *m, const char *s, size_t len)
{
  uint32_t h = hash_bytes(s, len);
  for (size_t k = h & m->str_mask; m->strs[k].p; k = (k + 1) & m->str_mask)
    if (m->strs[k].hash == h && m->strs[k].len == len && !memcmp(m->strs[k].p, s, len))
      return m->strs[k].p;
  return NULL;
}

/* s (len bytes) for a message: at most 40 characters, C escapes. */
static void quote(char *buf, size_t cap, const char *s, size_t len)
{
  size_t o = 0;
  for (size_t i = 0; i < len && i < 40 && o + 8 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      o += (size_t)snprintf(buf + o, cap - o, "\\%c", c);
    else if (c == '\n')
      o += (size_t)snprintf(buf + o, cap - o, "\\n");
    else if (c < 0x20 || c >= 0x7f)
      o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
    else
      buf[o++] = (char)c;
  }
  if (len > 40 && o + 4 < cap)
    o += (size_t)snprintf(buf + o, cap - o, "...");
  buf[o < cap ? o : cap - 1] = '\0';
}

static struct memo *memo_find(const struct mcr_image_map *m, uintptr_t key);

/* An old address in .rodata without a symbol: by content. 0, -1 with why. */
static int match_string(struct mcr_image_map *m, uintptr_t old, uintptr_t sec_lo,
                        uintptr_t sec_hi, const char *sec, uintptr_t *out, char *why,
                        size_t whylen)
{
  const struct side *os = &m->side[0], *ns = &m->side[1];
  size_t back = old - sec_lo < STR_BACK ? old - sec_lo : STR_BACK;
  size_t fwd = sec_hi - old < STR_MAX ? sec_hi - old : STR_MAX;
  char *buf = m->scratch, q[200];

  if (peek(os->pid, old - back, buf, back + fwd) != (ssize_t)(back + fwd)) {
    msg(why, whylen, "string in the old %s: cannot read it: %s", sec, strerror(errno));
    return -1;
  }
  char *at = buf + back, *nul = memchr(at, 0, fwd), *start = at;
  if (!nul) {
    msg(why, whylen, "string in the old %s: no NUL within %zu bytes", sec, fwd);
    return -1;
  }
  while (start > buf && start[-1])
    start--;
  size_t into = (size_t)(at - start), len = (size_t)(nul - start) + 1;

  /* another address inside the same literal was translated already */
  const struct memo *prev = into ? memo_find(m, old - into) : NULL;
  if (prev && !prev->why && prev->how == HOW_STRING) {
    *out = prev->val + into;
    return 0;
  }
  if (!m->strs && build_strings(m)) {
    msg(why, whylen, "string literal: %s", strerror(ENOMEM));
    return -1;
  }
  const char *hit = find_string(m, start, len); /* the whole literal, at a string start */
  if (hit) {
    *out = (uintptr_t)hit + into;
    return 0;
  }
  size_t i = 0, seclen;
  const char *lo;
  while (next_rodata(ns, &i, &lo, &seclen) == 0) { /* the tail, anywhere */
    const char *t = memmem(lo, seclen, at, len - into);
    if (t) {
      *out = (uintptr_t)t;
      return 0;
    }
  }
  quote(q, sizeof(q), start, len - 1);
  if (into)
    msg(why, whylen, "string literal \"%s\" (+%zu): not in the new executable's read-only data",
        q, into);
  else
    msg(why, whylen, "string literal \"%s\": not in the new executable's read-only data", q);
  return -1;
}

/* An old address inside the executable's .dynsym (the dynamic loader keeps
 * pointers to entries of it: a link_map's lookup cache of a library loaded with
 * dlopen names the executable's symbol it last resolved): the entry of the same
 * symbol name in the new .dynsym, at the same offset into the entry. */
static int dynsym_name(const struct mcr_elfsym *e, const Elf64_Shdr *sh, size_t idx,
                       const char **out)
{
  Elf64_Shdr str;
  const char *sn;
  Elf64_Sym sym;
  if (sh->sh_offset + (idx + 1) * sizeof(sym) > e->size ||
      mcr_elfsym_section(e, sh->sh_link, &str, &sn) != 0 || str.sh_offset > e->size ||
      str.sh_size > e->size - str.sh_offset)
    return -1;
  memcpy(&sym, e->map + sh->sh_offset + idx * sizeof(sym), sizeof(sym));
  if (sym.st_name >= str.sh_size)
    return -1;
  const char *n = (const char *)e->map + str.sh_offset + sym.st_name;
  if (!memchr(n, 0, str.sh_size - sym.st_name))
    return -1;
  *out = n;
  return 0;
}

static int match_dynsym(struct mcr_image_map *m, uint64_t off, const Elf64_Shdr *osh,
                        uintptr_t *out, char *why, size_t whylen)
{
  const struct side *os = &m->side[0], *ns = &m->side[1];
  size_t idx = off / sizeof(Elf64_Sym), rem = off % sizeof(Elf64_Sym);
  const char *name, *nn, *sn;
  Elf64_Shdr nsh;

  if (dynsym_name(&os->elf, osh, idx, &name) != 0) {
    msg(why, whylen, ".dynsym+0x%llx of the old executable: unreadable entry",
        (unsigned long long)off);
    return -1;
  }
  for (size_t i = 1; mcr_elfsym_section(&ns->elf, i, &nsh, &sn) == 0; i++) {
    if (nsh.sh_type != SHT_DYNSYM)
      continue;
    for (size_t j = 0; j < nsh.sh_size / sizeof(Elf64_Sym); j++)
      if (dynsym_name(&ns->elf, &nsh, j, &nn) == 0 && !strcmp(nn, name) && (j == 0) == (idx == 0)) {
        *out = ns->objs[ns->exe].bias + nsh.sh_addr + j * sizeof(Elf64_Sym) + rem;
        return 0;
      }
    break;
  }
  msg(why, whylen, ".dynsym entry of '%s' in the old executable: not in the new .dynsym", name);
  return -1;
}

/* ---- translation ---- */

static int translate_exe(struct mcr_image_map *m, uintptr_t old, uintptr_t *out, int *how,
                         char *why, size_t whylen)
{
  const struct side *os = &m->side[0];
  const struct object *exe = &os->objs[os->exe];
  uint64_t vaddr = old - exe->bias;
  uint32_t cand[MAX_CANDIDATES];
  size_t n = containing(os, vaddr, cand);

  *how = HOW_SYMBOL;
  for (size_t i = 0; i < n; i++) {
    const struct isym *v = &os->syms[cand[i]];
    if (match_symbol(m, cand[i], vaddr - v->value, out, i ? NULL : why, i ? 0 : whylen) == 0)
      return 0;
  }
  if (n)
    return -1; /* why: the best candidate's reason */

  Elf64_Shdr sh;
  const char *name;
  for (size_t i = 1; mcr_elfsym_section(&os->elf, i, &sh, &name) == 0; i++) {
    if (!(sh.sh_flags & SHF_ALLOC) || sh.sh_type == SHT_NOBITS || vaddr < sh.sh_addr ||
        vaddr - sh.sh_addr >= sh.sh_size)
      continue;
    if (is_rodata(&sh, name)) {
      *how = HOW_STRING;
      return match_string(m, old, exe->bias + sh.sh_addr, exe->bias + sh.sh_addr + sh.sh_size,
                          name, out, why, whylen);
    }
    if (sh.sh_type == SHT_DYNSYM)
      return match_dynsym(m, vaddr - sh.sh_addr, &sh, out, why, whylen);
    msg(why, whylen, "%s+0x%llx of the old executable: no symbol contains it",
        name[0] ? name : "section", (unsigned long long)(vaddr - sh.sh_addr));
    return -1;
  }
  msg(why, whylen, "old executable at link address 0x%llx: no symbol or section contains it",
      (unsigned long long)vaddr);
  return -1;
}

static int translate_other(struct mcr_image_map *m, const struct object *o, uintptr_t old,
                           uintptr_t *out, char *why, size_t whylen)
{
  const struct side *ns = &m->side[1];

  if (o->kind == OBJ_ELF) {
    if (o->peer < 0) {
      msg(why, whylen, "%s+0x%llx: %s", o->path, (unsigned long long)(old - o->bias), o->why);
      return -1;
    }
    *out = ns->objs[o->peer].bias + (old - o->bias);
    return 0;
  }
  uint64_t fo = o->map->off + (old - o->map->start);
  for (size_t i = 0; i < ns->nmaps; i++) {
    const struct mapping *x = &ns->maps[i];
    if (!x->shared && x->r && same_file(x, o->map) && fo >= x->off &&
        fo - x->off < x->end - x->start &&
        (x->obj < 0 || ns->objs[x->obj].kind == OBJ_FILE)) { /* not a loaded object's */
      *out = x->start + (fo - x->off);
      return 0;
    }
  }
  msg(why, whylen, "%s, file offset 0x%llx: the file is not mapped there in the new process",
      o->path[0] ? o->path : "file mapping", (unsigned long long)fo);
  return -1;
}

static struct memo *memo_find(const struct mcr_image_map *m, uintptr_t key)
{
  for (size_t k = (key * 0x9E3779B97F4A7C15ULL) >> 20 & m->memo_mask; m->memo[k].key;
       k = (k + 1) & m->memo_mask)
    if (m->memo[k].key == key)
      return &m->memo[k];
  return NULL;
}

static void memo_put(struct mcr_image_map *m, const struct memo *e)
{
  if (2 * (m->memo_n + 1) > m->memo_mask + 1) { /* grow; the old table stays in the arena */
    size_t mask = 2 * (m->memo_mask + 1) - 1;
    struct memo *t = mcr_arena_alloc(m->a, (mask + 1) * sizeof(*t), 0), *old = m->memo;
    size_t oldn = m->memo_mask + 1;
    if (!t)
      return; /* not memoized: only slower */
    m->memo = t;
    m->memo_mask = mask;
    for (size_t i = 0; i < oldn; i++)
      if (old[i].key) {
        size_t k = (old[i].key * 0x9E3779B97F4A7C15ULL) >> 20 & mask;
        while (t[k].key)
          k = (k + 1) & mask;
        t[k] = old[i];
      }
  }
  size_t k = (e->key * 0x9E3779B97F4A7C15ULL) >> 20 & m->memo_mask;
  while (m->memo[k].key)
    k = (k + 1) & m->memo_mask;
  m->memo[k] = *e;
  m->memo_n++;
}

static const struct range *range_at(const struct mcr_image_map *m, uintptr_t v)
{
  size_t lo = 0, hi = m->nranges;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (m->ranges[mid].hi <= v)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < m->nranges && m->ranges[lo].lo <= v ? &m->ranges[lo] : NULL;
}

int mcr_image_translate(struct mcr_image_map *m, uintptr_t old, uintptr_t *new_out, char *why,
                        size_t whylen)
{
  char reason[512];
  struct memo e = {.key = old};
  const struct memo *hit;

  m->st.lookups++;
  for (size_t i = 0; old >= sobj_min && old < sobj_max && i < nsobj; i++)
    /* (not memoized: set after the first lookups) */
    if (old >= sobj_old[i] && old - sobj_old[i] < sobj_size[i]) {
      *new_out = sobj_new[i] + (old - sobj_old[i]);
      sobj_used[i] = 1;
      return 0;
    }
  if (old && (hit = memo_find(m, old))) {
    if (hit->why) {
      msg(why, whylen, "%s", hit->why);
      return -1;
    }
    *new_out = hit->val;
    return 0;
  }
  const struct range *r = range_at(m, old);
  int rc;
  reason[0] = '\0';
  if (!r) {
    msg(reason, sizeof(reason), "0x%llx is not in the old process's image",
        (unsigned long long)old);
    rc = -1;
    e.how = 0;
  } else if (r->obj == OBJ_STACK || r->obj == OBJ_THREAD_STACK) {
    int main_stack = r->obj == OBJ_STACK;
    msg(reason, sizeof(reason),
        "0x%llx is on %s, %llu bytes below %s (a local variable of a function on it): the "
        "new %s stack has other addresses, and such pointers are not translated",
        (unsigned long long)old,
        main_stack ? "the old process's main thread stack"
                   : "the stack of one of the old process's threads",
        (unsigned long long)((main_stack ? m->stack_hi : r->hi) - old),
        main_stack ? "its argument block" : "the thread's outermost frame",
        main_stack ? "process's" : "thread's");
    rc = -1;
    e.how = 0;
  } else if (r->obj < 0) { /* the argument block: by offset (args.h) */
    size_t k = (size_t)(-2 - r->obj);
    e.val = m->args_new[k] + (old - m->args_old[k]);
    e.how = HOW_ARGS;
    rc = 0;
  } else if (r->obj == m->side[0].exe) {
    rc = translate_exe(m, old, &e.val, &e.how, reason, sizeof(reason));
  } else {
    e.how = HOW_LIBRARY;
    rc = translate_other(m, &m->side[0].objs[r->obj], old, &e.val, reason, sizeof(reason));
  }
  if (rc) {
    m->st.failed++;
    e.why = mcr_arena_strdup(m->a, reason);
    msg(why, whylen, "%s", reason);
  } else {
    m->st.by_symbol += e.how == HOW_SYMBOL;
    m->st.by_library += e.how == HOW_LIBRARY;
    m->st.by_string += e.how == HOW_STRING;
    m->st.by_args += e.how == HOW_ARGS;
    *new_out = e.val;
  }
  if (old && (!rc || e.why))
    memo_put(m, &e);
  return rc;
}

/* Most heap words are not image pointers: a 512-byte bitmap of the 2 MiB granules
 * (hashed by their low bits) that meet an image range, plus the [min, max) test,
 * answer them with one load and one well-predicted branch. The rest get the exact
 * test: a branch-free binary search (cmov) over the merged ranges. */
static inline int is_old(const struct mcr_image_map *m, uintptr_t v)
{
  uintptr_t g = (v >> GRANULE_SHIFT) & (GRANULE_BITS - 1);
  if (__builtin_expect(((m->granules[g >> 6] >> (g & 63)) & 1) == 0 || v - m->min >= m->span, 1))
    return 0;
  const uintptr_t *lo = m->lo;
  size_t i = 0;
  for (size_t step = m->npow >> 1; step; step >>= 1)
    i = lo[i + step] <= v ? i + step : i;
  return v < m->hi[i];
}

int mcr_image_is_old(const struct mcr_image_map *m, uintptr_t v)
{
  return is_old(m, v);
}

int mcr_image_in_old_stack(const struct mcr_image_map *m, uintptr_t v)
{
  if (v >= m->stack_lo && v < m->stack_hi)
    return 1;
  const struct range *r = nthread_stacks ? range_at(m, v) : NULL;
  return r && r->obj == OBJ_THREAD_STACK;
}

size_t mcr_image_scan(const struct mcr_image_map *m, const uintptr_t *words, size_t n,
                      size_t *idx)
{
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    idx[k] = i; /* stored always, kept when it counts: no branch on the word */
    k += (size_t)is_old(m, words[i]);
  }
  return k;
}

/* ---- open, pair, symbols by name ---- */

static void pair(struct side *os, const struct side *ns)
{
  for (size_t i = 0; i < os->nobjs; i++) {
    struct object *o = &os->objs[i];
    if (o->kind != OBJ_ELF || (int)i == os->exe)
      continue;
    o->why = "not loaded in the new process";
    for (size_t j = 0; j < ns->nobjs; j++) {
      const struct object *n = &ns->objs[j];
      if (n->kind != OBJ_ELF || (int)j == ns->exe)
        continue;
      if (same_file(o->map, n->map)) {
        if (o->hdrlen == n->hdrlen && !memcmp(o->hdr, n->hdr, o->hdrlen)) {
          o->peer = (int)j;
          break;
        }
        o->why = "its program headers differ in the new process (file changed in place)";
      } else if (o->peer < 0 && strcmp(o->path, n->path) == 0) {
        o->why = "a different file of that path is loaded in the new process (replaced on disk)";
      }
    }
    if (o->peer < 0 && strstr(o->path, " (deleted)"))
      o->why = "deleted or replaced on disk since the old process loaded it";
  }
}

static int build_ranges(struct mcr_image_map *m, char *err, size_t errlen)
{
  const struct side *os = &m->side[0];
  size_t cap = 0;
  for (size_t i = 0; i < os->nobjs; i++)
    cap += os->objs[i].kind == OBJ_ELF ? ((const Elf64_Ehdr *)os->objs[i].hdr)->e_phnum : 1;
  cap += (size_t)m->nargs + 1 + nthread_stacks;
  m->ranges = mcr_arena_alloc(m->a, (cap + 1) * sizeof(*m->ranges), 0);
  if (!m->ranges)
    goto nomem;
  size_t n = 0;
  for (int k = 0; k < m->nargs; k++)
    if (m->args_len[k])
      m->ranges[n++] = (struct range){m->args_old[k], m->args_old[k] + m->args_len[k], -2 - k};
  if (m->stack_hi > m->stack_lo)
    m->ranges[n++] = (struct range){m->stack_lo, m->stack_hi, OBJ_STACK};
  for (size_t i = 0; i < nthread_stacks; i++)
    if (thread_stack_hi[i] > thread_stack_lo[i])
      m->ranges[n++] = (struct range){thread_stack_lo[i], thread_stack_hi[i], OBJ_THREAD_STACK};
  for (size_t i = 0; i < os->nobjs; i++) {
    const struct object *o = &os->objs[i];
    if (o->kind == OBJ_ELF) {
      n += elf_segments(o, m->ranges + n, (int)i);
    } else {
      m->ranges[n++] = (struct range){o->lo, o->hi, (int)i};
    }
  }
  for (size_t i = 1; i < n; i++) /* insertion sort: tens of entries */
    for (size_t j = i; j > 0 && m->ranges[j - 1].lo > m->ranges[j].lo; j--) {
      struct range t = m->ranges[j - 1];
      m->ranges[j - 1] = m->ranges[j];
      m->ranges[j] = t;
    }
  size_t k = 0; /* overlaps: only within one object (segments sharing a page) */
  for (size_t i = 0; i < n; i++) {
    if (k && m->ranges[i].lo < m->ranges[k - 1].hi) {
      if (m->ranges[i].hi > m->ranges[k - 1].hi)
        m->ranges[k - 1].hi = m->ranges[i].hi;
      continue;
    }
    m->ranges[k++] = m->ranges[i];
  }
  m->nranges = k;

  /* is_old: adjacent ranges merged, padded to a power of two */
  m->npow = pow2_at_least(k ? k : 1);
  m->lo = mcr_arena_alloc(m->a, m->npow * sizeof(*m->lo), 0);
  m->hi = mcr_arena_alloc(m->a, m->npow * sizeof(*m->hi), 0);
  if (!m->lo || !m->hi)
    goto nomem;
  size_t j = 0;
  for (size_t i = 0; i < k; i++) {
    if (j && m->ranges[i].lo == m->hi[j - 1]) {
      m->hi[j - 1] = m->ranges[i].hi;
      continue;
    }
    m->lo[j] = m->ranges[i].lo;
    m->hi[j++] = m->ranges[i].hi;
  }
  m->st.old_ranges = j;
  m->npow = pow2_at_least(j ? j : 1);
  for (size_t i = j; i < m->npow; i++) {
    m->lo[i] = UINTPTR_MAX;
    m->hi[i] = 0;
  }
  for (size_t i = 0; i < j; i++)
    for (uintptr_t g = m->lo[i] >> GRANULE_SHIFT; g <= (m->hi[i] - 1) >> GRANULE_SHIFT; g++) {
      m->granules[(g & (GRANULE_BITS - 1)) >> 6] |= 1ULL << (g & 63);
      if (g - (m->lo[i] >> GRANULE_SHIFT) >= GRANULE_BITS)
        break; /* a huge range: every bit is set already */
    }
  m->min = j ? m->lo[0] : 1;
  m->span = j ? m->hi[j - 1] - m->lo[0] : 0;
  return 0;
nomem:
  msg(err, errlen, "image map: %s", strerror(ENOMEM));
  return -1;
}

/* The new symbol of each rename: the one function of that name (a global before
 * a static), or NONE (a conflict when an address needs it). */
static int resolve_renames(struct mcr_image_map *m, char *err, size_t errlen)
{
  const struct side *ns = &m->side[1];
  const struct mcr_renames *r = image_renames;

  if (!r || !r->n)
    return 0;
  m->renamed_to = mcr_arena_alloc(m->a, r->n * sizeof(*m->renamed_to), 0);
  if (!m->renamed_to) {
    msg(err, errlen, "image map: %s", strerror(ENOMEM));
    return -1;
  }
  for (size_t i = 0; i < r->n; i++) {
    uint32_t cand[2];
    size_t n = by_name(ns, r->new_name[i], 0, NULL, cand, 2);
    if (n == 0)
      n = by_name(ns, r->new_name[i], 1, NULL, cand, 2);
    m->renamed_to[i] = n == 1 && is_code(&ns->syms[cand[0]]) ? cand[0] : NONE;
  }
  m->renames = r;
  return 0;
}

void mcr_image_set_stack_objects(const uintptr_t *old_lo, const uintptr_t *new_lo,
                                 const uint64_t *size, uint8_t *used, size_t n)
{
  sobj_used = used;
  sobj_old = old_lo;
  sobj_new = new_lo;
  sobj_size = size;
  nsobj = n;
  sobj_min = UINTPTR_MAX;
  sobj_max = 0;
  for (size_t i = 0; i < n; i++) {
    sobj_min = old_lo[i] < sobj_min ? old_lo[i] : sobj_min;
    sobj_max = old_lo[i] + size[i] > sobj_max ? old_lo[i] + size[i] : sobj_max;
  }
}

void mcr_image_set_thread_stacks(const uintptr_t *lo, const uintptr_t *hi, size_t n)
{
  thread_stack_lo = lo;
  thread_stack_hi = hi;
  nthread_stacks = n;
}

void mcr_image_set_renames(const struct mcr_renames *r)
{
  image_renames = r;
}

const struct mcr_renames *mcr_image_renames(void)
{
  return image_renames;
}

int mcr_image_map_open(struct mcr_image_map **out, pid_t old_pid, struct mcr_arena *a, char *err,
                       size_t errlen)
{
  struct mcr_image_map *m;
  char path[64], *text;

  *out = NULL;
  if (old_pid <= 0) {
    msg(err, errlen, "image map: bad old process id %d", (int)old_pid);
    return -1;
  }
  m = mcr_arena_alloc(a, sizeof(*m), 0);
  if (!m) {
    msg(err, errlen, "image map: %s", strerror(ENOMEM));
    return -1;
  }
  m->a = a;
  m->side[0].pid = old_pid;
  m->side[0].label = "old";
  m->side[1].pid = getpid();
  m->side[1].label = "new";
  for (int i = 0; i < 2; i++) {
    struct side *s = &m->side[i];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)s->pid);
    if (slurp(a, path, &text, err, errlen) || parse_maps(a, s, text, err, errlen)) {
      char tail[400];
      snprintf(tail, sizeof(tail), "%s", err ? err : "");
      msg(err, errlen, "%s process %d: %s", s->label, (int)s->pid, tail);
      goto fail;
    }
    if (s->nmaps == 0) {
      msg(err, errlen, "%s process %d: no mappings (exited?)", s->label, (int)s->pid);
      goto fail;
    }
    if (build_objects(a, s, err, errlen) || load_symbols(a, s, err, errlen))
      goto fail;
    m->st.old_objects += i == 0 ? s->nobjs : 0;
    m->st.new_objects += i == 1 ? s->nobjs : 0;
  }
  pair(&m->side[0], &m->side[1]);
  struct mcr_args_block ob, nb;
  char why[256];
  if (mcr_args_self(&nb) == 0 && mcr_args_old(old_pid, &ob, why, sizeof(why)) == 0) {
    m->args_old[0] = ob.arr;
    m->args_len[0] = ob.arr_len;
    m->args_new[0] = nb.arr;
    m->args_old[1] = ob.str;
    m->args_len[1] = ob.str_len;
    m->args_new[1] = nb.str;
    m->nargs = 2;
  }
  for (size_t i = 0; i < m->side[0].nmaps; i++) {
    const struct mapping *sm = &m->side[0].maps[i];
    if (strcmp(sm->path, "[stack]") != 0)
      continue;
    m->stack_lo = sm->start;
    m->stack_hi = sm->end;
    for (int k = 0; k < m->nargs; k++) /* the block sits at the top of it */
      if (m->args_len[k] && m->args_old[k] >= m->stack_lo && m->args_old[k] < m->stack_hi)
        m->stack_hi = m->args_old[k];
  }
  if (build_ranges(m, err, errlen) || resolve_renames(m, err, errlen))
    goto fail;
  m->memo_mask = 1023;
  m->memo = mcr_arena_alloc(a, (m->memo_mask + 1) * sizeof(*m->memo), 0);
  m->scratch = mcr_arena_alloc(a, STR_BACK + STR_MAX, 0);
  if (!m->memo || !m->scratch) {
    msg(err, errlen, "image map: %s", strerror(ENOMEM));
    goto fail;
  }
  *out = m;
  return 0;
fail:
  mcr_image_map_close(m);
  return -1;
}

static int file_match(const char *symfile, const char *file)
{
  return symfile && strcmp(base_name(symfile), base_name(file)) == 0;
}

int mcr_image_symbol(struct mcr_image_map *m, int side, const char *name, const char *file,
                     uintptr_t *addr, size_t *size)
{
  if (side < 0 || side > 1 || !name)
    return -1;
  const struct side *s = &m->side[side];
  uint32_t h = hash_bytes(name, strlen(name));
  const struct isym *global = NULL, *local = NULL;
  size_t nlocal = 0;

  for (uint32_t i = s->head[h & s->hmask]; i != NONE; i = s->next[i]) {
    const struct isym *v = &s->syms[i];
    if (v->hash != h || strcmp(v->name, name) || is_code(v))
      continue;
    if (v->bind != STB_LOCAL) {
      global = v;
    } else if (!file || file_match(v->file, file)) {
      local = v;
      nlocal++;
    }
  }
  const struct isym *v = file && nlocal ? local : global ? global : local;
  if (!v)
    return -1;
  if (v == local && nlocal > 1)
    return -2;
  *addr = s->objs[s->exe].bias + v->value;
  *size = v->size;
  return 0;
}

void mcr_image_stats(const struct mcr_image_map *m, struct mcr_image_stats *st)
{
  *st = m->st;
}

void mcr_image_map_close(struct mcr_image_map *m)
{
  if (!m)
    return;
  for (int i = 0; i < 2; i++)
    if (m->side[i].elf.map)
      mcr_elfsym_close(&m->side[i].elf);
}
