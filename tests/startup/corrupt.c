/*
 * corrupt.c - a serialized startup log that is truncated, flipped or forged is
 * rejected with a message (runtime/startup.c: mcr_startup_parse), never read
 * out of bounds (run under the test's own bounds: every buffer is copied to the
 * end of a page followed by an inaccessible one), and a bad log given to
 * mcr_startup_replay_begin leaves the process recording.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "startup.h"

static int failures;
#define CHECK(cond, ...)                                                                       \
  do {                                                                                        \
    if (cond) {                                                                               \
      printf("ok: " __VA_ARGS__);                                                             \
    } else {                                                                                  \
      printf("FAIL: " __VA_ARGS__);                                                           \
      failures++;                                                                             \
    }                                                                                         \
    printf("\n");                                                                             \
  } while (0)

static unsigned char *guard; /* 2 MiB, then an inaccessible page */
#define GUARD_BYTES (2u << 20)

/* The copy of b, ending right at the inaccessible page. */
static unsigned char *at_end(const void *b, size_t len)
{
  unsigned char *p = guard + GUARD_BYTES - len;
  memcpy(p, b, len);
  return p;
}

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

/* Recomputes the checksum (format in startup.c), so the checks behind it run. */
static void reseal(unsigned char *b, size_t len)
{
  uint64_t sum = fnv(0xcbf29ce484222325ull, b, 48);
  sum = fnv(sum, b + 56, len - 56);
  memcpy(b + 48, &sum, 8);
}

static int parse(const unsigned char *b, size_t len, char *err, size_t errlen)
{
  struct mcr_startup_log log;
  int rc;
  err[0] = '\0';
  rc = mcr_startup_parse(at_end(b, len), len, &log, err, errlen);
  if (rc == 0)
    mcr_startup_log_free(&log);
  return rc;
}

/* A forged buffer is rejected with a message containing want. */
static void expect(const char *what, const unsigned char *b, size_t len, const char *want)
{
  char err[512];
  int rc = parse(b, len, err, sizeof(err));
  CHECK(rc == -1 && strstr(err, want), "%s: rejected: %s", what, err);
}

int main(void)
{
  unsigned char *buf, *m;
  void *ser;
  size_t len, nbad = 0;
  char err[512];
  int fd, s;
  uint32_t v;
  struct mcr_startup_stats st;

  guard = mmap(NULL, GUARD_BYTES + 4096, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  mprotect(guard + GUARD_BYTES, 4096, PROT_NONE);
  /* a startup with entries and allocation records */
  s = socket(AF_INET, SOCK_STREAM, 0);
  fd = open("/dev/null", O_WRONLY);
  free(malloc(10));
  m = malloc(100);
  if (mcr_startup_serialize(&ser, &len) != 0) {
    printf("FAIL: serialize\n");
    return 1;
  }
  buf = malloc(len);
  memcpy(buf, ser, len);
  printf("log: %zu bytes\n", len);
  CHECK(parse(buf, len, err, sizeof(err)) == 0, "the log as written parses");

  /* a log of runtimes up to c1e5beb (64-byte header, 32-byte allocation
   * records: no snapshot, no flags, block or hash) still parses, its records
   * with hash 0 (never "unchanged": docs/update.md, "Reinitialized startup state") */
  {
    uint32_t hsize, nal, arec;
    memcpy(&hsize, buf + 12, 4);
    memcpy(&nal, buf + 28, 4);
    memcpy(&arec, buf + 36, 4);
    size_t body = len - hsize - (size_t)nal * arec, olen = 64 + body + (size_t)nal * 32;
    unsigned char *o = calloc(1, olen);
    memcpy(o, buf, 64);
    memcpy(o + 64, buf + hsize, body);
    for (uint32_t i = 0; i < nal; i++)
      memcpy(o + 64 + body + (size_t)i * 32, buf + hsize + body + (size_t)i * arec, 28);
    uint32_t h64 = 64, r32 = 32;
    uint64_t tl = olen;
    memcpy(o + 12, &h64, 4);
    memcpy(o + 16, &tl, 8);
    memcpy(o + 36, &r32, 4);
    reseal(o, olen);
    struct mcr_startup_log old;
    int rc = mcr_startup_parse(at_end(o, olen), olen, &old, err, sizeof(err));
    int hashes = 0;
    for (size_t i = 0; rc == 0 && i < old.nallocs; i++)
      hashes += old.allocs[i].hash != 0 || old.allocs[i].flags != 0;
    CHECK(rc == 0 && old.nallocs == nal && nal > 0 && !hashes && !old.snap.copy,
          "a log of the earlier format (64-byte header, 32-byte records) parses: %u records, "
          "none with a hash or flags, no snapshot%s%s", nal, rc ? ": " : "", rc ? err : "");
    if (rc == 0)
      mcr_startup_log_free(&old);
    free(o);
  }

  for (size_t n = 0; n < len; n++)
    if (parse(buf, n, err, sizeof(err)) != -1 || !err[0])
      nbad++;
  CHECK(nbad == 0, "every truncation (0..%zu bytes) rejected with a message", len - 1);
  parse(buf, len / 2, err, sizeof(err));
  printf("  e.g. %s\n", err);

  nbad = 0;
  for (size_t i = 0; i < len; i++) {
    buf[i] ^= 0x40;
    if (parse(buf, len, err, sizeof(err)) != -1 || !err[0])
      nbad++;
    buf[i] ^= 0x40;
  }
  CHECK(nbad == 0, "every single flipped byte rejected with a message");
  buf[len - 3] ^= 1;
  expect("a flipped byte", buf, len, "checksum");
  buf[len - 3] ^= 1;

  /* forged, with a valid checksum: the structural checks */
  m = malloc(len + 64);
  memcpy(m, buf, len);
  memcpy(m, "NOTALOG", 8);
  expect("magic", m, len, "bad magic");
  memcpy(m, buf, len);
  v = 7;
  memcpy(m + 8, &v, 4);
  expect("version", m, len, "version 7");
  memcpy(m, buf, len);
  v = 0x10000000;
  memcpy(m + 24, &v, 4);
  reseal(m, len);
  expect("entry count", m, len, "cannot fit");
  memcpy(m, buf, len);
  uint32_t hsize; /* where the entries start */
  memcpy(&hsize, buf + 12, 4);
  v = 99;
  memcpy(m + hsize + 8, &v, 4); /* the first entry's kind */
  reseal(m, len);
  expect("kind", m, len, "unknown kind 99");
  memcpy(m, buf, len);
  {
    uint16_t dl = 4000;
    memcpy(m + hsize + 96, &dl, 2); /* the first entry's detail length */
  }
  reseal(m, len);
  expect("text length", m, len, "text too long");
  memcpy(m, buf, len);
  memset(m + len, 0, 8);
  {
    uint64_t total = len + 8;
    memcpy(m + 16, &total, 8);
  }
  reseal(m, len + 8);
  expect("trailing bytes", m, len + 8, "after the last record");

  /* random damage behind a valid checksum: rejected or accepted, never a crash */
  srand(1);
  nbad = 0;
  for (int it = 0; it < 20000; it++) {
    memcpy(m, buf, len);
    for (int k = 0; k < 1 + rand() % 4; k++)
      m[(size_t)rand() % len] = (unsigned char)rand();
    reseal(m, len);
    if (parse(m, len, err, sizeof(err)) == -1 && !err[0])
      nbad++;
  }
  CHECK(nbad == 0, "20000 random damages behind a valid checksum: no crash, every refusal says why");

  /* a bad log does not start a replay: the process goes on recording */
  buf[70] ^= 0xff;
  CHECK(mcr_startup_replay_begin(buf, len, NULL, 0, err, sizeof(err)) == -1 && err[0],
        "replay of a corrupt log refused: %s", err);
  mcr_startup_stats(&st);
  CHECK(st.mode == 1, "still recording (mode %d)", st.mode);
  close(fd);
  close(s);
  mcr_startup_end();
  return failures ? 1 : 0;
}
