/*
 * test-elfsym.c - the runtime's ELF symbolizer (runtime/elfsym.c), which runs
 * inside servers when mcr-ctl status asks for thread classes: names for static
 * and global functions of the executable (start and middle), libc functions,
 * unmapped addresses; files that are not ELF; and mutated copies of a real
 * binary (truncated, header and section-table bytes flipped), which must be
 * refused or read without a crash.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "elfsym.h"

__attribute__((noinline)) static int static_probe(int x) { return x * 3 + 1; }
__attribute__((noinline)) int global_probe(int x) { return x * 5 + 2; }

static const char *name_of(struct mcr_symbolizer *c, uintptr_t a, char *buf, size_t len) {
  mcr_symbolize(c, a, buf, len);
  return buf;
}

static unsigned long long rng = 88172645463325252ULL;
static unsigned long long next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

int main(void) {
  struct mcr_symbolizer c;
  memset(&c, 0, sizeof(c));
  char buf[256];

  CHECK(strcmp(name_of(&c, (uintptr_t)static_probe, buf, sizeof buf), "static_probe") == 0,
        "a static function (only in .symtab) by its first byte");
  CHECK(strcmp(name_of(&c, (uintptr_t)static_probe + 3, buf, sizeof buf), "static_probe") == 0,
        "a static function by an address inside it");
  CHECK(strcmp(name_of(&c, (uintptr_t)global_probe, buf, sizeof buf), "global_probe") == 0,
        "a global function");
  CHECK(strcmp(name_of(&c, (uintptr_t)main, buf, sizeof buf), "main") == 0, "main");
  name_of(&c, (uintptr_t)getpid, buf, sizeof buf);
  printf("  getpid symbolizes as '%s'\n", buf);
  CHECK(strstr(buf, "getpid") || strstr(buf, "libc.so.6+0x"),
        "a libc function: its name or libc.so.6+offset");
  CHECK(strcmp(name_of(&c, 16, buf, sizeof buf), "?") == 0, "an unmapped address is '?'");
  name_of(&c, (uintptr_t)static_probe, buf, 4);
  CHECK(strlen(buf) == 3, "a short buffer is truncated, NUL-terminated");
  mcr_symbolizer_close(&c);

  struct mcr_elfsym s;
  CHECK_EQ(mcr_elfsym_open(&s, "/nonexistent/file"), -1, "a missing file is refused");
  CHECK_EQ(mcr_elfsym_open(&s, "/etc/hostname"), -1, "a text file is refused");
  CHECK_EQ(mcr_elfsym_open(&s, "/"), -1, "a directory is refused");

  /* A copy of this binary, mutated again and again. */
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  CHECK(n > 0, "readlink /proc/self/exe");
  self[n > 0 ? n : 0] = 0;
  int in = open(self, O_RDONLY);
  struct stat st;
  CHECK(in >= 0 && fstat(in, &st) == 0, "read this binary");
  size_t size = (size_t)st.st_size;
  unsigned char *orig = malloc(size);
  CHECK(orig && pread(in, orig, size, 0) == (ssize_t)size, "read this binary's bytes");
  close(in);
  char tmp[] = "/tmp/mcr-elfsym-XXXXXX";
  int fd = mkstemp(tmp);
  CHECK(fd >= 0, "temporary file");

  /* The section header table, where a mutation hurts most. */
  uint64_t shoff;
  uint16_t shnum;
  memcpy(&shoff, orig + 0x28, 8);
  memcpy(&shnum, orig + 0x3c, 2);
  size_t sh_end = shoff + (size_t)shnum * 64 <= size ? shoff + (size_t)shnum * 64 : size;

  int opened = 0, refused = 0;
  for (int i = 0; i < 400; i++) {
    unsigned char *m = malloc(size);
    memcpy(m, orig, size);
    size_t len = size;
    if (i % 4 == 0) {
      len = next() % size; /* truncated */
    } else {
      for (int k = 0; k < 1 + (int)(next() % 8); k++) {
        size_t at = (next() & 1) ? next() % 64 : shoff + next() % (sh_end - shoff + 1);
        if (at < size)
          m[at] ^= (unsigned char)(1u << (next() % 8));
      }
      if (i % 4 == 3) { /* a wild offset or count in the section table */
        size_t at = shoff + 64 * (next() % (shnum ? shnum : 1)) + 24 + 8 * (next() % 4);
        uint64_t v = next();
        if (at + 8 <= size)
          memcpy(m + at, &v, 8);
      }
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, m, len, 0) != (ssize_t)len) {
      check_failures++;
      free(m);
      break;
    }
    free(m);
    if (mcr_elfsym_open(&s, tmp) == 0) {
      opened++;
      for (int k = 0; k < 50; k++)
        (void)mcr_elfsym_lookup(&s, next() % (size * 2));
      (void)mcr_elfsym_lookup(&s, 0);
      (void)mcr_elfsym_lookup(&s, UINT64_MAX);
      mcr_elfsym_close(&s);
    } else {
      refused++;
    }
  }
  printf("  mutated copies: %d opened and read, %d refused\n", opened, refused);
  CHECK(opened + refused == 400, "400 mutated binaries: no crash");
  CHECK(opened > 0 && refused > 0, "some mutations are harmless, some refused");
  close(fd);
  unlink(tmp);
  free(orig);
  return check_done();
}
