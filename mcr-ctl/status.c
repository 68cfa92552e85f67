/*
 * status.c - mcr-ctl status PID [--json] [--timeout SEC]
 *
 * Asks a running program built by mcr-clang, over its control socket, for its
 * threads: tid, name, scheduler state, class (creation call stack) and start
 * routine.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "control.h"
#include "ctl.h"

void cmd_status_help(void)
{
  printf("Usage: mcr-ctl status PID [--json] [--timeout SEC]\n"
         "\n"
         "Shows a running program built by mcr-clang, as its runtime sees it: the\n"
         "program, the runtime version, uptime, and every thread with its id, name,\n"
         "scheduler state (R running, S sleeping, D disk wait, T stopped, Z zombie...),\n"
         "class (the call stack that created it, as function names, outermost first;\n"
         "\"main\" for the main thread) and start routine. Threads the runtime did not\n"
         "see being created are listed with class \"?\".\n"
         "\n"
         "The request goes over the process's control socket @mcr/PID (docs/control.md);\n"
         "only the process's user or root may use it.\n"
         "\n"
         "Options:\n"
         "  --json          machine-readable output (one JSON object)\n"
         "  --timeout SEC   how long to wait for the reply (default 5)\n"
         "  -h, --help      this help\n"
         "\n"
         "Exit status: 0 success; 2 bad usage, no such process, not an mcr program,\n"
         "another user's process, or no reply in time.\n");
}


static void print_json(const Mcr__Control__StatusReply *st)
{
  FILE *f = stdout;

  fprintf(f, "{\"pid\": %d, \"program\": ", st->pid);
  ctl_json_str(f, st->program);
  fputs(", \"runtime_version\": ", f);
  ctl_json_str(f, st->runtime_version);
  fprintf(f, ", \"uptime_ms\": %llu, \"untracked\": %u, \"threads\": [",
          (unsigned long long)st->uptime_ms, st->untracked);
  for (size_t i = 0; i < st->n_threads; i++) {
    const Mcr__Control__ThreadInfo *t = st->threads[i];
    fprintf(f, "%s\n  {\"tid\": %d, \"name\": ", i ? "," : "", t->tid);
    ctl_json_str(f, t->name);
    fputs(", \"state\": ", f);
    ctl_json_str(f, t->state);
    fprintf(f, ", \"registered\": %s, \"class\": ", t->registered ? "true" : "false");
    ctl_json_str(f, t->registered ? t->thread_class : NULL);
    fputs(", \"start_routine\": ", f);
    ctl_json_str(f, t->registered ? t->start_routine : NULL);
    fprintf(f, ", \"start_address\": \"0x%llx\", \"created_us\": %llu, \"creation_stack\": [",
            (unsigned long long)t->start_address, (unsigned long long)t->created_us);
    for (size_t j = 0; j < t->n_creation_stack; j++) {
      if (j)
        fputs(", ", f);
      ctl_json_str(f, t->creation_stack[j]);
    }
    fputs("], \"quiesce_state\": ", f);
    ctl_json_str(f, t->registered ? t->quiesce_state : NULL);
    fputs(", \"point\": ", f);
    ctl_json_str(f, t->point ? t->point->stack : NULL);
    fputs("}", f);
  }
  fprintf(f, "\n], \"quiescing\": %s, \"points\": [", st->quiescing ? "true" : "false");
  for (size_t i = 0; i < st->n_points; i++) {
    const Mcr__Control__QuiescentPoint *p = st->points[i];
    fprintf(f, "%s\n  {\"id\": %u, \"class\": ", i ? "," : "", p->id);
    ctl_json_str(f, p->thread_class);
    fputs(", \"stack\": ", f);
    ctl_json_str(f, p->stack);
    fputs(", \"blocking_function\": ", f);
    ctl_json_str(f, p->blocking_function);
    fputs(", \"caller\": ", f);
    ctl_json_str(f, p->caller);
    fputs(", \"callee\": ", f);
    ctl_json_str(f, p->callee);
    fputs(", \"file\": ", f);
    ctl_json_str(f, p->file);
    fprintf(f, ", \"line\": %u}", p->line);
  }
  fputs("\n]}\n", f);
}

static void print_human(const Mcr__Control__StatusReply *st)
{
  unsigned long long up = st->uptime_ms / 1000;

  printf("pid:      %d\n", st->pid);
  printf("program:  %s\n", st->program ? st->program : "?");
  printf("runtime:  mcr %s, up %llud %02llu:%02llu:%02llu\n",
         st->runtime_version ? st->runtime_version : "?", up / 86400, up / 3600 % 24,
         up / 60 % 60, up % 60);
  printf("threads:  %zu%s\n\n", st->n_threads,
         st->untracked ? " (some created while the registry was full: class ?)" : "");
  printf("%-8s %-16s %-5s %-8s %-24s %s\n", "TID", "NAME", "STATE", "QUIESCE", "START",
         "CLASS");
  for (size_t i = 0; i < st->n_threads; i++) {
    const Mcr__Control__ThreadInfo *t = st->threads[i];
    printf("%-8d %-16s %-5s %-8s %-24s %s\n", t->tid, t->name ? t->name : "?",
           t->state ? t->state : "?",
           t->registered && t->quiesce_state ? t->quiesce_state : "?",
           t->registered && t->start_routine ? t->start_routine : "?",
           t->registered && t->thread_class ? t->thread_class : "?");
    if (t->point)
      printf("%8s at %s (%s:%u)\n", "", t->point->stack, t->point->file, t->point->line);
  }
  if (!st->n_points) {
    printf("\nquiescent points: none compiled in (build with mcr-clang --mcr-quiescence=FILE;\n"
           "FILE comes from mcr-profile)\n");
    return;
  }
  printf("\nquiescent points:%s\n", st->quiescing ? " (a quiesce is in progress)" : "");
  for (size_t i = 0; i < st->n_points; i++) {
    const Mcr__Control__QuiescentPoint *p = st->points[i];
    printf("  %s\n    class %s; %s calls %s at %s:%u\n", p->stack, p->thread_class,
           p->caller, p->callee, p->file, p->line);
  }
}

int cmd_status(int argc, char **argv)
{
  Mcr__Control__Request req = MCR__CONTROL__REQUEST__INIT;
  Mcr__Control__StatusRequest sreq = MCR__CONTROL__STATUS_REQUEST__INIT;
  Mcr__Control__Reply *rep;
  const char *pid_arg = NULL;
  int json = 0, timeout_ms = CTL_DEFAULT_TIMEOUT_MS;
  pid_t pid;

  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      cmd_status_help();
      return CTL_EXIT_OK;
    } else if (!strcmp(argv[i], "--json")) {
      json = 1;
    } else if (!strcmp(argv[i], "--timeout") || !strncmp(argv[i], "--timeout=", 10)) {
      const char *v = argv[i][9] == '=' ? argv[i] + 10 : (i + 1 < argc ? argv[++i] : NULL);
      if (!v) {
        ctl_err("--timeout needs a value in seconds");
        return CTL_EXIT_USAGE;
      }
      if (ctl_parse_timeout(v, &timeout_ms))
        return CTL_EXIT_USAGE;
    } else if (argv[i][0] == '-' && argv[i][1] && !(argv[i][1] >= '0' && argv[i][1] <= '9')) {
      ctl_err("status: unknown option '%s' (see mcr-ctl status --help)", argv[i]);
      return CTL_EXIT_USAGE;
    } else if (pid_arg) {
      ctl_err("status: one PID only ('%s' and '%s')", pid_arg, argv[i]);
      return CTL_EXIT_USAGE;
    } else {
      pid_arg = argv[i];
    }
  }
  if (!pid_arg) {
    ctl_err("status: missing PID (usage: mcr-ctl status PID [--json])");
    return CTL_EXIT_USAGE;
  }
  if (ctl_parse_pid(pid_arg, &pid))
    return CTL_EXIT_USAGE;

  req.kind_case = MCR__CONTROL__REQUEST__KIND_STATUS;
  req.status = &sreq;
  rep = ctl_call(pid, &req, timeout_ms);
  if (!rep)
    return CTL_EXIT_USAGE;
  if (rep->kind_case != MCR__CONTROL__REPLY__KIND_STATUS || !rep->status) {
    ctl_err("process %d answered with something other than a status reply", (int)pid);
    mcr__control__reply__free_unpacked(rep, NULL);
    return CTL_EXIT_USAGE;
  }
  if (json)
    print_json(rep->status);
  else
    print_human(rep->status);
  mcr__control__reply__free_unpacked(rep, NULL);
  return CTL_EXIT_OK;
}
