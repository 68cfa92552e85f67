/*
 * main.c - mcr-ctl: the command table, global options and dispatch.
 *
 * Only commands that exist are listed; an unknown command prints the usage on
 * stderr and exits 2.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

#ifndef MCR_VERSION
#define MCR_VERSION "unknown"
#endif

struct command {
  const char *name;
  int (*run)(int argc, char **argv);
  void (*help)(void);
  const char *args;
  const char *summary;
};

static const struct command commands[] = {
    {"types", cmd_types, cmd_types_help, "BINARY [--json] [--sites-only|--globals-only]",
     "list allocation sites and globals with their inferred types"},
    {"status", cmd_status, cmd_status_help, "PID [--json] [--timeout SEC]",
     "show a running mcr program's threads (id, name, state, class, quiescent point)"},
    {"quiesce", cmd_quiesce, cmd_quiesce_help, "PID [--hold SEC] [--timeout SEC] [--json]",
     "park every thread at a quiescent point, hold, resume; print the timings"},
    {"update", cmd_update, cmd_update_help, "PID NEW [--timeout SEC] [--report FILE] [--json]",
     "live-update a running program to a new executable; state and connections carry over"},
    {"check", cmd_check, cmd_check_help, "OLD NEW [--json]",
     "preview an update from OLD to NEW: which types change, what is transformed or refused"},
    {"report", cmd_report, cmd_report_help, "FILE [--json]",
     "show the conflict report of a rolled-back update (why, where, what to change)"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

void ctl_err(const char *fmt, ...)
{
  va_list ap;

  fputs("mcr-ctl: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

static void usage(FILE *f)
{
  fprintf(f, "Usage: mcr-ctl COMMAND [ARGS...]\n"
             "       mcr-ctl --help | --version\n"
             "\n"
             "Commands:\n");
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(f, "  %-6s %s\n         %s\n", commands[i].name, commands[i].args,
            commands[i].summary);
  fprintf(f, "\n"
             "Run 'mcr-ctl COMMAND --help' for the options of a command.\n"
             "Exit status: 0 success, 1 refused or rolled back, 2 bad usage or bad input.\n");
}

static const struct command *find_command(const char *name)
{
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (!strcmp(commands[i].name, name))
      return &commands[i];
  return NULL;
}

int main(int argc, char **argv)
{
  const struct command *cmd;

  if (argc < 2) {
    usage(stderr);
    return CTL_EXIT_USAGE;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(stdout);
    return CTL_EXIT_OK;
  }
  if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
    printf("mcr-ctl %s\n", MCR_VERSION);
    return CTL_EXIT_OK;
  }
  if (!strcmp(argv[1], "help")) {
    if (argc == 2) {
      usage(stdout);
      return CTL_EXIT_OK;
    }
    cmd = find_command(argv[2]);
    if (!cmd) {
      ctl_err("no command '%s' (run 'mcr-ctl --help' for the list)", argv[2]);
      return CTL_EXIT_USAGE;
    }
    cmd->help();
    return CTL_EXIT_OK;
  }

  cmd = find_command(argv[1]);
  if (!cmd) {
    if (argv[1][0] == '-')
      fprintf(stderr, "mcr-ctl: unknown option '%s'\n\n", argv[1]);
    else
      fprintf(stderr, "mcr-ctl: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return CTL_EXIT_USAGE;
  }
  return cmd->run(argc - 1, argv + 1);
}
