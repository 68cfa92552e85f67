/*
 * procstat.c - a process's /proc/PID/stat, this process's maps (procstat.h).
 */
#include "procstat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int mcr_proc_stat(pid_t pid, char *state, unsigned long long v[MCR_STAT_FIELDS])
{
  char path[64], buf[4096];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return -1;
  buf[n] = 0;
  /* the command name (field 2) may hold spaces and parentheses: after the last ')' */
  const char *p = strrchr(buf, ')');
  if (!p || p[1] != ' ' || !p[2] || p[3] != ' ')
    return -1;
  if (state)
    *state = p[2];
  memset(v, 0, MCR_STAT_FIELDS * sizeof(v[0]));
  const char *s = p + 4;
  for (int field = 4; field < MCR_STAT_FIELDS && *s; field++) {
    char *end;
    v[field] = strtoull(s, &end, 10);
    if (end == s)
      return -1;
    s = end + (*end == ' ');
  }
  return 0;
}

pid_t mcr_proc_parent(pid_t pid, int live_only)
{
  unsigned long long v[MCR_STAT_FIELDS];
  char state;
  if (mcr_proc_stat(pid, &state, v) != 0 || (live_only && state == 'Z'))
    return -1;
  return (pid_t)v[MCR_STAT_PPID];
}

/* One line ("lo-hi perms ...") into *m: 0, or -1 when it is not one. */
static int parse_map(const char *line, struct mcr_map *m)
{
  char *end;
  unsigned long long lo = strtoull(line, &end, 16), hi;
  if (end == line || *end != '-')
    return -1;
  line = end + 1;
  hi = strtoull(line, &end, 16);
  if (end == line || *end != ' ' || strlen(end + 1) < 4)
    return -1;
  m->lo = (uintptr_t)lo;
  m->hi = (uintptr_t)hi;
  memcpy(m->perms, end + 1, 4);
  m->perms[4] = 0;
  return 0;
}

size_t mcr_proc_maps(struct mcr_map *m, size_t max)
{
  char chunk[4096], line[512];
  size_t n = 0, ll = 0;
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  while (n < max) {
    ssize_t got = read(fd, chunk, sizeof(chunk));
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      break;
    for (ssize_t i = 0; i < got && n < max; i++) {
      if (chunk[i] != '\n') {
        if (ll + 1 < sizeof(line)) /* a long path is cut: only the start counts */
          line[ll++] = chunk[i];
        continue;
      }
      line[ll] = 0;
      ll = 0;
      n += parse_map(line, &m[n]) == 0;
    }
  }
  close(fd);
  return n;
}

const struct mcr_map *mcr_proc_map_at(const struct mcr_map *m, size_t n, uintptr_t addr)
{
  for (size_t i = 0; i < n; i++)
    if (addr >= m[i].lo && addr < m[i].hi)
      return &m[i];
  return NULL;
}
