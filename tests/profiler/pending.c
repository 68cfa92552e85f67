/*
 * pending.c - the profiler's recording entry points called directly (as the
 * runtime's blocking wrappers call them), for mcr-profile's tests:
 *   - a thread blocked for the whole run in a call announced with
 *     mcr_profile_begin (it never returns): counted while blocked;
 *   - the main thread reports RECORDS calls of two stacks through
 *     mcr_profile_record alone, then sleeps until stopped.
 */
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "profile.h"

#define RA ((uintptr_t)__builtin_return_address(0))

/* Stands in for a wrapper: announces a condition wait and never returns. */
__attribute__((noinline)) static void blocked_forever(void)
{
  mcr_profile_begin(MCR_BLOCK_COND_WAIT, mcr_now_ns(), RA);
  for (;;)
    syscall(SYS_pause); /* not a wrapped function */
}

static void *waiter(void *arg)
{
  (void)arg;
  blocked_forever();
  return NULL;
}

static void start_waiter(void)
{
  pthread_t t;
  pthread_create(&t, NULL, waiter, NULL);
}

/* A wrapper's report after a 1 ms call that did not block for real. */
__attribute__((noinline)) static void reported_read(void)
{
  uint64_t t = mcr_now_ns();
  mcr_profile_record(MCR_BLOCK_READ, t, t + 1000000, RA);
}

__attribute__((noinline)) static void reported_poll(void)
{
  uint64_t t = mcr_now_ns();
  mcr_profile_record(MCR_BLOCK_POLL, t, t + 9000000, RA);
}

static void loop(void)
{
  for (int i = 0; i < 100; i++) {
    reported_read();
    reported_poll();
  }
}

int main(void)
{
  start_waiter();
  loop();
  for (;;)
    syscall(SYS_pause);
}
