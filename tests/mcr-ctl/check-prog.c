/*
 * check-prog.c - the program of check.sh, in two versions (v1; v2 with -DV2): each
 * kind of change 'mcr-ctl check' reports. Built by mcr-clang. -DV2_SAFE leaves out
 * the changes of v2 that refuse the update (7, 12, 13) and the static table (11);
 * -DWITH_HOOKS adds user transformations for 7.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1. a field added (global and heap objects) */
struct session {
  int id;
  char name[16];
#ifdef V2
  unsigned flags;
#endif
  struct session *next;
#ifdef V2
  struct session *owner; /* a pointer added: NULL in heap objects carried over */
#endif
};

/* 2. reordered */
struct point {
#ifdef V2
  char tag;
  int y;
  int x;
#else
  int x;
  int y;
  char tag;
#endif
};

/* 3, 4. widening, narrowing */
struct counters {
#ifdef V2
  long hits;
  int small;
#else
  int hits;
  long small;
#endif
};

/* 6. enum reordered */
enum state {
#ifdef V2
  ST_DONE, ST_IDLE, ST_BUSY
#else
  ST_IDLE, ST_BUSY, ST_DONE
#endif
};

/* 7. int -> struct: cannot be inferred */
struct money { long units; int cents; };
struct account {
  int id;
#if defined(V2) && !defined(V2_SAFE)
  struct money balance;
#else
  int balance;
#endif
};

/* 8. typedef renamed: identical */
struct item { int key; int value; };
#ifdef V2
typedef struct item entry_t;
#else
typedef struct item item_t;
#endif

struct session current;
struct point origin = {1, 2, 'o'};
struct counters stats;
enum state cur_state = ST_BUSY;
/* 5. an array grows; 9. a global only v2 has, 10. one only v1 has */
#ifdef V2
int history[16];
entry_t items[4];
int v2_only = 42;
#else
int history[8];
item_t items[4];
int v1_only = 7;
#endif
struct account bank;

/* 11. a table that loses entries: a static table (NEW's kept if never written), else
 * refused (the dropped elements hold pointers) */
#if defined(V2) && !defined(V2_SAFE)
static const char *names[2] = {"alpha", "delta"};
#else
static const char *names[4] = {"alpha", "beta", "gamma", "delta"};
#endif

/* 13. an array inside a struct shrinks and drops data: refused */
struct limits {
  int n;
#if defined(V2) && !defined(V2_SAFE)
  int v[2];
#else
  int v[4];
#endif
};
#if defined(V2) && !defined(V2_SAFE)
struct limits lim = {2, {1, 2}};
#else
struct limits lim = {4, {1, 2, 3, 4}};
#endif

/* 12. a table of function pointers, one function renamed: no counterpart (refused) */
static void on_start(void) { puts("start"); }
#if defined(V2) && !defined(V2_SAFE)
static void on_finish(void) { puts("stop"); }
void (*handlers[2])(void) = {on_start, on_finish};
#else
static void on_stop(void) { puts("stop"); }
void (*handlers[2])(void) = {on_start, on_stop};
#endif

static long total;
const int limit = 10;
_Thread_local int per_thread;

#ifdef WITH_HOOKS
/* user transformations for 7 (mcr/transform.h's macros; the names are the contract) */
__attribute__((used, noinline)) int mcr_transform_global_bank(void *new, size_t new_size,
                                                              const void *old, size_t old_size)
{
  (void)new, (void)new_size, (void)old, (void)old_size;
  return 0;
}
__attribute__((used, noinline)) int mcr_transform_type_account(void *new, size_t new_size,
                                                               const void *old, size_t old_size)
{
  (void)new, (void)new_size, (void)old, (void)old_size;
  return 0;
}
#endif

static struct session *session_new(int id)
{
  struct session *s = malloc(sizeof(*s));
  if (!s)
    return NULL;
  memset(s, 0, sizeof(*s));
  s->id = id;
  return s;
}

static struct account *account_new(void)
{
  struct account *a = calloc(1, sizeof(*a));
  return a;
}

static void *opaque_new(size_t n)
{
  void *p = malloc(n);
  return p;
}

#ifndef V2
static struct counters *counters_new(void)
{
  struct counters *c = malloc(sizeof(*c));
  return c;
}
#endif

int main(int argc, char **argv)
{
  struct session *s = session_new(argc);
  struct account *a = account_new();
  void *o = opaque_new(64);
  static int calls;
  calls++;
  total += argc;
  per_thread = argc;
#ifndef V2
  struct counters *c = counters_new();
  free(c);
  v1_only++;
#else
  v2_only++;
#endif
  history[0] = argc;
  items[0].key = argc;
  stats.hits++;
  if (argc > 5) {
    printf("%d %d %d %ld %d %d %s %d\n", s->id, a->id, origin.x, total, cur_state, limit, names[1],
           lim.v[1]);
    handlers[argc % 2]();
  }
  free(s);
  free(a);
  free(o);
  (void)argv;
  return 0;
}
