/*
 * check.h - assertions for the runtime unit tests: one line per check
 * ("ok - ..." / "FAIL - ..." with both values), exit status non-zero if any
 * check failed.
 */
#ifndef MCR_TEST_CHECK_H
#define MCR_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int check_failures;
static int check_quiet_failures __attribute__((unused));

/* CHECK_*: prints a line either way. */
#define CHECK_EQ(a, b, what)                                                              \
  do {                                                                                    \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);                       \
    if (check_a_ == check_b_) {                                                           \
      printf("ok - %s\n", what);                                                          \
    } else {                                                                              \
      printf("FAIL - %s: %s == %s: %lld (0x%llx) vs %lld (0x%llx) at %s:%d\n", what, #a, \
             #b, check_a_, check_a_, check_b_, check_b_, __FILE__, __LINE__);             \
      check_failures++;                                                                   \
    }                                                                                     \
    fflush(stdout);                                                                       \
  } while (0)

#define CHECK(cond, what) CHECK_EQ(!!(cond), 1, what)

/* EXPECT_*: silent on success, for loops; summarise with CHECK_LOOP. */
#define EXPECT_EQ(a, b, fmt, ...)                                                          \
  do {                                                                                     \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);                        \
    if (check_a_ != check_b_) {                                                            \
      if (check_quiet_failures++ < 20)                                                     \
        printf("  mismatch: %s == %s: %lld (0x%llx) vs %lld (0x%llx) at %s:%d: " fmt "\n", \
               #a, #b, check_a_, check_a_, check_b_, check_b_, __FILE__, __LINE__,         \
               __VA_ARGS__);                                                               \
    }                                                                                      \
  } while (0)

#define EXPECT(cond, fmt, ...) EXPECT_EQ(!!(cond), 1, fmt, __VA_ARGS__)

/* Reports the EXPECTs since the last CHECK_LOOP as one check. */
#define CHECK_LOOP(what)                            \
  do {                                              \
    int check_n_ = check_quiet_failures;            \
    check_quiet_failures = 0;                       \
    CHECK_EQ(check_n_, 0, what);                    \
  } while (0)

static inline int check_done(void)
{
  printf("%s: %d failure(s)\n", check_failures ? "FAILED" : "PASSED", check_failures);
  return check_failures ? 1 : 0;
}

/* Keeps the compiler from proving things about allocations. */
static inline void *check_launder(void *p)
{
  __asm__ volatile("" : "+r"(p));
  return p;
}

/* An opaque size, so the compiler does not warn about or fold huge requests. */
static inline size_t check_size(size_t n)
{
  __asm__ volatile("" : "+r"(n));
  return n;
}

#endif
