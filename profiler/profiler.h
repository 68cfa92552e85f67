/*
 * profiler.h - mcr-profile's pieces: reading the processes' .prof files
 * (prof.c), the executable's call records (calls.c), choosing the quiescent
 * points (choose.c) and writing the config, the summary and JSON (report.c).
 * docs/quiescence.md describes the formats and the rule.
 */
#ifndef MCR_PROFILER_H
#define MCR_PROFILER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PROF_EXIT_OK 0
#define PROF_EXIT_USAGE 2

/* Further quiescent points of a class need at least this share of its blocked
 * time (percent). */
#define PROF_SHARE_MIN 10.0

void prof_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void prof_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- call records (mcr_calls) ---- */

struct call_rec {
  const char *caller, *callee, *file; /* point into the mapped executable */
  uint32_t line, loop_depth;
  int indirect;
};

struct calls {
  int present;        /* the executable has an mcr_calls section */
  struct call_rec *recs;
  size_t n;
  void *elf;          /* struct mcr_elf, kept open: the strings live in it */
};

/* Reads the mcr_calls blobs of path. Returns 0 (c->present says whether there
 * were any), or -1 after printing why the file could not be read. */
int calls_load(struct calls *c, const char *path);
void calls_free(struct calls *c);

/* The records of caller calling callee ("NAME@SONAME" is matched by NAME; the
 * blocking function also by its fortified name); if there are none, the
 * caller's indirect calls. Returns how many, at most max. */
size_t calls_find(const struct calls *c, const char *caller, const char *callee,
                  const struct call_rec **out, size_t max);

/* ---- the merged profile ---- */

enum verdict { V_NONE, V_QP, V_NESTED, V_NO_LOOP, V_SHARE, V_NO_PROGRAM_FRAME };

struct stack {
  char *text;       /* "f0 > f1 > ... > blockfn" */
  char **frames;
  size_t nframes;
  uint64_t hits, ns, max_ns;
  uint64_t class_ns; /* the class's blocked time in the processes where it occurs */
  uint64_t class_life_ns; /* the lifetime of the class's threads there */
  unsigned *procs;   /* indices of the processes where it occurs, ascending */
  size_t nprocs;
  /* choose.c */
  int loop_at;       /* index of the frame whose loop it is in, -1 none */
  int loop_assumed;  /* that frame is a library function (its loops are not known) */
  enum verdict verdict;
  int nested_at;     /* V_NESTED: index where it leaves the chosen point's stack */
  const struct stack *nested_in;
};

struct pclass {
  char *name;
  unsigned threads;
  uint64_t lifetime_ns, blocked_ns;
  unsigned nprocs; /* processes that had threads of this class */
  struct stack *stacks;
  size_t nstacks;
};

struct profile {
  char *exe;         /* the executable of the processes merged */
  char *program;     /* its base name */
  unsigned nprocs;   /* processes merged */
  unsigned nignored; /* .prof files of other executables or unreadable */
  uint64_t span_ns;  /* the longest process span */
  unsigned dropped, failures;
  struct pclass *classes;
  size_t nclasses;
};

/* Reads every DIR/<pid>.prof. The processes of the executable want_exe (a
 * real path, may be NULL) are merged; if none ran it, those of the executable
 * with the most processes. Returns the number of .prof files found (0: none),
 * or -1 on error (printed). */
int prof_load(struct profile *p, const char *dir, const char *want_exe);
void prof_free(struct profile *p);

/* ---- choosing ---- */

/* Sets each stack's verdict. */
void choose(struct profile *p, const struct calls *c);

/* ---- output ---- */

struct run_info {
  char **argv;       /* the command */
  double seconds;    /* how long it ran */
  const char *out;   /* the config file */
};

int write_config(const struct profile *p, const struct calls *c, const struct run_info *r);
void print_summary(FILE *f, const struct profile *p, const struct calls *c,
                   const struct run_info *r);
void print_json(FILE *f, const struct profile *p, const struct calls *c,
                const struct run_info *r);

/* Number of classes that got at least one quiescent point. */
size_t classes_with_qp(const struct profile *p);

/* The words of a rejection ("blocks while handling an event: ..."), into buf. */
void reject_reason(const struct stack *s, const struct calls *c, char *buf, size_t len);

/* Index of the deepest program frame (no "@") before the blocking function, or -1. */
int last_program_frame(const struct stack *s);

#endif /* MCR_PROFILER_H */
