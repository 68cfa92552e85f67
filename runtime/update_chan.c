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
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  mcr_buf_put(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
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
