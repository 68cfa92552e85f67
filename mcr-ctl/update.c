/*
 * update.c - mcr-ctl update PID NEW [--timeout SEC] [--report FILE] [--rename OLD=NEW]...
 *            [--rename-file FILE] [--json]
 *
 * Checks NEW before anything is touched (an executable ELF for x86-64, built by
 * mcr-clang with quiescent points, from the same program as the running
 * process), then asks the process to update itself to it, and prints each phase
 * with its duration and the pause its clients saw. Exit 0 committed, 1 rolled
 * back (the old version still serves; a conflict report is written: report.h),
 * 2 bad usage or bad input (nothing was done). Renames (--rename, --rename-file:
 * runtime/rename.h) are checked here against both executables with the rule the
 * new version applies again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "ctl.h"
#include "elf.h"
#include "elfsym.h"
#include "rename.h"
#include "report.h"
#include "typetab.h"

#ifndef MCR_VERSION
#define MCR_VERSION "unknown"
#endif

#define DEFAULT_TIMEOUT_MS 10000
#define MAX_MS 600000

void cmd_update_help(void)
{
  printf("Usage: mcr-ctl update PID NEW [--timeout SEC] [--report FILE] [--rename OLD=NEW]...\n"
         "                      [--keep-new GLOBAL]... [--move-field TYPE.OLD=NEW]...\n"
         "                      [--reinit] [--epoll-data-pointers] [--rename-file FILE]\n"
         "                      [--json]\n"
         "\n"
         "Updates the running program PID (built by mcr-clang --mcr-quiescence) to the\n"
         "executable NEW without a restart: the old process starts NEW with its own\n"
         "arguments, environment and descriptors; NEW replays the old startup (its\n"
         "listening sockets, log files... are the old ones), its threads park at their\n"
         "quiescent points; the old process quiesces; NEW takes over the heap, the\n"
         "globals and every connection, and serves. The old process then exits and NEW\n"
         "has a new PID (printed; a pid file the server wrote and systemd's MAINPID follow).\n"
         "If anything fails before the commit, NEW is killed and the old process resumes\n"
         "as if nothing happened.\n"
         "\n"
         "Options:\n"
         "  --timeout SEC   bound on each phase that waits (default 10, at most 600)\n"
         "  --report FILE   where to write the conflict report of a rolled-back update\n"
         "                  (default /tmp/mcr-update-PID-TIME.report; read it with\n"
         "                  mcr-ctl report FILE)\n"
         "  --rename OLD=NEW the running version's function OLD is NEW in the new version\n"
         "                  (renamed, or replaced by a function of the same meaning): the\n"
         "                  pointers to OLD that live objects hold are translated to NEW.\n"
         "                  Repeatable. Each must be one function of its executable\n"
         "  --keep-new GLOBAL  GLOBAL is new in the new version and its startup set it:\n"
         "                  keep that value (a cache, a table of the new code). Without\n"
         "                  it such a global refuses the update: its value may belong to\n"
         "                  state the old process does not have (a new module's index).\n"
         "                  Repeatable\n"
         "  --move-field TYPE.OLD=NEW  struct TYPE's field OLD is at the member path NEW\n"
         "                  in the new version (moved into a nested struct: 'n.fd', or\n"
         "                  renamed): its value goes there, and so do pointers into it.\n"
         "                  Fields are otherwise matched by name, and a field only the\n"
         "                  old version has is dropped. Preview with mcr-ctl check\n"
         "                  --move-field. Repeatable\n"
         "  --reinit        state the running version built in its startup and never\n"
         "                  changed since (its configuration: nginx's modules, their\n"
         "                  indexes and settings) is taken from NEW's startup, which\n"
         "                  rebuilt it with the new code, instead of from the running\n"
         "                  process; pointers to it from the state carried over follow.\n"
         "                  For updates that change how the startup builds that state\n"
         "                  (a module added). Not for programs whose startup draws\n"
         "                  values at random or from the clock that later state\n"
         "                  depends on (hash seeds): see docs/update.md\n"
         "  --epoll-data-pointers  the data of the program's epoll registrations are\n"
         "                  pointers (flag bits in the low bits allowed: nginx's\n"
         "                  connection | instance): when what they point to moves (a\n"
         "                  type that grew), they follow it (EPOLL_CTL_MOD after the\n"
         "                  commit). Without it such data pin the object: mcr never\n"
         "                  takes a word it does not know to be a pointer for one\n"
         "  --rename-file FILE  renames, one OLD=NEW per line, 'keep-new GLOBAL',\n"
         "                  'move-field TYPE.OLD=NEW', 'reinit' and\n"
         "                  'epoll-data-pointers' lines ('#' starts a comment)\n"
         "  --json          machine-readable output (one JSON object; the conflicts with\n"
         "                  all their fields, as mcr-ctl report --json)\n"
         "  -h, --help      this help\n"
         "\n"
         "Environment: MCR_UPDATE_FAULT=PHASE:crash|hang|delay makes NEW crash, hang or\n"
         "wait a second at PHASE (startup, ready, precopy, precopied, heap, globals,\n"
         "stacks, fds, commit): for testing rollback.\n"
         "\n"
         "Exit status: 0 committed; 1 rolled back (the old version still serves, the\n"
         "report says why); 2 bad usage or bad input: no such process, NEW missing, not\n"
         "executable, not an x86-64 ELF, not built by mcr-clang or from another program,\n"
         "a rename whose OLD is not one function of the running executable or whose NEW\n"
         "is not one function of NEW, a field move whose TYPE.OLD is not a field of the\n"
         "running version or whose NEW path is not one of NEW's (nothing was done).\n");
}

/* Source modules of the type tables in an executable (for "same program"). */
static size_t modules(const struct mcr_elf *e, const char **out, size_t max)
{
  struct mcr_elf_section s;
  size_t pos = 0, n = 0;
  const void *blob;
  size_t len;
  if (mcr_elf_section(e, "mcr_types", &s) != 0 || !s.data)
    return 0;
  while (n < max && mcr_typetab_next(s.data, s.size, &pos, &blob, &len, NULL) == 1) {
    struct mcr_typetab tt;
    if (mcr_typetab_open(&tt, blob, len, NULL) == 0)
      out[n++] = mcr_typetab_str(&tt, tt.hdr.module);
  }
  return n;
}

static const char *base_name(const char *p)
{
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

/* The checks of "Bad input": refused before anything is touched. */
/* An update takes the root of an mcr process tree: the processes a server forks
 * (workers) are updated with it, never alone (a worker replaced on its own would
 * leave its parent with a child it did not create). 0, or -1 after one line. */
static int check_root(pid_t pid)
{
  pid_t parent = ctl_parent_of(pid), root, up;

  if (!ctl_runs_mcr(pid)) {
    ctl_err("update: process %d does not run mcr (no control socket @mcr/%d): build the server "
            "with CC=mcr-clang, or it runs with MCR_CONTROL=off or in another network namespace",
            (int)pid, (int)pid);
    return -1;
  }
  if (parent <= 1 || !ctl_runs_mcr(parent))
    return 0;
  for (root = parent; (up = ctl_parent_of(root)) > 1 && ctl_runs_mcr(up);)
    root = up;
  ctl_err("update: process %d is not the root of its mcr process tree: its parent %d runs mcr "
          "too, and the tree's root is %d: update the root (mcr-ctl update %d NEW); a process "
          "of a tree is never updated alone",
          (int)pid, (int)parent, (int)root, (int)root);
  return -1;
}

static int check_new(pid_t pid, const char *path, char *abs)
{
  struct stat st;
  struct mcr_elf e = {0}, o = {0};
  struct mcr_elf_section sec;
  char msg[512], exe[64];
  static const char *nm[4096], *om[4096];
  int rc = -1;

  if (stat(path, &st) != 0) {
    ctl_err("update: %s: %s", path, strerror(errno));
    return -1;
  }
  if (!S_ISREG(st.st_mode)) {
    ctl_err("update: %s is not a regular file", path);
    return -1;
  }
  if (access(path, X_OK) != 0) {
    ctl_err("update: %s is not executable (chmod +x it)", path);
    return -1;
  }
  if (!realpath(path, abs)) {
    ctl_err("update: %s: %s", path, strerror(errno));
    return -1;
  }
  switch (mcr_elf_open(&e, abs, msg, sizeof(msg))) {
  case MCR_ELF_OK:
    break;
  case MCR_ELF_NOT_ELF:
    ctl_err("update: %s is not an ELF executable", path);
    return -1;
  case MCR_ELF_WRONG_ARCH:
    ctl_err("update: %s is not an x86-64 executable (this machine runs x86-64)", path);
    return -1;
  default:
    ctl_err("update: %s", msg);
    return -1;
  }
  if (mcr_elf_section(&e, "mcr_types", &sec) != 0) {
    ctl_err("update: %s was not built by mcr-clang (it has no type tables): build it with "
            "CC=mcr-clang", path);
    goto out;
  }
  if (mcr_elf_section(&e, "mcr_qps", &sec) != 0) {
    ctl_err("update: %s has no quiescent points: build it with mcr-clang "
            "--mcr-quiescence=FILE (the config mcr-profile wrote)", path);
    goto out;
  }
  snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)pid);
  if (mcr_elf_open(&o, exe, msg, sizeof(msg)) != MCR_ELF_OK) {
    ctl_err("update: cannot read the executable of process %d: %s", (int)pid, msg);
    goto out;
  }
  {
    size_t nn = modules(&e, nm, 4096), no = modules(&o, om, 4096), common = 0;
    for (size_t i = 0; i < no; i++)
      for (size_t j = 0; j < nn; j++)
        if (!strcmp(base_name(om[i]), base_name(nm[j]))) {
          common++;
          break;
        }
    if (no && common * 2 < no) {
      ctl_err("update: %s is built from another program than process %d (%zu of its %zu "
              "source files are in the new executable)", path, (int)pid, common, no);
      goto out;
    }
  }
  rc = 0;
out:
  mcr_elf_close(&e);
  if (o.data)
    mcr_elf_close(&o);
  return rc;
}

/* The reply's conflicts; from a runtime that sends only text reasons, each
 * reason as a conflict of kind "other". conv holds those (n_reasons of them). */
static Mcr__Report__Conflict *const *conflicts_of(const Mcr__Control__UpdateReply *u,
                                                  Mcr__Report__Conflict *conv,
                                                  Mcr__Report__Conflict **convp, size_t *n)
{
  if (u->n_conflicts || !u->n_reasons) {
    *n = u->n_conflicts;
    return u->conflicts;
  }
  for (size_t i = 0; i < u->n_reasons; i++) {
    mcr__report__conflict__init(&conv[i]);
    conv[i].kind = "other";
    conv[i].message = u->reasons[i];
    convp[i] = &conv[i];
  }
  *n = u->n_reasons;
  return convp;
}

static void write_report(const char *path, pid_t pid, const char *program, const char *newbin,
                         const Mcr__Control__UpdateReply *u)
{
  Mcr__Report__Report r = MCR__REPORT__REPORT__INIT;
  Mcr__Report__Phase *ph = calloc(u->n_phases + 1, sizeof(*ph));
  Mcr__Report__Phase **php = calloc(u->n_phases + 1, sizeof(*php));
  Mcr__Report__Conflict *conv = calloc(u->n_reasons + 1, sizeof(*conv));
  Mcr__Report__Conflict **convp = calloc(u->n_reasons + 1, sizeof(*convp));
  char err[1024];

  if (!ph || !php || !conv || !convp) {
    ctl_err("update: cannot write the report %s: out of memory", path);
    goto out;
  }
  r.has_schema_version = 1;
  r.schema_version = CTL_REPORT_SCHEMA;
  r.has_created = 1;
  r.created = (uint64_t)time(NULL);
  r.has_old_pid = 1;
  r.old_pid = (uint32_t)pid;
  r.has_new_pid = u->has_new_pid;
  r.new_pid = u->new_pid;
  r.program = (char *)program;
  r.new_binary = (char *)newbin;
  r.has_committed = 1;
  r.committed = u->committed;
  r.has_pause_us = 1;
  r.pause_us = u->pause_us;
  r.has_total_us = 1;
  r.total_us = u->total_us;
  for (size_t i = 0; i < u->n_phases; i++) {
    mcr__report__phase__init(&ph[i]);
    ph[i].name = u->phases[i]->name;
    ph[i].has_us = 1;
    ph[i].us = u->phases[i]->us;
    ph[i].detail = u->phases[i]->detail;
    php[i] = &ph[i];
  }
  r.n_phases = u->n_phases;
  r.phases = php;
  r.conflicts = (Mcr__Report__Conflict **)conflicts_of(u, conv, convp, &r.n_conflicts);
  r.n_notes = u->n_notes;
  r.notes = u->notes;
  r.mcr_version = MCR_VERSION;
  if (ctl_report_write(path, &r, err, sizeof(err)) != 0)
    ctl_err("update: %s", err);
out:
  free(ph);
  free(php);
  free(conv);
  free(convp);
}

static void print_human(pid_t pid, const Mcr__Control__UpdateReply *u, const char *report)
{
  if (u->n_phases)
    printf("%-14s %10s  %s\n", "PHASE", "TIME", "");
  for (size_t i = 0; i < u->n_phases; i++)
    printf("%-14s %8.3fms  %s\n", u->phases[i]->name ? u->phases[i]->name : "?",
           u->phases[i]->us / 1000.0, u->phases[i]->detail ? u->phases[i]->detail : "");
  for (size_t i = 0; i < u->n_notes; i++)
    printf("note: %s\n", u->notes[i]);
  if (u->committed) {
    printf("\nprocess %d updated: new pid %u; clients saw a pause of %.3f ms (total %.3f s)\n",
           (int)pid, u->new_pid, u->pause_us / 1000.0, u->total_us / 1e6);
  } else {
    printf("%supdate of process %d rolled back: the old version still serves",
           u->n_phases || u->n_notes ? "\n" : "", (int)pid);
    if (u->pause_us)
      printf(" (its clients saw a pause of %.3f ms)", u->pause_us / 1000.0);
    printf(".\n");
    if (u->n_conflicts) {
      for (size_t i = 0; i < u->n_conflicts; i++) {
        const Mcr__Report__Conflict *c = u->conflicts[i];
        printf("  [%s] %s", c->kind && *c->kind ? c->kind : "other",
               c->message ? c->message : "");
        if (c->stack && *c->stack)
          printf(" (at %s)", c->stack);
        printf("\n");
      }
    } else {
      for (size_t i = 0; i < u->n_reasons; i++)
        printf("  %s\n", u->reasons[i]);
    }
    printf("report: %s (mcr-ctl report %s: the details and suggested fixes)\n", report,
           report);
  }
}

static void print_json(pid_t pid, const Mcr__Control__UpdateReply *u, const char *report)
{
  FILE *f = stdout;
  Mcr__Report__Conflict *conv = calloc(u->n_reasons + 1, sizeof(*conv));
  Mcr__Report__Conflict **convp = calloc(u->n_reasons + 1, sizeof(*convp));
  Mcr__Report__Conflict *const *c = NULL;
  size_t nc = 0;

  if (conv && convp)
    c = conflicts_of(u, conv, convp, &nc);
  fprintf(f, "{\"pid\": %d, \"committed\": %s, \"new_pid\": %u, \"pause_us\": %llu, "
             "\"total_us\": %llu, \"phases\": [",
          (int)pid, u->committed ? "true" : "false", u->committed ? u->new_pid : 0,
          (unsigned long long)u->pause_us, (unsigned long long)u->total_us);
  for (size_t i = 0; i < u->n_phases; i++) {
    fprintf(f, "%s{\"name\": ", i ? ", " : "");
    ctl_json_str(f, u->phases[i]->name);
    fprintf(f, ", \"us\": %llu, \"detail\": ", (unsigned long long)u->phases[i]->us);
    ctl_json_str(f, u->phases[i]->detail);
    fputc('}', f);
  }
  fputs("], \"reasons\": [", f);
  for (size_t i = 0; i < u->n_reasons; i++) {
    fputs(i ? ", " : "", f);
    ctl_json_str(f, u->reasons[i]);
  }
  fputs("], \"conflicts\": ", f);
  ctl_report_json_conflicts(f, c, nc);
  fputs(", \"notes\": [", f);
  for (size_t i = 0; i < u->n_notes; i++) {
    fputs(i ? ", " : "", f);
    ctl_json_str(f, u->notes[i]);
  }
  fputs("], \"report\": ", f);
  ctl_json_str(f, u->committed ? NULL : report);
  fputs("}\n", f);
  free(conv);
  free(convp);
}

/* --rename-file FILE: each line "OLD=NEW" (white space around it and '#'
 * comments ignored) appended to spec. 0, or -1 after saying which line. */
static int read_rename_file(const char *path, char *spec, size_t cap)
{
  FILE *f = fopen(path, "re");
  char *line = NULL;
  size_t len = 0;
  unsigned lineno = 0;
  int rc = 0;

  if (!f) {
    ctl_err("update: --rename-file %s: %s", path, strerror(errno));
    return -1;
  }
  while (rc == 0 && getline(&line, &len, f) > 0) {
    char *p = line, *end, *hash = strchr(line, '#');
    lineno++;
    if (hash)
      *hash = '\0';
    while (*p == ' ' || *p == '\t')
      p++;
    end = p + strlen(p);
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
      *--end = '\0';
    if (!*p)
      continue;
    char keep[512];
    if (!strcmp(p, "reinit")) {
      snprintf(keep, sizeof(keep), "!reinit");
      p = keep;
    } else if (!strcmp(p, "epoll-data-pointers")) {
      snprintf(keep, sizeof(keep), "!epoll-pointers");
      p = keep;
    } else if (!strncmp(p, "move-field", 10) && (p[10] == ' ' || p[10] == '\t')) {
      const char *m = p + 11;
      while (*m == ' ' || *m == '\t')
        m++;
      if (!*m || strpbrk(m, " \t") || !strchr(m, '=') || strlen(m) + 2 > sizeof(keep)) {
        ctl_err("update: %s:%u: expected 'move-field TYPE.OLD=NEW', got '%s'", path, lineno, p);
        rc = -1;
        continue;
      }
      snprintf(keep, sizeof(keep), "@%s", m);
      p = keep;
    } else if (!strncmp(p, "keep-new", 8) && (p[8] == ' ' || p[8] == '\t')) {
      const char *g = p + 9;
      while (*g == ' ' || *g == '\t')
        g++;
      if (!*g || strpbrk(g, " \t=") || strlen(g) + 2 > sizeof(keep)) {
        ctl_err("update: %s:%u: expected 'keep-new GLOBAL', got '%s'", path, lineno, p);
        rc = -1;
        continue;
      }
      snprintf(keep, sizeof(keep), "+%s", g);
      p = keep;
    } else if (strpbrk(p, " \t") || !strchr(p, '=')) {
      ctl_err("update: %s:%u: expected OLD=NEW, 'keep-new GLOBAL', 'move-field TYPE.OLD=NEW', "
              "'reinit' or 'epoll-data-pointers', got '%s'", path, lineno, p);
      rc = -1;
      continue;
    }
    if (mcr_renames_append(spec, cap, p) != 0) {
      ctl_err("update: %s:%u: the rename map is too long (at most %zu bytes)", path, lineno,
              cap - 1);
      rc = -1;
    }
  }
  if (rc == 0 && ferror(f)) {
    ctl_err("update: --rename-file %s: %s", path, strerror(errno));
    rc = -1;
  }
  free(line);
  fclose(f);
  return rc;
}

/* Each rename of r against the running executable and NEW: 0, or -1 after
 * saying which does not hold. */
static int check_renames(pid_t pid, const char *newpath, const struct mcr_renames *r)
{
  struct mcr_elfsym o, n;
  char exe[64], why[512];
  int rc = 0;

  if (!r->n)
    return 0;
  snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)pid);
  if (mcr_elfsym_open(&o, exe) != 0) {
    ctl_err("update: --rename: cannot read the symbol table of process %d's executable (%s)",
            (int)pid, exe);
    return -1;
  }
  if (mcr_elfsym_open(&n, newpath) != 0) {
    mcr_elfsym_close(&o);
    ctl_err("update: --rename: cannot read the symbol table of %s", newpath);
    return -1;
  }
  for (size_t i = 0; i < r->n; i++)
    if (mcr_rename_check(&o, &n, r->old_name[i], r->new_name[i], why, sizeof(why)) != 0) {
      ctl_err("update: --rename %s=%s: %s", r->old_name[i], r->new_name[i], why);
      rc = -1;
    }
  mcr_elfsym_close(&o);
  mcr_elfsym_close(&n);
  return rc;
}

static int parse_sec(const char *v, int *ms)
{
  char *end;
  double d;
  errno = 0;
  d = v ? strtod(v, &end) : -1;
  if (!v || !*v || *end || errno || d <= 0 || d * 1000 > MAX_MS) {
    ctl_err("update: bad --timeout '%s' (expected seconds from 0.001 to %d)", v ? v : "",
            MAX_MS / 1000);
    return -1;
  }
  *ms = (int)(d * 1000 + 0.5);
  return *ms > 0 ? 0 : -1;
}

int cmd_update(int argc, char **argv)
{
  Mcr__Control__Request req = MCR__CONTROL__REQUEST__INIT;
  Mcr__Control__UpdateRequest ureq = MCR__CONTROL__UPDATE_REQUEST__INIT;
  Mcr__Control__Reply *rep;
  const char *args[2] = {NULL, NULL}, *report = NULL;
  char abs[PATH_MAX], defreport[256], program[PATH_MAX] = "", exe[64], err[512];
  static char spec[MCR_RENAME_SPEC_MAX];
  static struct mcr_renames renames;
  static char pairs[MCR_RENAME_SPEC_MAX]; /* "OLD=NEW\0" each: no longer than spec */
  char *pairp[3 * MCR_RENAME_MAX + 2]; /* the pairs, the keeps ("+NAME"), the moves
                                       * ("@T.F=P"), "!reinit", "!epoll-pointers" */
  int json = 0, timeout_ms = DEFAULT_TIMEOUT_MS, nargs = 0, rc;
  pid_t pid;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      cmd_update_help();
      return CTL_EXIT_OK;
    } else if (!strcmp(a, "--json")) {
      json = 1;
    } else if (!strcmp(a, "--timeout") || !strncmp(a, "--timeout=", 10)) {
      const char *v = a[9] == '=' ? a + 10 : (i + 1 < argc ? argv[++i] : NULL);
      if (parse_sec(v, &timeout_ms))
        return CTL_EXIT_USAGE;
    } else if (!strcmp(a, "--report") || !strncmp(a, "--report=", 9)) {
      report = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
      if (!report || !*report) {
        ctl_err("update: --report needs a file name");
        return CTL_EXIT_USAGE;
      }
    } else if (!strcmp(a, "--rename") || !strncmp(a, "--rename=", 9)) {
      const char *v = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
      if (!v || !strchr(v, '=') || strpbrk(v, " \t\n")) {
        ctl_err("update: --rename '%s': expected OLD=NEW (the running version's function, "
                "'=', the new version's)", v ? v : "");
        return CTL_EXIT_USAGE;
      }
      if (mcr_renames_append(spec, sizeof(spec), v) != 0) {
        ctl_err("update: the rename map is too long (at most %zu bytes)", sizeof(spec) - 1);
        return CTL_EXIT_USAGE;
      }
    } else if (!strcmp(a, "--reinit")) {
      if (!strstr(spec, "!reinit") && mcr_renames_append(spec, sizeof(spec), "!reinit") != 0) {
        ctl_err("update: the rename map is too long (at most %zu bytes)", sizeof(spec) - 1);
        return CTL_EXIT_USAGE;
      }
    } else if (!strcmp(a, "--epoll-data-pointers")) {
      if (!strstr(spec, "!epoll-pointers") &&
          mcr_renames_append(spec, sizeof(spec), "!epoll-pointers") != 0) {
        ctl_err("update: the rename map is too long (at most %zu bytes)", sizeof(spec) - 1);
        return CTL_EXIT_USAGE;
      }
    } else if (!strcmp(a, "--keep-new") || !strncmp(a, "--keep-new=", 11)) {
      const char *v = a[10] == '=' ? a + 11 : (i + 1 < argc ? argv[++i] : NULL);
      char keep[512];
      if (!v || !*v || strpbrk(v, " \t\n=") || strlen(v) + 2 > sizeof(keep)) {
        ctl_err("update: --keep-new '%s': expected a global's name", v ? v : "");
        return CTL_EXIT_USAGE;
      }
      snprintf(keep, sizeof(keep), "+%s", v);
      if (mcr_renames_append(spec, sizeof(spec), keep) != 0) {
        ctl_err("update: the rename map is too long (at most %zu bytes)", sizeof(spec) - 1);
        return CTL_EXIT_USAGE;
      }
    } else if (!strcmp(a, "--move-field") || !strncmp(a, "--move-field=", 13)) {
      const char *v = a[12] == '=' ? a + 13 : (i + 1 < argc ? argv[++i] : NULL);
      char move[512];
      if (!v || !*v || strpbrk(v, " \t\n") || strlen(v) + 2 > sizeof(move)) {
        ctl_err("update: --move-field '%s': expected TYPE.OLD=NEW (a struct, its old field, "
                "the field's member path in the new version)", v ? v : "");
        return CTL_EXIT_USAGE;
      }
      snprintf(move, sizeof(move), "@%s", v);
      if (mcr_renames_append(spec, sizeof(spec), move) != 0) {
        ctl_err("update: the rename map is too long (at most %zu bytes)", sizeof(spec) - 1);
        return CTL_EXIT_USAGE;
      }
    } else if (!strcmp(a, "--rename-file") || !strncmp(a, "--rename-file=", 14)) {
      const char *v = a[13] == '=' ? a + 14 : (i + 1 < argc ? argv[++i] : NULL);
      if (!v || !*v) {
        ctl_err("update: --rename-file needs a file name");
        return CTL_EXIT_USAGE;
      }
      if (read_rename_file(v, spec, sizeof(spec)) != 0)
        return CTL_EXIT_USAGE;
    } else if (a[0] == '-' && a[1] && !(a[1] >= '0' && a[1] <= '9')) {
      ctl_err("update: unknown option '%s' (see mcr-ctl update --help)", a);
      return CTL_EXIT_USAGE;
    } else if (nargs < 2) {
      args[nargs++] = a;
    } else {
      ctl_err("update: too many arguments (usage: mcr-ctl update PID NEW)");
      return CTL_EXIT_USAGE;
    }
  }
  if (nargs < 2) {
    ctl_err("update: missing %s (usage: mcr-ctl update PID NEW [--timeout SEC] [--json])",
            nargs ? "NEW" : "PID and NEW");
    return CTL_EXIT_USAGE;
  }
  if (ctl_parse_pid(args[0], &pid))
    return CTL_EXIT_USAGE;
  if (kill(pid, 0) != 0 && errno == ESRCH) {
    ctl_err("update: no process %d", (int)pid);
    return CTL_EXIT_USAGE;
  }
  if (check_root(pid) != 0)
    return CTL_EXIT_USAGE;
  if (mcr_renames_parse(&renames, spec, err, sizeof(err)) != 0) {
    ctl_err("update: %s", err);
    return CTL_EXIT_USAGE;
  }
  if (check_new(pid, args[1], abs) != 0 || check_renames(pid, abs, &renames) != 0)
    return CTL_EXIT_USAGE;
  snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)pid);
  if (ctl_check_moves("update", exe, abs, &renames) != 0)
    return CTL_EXIT_USAGE;
  size_t off = 0;
  for (size_t i = 0; i < renames.n; i++) {
    int n = snprintf(pairs + off, sizeof(pairs) - off, "%s=%s", renames.old_name[i],
                     renames.new_name[i]);
    pairp[i] = pairs + off;
    off += (size_t)n + 1;
  }
  for (size_t i = 0; i < renames.nkeep; i++) {
    int n = snprintf(pairs + off, sizeof(pairs) - off, "+%s", renames.keep_name[i]);
    pairp[renames.n + i] = pairs + off;
    off += (size_t)n + 1;
  }
  for (size_t i = 0; i < renames.nmove; i++) {
    int n = snprintf(pairs + off, sizeof(pairs) - off, "@%s.%s=%s", renames.move_type[i],
                     renames.move_old[i], renames.move_new[i]);
    pairp[renames.n + renames.nkeep + i] = pairs + off;
    off += (size_t)n + 1;
  }
  size_t ntokens = renames.n + renames.nkeep + renames.nmove;
  if (renames.reinit) {
    pairp[ntokens++] = strcpy(pairs + off, "!reinit");
    off += sizeof("!reinit");
  }
  if (renames.epoll_pointers) {
    pairp[ntokens++] = strcpy(pairs + off, "!epoll-pointers");
    off += sizeof("!epoll-pointers");
  }
  if (!report) {
    snprintf(defreport, sizeof(defreport), "/tmp/mcr-update-%d-%ld.report", (int)pid,
             (long)time(NULL));
    report = defreport;
  }
  /* the old executable, for the report (after a commit the process is gone) */
  {
    ssize_t n = readlink(exe, program, sizeof(program) - 1);
    program[n > 0 ? n : 0] = 0;
  }

  ureq.path = abs;
  ureq.has_timeout_ms = 1;
  ureq.timeout_ms = (uint32_t)timeout_ms;
  ureq.fault = getenv("MCR_UPDATE_FAULT");
  ureq.n_renames = ntokens;
  ureq.renames = pairp;
  req.kind_case = MCR__CONTROL__REQUEST__KIND_UPDATE;
  req.update = &ureq;
  /* phases that wait: startup, quiesce, transfer, commit */
  rep = ctl_call_raw(pid, &req, 4 * timeout_ms + CTL_DEFAULT_TIMEOUT_MS);
  if (!rep)
    return CTL_EXIT_USAGE;
  if (rep->kind_case == MCR__CONTROL__REPLY__KIND_ERROR) {
    const Mcr__Control__Error *e = rep->error;
    int refused = e && e->has_code && e->code == MCR__CONTROL__ERROR__CODE__REFUSED;
    ctl_err("update: process %d refused the update: %s", (int)pid,
            e && e->message ? e->message : "(no reason given)");
    mcr__control__reply__free_unpacked(rep, NULL);
    return refused ? CTL_EXIT_FAILED : CTL_EXIT_USAGE;
  }
  if (rep->kind_case != MCR__CONTROL__REPLY__KIND_UPDATE || !rep->update) {
    ctl_err("update: process %d answered with something other than an update reply", (int)pid);
    mcr__control__reply__free_unpacked(rep, NULL);
    return CTL_EXIT_USAGE;
  }
  if (!rep->update->committed)
    write_report(report, pid, program, abs, rep->update);
  if (json)
    print_json(pid, rep->update, report);
  else
    print_human(pid, rep->update, report);
  rc = rep->update->committed ? CTL_EXIT_OK : CTL_EXIT_FAILED;
  mcr__control__reply__free_unpacked(rep, NULL);
  return rc;
}
