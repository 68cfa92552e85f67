/*
 * procstat.c - a process's /proc/PID/stat (procstat.h).
 */
#include "procstat.h"

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
