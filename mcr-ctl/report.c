/*
 * report.c - mcr-ctl report FILE [--json]: the conflict report of a rolled-back
 * update (report.h, proto/report.proto) for people, or as JSON.
 *
 * A file that is not a readable report of a schema this mcr knows is one line on
 * stderr naming the file and what is wrong, exit 2.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "report.h"

void cmd_report_help(void)
{
  printf("Usage: mcr-ctl report FILE [--json]\n"
         "\n"
         "Shows the report mcr-ctl update wrote when an update rolled back (by default\n"
         "/tmp/mcr-update-PID-TIME.report): the program, both processes, when, the\n"
         "outcome and the pause; then each conflict (why the update was refused): its\n"
         "kind, the message, the object it is about, its type and source location in\n"
         "the old and the new version, the call stack and a suggested fix; then the\n"
         "notes and the phases with their durations.\n"
         "\n"
         "Options:\n"
         "  --json          the same as one JSON object\n"
         "  -h, --help      this help\n"
         "\n"
         "Exit status: 0 shown; 2 bad usage, or FILE is missing, empty, not a report,\n"
         "truncated, corrupt, or written by a newer mcr (one line says which).\n");
}

static const char *str(const char *s) { return s ? s : ""; }

static void json_field(FILE *f, const char *key, const char *s, int comma)
{
  fprintf(f, "%s\"%s\": ", comma ? ", " : "", key);
  ctl_json_str(f, str(s));
}

void ctl_report_json_conflicts(FILE *f, Mcr__Report__Conflict *const *c, size_t n)
{
  fputc('[', f);
  for (size_t i = 0; i < n; i++) {
    fputs(i ? ", {" : "{", f);
    json_field(f, "kind", c[i]->kind, 0);
    json_field(f, "message", c[i]->message, 1);
    json_field(f, "object", c[i]->object, 1);
    json_field(f, "old_type", c[i]->old_type, 1);
    json_field(f, "new_type", c[i]->new_type, 1);
    json_field(f, "old_location", c[i]->old_location, 1);
    json_field(f, "new_location", c[i]->new_location, 1);
    json_field(f, "stack", c[i]->stack, 1);
    json_field(f, "fix", c[i]->fix, 1);
    fputc('}', f);
  }
  fputc(']', f);
}

static void print_json(const Mcr__Report__Report *r)
{
  FILE *f = stdout;

  fprintf(f, "{\"schema_version\": %u, \"created\": %llu, \"old_pid\": %u, \"new_pid\": %u",
          r->schema_version, (unsigned long long)r->created, r->old_pid, r->new_pid);
  json_field(f, "program", r->program, 1);
  json_field(f, "new_binary", r->new_binary, 1);
  fprintf(f, ", \"committed\": %s, \"pause_us\": %llu, \"total_us\": %llu",
          r->committed ? "true" : "false", (unsigned long long)r->pause_us,
          (unsigned long long)r->total_us);
  json_field(f, "mcr_version", r->mcr_version, 1);
  fputs(", \"conflicts\": ", f);
  ctl_report_json_conflicts(f, r->conflicts, r->n_conflicts);
  fputs(", \"notes\": [", f);
  for (size_t i = 0; i < r->n_notes; i++) {
    fputs(i ? ", " : "", f);
    ctl_json_str(f, str(r->notes[i]));
  }
  fputs("], \"phases\": [", f);
  for (size_t i = 0; i < r->n_phases; i++) {
    fputs(i ? ", {" : "{", f);
    json_field(f, "name", r->phases[i]->name, 0);
    fprintf(f, ", \"us\": %llu", (unsigned long long)r->phases[i]->us);
    json_field(f, "detail", r->phases[i]->detail, 1);
    fputc('}', f);
  }
  fputs("]}\n", f);
}

/* "  label:  value" when value is not empty. */
static void line(const char *label, const char *value)
{
  if (value && *value)
    printf("     %-14s%s\n", label, value);
}

static void print_human(const Mcr__Report__Report *r)
{
  char when[64] = "?";
  time_t t = (time_t)r->created;
  struct tm tm;

  if (r->has_created && localtime_r(&t, &tm))
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %z", &tm);
  printf("mcr update report (schema %u, written by mcr %s)\n\n", r->schema_version,
         r->mcr_version && *r->mcr_version ? r->mcr_version : "?");
  printf("program:       %s\n", r->program && *r->program ? r->program : "?");
  printf("old process:   %u\n", r->old_pid);
  printf("new binary:    %s\n", r->new_binary && *r->new_binary ? r->new_binary : "?");
  if (r->new_pid)
    printf("new process:   %u%s\n", r->new_pid, r->committed ? "" : " (killed)");
  else
    printf("new process:   none (not started)\n");
  printf("when:          %s\n", when);
  if (r->committed)
    printf("outcome:       committed: the new version serves\n");
  else
    printf("outcome:       rolled back: the old version serves on, untouched\n");
  if (r->pause_us)
    printf("pause:         %.3f ms (the whole update: %.3f s)\n", r->pause_us / 1000.0,
           r->total_us / 1e6);
  else
    printf("pause:         none: the update ended before the old process stopped serving "
           "(the whole update: %.3f s)\n", r->total_us / 1e6);

  printf("\nconflicts (%zu):\n", r->n_conflicts);
  if (!r->n_conflicts)
    printf("  none\n");
  for (size_t i = 0; i < r->n_conflicts; i++) {
    const Mcr__Report__Conflict *c = r->conflicts[i];
    printf("%s%3zu. [%s] %s\n", i ? "\n" : "", i + 1, c->kind && *c->kind ? c->kind : "other",
           str(c->message));
    line("object:", c->object);
    line("old type:", c->old_type);
    line("new type:", c->new_type);
    line("old location:", c->old_location);
    line("new location:", c->new_location);
    line("stack:", c->stack);
    line("fix:", c->fix);
  }
  if (r->n_notes) {
    printf("\nnotes (%zu):\n", r->n_notes);
    for (size_t i = 0; i < r->n_notes; i++)
      printf("  - %s\n", str(r->notes[i]));
  }
  if (r->n_phases) {
    printf("\nphases:\n");
    for (size_t i = 0; i < r->n_phases; i++)
      printf("  %-14s %10.3f ms  %s\n", str(r->phases[i]->name), r->phases[i]->us / 1000.0,
             str(r->phases[i]->detail));
  }
}

int cmd_report(int argc, char **argv)
{
  const char *file = NULL;
  int json = 0;
  char err[1024];
  Mcr__Report__Report *r;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      cmd_report_help();
      return CTL_EXIT_OK;
    } else if (!strcmp(a, "--json")) {
      json = 1;
    } else if (!strcmp(a, "--")) {
      if (i + 1 < argc && !file)
        file = argv[++i];
    } else if (a[0] == '-' && a[1]) {
      ctl_err("report: unknown option '%s' (see mcr-ctl report --help)", a);
      return CTL_EXIT_USAGE;
    } else if (!file) {
      file = a;
    } else {
      ctl_err("report: too many arguments (usage: mcr-ctl report FILE [--json])");
      return CTL_EXIT_USAGE;
    }
  }
  if (!file) {
    ctl_err("report: missing FILE (usage: mcr-ctl report FILE [--json])");
    return CTL_EXIT_USAGE;
  }
  if (ctl_report_read(file, &r, err, sizeof(err)) != 0) {
    ctl_err("report: %s", err);
    return CTL_EXIT_USAGE;
  }
  if (json)
    print_json(r);
  else
    print_human(r);
  mcr__report__report__free_unpacked(r, NULL);
  return CTL_EXIT_OK;
}
