/*
 * update_chan.c - messages between the old process and the new version during
 * an update (update.h): length-prefixed frames on a stream socket, and the
 * byte buffers they carry. Buffers live in anonymous mappings, not the
 * program's heap: the heap is what is being moved.
 */
#define _GNU_SOURCE
#include "update.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHAN_MAGIC 0x4d435255u /* "URCM" */
#define CHAN_VERSION 1
#define CHAN_MAX (256u << 20)  /* largest payload accepted */

struct frame {
  uint32_t magic;
  uint16_t version;
  uint16_t type;
  uint32_t len;
  uint32_t reserved;
};

uint64_t mcr_update_now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void mcr_buf_free(struct mcr_buf *b)
{
  if (b->p)
    munmap(b->p, b->cap);
  memset(b, 0, sizeof(*b));
}

static int reserve(struct mcr_buf *b, size_t more)
{
  if (b->bad)
    return -1;
  if (b->len + more <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : 65536;
  while (cap < b->len + more)
    cap *= 2;
  void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    b->bad = 1;
    return -1;
  }
  if (b->p) {
    memcpy(p, b->p, b->len);
    munmap(b->p, b->cap);
  }
  b->p = p;
  b->cap = cap;
  return 0;
}

void mcr_buf_put(struct mcr_buf *b, const void *p, size_t n)
{
  if (reserve(b, n) == 0) {
    memcpy(b->p + b->len, p, n);
    b->len += n;
  }
}

void mcr_buf_u32(struct mcr_buf *b, uint32_t v) { mcr_buf_put(b, &v, sizeof(v)); }
void mcr_buf_u64(struct mcr_buf *b, uint64_t v) { mcr_buf_put(b, &v, sizeof(v)); }

void mcr_buf_str(struct mcr_buf *b, const char *s)
{
  size_t n = s ? strlen(s) : 0;
  mcr_buf_u32(b, (uint32_t)n);
  mcr_buf_put(b, s ? s : "", n);
  mcr_buf_put(b, "", 1);
}

void mcr_buf_printf(struct mcr_buf *b, const char *fmt, ...)
{
  char line[1024];
  va_list ap, again;
  va_start(ap, fmt);
  va_copy(again, ap);
  int n = vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < sizeof(line)) {
    mcr_buf_put(b, line, (size_t)n);
  } else if (n >= 0 && reserve(b, (size_t)n + 1) == 0) {
    /* a long line (a conflict with a long stack): formatted in place */
    vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, again);
    b->len += (size_t)n;
  }
  va_end(again);
}

void mcr_conflict_field_put(struct mcr_buf *b, const char *s)
{
  for (; s && *s; s++) {
    char c = (unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s;
    mcr_buf_put(b, &c, 1);
  }
}

void mcr_conflict_fields(struct mcr_buf *b, const char *const f[MCR_CF_COUNT])
{
  for (int i = 0; i < MCR_CF_COUNT; i++) {
    if (i)
      mcr_buf_put(b, "\t", 1);
    mcr_conflict_field_put(b, f[i]);
  }
}

/* ---- conflicts: the line format is in update.h ---- */

static int kind_word(const char *p, size_t n)
{
  if (n == 0 || n > 15)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '-' ||
          p[i] == '_'))
      return 0;
  return 1;
}

/* The largest L such that the fields in mask, each cut to L bytes, fit budget. */
static size_t fill_limit(const size_t *len, unsigned mask, size_t budget)
{
  size_t lo = 0, hi = budget;
  while (lo < hi) {
    size_t mid = (lo + hi + 1) / 2, sum = 0;
    for (int f = 0; f < MCR_CF_COUNT; f++)
      if (mask & 1u << f)
        sum += len[f] < mid ? len[f] : mid;
    if (sum <= budget)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

void mcr_update_conflict_set(struct mcr_update_conflict *c, const char *const *field,
                             const size_t *len)
{
  const unsigned primary = 1u << MCR_CF_KIND | 1u << MCR_CF_MESSAGE | 1u << MCR_CF_FIX;
  const unsigned all = (1u << MCR_CF_COUNT) - 1;
  size_t total = 0, plen = 0, cap = sizeof(c->text) - MCR_CF_COUNT, pos = 0;
  size_t limit[MCR_CF_COUNT];

  for (int f = 0; f < MCR_CF_COUNT; f++) {
    total += len[f];
    plen += primary & 1u << f ? len[f] : 0;
    limit[f] = len[f];
  }
  if (total > cap) {
    /* too long: the object, types, locations and stack lose their ends first
     * (each cut to the same length, at least 64 bytes); if that is not enough,
     * every field is cut to the same length. Short fields stay whole. */
    size_t l = plen < cap ? fill_limit(len, all & ~primary, cap - plen) : 0;
    unsigned cut = all & ~primary;
    if (l < 64) {
      l = fill_limit(len, all, cap);
      cut = all;
    }
    for (int f = 0; f < MCR_CF_COUNT; f++)
      if (cut & 1u << f && limit[f] > l)
        limit[f] = l;
  }
  for (int f = 0; f < MCR_CF_COUNT; f++) {
    size_t n = limit[f];
    c->off[f] = (uint16_t)pos;
    for (size_t i = 0; i < n; i++) {
      char ch = field[f] ? field[f][i] : 0;
      c->text[pos + i] = (unsigned char)ch < 0x20 || ch == 0x7f ? ' ' : ch;
    }
    if (n < len[f] && n >= 3)
      memcpy(c->text + pos + n - 3, "...", 3);
    pos += n;
    c->text[pos++] = 0;
  }
}

void mcr_update_conflict_parse(struct mcr_update_conflict *c, const char *line, size_t n)
{
  const char *field[MCR_CF_COUNT] = {0};
  size_t len[MCR_CF_COUNT] = {0};
  const char *tab = memchr(line, '\t', n);

  if (!tab || !kind_word(line, (size_t)(tab - line))) {
    field[MCR_CF_KIND] = "other";
    len[MCR_CF_KIND] = 5;
    field[MCR_CF_MESSAGE] = line;
    len[MCR_CF_MESSAGE] = n;
  } else {
    const char *p = line, *end = line + n;
    for (int f = 0; f < MCR_CF_COUNT && p <= end; f++) {
      const char *t = memchr(p, '\t', (size_t)(end - p));
      /* the last field takes the rest, TABs and all (made spaces) */
      if (!t || f == MCR_CF_COUNT - 1)
        t = end;
      field[f] = p;
      len[f] = (size_t)(t - p);
      p = t + 1;
    }
  }
  mcr_update_conflict_set(c, field, len);
}

int mcr_buf_get(struct mcr_buf *b, void *p, size_t n)
{
  if (b->bad || b->len - b->pos < n) {
    b->bad = 1;
    memset(p, 0, n);
    return -1;
  }
  memcpy(p, b->p + b->pos, n);
  b->pos += n;
  return 0;
}

uint32_t mcr_buf_get_u32(struct mcr_buf *b)
{
  uint32_t v;
  mcr_buf_get(b, &v, sizeof(v));
  return v;
}

uint64_t mcr_buf_get_u64(struct mcr_buf *b)
{
  uint64_t v;
  mcr_buf_get(b, &v, sizeof(v));
  return v;
}

const char *mcr_buf_get_str(struct mcr_buf *b)
{
  uint32_t n = mcr_buf_get_u32(b);
  if (b->bad || b->len - b->pos < (size_t)n + 1 || b->p[b->pos + n] != 0) {
    b->bad = 1;
    return "";
  }
  const char *s = (const char *)b->p + b->pos;
  b->pos += (size_t)n + 1;
  return s;
}

static int write_all(int fd, const void *p, size_t n)
{
  const char *c = p;
  while (n) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

int mcr_chan_send(int fd, int type, const struct mcr_buf *payload)
{
  struct frame f = {CHAN_MAGIC, CHAN_VERSION, (uint16_t)type,
                    payload ? (uint32_t)payload->len : 0, 0};
  if (payload && payload->bad) {
    errno = ENOMEM;
    return -1;
  }
  if (write_all(fd, &f, sizeof(f)) < 0)
    return -1;
  if (payload && payload->len && write_all(fd, payload->p, payload->len) < 0)
    return -1;
  return 0;
}

/* Reads n bytes before the deadline; a readable pidfd means the peer died. */
static int read_all(int fd, int pidfd, uint64_t deadline, void *p, size_t n)
{
  char *c = p;
  while (n) {
    uint64_t now = mcr_update_now_ns();
    if (now >= deadline) {
      errno = ETIMEDOUT;
      return -1;
    }
    struct pollfd pf[2] = {{fd, POLLIN, 0}, {pidfd, POLLIN, 0}};
    int r = poll(pf, pidfd >= 0 ? 2 : 1, (int)((deadline - now) / 1000000u) + 1);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (r == 0)
      continue;
    if (pf[0].revents) {
      ssize_t got = recv(fd, c, n, 0);
      if (got < 0) {
        if (errno == EINTR || errno == EAGAIN)
          continue;
        return -1;
      }
      if (got == 0) {
        errno = ECONNRESET;
        return -1;
      }
      c += got;
      n -= (size_t)got;
      continue;
    }
    if (pidfd >= 0 && pf[1].revents) {
      errno = ESRCH;
      return -1;
    }
  }
  return 0;
}

int mcr_chan_recv(int fd, int pidfd, unsigned timeout_ms, int *type, struct mcr_buf *payload)
{
  struct frame f;
  uint64_t deadline = mcr_update_now_ns() + (uint64_t)timeout_ms * 1000000u;

  memset(payload, 0, sizeof(*payload));
  if (read_all(fd, pidfd, deadline, &f, sizeof(f)) < 0)
    return -1;
  if (f.magic != CHAN_MAGIC || f.version != CHAN_VERSION || f.len > CHAN_MAX) {
    errno = EPROTO;
    return -1;
  }
  if (f.len) {
    if (reserve(payload, f.len) < 0) {
      errno = ENOMEM;
      return -1;
    }
    if (read_all(fd, pidfd, deadline, payload->p, f.len) < 0) {
      int e = errno;
      mcr_buf_free(payload);
      errno = e;
      return -1;
    }
    payload->len = f.len;
  }
  *type = f.type;
  return 0;
}
