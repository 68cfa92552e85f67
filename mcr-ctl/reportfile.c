/*
 * reportfile.c - reading and writing the conflict report file (report.h).
 *
 * Reading never trusts the file: every length is checked against what was read
 * before it is used, and the payload is decoded only after its CRC matched.
 */
#define _GNU_SOURCE
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

uint32_t ctl_crc32(const void *p, size_t n)
{
  static uint32_t table[256];
  static int ready;
  const unsigned char *s = p;
  uint32_t c = 0xffffffffu;

  if (!ready) {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t v = i;
      for (int k = 0; k < 8; k++)
        v = v & 1 ? 0xedb88320u ^ (v >> 1) : v >> 1;
      table[i] = v;
    }
    ready = 1;
  }
  for (size_t i = 0; i < n; i++)
    c = table[(c ^ s[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

static void put_le32(unsigned char *p, uint32_t v)
{
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int write_all(int fd, const void *p, size_t n)
{
  const char *s = p;
  while (n) {
    ssize_t w = write(fd, s, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -1;
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

int ctl_report_write_bytes(const char *path, uint32_t schema, const void *payload, size_t len,
                           char *err, size_t errlen)
{
  unsigned char hdr[CTL_REPORT_HEADER_LEN];
  char *tmp = NULL;
  const char *step = "open";
  int fd = -1, e;

  if (len > CTL_REPORT_MAX_PAYLOAD) {
    snprintf(err, errlen, "cannot write the report %s: %zu bytes is over the limit of %u", path,
             len, CTL_REPORT_MAX_PAYLOAD);
    return -1;
  }
  memcpy(hdr, CTL_REPORT_MAGIC, CTL_REPORT_MAGIC_LEN);
  put_le32(hdr + 8, schema);
  put_le32(hdr + 12, (uint32_t)len);
  put_le32(hdr + 16, ctl_crc32(payload, len));
  if (asprintf(&tmp, "%s.tmp.%d", path, (int)getpid()) < 0) {
    snprintf(err, errlen, "cannot write the report %s: out of memory", path);
    return -1;
  }
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    goto fail;
  step = "write";
  if (write_all(fd, hdr, sizeof(hdr)) || write_all(fd, payload, len))
    goto fail;
  step = "fsync";
  if (fsync(fd))
    goto fail;
  step = "close";
  e = close(fd);
  fd = -1;
  if (e)
    goto fail;
  step = "rename";
  if (rename(tmp, path))
    goto fail;
  free(tmp);
  return 0;
fail:
  e = errno;
  if (fd >= 0)
    close(fd);
  if (strcmp(step, "open"))
    unlink(tmp);
  if (!strcmp(step, "rename"))
    snprintf(err, errlen, "cannot write the report %s: rename from %s: %s", path, tmp,
             strerror(e));
  else
    snprintf(err, errlen, "cannot write the report %s: %s %s: %s", path, step, tmp, strerror(e));
  free(tmp);
  return -1;
}

int ctl_report_write(const char *path, const Mcr__Report__Report *r, char *err, size_t errlen)
{
  size_t len = mcr__report__report__get_packed_size(r);
  uint8_t *buf = malloc(len ? len : 1);
  int rc;

  if (!buf) {
    snprintf(err, errlen, "cannot write the report %s: out of memory", path);
    return -1;
  }
  mcr__report__report__pack(r, buf);
  rc = ctl_report_write_bytes(path, CTL_REPORT_SCHEMA, buf, len, err, errlen);
  free(buf);
  return rc;
}

/* Reads the whole file (at most max bytes; *toobig if it has more). */
static unsigned char *slurp(int fd, size_t max, size_t *len, int *toobig)
{
  size_t cap = 65536, n = 0;
  unsigned char *p = malloc(cap);

  *toobig = 0;
  if (!p)
    return NULL;
  for (;;) {
    if (n == cap) {
      if (cap > max) {
        *toobig = 1;
        break;
      }
      unsigned char *q = realloc(p, cap * 2);
      if (!q) {
        free(p);
        errno = ENOMEM;
        return NULL;
      }
      p = q;
      cap *= 2;
    }
    ssize_t r = read(fd, p + n, cap - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      int e = errno;
      free(p);
      errno = e;
      return NULL;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  *len = n;
  return p;
}

int ctl_report_read(const char *path, Mcr__Report__Report **out, char *err, size_t errlen)
{
  unsigned char *buf = NULL;
  size_t len = 0;
  uint32_t schema, plen, crc, have;
  int fd, toobig = 0, rc = -1;
  Mcr__Report__Report *r;

  *out = NULL;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  buf = slurp(fd, CTL_REPORT_HEADER_LEN + (size_t)CTL_REPORT_MAX_PAYLOAD, &len, &toobig);
  if (!buf) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    close(fd);
    return -1;
  }
  close(fd);
  if (len == 0) {
    snprintf(err, errlen, "%s: empty file, not an mcr report", path);
    goto out;
  }
  if (memcmp(buf, CTL_REPORT_MAGIC, len < CTL_REPORT_MAGIC_LEN ? len : CTL_REPORT_MAGIC_LEN)) {
    snprintf(err, errlen, "%s: not an mcr report (it does not start with \"%s\")", path,
             CTL_REPORT_MAGIC);
    goto out;
  }
  if (len < CTL_REPORT_HEADER_LEN) {
    snprintf(err, errlen, "%s: truncated: %zu bytes, shorter than the %d-byte header", path, len,
             CTL_REPORT_HEADER_LEN);
    goto out;
  }
  schema = get_le32(buf + 8);
  plen = get_le32(buf + 12);
  crc = get_le32(buf + 16);
  if (schema > CTL_REPORT_SCHEMA) {
    snprintf(err, errlen, "%s: written by a newer mcr (schema %u; this mcr reads %d)", path,
             schema, CTL_REPORT_SCHEMA);
    goto out;
  }
  if (schema == 0) {
    snprintf(err, errlen, "%s: corrupt: schema version 0 in the header", path);
    goto out;
  }
  if (plen > CTL_REPORT_MAX_PAYLOAD) {
    snprintf(err, errlen, "%s: corrupt: the header announces a payload of %u bytes, over the "
                          "limit of %u", path, plen, CTL_REPORT_MAX_PAYLOAD);
    goto out;
  }
  if (toobig) {
    snprintf(err, errlen, "%s: corrupt: more bytes after the %u-byte payload than a report "
                          "can have", path, plen);
    goto out;
  }
  if ((size_t)plen > len - CTL_REPORT_HEADER_LEN) {
    snprintf(err, errlen, "%s: truncated: the header announces a payload of %u bytes, the "
                          "file has %zu after the header", path, plen,
             len - CTL_REPORT_HEADER_LEN);
    goto out;
  }
  if ((size_t)plen < len - CTL_REPORT_HEADER_LEN) {
    snprintf(err, errlen, "%s: corrupt: %zu bytes after the %u-byte payload", path,
             len - CTL_REPORT_HEADER_LEN - plen, plen);
    goto out;
  }
  have = ctl_crc32(buf + CTL_REPORT_HEADER_LEN, plen);
  if (have != crc) {
    snprintf(err, errlen, "%s: corrupt: the payload's CRC-32 is %08x, the header says %08x "
                          "(truncated or changed)", path, have, crc);
    goto out;
  }
  r = mcr__report__report__unpack(NULL, plen, buf + CTL_REPORT_HEADER_LEN);
  if (!r) {
    snprintf(err, errlen, "%s: corrupt: the payload (%u bytes) does not decode as a report",
             path, plen);
    goto out;
  }
  if (r->has_schema_version && r->schema_version != schema) {
    snprintf(err, errlen, "%s: corrupt: the header says schema %u, the report %u", path, schema,
             r->schema_version);
    mcr__report__report__free_unpacked(r, NULL);
    goto out;
  }
  *out = r;
  rc = 0;
out:
  free(buf);
  return rc;
}
