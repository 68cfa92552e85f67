/*
 * quiesce.c - mcr-ctl quiesce PID [--hold SEC] [--timeout SEC] [--json]
 *
 * Asks a running program to park every thread at a quiescent point, hold it
 * there, and resume it; prints the time to quiescence and each thread's arrival,
 * or, when some thread did not arrive in time, which and what it was doing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "ctl.h"

#define DEFAULT_QUIESCE_TIMEOUT_MS 2000
#define MAX_MS 600000 /* the runtime's limit for hold and timeout */

void cmd_quiesce_help(void)
{
  printf("Usage: mcr-ctl quiesce PID [--hold SEC] [--timeout SEC] [--json]\n"
         "\n"
         "Parks every thread of a running program built by mcr-clang --mcr-quiescence\n"
         "at one of its quiescent points, holds it there for --hold seconds (default 0),\n"
         "then resumes it. Prints the time to quiescence and where and when each thread\n"
         "arrived. If some thread does not arrive within --timeout seconds (default 2),\n"
         "every thread is resumed at once and the threads that did not arrive are listed\n"
         "with what they were doing. Clients of the program see a pause, nothing else:\n"
         "no connection is closed and no event is lost.\n"
         "\n"
         "Options:\n"
         "  --hold SEC      how long to hold the program quiesced (0 to 600; fractions ok)\n"
         "  --timeout SEC   how long to wait for every thread (default 2, at most 600)\n"
         "  --json          machine-readable output (one JSON object)\n"
         "  -h, --help      this help\n"
         "\n"
         "Exit status: 0 quiesced and resumed; 1 not quiesced (a thread did not arrive in\n"
         "time, or the program refused: another quiesce in progress, no quiescent points\n"
         "compiled in); 2 bad usage, no such process, not an mcr program, another user's\n"
         "process, or no reply.\n");
}


/* seconds argument -> ms in [min_ms, MAX_MS] */
static int parse_sec(const char *opt, const char *v, int min_ms, int *ms)
{
  char *end;
  double d;

  errno = 0;
  d = v ? strtod(v, &end) : -1;
  if (!v || !*v || *end || errno || d < 0 || d * 1000 > MAX_MS || d * 1000 + 0.5 < min_ms) {
    ctl_err("bad %s '%s' (expected seconds from %g to %d, e.g. 0.5)", opt, v ? v : "",
            min_ms / 1000.0, MAX_MS / 1000);
    return -1;
  }
  *ms = (int)(d * 1000 + 0.5);
  return 0;
}

static void point_text(const Mcr__Control__QuiescentPoint *p, char *buf, size_t len)
{
  if (!p) {
    snprintf(buf, len, "(thread start)");
    return;
  }
  snprintf(buf, len, "%s (%s:%u)", p->stack ? p->stack : "?", p->file ? p->file : "?", p->line);
}

static void print_human(pid_t pid, const Mcr__Control__QuiesceReply *q, int timeout_ms)
{
  char where[2048];

  if (q->quiesced)
    printf("process %d quiesced in %.3f ms (grace period %.3f ms), held %.3f s, resumed in "
           "%.3f ms\n\n",
           (int)pid, q->time_to_quiescence_us / 1000.0, q->grace_period_us / 1000.0,
           q->held_us / 1e6, q->resume_us / 1000.0);
  else
    printf("process %d did not quiesce within %.3f s: every thread was resumed.\n\n", (int)pid,
           timeout_ms / 1000.0);
  printf("%-8s %-16s %-10s %-8s %s\n", "TID", "NAME", "ARRIVED", "STATE", "WHERE");
  for (size_t i = 0; i < q->n_threads; i++) {
    const Mcr__Control__ThreadArrival *t = q->threads[i];
    char when[32];
    if (t->arrived) {
      snprintf(when, sizeof(when), "+%.3fms", t->arrival_us / 1000.0);
      point_text(t->point, where, sizeof(where));
    } else {
      snprintf(when, sizeof(when), "NO");
      snprintf(where, sizeof(where), "class %s: %s", t->thread_class ? t->thread_class : "?",
               t->where ? t->where : "?");
    }
    printf("%-8d %-16s %-10s %-8s %s\n", t->tid, t->name ? t->name : "?", when,
           t->state ? t->state : "?", where);
  }
}

static void print_json(pid_t pid, const Mcr__Control__QuiesceReply *q)
{
  FILE *f = stdout;

  fprintf(f,
          "{\"pid\": %d, \"quiesced\": %s, \"time_to_quiescence_us\": %llu, "
          "\"grace_period_us\": %llu, \"held_us\": %llu, \"resume_us\": %llu, \"threads\": [",
          (int)pid, q->quiesced ? "true" : "false", (unsigned long long)q->time_to_quiescence_us,
          (unsigned long long)q->grace_period_us, (unsigned long long)q->held_us,
          (unsigned long long)q->resume_us);
  for (size_t i = 0; i < q->n_threads; i++) {
    const Mcr__Control__ThreadArrival *t = q->threads[i];
    fprintf(f, "%s\n  {\"tid\": %d, \"name\": ", i ? "," : "", t->tid);
    ctl_json_str(f, t->name);
    fputs(", \"class\": ", f);
    ctl_json_str(f, t->thread_class);
    fprintf(f, ", \"arrived\": %s, \"state\": ", t->arrived ? "true" : "false");
    ctl_json_str(f, t->state);
    if (t->arrived) {
      fprintf(f, ", \"arrival_us\": %llu, \"point\": ", (unsigned long long)t->arrival_us);
      if (t->point) {
        fputs("{\"stack\": ", f);
        ctl_json_str(f, t->point->stack);
        fputs(", \"file\": ", f);
        ctl_json_str(f, t->point->file);
        fprintf(f, ", \"line\": %u, \"id\": %u}", t->point->line, t->point->id);
      } else {
        fputs("null", f);
      }
    } else {
      fputs(", \"where\": ", f);
      ctl_json_str(f, t->where);
    }
    fputc('}', f);
  }
  fputs("\n]}\n", f);
}

int cmd_quiesce(int argc, char **argv)
{
  Mcr__Control__Request req = MCR__CONTROL__REQUEST__INIT;
  Mcr__Control__QuiesceRequest qreq = MCR__CONTROL__QUIESCE_REQUEST__INIT;
  Mcr__Control__Reply *rep;
  const char *pid_arg = NULL;
  int json = 0, hold_ms = 0, timeout_ms = DEFAULT_QUIESCE_TIMEOUT_MS, rc;
  pid_t pid;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      cmd_quiesce_help();
      return CTL_EXIT_OK;
    } else if (!strcmp(a, "--json")) {
      json = 1;
    } else if (!strcmp(a, "--hold") || !strncmp(a, "--hold=", 7)) {
      const char *v = a[6] == '=' ? a + 7 : (i + 1 < argc ? argv[++i] : NULL);
      if (parse_sec("--hold", v, 0, &hold_ms))
        return CTL_EXIT_USAGE;
    } else if (!strcmp(a, "--timeout") || !strncmp(a, "--timeout=", 10)) {
      const char *v = a[9] == '=' ? a + 10 : (i + 1 < argc ? argv[++i] : NULL);
      if (parse_sec("--timeout", v, 1, &timeout_ms))
        return CTL_EXIT_USAGE;
    } else if (a[0] == '-' && a[1] && !(a[1] >= '0' && a[1] <= '9')) {
      ctl_err("quiesce: unknown option '%s' (see mcr-ctl quiesce --help)", a);
      return CTL_EXIT_USAGE;
    } else if (pid_arg) {
      ctl_err("quiesce: one PID only ('%s' and '%s')", pid_arg, a);
      return CTL_EXIT_USAGE;
    } else {
      pid_arg = a;
    }
  }
  if (!pid_arg) {
    ctl_err("quiesce: missing PID (usage: mcr-ctl quiesce PID [--hold SEC] [--json])");
    return CTL_EXIT_USAGE;
  }
  if (ctl_parse_pid(pid_arg, &pid))
    return CTL_EXIT_USAGE;

  qreq.has_hold_ms = 1;
  qreq.hold_ms = (uint32_t)hold_ms;
  qreq.has_timeout_ms = 1;
  qreq.timeout_ms = (uint32_t)timeout_ms;
  req.kind_case = MCR__CONTROL__REQUEST__KIND_QUIESCE;
  req.quiesce = &qreq;
  /* the reply comes after the hold and the resume */
  rep = ctl_call_raw(pid, &req, hold_ms + timeout_ms + CTL_DEFAULT_TIMEOUT_MS);
  if (!rep)
    return CTL_EXIT_USAGE;
  if (rep->kind_case == MCR__CONTROL__REPLY__KIND_ERROR) {
    const Mcr__Control__Error *e = rep->error;
    int refused = e && e->has_code && e->code == MCR__CONTROL__ERROR__CODE__REFUSED;
    ctl_err("process %d %s: %s", (int)pid, refused ? "did not quiesce" : "refused the request",
            e && e->message ? e->message : "(no reason given)");
    mcr__control__reply__free_unpacked(rep, NULL);
    return refused ? CTL_EXIT_FAILED : CTL_EXIT_USAGE;
  }
  if (rep->kind_case != MCR__CONTROL__REPLY__KIND_QUIESCE || !rep->quiesce) {
    ctl_err("process %d answered with something other than a quiesce reply", (int)pid);
    mcr__control__reply__free_unpacked(rep, NULL);
    return CTL_EXIT_USAGE;
  }
  if (json)
    print_json(pid, rep->quiesce);
  else
    print_human(pid, rep->quiesce, timeout_ms);
  rc = rep->quiesce->quiesced ? CTL_EXIT_OK : CTL_EXIT_FAILED;
  mcr__control__reply__free_unpacked(rep, NULL);
  return rc;
}
