/*
 * test-stackid.c - call-stack IDs (runtime/stackid.c) across inlining: a call
 * made in a helper function hashes the same from its caller whether the
 * compiler kept the helper out of line (a frame of its own) or inlined it (no
 * frame), once mcr_stack_id_outside leaves the helper's frame out. The
 * startup's pool pieces are paired across versions by such IDs, and nginx
 * inlines ngx_array_init into some of its callers and not others, differently
 * in each version.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>

#include "check.h"
#include "stackid.h"

static uint64_t ids[4];

/* The call whose ID is taken: ra is where it returns to, in its caller. */
__attribute__((noinline)) static void probe(int slot, const char *function)
{
  uintptr_t ra = (uintptr_t)__builtin_return_address(0);
  ids[slot] = function ? mcr_stack_id_outside(ra, function) : mcr_stack_id_at(ra);
  __asm__ volatile("" ::: "memory");
}

/* The helper kept out of line: its call has a frame of its own. */
__attribute__((noinline)) static void helper(int slot, const char *function)
{
  probe(slot, function);
  __asm__ volatile("" ::: "memory"); /* (no tail call: the helper keeps its frame) */
}

/* The caller: through the helper, or with the helper's call "inlined". */
__attribute__((noinline)) static void caller(int inlined, int slot, const char *function)
{
  if (inlined)
    probe(slot, function);
  else
    helper(slot, function);
  __asm__ volatile("" ::: "memory");
}

int main(void)
{
  caller(0, 0, NULL);
  caller(1, 1, NULL);
  CHECK(ids[0] && ids[1], "the stacks were walked");
  CHECK(ids[0] != ids[1], "with the helper's frame and without it: two IDs (the problem)");

  caller(0, 2, "helper");
  caller(1, 3, "helper");
  CHECK(ids[2] && ids[2] == ids[3],
        "leaving the helper's frame out: one ID, inlined or not");
  CHECK_EQ(ids[3], ids[1], "without a frame of the helper, the ID is the plain one");

  caller(0, 2, "caller");
  CHECK_EQ(ids[2], ids[0], "a function that is not where the call returns keeps its frame");
  return check_failures ? 1 : 0;
}
