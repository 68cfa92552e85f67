/*
 * check.c - version 2 of tests/image's program (linked with prog.c -DV2): opens
 * the image map of a running version 1 and checks every translation against its
 * own address of the same name.
 *
 *   prog-v2 check OLDPID FILE [NAME:LIB ...]  FILE: what v1 published; each LIB is
 *                                              loaded here too, its extra_fn must be
 *                                              v1's NAME translated (NAME "-": only
 *                                              loaded)
 *   prog-v2 errors                             a map of a process that is gone
 *   prog-v2 perf OLDPID                        is_old throughput on 256 MB of words
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "check.h"
#include "elfsym.h"
#include "image.h"
#include "prog.h"
#include "rename.h"

int added_function(int x); /* prog.c, v2 only */
int func(int x);           /* prog.c */

static struct entry old[128];
static int nold;

static uintptr_t old_addr(const char *name)
{
  for (int i = 0; i < nold; i++)
    if (strcmp(old[i].name, name) == 0)
      return old[i].addr;
  printf("FAIL - v1 did not publish %s\n", name);
  check_failures++;
  return 0;
}

static int read_published(const char *path)
{
  FILE *f = fopen(path, "r");
  char name[256];
  unsigned long a;
  if (!f)
    return -1;
  while (nold < 128 && fscanf(f, "%255s %lx", name, &a) == 2) {
    old[nold].name = strdup(name);
    old[nold++].addr = a;
  }
  fclose(f);
  return 0;
}

/* old NAME must translate to want. */
static void expect_same(struct mcr_image_map *m, const char *name, uintptr_t want)
{
  char why[512] = "", what[600];
  uintptr_t o = old_addr(name), got = 0;
  int rc = mcr_image_translate(m, o, &got, why, sizeof(why));
  snprintf(what, sizeof(what), "%s: old 0x%lx is in the old image", name, (unsigned long)o);
  CHECK(mcr_image_is_old(m, o), what);
  snprintf(what, sizeof(what), "%s: translates (%s)", name, rc ? why : "ok");
  CHECK_EQ(rc, 0, what);
  snprintf(what, sizeof(what), "%s: old 0x%lx -> 0x%lx, this version's", name, (unsigned long)o,
           (unsigned long)got);
  CHECK_EQ(got, want, what);
}

/* old NAME must not translate, with a reason containing each of the words. */
static void expect_fail(struct mcr_image_map *m, const char *name, const char *w1, const char *w2)
{
  char why[512] = "", what[800];
  uintptr_t o = old_addr(name), got = 0;
  int rc = mcr_image_translate(m, o, &got, why, sizeof(why));
  snprintf(what, sizeof(what), "%s: is in the old image", name);
  CHECK(mcr_image_is_old(m, o), what);
  snprintf(what, sizeof(what), "%s: no translation (got 0x%lx)", name, (unsigned long)got);
  CHECK_EQ(rc, -1, what);
  snprintf(what, sizeof(what), "%s: the reason names '%s' and '%s': %s", name, w1, w2, why);
  CHECK(strstr(why, w1) && strstr(why, w2), what);
}

/* Renamed functions (rename.h): the map's parser, the check against both
 * executables, and the translation of v1's old_only as v2's added_function. */
static void check_renames(pid_t pid)
{
  static struct mcr_renames r;
  struct mcr_elfsym o, n;
  struct mcr_image_map *m = NULL;
  struct mcr_arena *a = mcr_arena_create();
  char err[512] = "", path[64], spec[64] = "";
  uintptr_t got = 0;

  /* the parser */
  CHECK_EQ(mcr_renames_parse(&r, "  a=b\tc=d\n", err, sizeof(err)), 0, "renames: two pairs");
  CHECK(r.n == 2 && !strcmp(r.old_name[1], "c") && !strcmp(r.new_name[1], "d") &&
            !strcmp(mcr_renames_find(&r, "a"), "b") && !mcr_renames_find(&r, "b"),
        "renames: the pairs, found by old name");
  CHECK_EQ(mcr_renames_parse(&r, "", err, sizeof(err)), 0, "renames: none");
  CHECK_EQ(r.n, 0, "renames: none is zero pairs");
  CHECK(mcr_renames_parse(&r, "a=b c", err, sizeof(err)) == -1 && strstr(err, "'c'") &&
            strstr(err, "OLD=NEW") && r.n == 0,
        "renames: a pair without '=' is refused, named");
  CHECK(mcr_renames_parse(&r, "a= =b", err, sizeof(err)) == -1, "renames: empty names refused");
  CHECK(mcr_renames_parse(&r, "a=b a=c", err, sizeof(err)) == -1 && strstr(err, "twice"),
        "renames: an old name twice is refused");
  CHECK(mcr_renames_parse(&r, "a=b=c", err, sizeof(err)) == -1 && strstr(err, "0x3d"),
        "renames: '=' in a name is refused");
  CHECK(mcr_renames_parse(&r, "a=b +g1 +g2", err, sizeof(err)) == 0 && r.n == 1 &&
            r.nkeep == 2 && mcr_renames_keeps(&r, "g2") && !mcr_renames_keeps(&r, "a") &&
            !mcr_renames_find(&r, "+g1"),
        "renames: '+NAME' tokens are kept new globals, not pairs");
  CHECK(mcr_renames_parse(&r, "+ a=b", err, sizeof(err)) == -1 && strstr(err, "keep-new") &&
            r.n == 0 && r.nkeep == 0,
        "renames: a '+' without a name is refused");
  CHECK(mcr_renames_append(spec, sizeof(spec), "x=y") == 0 &&
            mcr_renames_append(spec, sizeof(spec), "z=w") == 0 && !strcmp(spec, "x=y z=w"),
        "renames: append");

  /* the check against both executables */
  snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
  CHECK(mcr_elfsym_open(&o, path) == 0 && mcr_elfsym_open(&n, "/proc/self/exe") == 0,
        "renames: both symbol tables");
  CHECK_EQ(mcr_rename_check(&o, &n, "old_only", "added_function", err, sizeof(err)), 0,
           "renames: old_only=added_function holds");
  CHECK(mcr_rename_check(&o, &n, "old_only", "no_such_fn", err, sizeof(err)) == -1 &&
            strstr(err, "'no_such_fn' is not a function of the new executable"),
        "renames: a NEW the new executable lacks");
  CHECK(mcr_rename_check(&o, &n, "added_function", "func", err, sizeof(err)) == -1 &&
            strstr(err, "'added_function' is not a function of the old executable"),
        "renames: an OLD the old executable lacks");
  CHECK(mcr_rename_check(&o, &n, "old_only", "added_global", err, sizeof(err)) == -1 &&
            strstr(err, "is data in the new executable"),
        "renames: data is not a function");
  mcr_elfsym_close(&o);
  mcr_elfsym_close(&n);

  /* the translation: v1's old_only is v2's added_function; a NEW that is data
   * makes the address a conflict naming the rename */
  CHECK_EQ(mcr_renames_parse(&r, "old_only=added_function lit_gone=added_global", err,
                             sizeof(err)),
           0, "renames: parse the map");
  mcr_image_set_renames(&r);
  CHECK_EQ(mcr_image_map_open(&m, pid, a, err, sizeof(err)), 0, "renames: a map opens");
  if (m) {
    char why[512] = "";
    struct mcr_image_stats st;
    CHECK(mcr_image_translate(m, old_addr("old_only"), &got, why, sizeof(why)) == 0 &&
              got == (uintptr_t)added_function,
          "renames: v1's old_only translates to v2's added_function");
    CHECK(mcr_image_translate(m, old_addr("func"), &got, why, sizeof(why)) == 0 &&
              got == (uintptr_t)func,
          "renames: a function not renamed translates as before");
    CHECK(mcr_image_translate(m, old_addr("lit_gone_fn"), &got, why, sizeof(why)) == -1 &&
              strstr(why, "renamed to 'added_global'") && strstr(why, "not one function"),
          "renames: a NEW that is data: the address is a conflict naming the rename");
    mcr_image_stats(m, &st);
    CHECK_EQ(st.renamed, 1, "renames: one address translated through a rename");
    mcr_image_map_close(m);
  }
  mcr_image_set_renames(NULL);
  mcr_arena_destroy(a);
}

static int check(pid_t pid, const char *file, int nlibs, char **libs)
{
  struct entry mine[64];
  const char *loc = setlocale(LC_ALL, "C.UTF-8"); /* as v1 */
  int n = prog_table(mine, 64);
  char err[512] = "", want[64];
  struct mcr_image_map *m = NULL;
  struct mcr_arena *a = mcr_arena_create();

  void *libfn[16] = {0};
  CHECK(a != NULL && nlibs <= 16, "arena");
  CHECK_EQ(read_published(file), 0, "read what v1 published");
  for (int i = 0; i < nlibs && i < 16; i++) { /* before the map: loaded at startup */
    char *colon = strchr(libs[i], ':');
    *colon = '\0';
    void *h = dlopen(colon + 1, RTLD_NOW);
    libfn[i] = h ? dlsym(h, "extra_fn") : NULL;
    CHECK(libfn[i] != NULL, "v2 loads its library");
  }
  int rc = mcr_image_map_open(&m, pid, a, err, sizeof(err));
  printf("  open: %s; locale C.UTF-8 %s\n", rc ? err : "ok", loc ? "loaded" : "missing");
  CHECK_EQ(rc, 0, "image map of v1 opens");
  if (rc)
    return check_done();

  /* everything both versions have: functions, data, literals, statics, libc */
  for (int i = 0; i < n; i++)
    if (strcmp(mine[i].name, "dup1.dupvar"))
      expect_same(m, mine[i].name, mine[i].addr);

  /* what v2 does not have, or cannot tell apart */
  expect_fail(m, "old_only", "function 'old_only'", "not in the new executable");
  snprintf(want, sizeof(want), "%s-%s", "only-in", "v1"); /* not a literal of v2 */
  expect_fail(m, "lit_gone", "string literal", want);
  expect_fail(m, "grow_array[40]", "grow_array", "beyond its new size 16");
  expect_fail(m, "dup1.dupvar", "static object 'dupvar' (dup.c)", "several statics");

  /* libraries loaded with dlopen: the same file, one v2 lacks, one replaced */
  for (int i = 0; i < nlibs; i++)
    if (strcmp(libs[i], "-")) /* "-": only loaded */
      expect_same(m, libs[i], (uintptr_t)libfn[i]);
  expect_fail(m, "extra_gone", "libextra-gone.so", "not loaded in the new process");
  expect_fail(m, "extra_replaced", "libextra-replaced.so", "replaced");

  /* the same address again: from the memo, no second count */
  struct mcr_image_stats s0, s1;
  uintptr_t got;
  mcr_image_stats(m, &s0);
  mcr_image_translate(m, old_addr("func"), &got, NULL, 0);
  mcr_image_translate(m, old_addr("old_only"), &got, NULL, 0);
  mcr_image_stats(m, &s1);
  CHECK(s1.lookups == s0.lookups + 2 && s1.by_symbol == s0.by_symbol && s1.failed == s0.failed,
        "a repeated address is answered from the memo");
  printf("  stats: by symbol %zu, by library %zu, by string %zu, failed %zu, lookups %zu, "
         "old ranges %zu, objects old %zu new %zu\n",
         s1.by_symbol, s1.by_library, s1.by_string, s1.failed, s1.lookups, s1.old_ranges,
         s1.old_objects, s1.new_objects);
  CHECK_EQ(s1.by_string, 3, "three literal addresses by content");
  CHECK_EQ(s1.failed, 6, "six addresses without a translation");
  CHECK(s1.by_library >= 4, "libc and library addresses by offset");

  /* not the image: v1's heap, small numbers, NULL; its main thread's stack is in
   * the map but has no translation (its locals have other addresses here) */
  CHECK(!mcr_image_is_old(m, old_addr("heap")), "v1's heap pointer is not in its image");
  CHECK(mcr_image_is_old(m, old_addr("stack")), "v1's stack pointer is in the map");
  CHECK(mcr_image_translate(m, old_addr("stack"), &got, err, sizeof(err)) == -1 &&
            strstr(err, "main thread stack") != NULL,
        "v1's stack pointer has no translation, and the reason says it is the stack");
  CHECK(!mcr_image_is_old(m, 0) && !mcr_image_is_old(m, 42) && !mcr_image_is_old(m, UINTPTR_MAX),
        "0, 42, ~0 are not in the image");
  CHECK_EQ(mcr_image_translate(m, old_addr("heap"), &got, err, sizeof(err)), -1,
           "a heap address has no translation");

  /* v1's maps as the oracle: the first and last byte of each readable private file
   * mapping are in its image, [heap] is not, the bottom of [stack] is */
  char path[64], line[1024];
  int inside = 0, outside = 0, nfiles = 0, nother = 0;
  snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
  FILE *mf = fopen(path, "r");
  CHECK(mf != NULL, "read v1's maps");
  while (mf && fgets(line, sizeof(line), mf)) {
    unsigned long lo, hi, ino;
    char perms[8], file[512] = "";
    if (sscanf(line, "%lx-%lx %7s %*s %*s %lu %511s", &lo, &hi, perms, &ino, file) < 4)
      continue;
    if (ino && perms[0] == 'r' && perms[3] == 'p') {
      nfiles++;
      inside += mcr_image_is_old(m, lo) && mcr_image_is_old(m, hi - 1);
    } else if (!strcmp(file, "[heap]")) {
      nother++;
      outside += !mcr_image_is_old(m, lo) && !mcr_image_is_old(m, hi - 1);
    } else if (!strcmp(file, "[stack]")) {
      nother++;
      outside += mcr_image_is_old(m, lo); /* below the argument block: in the map */
    }
  }
  if (mf)
    fclose(mf);
  snprintf(line, sizeof(line),
           "v1's maps: %d of %d file mappings in the image, %d of %d heap/stack mappings as "
           "expected",
           inside, nfiles, outside, nother);
  CHECK(nfiles > 10 && inside == nfiles && outside == nother, line);

  /* globals by name on both sides */
  uintptr_t addr = 0;
  size_t size = 0;
  CHECK(mcr_image_symbol(m, 0, "global", NULL, &addr, &size) == 0 && addr == old_addr("global") &&
            size == sizeof(int),
        "symbol: old 'global'");
  CHECK(mcr_image_symbol(m, 0, "global_array", NULL, &addr, &size) == 0 &&
            addr == old_addr("global_array[3]") - 3 * sizeof(int) &&
            size == 8 * sizeof(int),
        "symbol: old 'global_array' (size 32)");
  for (int i = 0; i < n; i++)
    if (!strcmp(mine[i].name, "a.counter")) {
      CHECK(mcr_image_symbol(m, 1, "counter", "unit-a.c", &addr, &size) == 0 &&
                addr == mine[i].addr && size == 4 * sizeof(int),
            "symbol: new static 'counter' of unit-a.c");
    }
  CHECK(mcr_image_symbol(m, 0, "counter", "src/unit-b.c", &addr, &size) == 0 &&
            addr == old_addr("b.counter+4") - 4,
        "symbol: old static 'counter' of unit-b.c (by its base name)");
  CHECK_EQ(mcr_image_symbol(m, 0, "counter", NULL, &addr, &size), -2,
           "symbol: 'counter' without a file is ambiguous");
  CHECK_EQ(mcr_image_symbol(m, 1, "dupvar", "dup.c", &addr, &size), -2,
           "symbol: 'dupvar' of dup.c is ambiguous");
  CHECK_EQ(mcr_image_symbol(m, 1, "no_such_global", NULL, &addr, &size), -1,
           "symbol: a missing name");
  CHECK_EQ(mcr_image_symbol(m, 1, "func", NULL, &addr, &size), -1,
           "symbol: a function is not a data symbol");
  CHECK_EQ(mcr_image_symbol(m, 0, "added_global", NULL, &addr, &size), -1,
           "symbol: v2's new global is not in v1");
  mcr_image_map_close(m);
  mcr_arena_destroy(a);
  check_renames(pid);
  return check_done();
}

/* Maps of processes that are gone: clean errors. */
static int errors(void)
{
  struct mcr_arena *a = mcr_arena_create();
  struct mcr_image_map *m = (void *)1;
  char err[512] = "", want[64];

  pid_t pid = fork();
  if (pid == 0)
    _exit(0);
  /* a zombie: /proc/PID exists, its mappings are gone */
  for (int i = 0; i < 500 && !strstr(err, "zombie"); i++) {
    char path[64], buf[512] = "";
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f && fgets(buf, sizeof(buf), f) && strstr(buf, ") Z "))
      snprintf(err, sizeof(err), "zombie");
    if (f)
      fclose(f);
    usleep(2000);
  }
  CHECK(strstr(err, "zombie"), "the child is a zombie");
  CHECK_EQ(mcr_image_map_open(&m, pid, a, err, sizeof(err)), -1, "a zombie: refused");
  printf("  %s\n", err);
  snprintf(want, sizeof(want), "%d", (int)pid);
  CHECK(m == NULL && strstr(err, want), "a zombie: the error names the process");
  waitpid(pid, NULL, 0);
  m = (void *)1;
  CHECK_EQ(mcr_image_map_open(&m, pid, a, err, sizeof(err)), -1, "a process that is gone: refused");
  printf("  %s\n", err);
  snprintf(want, sizeof(want), "/proc/%d/maps", (int)pid);
  CHECK(m == NULL && strstr(err, want) && strstr(err, strerror(ENOENT)),
        "a process that is gone: the error names its maps file and ENOENT");
  CHECK_EQ(mcr_image_map_open(&m, 0, a, err, sizeof(err)), -1, "pid 0: refused");
  CHECK_EQ(mcr_image_map_open(&m, -5, a, err, sizeof(err)), -1, "pid -5: refused");
  mcr_arena_destroy(a);
  return check_done();
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint64_t next(void)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Fills w with words drawn by percentages: zero, small numbers, heap pointers
 * (v1's heap, 16 MB around it), image pointers (v1's functions and libc), random
 * bits. Returns how many image pointers it drew. */
static size_t fill(uintptr_t *w, size_t words, const int pct[5], uintptr_t heap, uintptr_t func,
                   uintptr_t lib)
{
  size_t image = 0;
  for (size_t i = 0; i < words; i++) {
    uint64_t r = next();
    int d = (int)((r >> 8) % 100);
    if ((d -= pct[0]) < 0)
      w[i] = 0;
    else if ((d -= pct[1]) < 0)
      w[i] = r >> 50;
    else if ((d -= pct[2]) < 0)
      w[i] = heap + (r >> 40) % (16u << 20);
    else if ((d -= pct[3]) < 0)
      w[i] = (r & 1 ? func : lib) + (r >> 40) % 4096, image++;
    else
      w[i] = r;
  }
  return image;
}

/* is_old over 256 MB of words, in two mixes: "adversarial" (20% image pointers
 * at random places) and "heap-like" (mostly zeros, small numbers and heap
 * pointers, 1% image pointers). */
static int perf(pid_t pid, const char *file)
{
  static const int mixes[2][5] = {{10, 30, 30, 20, 10}, {35, 25, 38, 1, 1}};
  static const char *names[2] = {"adversarial", "heap-like"};
  struct mcr_arena *a = mcr_arena_create();
  struct mcr_image_map *m;
  struct mcr_image_stats st;
  char err[512];
  size_t words = (256u << 20) / sizeof(uintptr_t);

  CHECK_EQ(read_published(file), 0, "read what v1 published");
  double t0 = now();
  CHECK_EQ(mcr_image_map_open(&m, pid, a, err, sizeof(err)), 0, "image map of v1 opens");
  printf("  open: %.2f ms, arena %zu KiB\n", (now() - t0) * 1e3, mcr_arena_mapped(a) >> 10);
  mcr_image_stats(m, &st);
  uintptr_t *w = mmap(NULL, words * sizeof(*w), PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(w != MAP_FAILED, "256 MB buffer");
  for (int mix = 0; mix < 2; mix++) {
    size_t expect =
        fill(w, words, mixes[mix], old_addr("heap"), old_addr("func"), old_addr("fprintf"));
    size_t hits = 0;
    double best = 1e9, base = 1e9;
    for (int round = 0; round < 3; round++) {
      double t0 = now();
      size_t h = 0;
      for (size_t i = 0; i < words; i++)
        h += (size_t)mcr_image_is_old(m, w[i]);
      double t = now() - t0;
      best = t < best ? t : best;
      hits = h;
      t0 = now(); /* the same loop reading the words only, for scale */
      h = 0;
      for (size_t i = 0; i < words; i++)
        h += (size_t)(w[i] >> 63);
      __asm__ volatile("" : : "r"(h));
      t = now() - t0;
      base = t < base ? t : base;
    }
    double scan = 1e9;
    size_t found = 0, idx[4096];
    for (int round = 0; round < 3; round++) { /* mcr_image_scan by 4096-word chunks */
      double t0 = now();
      size_t h = 0;
      for (size_t i = 0; i < words; i += 4096)
        h += mcr_image_scan(m, w + i, 4096, idx);
      double t = now() - t0;
      scan = t < scan ? t : scan;
      found = h;
    }
    printf("  is_old, %s mix: %zu words (256 MB) in %.1f ms: %.2f ns/word, %.2f GB/s; "
           "mcr_image_scan: %.1f ms, %.2f ns/word, %.2f GB/s (reading alone: %.1f ms); "
           "%zu in the image (%zu ranges)\n",
           names[mix], words, best * 1e3, best * 1e9 / words, 256.0 / 1024 / best, scan * 1e3,
           scan * 1e9 / words, 256.0 / 1024 / scan, base * 1e3, hits, st.old_ranges);
    CHECK_EQ(found, hits, "mcr_image_scan finds what is_old finds");
    char what[100];
    snprintf(what, sizeof(what), "is_old finds the image words, %s mix", names[mix]);
    /* random bits (1 in 2^17 chance each) may land in the image too */
    CHECK(hits >= expect && hits - expect <= words / 1000, what);
  }
  mcr_image_map_close(m);
  mcr_arena_destroy(a);
  return check_done();
}

int main(int argc, char **argv)
{
  if (argc >= 4 && strcmp(argv[1], "check") == 0)
    return check(atoi(argv[2]), argv[3], argc - 4, argv + 4);
  if (argc == 2 && strcmp(argv[1], "errors") == 0)
    return errors();
  if (argc == 4 && strcmp(argv[1], "perf") == 0)
    return perf(atoi(argv[2]), argv[3]);
  fprintf(stderr, "usage: prog-v2 check OLDPID FILE [NAME:LIB...] | errors | perf OLDPID FILE\n");
  return 2;
}
