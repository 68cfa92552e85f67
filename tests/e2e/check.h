/* check.h - assertions for end-to-end test programs: print both values, count
 * failures, and exit non-zero at the end if any failed. */
#ifndef MCR_E2E_CHECK_H
#define MCR_E2E_CHECK_H
#include <stdio.h>
#include <string.h>

static int check_failures;

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (cond) {                                                                    \
      printf("ok: %s\n", #cond);                                                   \
    } else {                                                                       \
      printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                       \
      check_failures++;                                                            \
    }                                                                              \
  } while (0)

#define CHECK_STR(got, want)                                                       \
  do {                                                                             \
    const char *g_ = (got), *w_ = (want);                                          \
    if (g_ && strcmp(g_, w_) == 0) {                                               \
      printf("ok: %s == \"%s\"\n", #got, w_);                                      \
    } else {                                                                       \
      printf("FAIL %s:%d: %s is \"%s\", expected \"%s\"\n", __FILE__, __LINE__,    \
             #got, g_ ? g_ : "(null)", w_);                                        \
      check_failures++;                                                            \
    }                                                                              \
  } while (0)

#define CHECK_EQ(got, want)                                                        \
  do {                                                                             \
    long long g_ = (long long)(got), w_ = (long long)(want);                       \
    if (g_ == w_) {                                                                \
      printf("ok: %s == %lld\n", #got, w_);                                        \
    } else {                                                                       \
      printf("FAIL %s:%d: %s is %lld, expected %lld\n", __FILE__, __LINE__, #got,  \
             g_, w_);                                                              \
      check_failures++;                                                            \
    }                                                                              \
  } while (0)

#define CHECK_DONE()                                                               \
  do {                                                                             \
    printf("%s\n", check_failures ? "FAILED" : "PASSED");                          \
    return check_failures ? 1 : 0;                                                 \
  } while (0)

#endif
