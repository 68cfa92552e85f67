/*
 * choose.c - which blocking stacks are quiescent points (docs/quiescence.md,
 * "Choosing quiescent points").
 *
 * Per class: a stack is a candidate if some call on it is inside a loop of its
 * caller (mcr_calls), or if it blocks inside a library the program called (the
 * library's loops are not known: assumed). The candidate with the largest share
 * of the class's blocked time is the first quiescent point; each further
 * candidate, by share, is one too if it has at least PROF_SHARE_MIN percent and
 * is not nested in a chosen point's event handling: it does not follow that
 * point's stack through its loop frame and then branch off into a handler.
 * Without mcr_calls, every stack is a candidate and the loop is assumed around
 * the deepest program call.
 */
#include <stdlib.h>
#include <string.h>

#include "profiler.h"

int last_program_frame(const struct stack *s)
{
  for (size_t i = s->nframes - 1; i-- > 0;)
    if (!strchr(s->frames[i], '@'))
      return (int)i;
  return -1;
}

static int is_program(const char *frame)
{
  return !strchr(frame, '@');
}

/* 1: caller's call of callee is in a loop; 0: it is not; -1: no record. */
static int in_loop(const struct calls *c, const char *caller, const char *callee)
{
  const struct call_rec *r[16];
  size_t n = calls_find(c, caller, callee, r, 16);

  if (!n)
    return -1;
  for (size_t i = 0; i < n; i++)
    if (r[i]->loop_depth > 0)
      return 1;
  return 0;
}

static void find_loop(struct stack *s, const struct calls *c)
{
  int last = last_program_frame(s);

  s->loop_at = -1;
  s->loop_assumed = 0;
  if (!c->present) {
    s->loop_at = last;
    s->loop_assumed = 1;
    return;
  }
  /* the loop closest to the blocking call */
  for (size_t i = s->nframes - 1; i-- > 0;)
    if (is_program(s->frames[i]) && in_loop(c, s->frames[i], s->frames[i + 1]) == 1) {
      s->loop_at = (int)i;
      return;
    }
  /* the program called into a library that blocks: its loop is assumed there */
  if (last >= 0 && (size_t)last + 2 < s->nframes) {
    s->loop_at = last + 1;
    s->loop_assumed = 1;
  }
}

static double share(const struct stack *s)
{
  return s->class_ns ? 100.0 * (double)s->ns / (double)s->class_ns : 0.0;
}

static int procs_meet(const struct stack *a, const struct stack *b)
{
  size_t i = 0, j = 0;

  while (i < a->nprocs && j < b->nprocs) {
    if (a->procs[i] == b->procs[j])
      return 1;
    if (a->procs[i] < b->procs[j])
      i++;
    else
      j++;
  }
  return 0;
}

/* Whether s runs inside qp's event handling: in the same process, it follows
 * qp's stack through qp's loop frame, then calls something other than a
 * blocking function (a handler). Sets *at to where it branches off. */
static int nested(const struct stack *s, const struct stack *qp, int *at)
{
  size_t d = 0;

  if (qp->loop_at < 0 || !procs_meet(s, qp))
    return 0;
  while (d < s->nframes && d < qp->nframes && !strcmp(s->frames[d], qp->frames[d]))
    d++;
  if ((int)d <= qp->loop_at || d + 1 >= s->nframes)
    return 0;
  *at = (int)d;
  return 1;
}

static int by_share(const void *a, const void *b)
{
  const struct stack *x = *(const struct stack *const *)a, *y = *(const struct stack *const *)b;
  double sx = share(x), sy = share(y);
  return sx < sy ? 1 : sx > sy ? -1 : strcmp(x->text, y->text);
}

static void choose_class(struct pclass *cl, const struct calls *c)
{
  struct stack **order = malloc(cl->nstacks * sizeof(*order));
  const struct stack **chosen = malloc(cl->nstacks * sizeof(*chosen));
  size_t nchosen = 0;

  if (!order || !chosen) {
    free(order);
    free(chosen);
    return;
  }
  for (size_t i = 0; i < cl->nstacks; i++) {
    order[i] = &cl->stacks[i];
    find_loop(order[i], c);
  }
  qsort(order, cl->nstacks, sizeof(*order), by_share);
  for (size_t i = 0; i < cl->nstacks; i++) {
    struct stack *s = order[i];
    int at;

    s->verdict = V_NONE;
    for (size_t j = 0; j < nchosen && s->verdict == V_NONE; j++)
      if (nested(s, chosen[j], &at)) {
        s->verdict = V_NESTED;
        s->nested_at = at;
        s->nested_in = chosen[j];
      }
    if (s->verdict != V_NONE)
      continue;
    if (last_program_frame(s) < 0)
      s->verdict = V_NO_PROGRAM_FRAME;
    else if (s->loop_at < 0)
      s->verdict = V_NO_LOOP;
    else if (nchosen && share(s) < PROF_SHARE_MIN)
      s->verdict = V_SHARE;
    else
      s->verdict = V_QP;
    if (s->verdict == V_QP)
      chosen[nchosen++] = s;
  }
  free(order);
  free(chosen);
}

void choose(struct profile *p, const struct calls *c)
{
  for (size_t i = 0; i < p->nclasses; i++)
    choose_class(&p->classes[i], c);
}

size_t classes_with_qp(const struct profile *p)
{
  size_t n = 0;

  for (size_t i = 0; i < p->nclasses; i++)
    for (size_t j = 0; j < p->classes[i].nstacks; j++)
      if (p->classes[i].stacks[j].verdict == V_QP) {
        n++;
        break;
      }
  return n;
}

void reject_reason(const struct stack *s, const struct calls *c, char *buf, size_t len)
{
  const struct stack *qp = s->nested_in;
  int d = s->nested_at, h;

  switch (s->verdict) {
  case V_NESTED:
    /* name the handler by the program's first function past the branch, if the
     * branch itself is library code without a name (libevent's dispatch) */
    h = d;
    if (!is_program(s->frames[d]))
      for (size_t e = (size_t)d; e + 1 < s->nframes; e++)
        if (is_program(s->frames[e])) {
          h = (int)e;
          break;
        }
    if (d - 1 == qp->loop_at ||
        (is_program(s->frames[d - 1]) && in_loop(c, s->frames[d - 1], s->frames[d]) == 1))
      snprintf(buf, len, "blocks while handling an event: inside %s, %s from the loop in %s",
               s->frames[h], h == d ? "called" : "reached", s->frames[d - 1]);
    else
      snprintf(buf, len,
               "blocks while handling an event: inside %s, %s from %s in the loop of %s",
               s->frames[h], h == d ? "called" : "reached", s->frames[d - 1],
               qp->frames[qp->loop_at]);
    break;
  case V_NO_LOOP:
    snprintf(buf, len, "not in a loop: no call on its stack is inside a loop of its caller");
    break;
  case V_SHARE:
    snprintf(buf, len, "only %.1f%% of the class's blocked time", share(s));
    break;
  case V_NO_PROGRAM_FRAME:
    snprintf(buf, len, "no function of the program on the stack: nothing to instrument");
    break;
  default:
    snprintf(buf, len, "quiescent point");
    break;
  }
}
