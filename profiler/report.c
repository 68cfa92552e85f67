/*
 * report.c - mcr-profile's outputs: the quiescence config (format v1,
 * docs/quiescence.md), the summary for people and the same as JSON.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "profiler.h"

static double pct(uint64_t part, uint64_t whole)
{
  return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

static const char *dur(uint64_t ns, char *buf, size_t len)
{
  if (ns >= 1000000000u)
    snprintf(buf, len, "%.2f s", (double)ns / 1e9);
  else if (ns >= 1000000u)
    snprintf(buf, len, "%.1f ms", (double)ns / 1e6);
  else
    snprintf(buf, len, "%.0f us", (double)ns / 1e3);
  return buf;
}

/* What the config parser accepts as a frame: NAME or NAME@SONAME. */
static int frame_ok(const char *f)
{
  const char *at = strchr(f, '@');
  size_t n = at ? (size_t)(at - f) : strlen(f);

  if (!n || strspn(f, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.$") != n)
    return 0;
  return !at || (at[1] && strspn(at + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "0123456789_.-+") == strlen(at + 1));
}

/* Whether every " > "-separated frame of text is one the config can hold. */
static int text_ok(const char *text)
{
  char *copy = strdup(text), *p, *save = NULL;
  int ok = copy != NULL;

  for (p = copy; ok && p; p = save) {
    save = strstr(p, " > ");
    if (save) {
      *save = '\0';
      save += 3;
    }
    ok = frame_ok(p);
  }
  free(copy);
  return ok;
}

/* The call records of caller > callee as "file:line, file:line", and whether
 * one of them is in a loop. Returns the number of records. */
static size_t call_where(const struct calls *c, const char *caller, const char *callee, char *buf,
                         size_t len, int *loop)
{
  const struct call_rec *r[8];
  size_t n = calls_find(c, caller, callee, r, 8), used = 0;

  buf[0] = '\0';
  *loop = 0;
  for (size_t i = 0; i < n; i++) {
    int w = snprintf(buf + used, len - used, "%s%s:%u", i ? ", " : "",
                     *r[i]->file ? r[i]->file : "?", r[i]->line);
    if (w < 0 || (size_t)w >= len - used)
      break;
    used += (size_t)w;
    *loop |= r[i]->loop_depth > 0;
  }
  return n;
}

/* file:line of the call the pass instruments: the deepest program frame's. */
static void qp_location(const struct stack *s, const struct calls *c, char *buf, size_t len)
{
  int last = last_program_frame(s), loop;

  buf[0] = '\0';
  if (last >= 0 && c->present)
    call_where(c, s->frames[last], s->frames[last + 1], buf, len, &loop);
}

static void evidence(FILE *f, const struct stack *s, const struct calls *c)
{
  char a[32], b[32], where[512];
  int loop;

  fprintf(f, "# %llu hit%s, %s blocked (%.1f%% of the class's blocked time, %.1f%% of its "
             "threads' lifetime), longest %s; in %zu process%s\n",
          (unsigned long long)s->hits, s->hits == 1 ? "" : "s", dur(s->ns, a, sizeof(a)), pct(s->ns, s->class_ns),
          pct(s->ns, s->class_life_ns), dur(s->max_ns, b, sizeof(b)), s->nprocs,
          s->nprocs == 1 ? "" : "es");
  if (!c->present)
    return;
  for (size_t i = 0; i + 1 < s->nframes; i++) {
    if (strchr(s->frames[i], '@'))
      continue; /* library code: no call records */
    if (!call_where(c, s->frames[i], s->frames[i + 1], where, sizeof(where), &loop))
      fprintf(f, "#   %s > %s: no call record\n", s->frames[i], s->frames[i + 1]);
    else
      fprintf(f, "#   %s > %s at %s%s\n", s->frames[i], s->frames[i + 1], where,
              loop ? ", in a loop" : "");
  }
  if (s->loop_assumed && s->loop_at >= 0 && (size_t)s->loop_at + 1 < s->nframes &&
      strchr(s->frames[s->loop_at], '@'))
    fprintf(f, "#   (blocks inside %s: a loop there is assumed)\n", s->frames[s->loop_at]);
}

/* Stacks of a class in summary order: quiescent points, then the rest, each
 * by time blocked. */
static int by_verdict_time(const void *a, const void *b)
{
  const struct stack *x = *(const struct stack *const *)a, *y = *(const struct stack *const *)b;
  if ((x->verdict == V_QP) != (y->verdict == V_QP))
    return x->verdict == V_QP ? -1 : 1;
  return x->ns < y->ns ? 1 : x->ns > y->ns ? -1 : strcmp(x->text, y->text);
}

static const struct stack **sorted(const struct pclass *cl)
{
  const struct stack **v = malloc((cl->nstacks ? cl->nstacks : 1) * sizeof(*v));

  if (!v)
    return NULL;
  for (size_t i = 0; i < cl->nstacks; i++)
    v[i] = &cl->stacks[i];
  qsort(v, cl->nstacks, sizeof(*v), by_verdict_time);
  return v;
}

static int write_config_to(FILE *f, const struct profile *p, const struct calls *c,
                           const struct run_info *r)
{
  char a[32], b[32], reason[1024];

  fprintf(f, "# Quiescence config for %s, written by mcr-profile (docs/quiescence.md).\n",
          p->program);
  fprintf(f, "# Command:");
  for (char **v = r->argv; *v; v++)
    fprintf(f, " %s", *v);
  fprintf(f, "\n# Profiled %.1f s: %u process%s of %s; call records (mcr_calls): %s\n",
          r->seconds, p->nprocs, p->nprocs == 1 ? "" : "es", p->exe,
          c->present ? "yes" : "none, points chosen by time alone");
  fprintf(f, "# Rule: per thread class, the blocking stack inside a loop with the largest share\n"
             "# of the class's blocked time; more stacks inside a loop with at least %.0f%% that\n"
             "# are not inside that point's event handling. Edit qp/reject lines as needed.\n",
          PROF_SHARE_MIN);
  fprintf(f, "mcr-quiescence 1\nprogram %s\n", p->program);
  for (size_t i = 0; i < p->nclasses; i++) {
    const struct pclass *cl = &p->classes[i];
    const struct stack **v;
    int ok = text_ok(cl->name);

    fprintf(f, "\n# class %s: %u thread%s in %u process%s, lived %s, blocked %s\n", cl->name,
            cl->threads, cl->threads == 1 ? "" : "s", cl->nprocs, cl->nprocs == 1 ? "" : "es",
            dur(cl->lifetime_ns, a, sizeof(a)), dur(cl->blocked_ns, b, sizeof(b)));
    if (!ok) {
      fprintf(f, "# (not listed: the class has frames without a function name)\n");
      continue;
    }
    if (!cl->nstacks) {
      fprintf(f, "# no blocking call returned during the run: these threads cannot be parked\n");
      continue;
    }
    fprintf(f, "class %s\n", cl->name);
    if (!(v = sorted(cl)))
      return -1;
    for (size_t j = 0; j < cl->nstacks; j++) {
      const struct stack *s = v[j];
      evidence(f, s, c);
      if (!text_ok(s->text)) {
        fprintf(f, "# (not listed: %s)\n", s->text);
      } else if (s->verdict == V_QP) {
        fprintf(f, "qp %s\n", s->text);
      } else {
        reject_reason(s, c, reason, sizeof(reason));
        fprintf(f, "reject %s : %s\n", s->text, reason);
      }
    }
    free(v);
  }
  return ferror(f) ? -1 : 0;
}

int write_config(const struct profile *p, const struct calls *c, const struct run_info *r)
{
  char tmp[4200];
  FILE *f;

  snprintf(tmp, sizeof(tmp), "%s.tmp", r->out);
  if (!(f = fopen(tmp, "w"))) {
    prof_err("cannot write %s: %s", tmp, strerror(errno));
    return -1;
  }
  if (write_config_to(f, p, c, r) != 0 || fclose(f) != 0) {
    prof_err("cannot write %s: %s", tmp, strerror(errno));
    unlink(tmp);
    return -1;
  }
  if (rename(tmp, r->out) != 0) {
    prof_err("cannot rename %s to %s: %s", tmp, r->out, strerror(errno));
    unlink(tmp);
    return -1;
  }
  return 0;
}

void print_summary(FILE *f, const struct profile *p, const struct calls *c,
                   const struct run_info *r)
{
  char a[32], where[512], reason[1024];

  fprintf(f, "mcr-profile: %s: %u process%s, %zu thread class%s, %.1f s\n", p->program,
          p->nprocs, p->nprocs == 1 ? "" : "es", p->nclasses, p->nclasses == 1 ? "" : "es",
          r->seconds);
  for (size_t i = 0; i < p->nclasses; i++) {
    const struct pclass *cl = &p->classes[i];
    const struct stack **v = sorted(cl);
    size_t nqp = 0;

    if (!v)
      return;
    fprintf(f, "class %s (%u thread%s)\n", cl->name, cl->threads, cl->threads == 1 ? "" : "s");
    for (size_t j = 0; j < cl->nstacks; j++) {
      const struct stack *s = v[j];
      if (s->verdict == V_QP) {
        nqp++;
        qp_location(s, c, where, sizeof(where));
        fprintf(f, "  qp      %s\n          %s%s%llu hit%s, %s blocked (%.1f%%)\n", s->text,
                where, *where ? ", " : "", (unsigned long long)s->hits, s->hits == 1 ? "" : "s",
                dur(s->ns, a, sizeof(a)), pct(s->ns, s->class_ns));
      } else {
        reject_reason(s, c, reason, sizeof(reason));
        fprintf(f, "  reject  %s\n          %s (%llu hit%s, %s, %.1f%%)\n", s->text, reason,
                (unsigned long long)s->hits, s->hits == 1 ? "" : "s", dur(s->ns, a, sizeof(a)),
                pct(s->ns, s->class_ns));
      }
    }
    if (!cl->nstacks)
      fprintf(f, "  no blocking call returned during the run: these threads cannot be parked\n");
    else if (!nqp)
      fprintf(f, "  no quiescent point: these threads cannot be parked\n");
    free(v);
  }
  if (p->dropped || p->failures)
    fprintf(f, "(the runtime lost %u records to full tables and %u to failures)\n", p->dropped,
            p->failures);
  if (r->out)
    fprintf(f, "wrote %s\n", r->out);
}

static void json_str(FILE *f, const char *s)
{
  fputc('"', f);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

static void json_calls(FILE *f, const struct stack *s, const struct calls *c)
{
  int first = 1;

  fprintf(f, "\"calls\": [");
  for (size_t i = 0; c->present && i + 1 < s->nframes; i++) {
    const struct call_rec *r[8];
    size_t n;
    if (strchr(s->frames[i], '@'))
      continue;
    n = calls_find(c, s->frames[i], s->frames[i + 1], r, 8);
    for (size_t k = 0; k < n; k++) {
      fprintf(f, "%s{\"caller\": ", first ? "" : ", ");
      json_str(f, s->frames[i]);
      fprintf(f, ", \"callee\": ");
      json_str(f, s->frames[i + 1]);
      fprintf(f, ", \"file\": ");
      json_str(f, r[k]->file);
      fprintf(f, ", \"line\": %u, \"in_loop\": %s}", r[k]->line,
              r[k]->loop_depth ? "true" : "false");
      first = 0;
    }
  }
  fprintf(f, "]");
}

void print_json(FILE *f, const struct profile *p, const struct calls *c,
                const struct run_info *r)
{
  char where[512], reason[1024];

  fprintf(f, "{\"program\": ");
  json_str(f, p->program);
  fprintf(f, ", \"exe\": ");
  json_str(f, p->exe);
  fprintf(f, ", \"config\": ");
  if (r->out)
    json_str(f, r->out);
  else
    fprintf(f, "null");
  fprintf(f, ", \"processes\": %u, \"seconds\": %.3f, \"mcr_calls\": %s, \"dropped\": %u, "
             "\"failures\": %u, \"classes\": [",
          p->nprocs, r->seconds, c->present ? "true" : "false", p->dropped, p->failures);
  for (size_t i = 0; i < p->nclasses; i++) {
    const struct pclass *cl = &p->classes[i];
    const struct stack **v = sorted(cl);
    int first = 1;

    if (!v)
      break;
    fprintf(f, "%s\n {\"class\": ", i ? "," : "");
    json_str(f, cl->name);
    fprintf(f, ", \"threads\": %u, \"processes\": %u, \"lifetime_s\": %.6f, \"blocked_s\": %.6f",
            cl->threads, cl->nprocs, (double)cl->lifetime_ns / 1e9, (double)cl->blocked_ns / 1e9);
    for (int qp = 1; qp >= 0; qp--) {
      fprintf(f, ", \"%s\": [", qp ? "quiescent_points" : "rejected");
      first = 1;
      for (size_t j = 0; j < cl->nstacks; j++) {
        const struct stack *s = v[j];
        if ((s->verdict == V_QP) != qp)
          continue;
        fprintf(f, "%s\n  {\"stack\": ", first ? "" : ",");
        json_str(f, s->text);
        fprintf(f, ", \"frames\": [");
        for (size_t k = 0; k < s->nframes; k++) {
          fprintf(f, "%s", k ? ", " : "");
          json_str(f, s->frames[k]);
        }
        fprintf(f, "], \"hits\": %llu, \"blocked_s\": %.6f, \"max_s\": %.6f, \"share\": %.2f, "
                   "\"processes\": %zu, ",
                (unsigned long long)s->hits, (double)s->ns / 1e9, (double)s->max_ns / 1e9,
                pct(s->ns, s->class_ns), s->nprocs);
        if (qp) {
          qp_location(s, c, where, sizeof(where));
          fprintf(f, "\"location\": ");
          json_str(f, where);
        } else {
          reject_reason(s, c, reason, sizeof(reason));
          fprintf(f, "\"reason\": ");
          json_str(f, reason);
        }
        fprintf(f, ", ");
        json_calls(f, s, c);
        fprintf(f, "}");
        first = 0;
      }
      fprintf(f, "]");
    }
    fprintf(f, "}");
    free(v);
  }
  fprintf(f, "\n]}\n");
}
