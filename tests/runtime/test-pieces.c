/*
 * test-pieces.c - the table of pool pieces recorded after the startup
 * (runtime/pieces.c): pieces in address order per block, a piece handed out
 * over recorded ones ending them, a freed block ending its own, blocks that
 * collide in the table removed without losing the others, the table's growth,
 * and two threads recording and freeing while a third lists. The type look-up
 * it makes for mcr_pieces_track is stubbed: every site is "not typed" here (the
 * update tests cover typed sites).
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "pieces.h"
#include "typetab.h"
#include "types.h"

int mcr_site_record(uint32_t id, struct mcr_typetab *tt, struct mcr_site_rec *rec)
{
  (void)id, (void)tt, (void)rec;
  return -1;
}

int mcr_typetab_type(const struct mcr_typetab *tt, uint32_t i, struct mcr_type_rec *out)
{
  (void)tt, (void)i, (void)out;
  return -1;
}

#define MAXP 100000
static struct mcr_piece seen[MAXP];
static size_t nseen;

static int collect(const struct mcr_piece *p, void *arg)
{
  (void)arg;
  if (nseen < MAXP)
    seen[nseen++] = *p;
  return 0;
}

/* The recorded pieces of block [b, b+len), in the order foreach gives them. */
static size_t pieces_of(uintptr_t b, size_t len, struct mcr_piece *out, size_t max)
{
  size_t n = 0;
  nseen = 0;
  mcr_pieces_foreach(collect, NULL);
  for (size_t i = 0; i < nseen; i++)
    if (seen[i].addr >= b && seen[i].addr < b + len && n < max)
      out[n++] = seen[i];
  return n;
}

/* A thread's own blocks: each gets 8 pieces, then is freed, 20 000 times. */
static void *churn(void *arg)
{
  uintptr_t base = (uintptr_t)arg;
  for (int round = 0; round < 20000; round++) {
    uintptr_t b = base + (uintptr_t)(round % 64) * 65536;
    for (int k = 0; k < 8; k++)
      mcr_pieces_record(b, b + 80 + 64 * (uintptr_t)k, 64, 14);
    mcr_pieces_block_freed(b);
  }
  /* and leaves 64 blocks of 8 pieces each */
  for (int i = 0; i < 64; i++) {
    uintptr_t b = base + (uintptr_t)i * 65536;
    for (int k = 0; k < 8; k++)
      mcr_pieces_record(b, b + 80 + 64 * (uintptr_t)k, 64, 14);
  }
  return NULL;
}

static int count_all(const struct mcr_piece *p, void *arg)
{
  (void)p;
  ++*(size_t *)arg;
  return 0;
}

int main(void)
{
  struct mcr_piece got[64];
  const uintptr_t b1 = 0x100000000000u, b2 = 0x100000010000u;

  /* a bump pool: in order */
  mcr_pieces_record(b1, b1 + 80, 48, 7);
  mcr_pieces_record(b1, b1 + 128, 16, 8);
  mcr_pieces_record(b1, b1 + 144, 200, 9);
  mcr_pieces_record(b2, b2 + 80, 24, 7);
  CHECK_EQ(mcr_pieces_nblocks, 2, "two blocks hold pieces");
  size_t n = pieces_of(b1, 0x10000, got, 64);
  CHECK_EQ(n, 3, "block 1 holds its 3 pieces");
  CHECK(n == 3 && got[0].addr == b1 + 80 && got[1].addr == b1 + 128 && got[2].addr == b1 + 144,
        "in address order");
  CHECK(n == 3 && got[2].size == 200 && got[2].tag == 9, "with their sizes and tags");

  /* the pool reset: a piece at its start ends the ones it overlaps, not the others */
  mcr_pieces_record(b1, b1 + 80, 56, 10);
  n = pieces_of(b1, 0x10000, got, 64);
  CHECK_EQ(n, 2, "a piece over the first two ends both (48 bytes at 80, 16 at 128)");
  CHECK(n == 2 && got[0].addr == b1 + 80 && got[0].tag == 10 && got[1].addr == b1 + 144,
        "the new one first, then the one it did not reach");

  /* out of order, between two: inserted in place */
  mcr_pieces_record(b1, b1 + 136, 8, 11);
  n = pieces_of(b1, 0x10000, got, 64);
  CHECK(n == 3 && got[1].addr == b1 + 136 && got[2].addr == b1 + 144,
        "a piece below the last one goes in address order");

  /* many pieces in one block: the vector grows */
  for (int i = 0; i < 1000; i++)
    mcr_pieces_record(b2, b2 + 80 + 32 * (uintptr_t)(i + 1), 32, 12);
  n = pieces_of(b2, 0x10000, got, 64);
  nseen = 0;
  mcr_pieces_foreach(collect, NULL);
  size_t in_b2 = 0;
  for (size_t i = 0; i < nseen; i++)
    in_b2 += seen[i].addr >= b2 && seen[i].addr < b2 + 0x10000;
  CHECK_EQ(in_b2, 1001, "1001 pieces in block 2");

  /* a block moved by realloc takes its pieces along; the ones past the copied
   * bytes end */
  const uintptr_t b3 = 0x100000020000u, b4 = 0x100000030000u;
  mcr_pieces_record(b3, b3 + 80, 16, 15);
  mcr_pieces_record(b3, b3 + 96, 32, 16);
  mcr_pieces_record(b3, b3 + 128, 64, 17);
  mcr_pieces_block_moved(b3, b4, 160);
  CHECK_EQ(pieces_of(b3, 0x10000, got, 64), 0, "moved: none left at the old block");
  n = pieces_of(b4, 0x10000, got, 64);
  CHECK(n == 2 && got[0].addr == b4 + 80 && got[1].addr == b4 + 96 && got[1].tag == 16,
        "the two within the copied 160 bytes at their new addresses");
  mcr_pieces_block_freed(b4);
  CHECK_EQ(pieces_of(b4, 0x10000, got, 64), 0, "and freed there");

  /* a freed block ends its pieces, and only its own */
  mcr_pieces_block_freed(b1);
  CHECK_EQ(pieces_of(b1, 0x10000, got, 64), 0, "block 1 freed: its pieces are gone");
  CHECK_EQ(mcr_pieces_nblocks, 1, "one block left");
  mcr_pieces_block_freed(b1 + 8); /* not a block: nothing happens */
  mcr_pieces_block_freed(0);
  CHECK_EQ(mcr_pieces_nblocks, 1, "freeing what holds no pieces changes nothing");

  /* many blocks: the table grows; removing every other one keeps the rest
   * findable (collisions, backward shift) */
  const int NB = 5000;
  for (int i = 0; i < NB; i++) {
    uintptr_t b = 0x200000000000u + (uintptr_t)i * 4096;
    mcr_pieces_record(b, b + 80, 16, 13);
  }
  CHECK_EQ(mcr_pieces_nblocks, (size_t)NB + 1, "5001 blocks");
  for (int i = 0; i < NB; i += 2)
    mcr_pieces_block_freed(0x200000000000u + (uintptr_t)i * 4096);
  CHECK_EQ(mcr_pieces_nblocks, (size_t)NB / 2 + 1, "half of them freed");
  nseen = 0;
  mcr_pieces_foreach(collect, NULL);
  size_t odd = 0, even = 0;
  for (size_t i = 0; i < nseen; i++) {
    if (seen[i].addr < 0x200000000000u)
      continue;
    size_t k = (seen[i].addr - 0x200000000000u) / 4096;
    odd += k % 2 == 1;
    even += k % 2 == 0;
  }
  CHECK(odd == (size_t)NB / 2 && even == 0, "the odd blocks' pieces are all there, no even one");
  /* each remaining block is still found: freeing it removes it */
  for (int i = 1; i < NB; i += 2)
    mcr_pieces_block_freed(0x200000000000u + (uintptr_t)i * 4096);
  CHECK_EQ(mcr_pieces_nblocks, 1, "every block found and freed");

  /* threads: two record and free blocks of their own while a third lists */
  pthread_t t[2];
  pthread_create(&t[0], NULL, churn, (void *)(uintptr_t)0x300000000000u);
  pthread_create(&t[1], NULL, churn, (void *)(uintptr_t)0x400000000000u);
  for (int i = 0; i < 200; i++) {
    size_t c = 0;
    mcr_pieces_foreach(count_all, &c);
  }
  pthread_join(t[0], NULL);
  pthread_join(t[1], NULL);
  size_t all = 0;
  mcr_pieces_foreach(count_all, &all);
  CHECK_EQ(all, 1001 + 2 * 64 * 8,
           "after two threads' churn: block 2's pieces and 64 blocks of 8 each");
  CHECK_EQ(mcr_pieces_nblocks, 1 + 2 * 64, "and 129 blocks");
  return check_failures ? 1 : 0;
}
