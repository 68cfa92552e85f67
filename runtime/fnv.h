/*
 * fnv.h - FNV-1a 64, the runtime's hash for names, arguments and buffers
 * (stack IDs, startup log entries, allocation-site keys).
 */
#ifndef MCR_FNV_H
#define MCR_FNV_H

#include <stddef.h>
#include <stdint.h>

#define MCR_FNV_OFFSET 0xcbf29ce484222325ull
#define MCR_FNV_PRIME 0x100000001b3ull

/* Continues hash h over n bytes at p (start with MCR_FNV_OFFSET). */
static inline uint64_t mcr_fnv(uint64_t h, const void *p, size_t n)
{
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= MCR_FNV_PRIME;
  }
  return h;
}

#endif /* MCR_FNV_H */
