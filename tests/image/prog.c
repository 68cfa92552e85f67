/*
 * prog.c - the program of tests/image, version 1 or (with -DV2) version 2: the
 * same program, except that v2 adds a function and a global, orders globals and
 * string literals differently, shrinks one array and drops a function and a
 * literal. prog_table lists the addresses both versions publish.
 */
#include <langinfo.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prog.h"

#ifdef V2
int added_global[10] = {1, 2, 3};
__attribute__((noinline)) int added_function(int x) { return x * 11 + added_global[1]; }
const char *new_literal(void) { return "mcr-literal-new-in-v2"; }
int global_array[8] = {10, 11, 12, 13, 14, 15, 16, 17};
int global = 1;
char grow_array[16];
#else
int global = 1;
int global_array[8] = {10, 11, 12, 13, 14, 15, 16, 17};
char grow_array[64];
__attribute__((noinline)) int old_only(int x) { return x + global; }
#endif

static const int const_table[5] = {2, 3, 5, 7, 11};
/* the tail of lit_alpha's literal, as an object of its own: a translation of
 * lit_alpha+14 that only looked at the tail could land here */
const char tail_copy[] = "pha: the quick brown fox";
extern const char __ehdr_start[]; /* the first byte of the executable's image */

__attribute__((noinline)) int func(int x) { return x * 3 + 1; }
__attribute__((noinline)) static int static_func(int x) { return x * 7 - global; }

#ifdef V2
__attribute__((noinline)) const char *lit_beta(void) { return "mcr-literal-beta"; }
__attribute__((noinline)) const char *lit_alpha(void)
{
  return "mcr-literal-alpha: the quick brown fox";
}
#else
__attribute__((noinline)) const char *lit_alpha(void)
{
  return "mcr-literal-alpha: the quick brown fox";
}
__attribute__((noinline)) const char *lit_beta(void) { return "mcr-literal-beta"; }
__attribute__((noinline)) const char *lit_gone(void) { return "mcr-literal-only-in-v1"; }
#endif

int prog_table(struct entry *out, int max)
{
  struct entry t[] = {
      {"func", (uintptr_t)func},
      {"func+1", (uintptr_t)func + 1},
      {"static_func", (uintptr_t)static_func},
      {"global", (uintptr_t)&global},
      {"global_array[3]", (uintptr_t)&global_array[3]},
      {"const_table[2]", (uintptr_t)&const_table[2]},
      {"tail_copy", (uintptr_t)tail_copy},
      {"ehdr_start", (uintptr_t)__ehdr_start},
      {"lit_alpha", (uintptr_t)lit_alpha()},
      {"lit_alpha+14", (uintptr_t)lit_alpha() + 14},
      {"lit_beta", (uintptr_t)lit_beta()},
      {"a.counter", (uintptr_t)a_counter()},
      {"b.counter+4", (uintptr_t)b_counter() + 4},
      {"fprintf", (uintptr_t)&fprintf},
      {"qsort", (uintptr_t)&qsort},
      {"stderr", (uintptr_t)stderr},
      /* locale data: a file mapping (/usr/lib/locale/C.utf8/LC_CTYPE) after setlocale */
      {"codeset", (uintptr_t)nl_langinfo(CODESET)},
#ifndef V2 /* what v2 cannot have */
      {"old_only", (uintptr_t)old_only},
      {"lit_gone", (uintptr_t)lit_gone()},
      {"lit_gone_fn", (uintptr_t)lit_gone},
      {"grow_array[40]", (uintptr_t)&grow_array[40]},
#endif
      {"dup1.dupvar", (uintptr_t)dup1_var()},
  };
  int n = (int)(sizeof(t) / sizeof(t[0]));
  if (n > max)
    n = max;
  memcpy(out, t, (size_t)n * sizeof(*out));
  return n;
}

#ifndef V2
#include <dlfcn.h>
#include <unistd.h>

/* v1: prog-v1 OUT NAME:LIB...: in the C.UTF-8 locale, writes "name 0xaddr" lines
 * (its table, extra_fn of each LIB it loads as NAME, a heap and a stack address)
 * to OUT.tmp, renames it to OUT, then waits to be killed. */
int main(int argc, char **argv)
{
  struct entry t[64];
  char tmp[4096];
  int x = 0;

  if (argc < 2)
    return 2;
  setlocale(LC_ALL, "C.UTF-8");
  int n = prog_table(t, 64);
  snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]);
  FILE *f = fopen(tmp, "w");
  if (!f)
    return 1;
  for (int i = 0; i < n; i++)
    fprintf(f, "%s 0x%lx\n", t[i].name, (unsigned long)t[i].addr);
  for (int i = 2; i < argc; i++) { /* lib:NAME: dlopen, publish extra_fn as NAME */
    void *h = dlopen(strchr(argv[i], ':') + 1, RTLD_NOW);
    void *fn = h ? dlsym(h, "extra_fn") : NULL;
    if (!fn)
      return 1;
    fprintf(f, "%.*s 0x%lx\n", (int)(strchr(argv[i], ':') - argv[i]), argv[i],
            (unsigned long)fn);
  }
  void *heap = malloc(100);
  fprintf(f, "heap 0x%lx\nstack 0x%lx\n", (unsigned long)heap, (unsigned long)&x);
  fclose(f);
  if (rename(tmp, argv[1]))
    return 1;
  for (;;)
    pause();
}
#endif
