/*
 * qpconfig.h - the quiescence config (docs/quiescence.md, "Config file format"):
 * which blocking call stacks of each thread class are quiescent points.
 *
 * Written by mcr-profile, read by mcr-clang (to stop a build on a bad config
 * with file:line, and for the link-time check) and by the pass (to know which
 * calls to bracket). Pure C11, no LLVM.
 */
#ifndef MCR_QPCONFIG_H
#define MCR_QPCONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "mcr/qp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A call stack: frames outermost first; "NAME" or "NAME@SONAME" each. */
struct mcr_qpc_stack {
  char *text;    /* the frames joined by " > " (whatever spacing the file had) */
  char **frames;
  size_t nframes;
};

struct mcr_qpc_class {
  struct mcr_qpc_stack stack; /* the thread's creation stack */
  unsigned line;
};

struct mcr_qpc_qp {
  struct mcr_qpc_stack stack; /* last frame: the blocking function */
  size_t cls;                 /* index into classes */
  enum mcr_blockfn blockfn;
  uint32_t id;    /* mcr_qp_hash(stack.text) */
  unsigned line;
  size_t caller;  /* index of the deepest program frame: the last frame without
                   * "@" before the blocking function; the pass brackets its
                   * calls to callee */
  char *callee;   /* frames[caller + 1] without its "@SONAME" */
};

struct mcr_qpc_reject {
  struct mcr_qpc_stack stack;
  size_t cls;
  char *reason;
  unsigned line;
};

struct mcr_qpconfig {
  char *path;    /* as given: messages name it */
  char *program; /* basename of the profiled executable */
  unsigned program_line;
  struct mcr_qpc_class *classes;
  size_t nclasses;
  struct mcr_qpc_qp *qps;
  size_t nqps;
  struct mcr_qpc_reject *rejects;
  size_t nrejects;
};

/* Parses len bytes of text, named name in messages. Returns 0, or -1 with
 * "NAME:LINE: what is wrong" in err (c is then empty). */
int mcr_qpconfig_parse(const char *text, size_t len, const char *name,
                       struct mcr_qpconfig *c, char *err, size_t errlen);

/* Reads and parses the file at path; as mcr_qpconfig_parse, plus
 * "cannot read quiescence config 'PATH': strerror" when it cannot be read. */
int mcr_qpconfig_read(const char *path, struct mcr_qpconfig *c, char *err, size_t errlen);

void mcr_qpconfig_free(struct mcr_qpconfig *c);

#ifdef __cplusplus
}
#endif

#endif /* MCR_QPCONFIG_H */
