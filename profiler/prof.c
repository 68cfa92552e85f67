/*
 * prof.c - reads the .prof files the runtime wrote (runtime/profile.c; format in
 * docs/quiescence.md) and merges the processes of one executable.
 *
 * Stacks are merged by their text within a class. Each keeps the processes it
 * occurs in, and the class's blocked time in those processes: its share is
 * taken there, so that an nginx master's idle point is measured against the
 * master's time, not diluted by its workers'.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "profiler.h"

struct pfile_stack {
  uint64_t hits, ns, max_ns;
  char *text;
};

struct pfile_class {
  unsigned threads;
  uint64_t lifetime_ns;
  char *name;
  struct pfile_stack *stacks;
  size_t nstacks;
};

struct pfile {
  int pid;
  char *exe;
  uint64_t span_ns;
  unsigned dropped, failures;
  struct pfile_class *classes;
  size_t nclasses;
};

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
  void *n;
  size_t c;

  if (need <= *cap)
    return p;
  c = *cap ? *cap * 2 : 8;
  while (c < need)
    c *= 2;
  n = realloc(p, c * elem);
  if (n)
    *cap = c;
  return n;
}

/* "N N ... REST": parses count numbers, points *rest at the text after them. */
static int numbers(const char *s, uint64_t *v, int count, const char **rest)
{
  char *end;

  for (int i = 0; i < count; i++) {
    if (*s != ' ')
      return -1;
    errno = 0;
    v[i] = strtoull(s + 1, &end, 10);
    if (errno || end == s + 1)
      return -1;
    s = end;
  }
  if (rest) {
    if (*s != ' ' || !s[1])
      return -1;
    *rest = s + 1;
  } else if (*s) {
    return -1;
  }
  return 0;
}

static void pfile_free(struct pfile *f)
{
  for (size_t i = 0; i < f->nclasses; i++) {
    for (size_t j = 0; j < f->classes[i].nstacks; j++)
      free(f->classes[i].stacks[j].text);
    free(f->classes[i].stacks);
    free(f->classes[i].name);
  }
  free(f->classes);
  free(f->exe);
  memset(f, 0, sizeof(*f));
}

/* Parses one file; returns 0, -1 if it is not a complete .prof (why in why). */
static int pfile_read(struct pfile *f, const char *path, const char **why)
{
  FILE *in = fopen(path, "r");
  char *line = NULL;
  size_t linecap = 0, ccap = 0, scap = 0;
  ssize_t len;
  int rc = -1, lineno = 0, ended = 0;

  memset(f, 0, sizeof(*f));
  *why = "cannot be read";
  if (!in)
    return -1;
  *why = "not an mcr profile";
  while ((len = getline(&line, &linecap, in)) > 0) {
    uint64_t v[3];
    const char *rest;

    if (line[len - 1] == '\n')
      line[--len] = '\0';
    if (lineno++ == 0) {
      if (strcmp(line, "mcr-prof 1"))
        goto out;
      *why = "malformed";
      continue;
    }
    if (ended)
      goto out;
    if (!strncmp(line, "pid", 3) && !numbers(line + 3, v, 1, NULL)) {
      f->pid = (int)v[0];
    } else if (!strncmp(line, "exe ", 4)) {
      free(f->exe);
      if (!(f->exe = strdup(line + 4)))
        goto out;
    } else if (!strncmp(line, "span_ns", 7) && !numbers(line + 7, v, 1, NULL)) {
      f->span_ns = v[0];
    } else if (!strncmp(line, "dropped", 7) && !numbers(line + 7, v, 1, NULL)) {
      f->dropped = (unsigned)v[0];
    } else if (!strncmp(line, "failures", 8) && !numbers(line + 8, v, 1, NULL)) {
      f->failures = (unsigned)v[0];
    } else if (!strncmp(line, "class", 5) && !numbers(line + 5, v, 2, &rest)) {
      struct pfile_class *c;
      f->classes = grow(f->classes, &ccap, f->nclasses + 1, sizeof(*f->classes));
      if (!f->classes)
        goto out;
      c = &f->classes[f->nclasses++];
      memset(c, 0, sizeof(*c));
      c->threads = (unsigned)v[0];
      c->lifetime_ns = v[1];
      scap = 0;
      if (!(c->name = strdup(rest)))
        goto out;
    } else if (!strncmp(line, "stack", 5) && !numbers(line + 5, v, 3, &rest) && f->nclasses) {
      struct pfile_class *c = &f->classes[f->nclasses - 1];
      c->stacks = grow(c->stacks, &scap, c->nstacks + 1, sizeof(*c->stacks));
      if (!c->stacks)
        goto out;
      c->stacks[c->nstacks] = (struct pfile_stack){v[0], v[1], v[2], strdup(rest)};
      if (!c->stacks[c->nstacks++].text)
        goto out;
    } else if (!strcmp(line, "end")) {
      ended = 1;
    } else if (!strncmp(line, "ppid", 4) || line[0] == '#') {
      continue; /* known, not needed */
    } else {
      goto out;
    }
  }
  if (ended && f->exe && f->pid > 0)
    rc = 0;
out:
  free(line);
  fclose(in);
  if (rc)
    pfile_free(f);
  return rc;
}

/* The stack called text in class c, added if new. */
static struct stack *find_stack(struct pclass *c, const char *text)
{
  struct stack *s;
  char *p, *save = NULL;

  for (size_t i = 0; i < c->nstacks; i++)
    if (!strcmp(c->stacks[i].text, text))
      return &c->stacks[i];
  s = realloc(c->stacks, (c->nstacks + 1) * sizeof(*c->stacks));
  if (!s)
    return NULL;
  c->stacks = s;
  s = &c->stacks[c->nstacks];
  memset(s, 0, sizeof(*s));
  if (!(s->text = strdup(text)))
    return NULL;
  /* frames: split a copy at " > " */
  size_t n = 1;
  for (p = strstr(s->text, " > "); p; p = strstr(p + 3, " > "))
    n++;
  s->frames = calloc(n, sizeof(char *));
  char *copy = strdup(text);
  if (!s->frames || !copy) {
    free(copy);
    return NULL;
  }
  for (p = copy; p; p = save) {
    save = strstr(p, " > ");
    if (save) {
      *save = '\0';
      save += 3;
    }
    s->frames[s->nframes++] = p; /* frames[0] owns copy */
  }
  c->nstacks++;
  return s;
}

static int merge(struct profile *p, const struct pfile *f, unsigned proc)
{
  for (size_t i = 0; i < f->nclasses; i++) {
    const struct pfile_class *fc = &f->classes[i];
    struct pclass *c = NULL;
    uint64_t blocked = 0;
    size_t k;

    for (k = 0; k < p->nclasses; k++)
      if (!strcmp(p->classes[k].name, fc->name))
        break;
    if (k == p->nclasses) {
      c = realloc(p->classes, (k + 1) * sizeof(*p->classes));
      if (!c)
        return -1;
      p->classes = c;
      memset(&p->classes[k], 0, sizeof(p->classes[k]));
      if (!(p->classes[k].name = strdup(fc->name)))
        return -1;
      p->nclasses++;
    }
    c = &p->classes[k];
    c->threads += fc->threads;
    c->lifetime_ns += fc->lifetime_ns;
    c->nprocs++;
    for (size_t j = 0; j < fc->nstacks; j++)
      blocked += fc->stacks[j].ns;
    c->blocked_ns += blocked;
    for (size_t j = 0; j < fc->nstacks; j++) {
      const struct pfile_stack *fs = &fc->stacks[j];
      struct stack *s = find_stack(c, fs->text);
      unsigned *pr;
      if (!s)
        return -1;
      s->hits += fs->hits;
      s->ns += fs->ns;
      if (fs->max_ns > s->max_ns)
        s->max_ns = fs->max_ns;
      s->class_ns += blocked;
      s->class_life_ns += fc->lifetime_ns;
      pr = realloc(s->procs, (s->nprocs + 1) * sizeof(*pr));
      if (!pr)
        return -1;
      s->procs = pr;
      s->procs[s->nprocs++] = proc;
    }
  }
  return 0;
}

static int class_cmp(const void *a, const void *b)
{
  return strcmp(((const struct pclass *)a)->name, ((const struct pclass *)b)->name);
}

static int prof_name(const char *name)
{
  size_t n = strlen(name);
  return n > 5 && name[0] >= '0' && name[0] <= '9' && !strcmp(name + n - 5, ".prof");
}

int prof_load(struct profile *p, const char *dir, const char *want_exe)
{
  struct pfile *files = NULL;
  size_t nfiles = 0, fcap = 0;
  const char *pick = NULL;
  unsigned best = 0;
  int rc = -1, found = 0;
  DIR *d;
  struct dirent *de;

  memset(p, 0, sizeof(*p));
  if (!(d = opendir(dir))) {
    prof_err("cannot read the profile directory %s: %s", dir, strerror(errno));
    return -1;
  }
  while ((de = readdir(d))) {
    char path[4096 + 300];
    const char *why;
    if (!prof_name(de->d_name))
      continue;
    found++;
    snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
    if (!(files = grow(files, &fcap, nfiles + 1, sizeof(*files))))
      goto out;
    if (pfile_read(&files[nfiles], path, &why) != 0) {
      prof_warn("ignored %s: %s", de->d_name, why);
      p->nignored++;
      continue;
    }
    nfiles++;
  }
  /* one program per config: the command's, else the one with most processes */
  for (size_t i = 0; i < nfiles && !pick; i++)
    if (want_exe && !strcmp(files[i].exe, want_exe))
      pick = files[i].exe;
  for (size_t i = 0; i < nfiles && !pick; i++) {
    unsigned n = 0;
    for (size_t j = 0; j < nfiles; j++)
      n += !strcmp(files[i].exe, files[j].exe);
    if (n > best) {
      best = n;
      pick = files[i].exe;
    }
  }
  for (size_t i = 0; i < nfiles && pick; i++) {
    if (strcmp(files[i].exe, pick)) {
      p->nignored++;
      continue;
    }
    if (merge(p, &files[i], p->nprocs) != 0)
      goto out;
    p->nprocs++;
    p->dropped += files[i].dropped;
    p->failures += files[i].failures;
    if (files[i].span_ns > p->span_ns)
      p->span_ns = files[i].span_ns;
  }
  qsort(p->classes, p->nclasses, sizeof(*p->classes), class_cmp);
  if (pick) {
    const char *base = strrchr(pick, '/');
    p->exe = strdup(pick);
    p->program = strdup(base ? base + 1 : pick);
    if (!p->exe || !p->program)
      goto out;
    /* a replaced executable: /proc says "PATH (deleted)" */
    char *del = strstr(p->exe, " (deleted)");
    if (del && !del[10]) {
      *del = '\0';
      p->program[strlen(p->program) - 10] = '\0';
    }
  }
  rc = found;
out:
  if (rc < 0)
    prof_err("%s", strerror(ENOMEM));
  closedir(d);
  for (size_t i = 0; i < nfiles; i++)
    pfile_free(&files[i]);
  free(files);
  return rc;
}

void prof_free(struct profile *p)
{
  for (size_t i = 0; i < p->nclasses; i++) {
    struct pclass *c = &p->classes[i];
    for (size_t j = 0; j < c->nstacks; j++) {
      if (c->stacks[j].nframes)
        free(c->stacks[j].frames[0]);
      free(c->stacks[j].frames);
      free(c->stacks[j].text);
      free(c->stacks[j].procs);
    }
    free(c->stacks);
    free(c->name);
  }
  free(p->classes);
  free(p->exe);
  free(p->program);
  memset(p, 0, sizeof(*p));
}
