/*
 * mcr-clang - a drop-in CC that builds programs mcr can update.
 *
 * It runs clang-16 with the user's arguments unchanged, plus:
 *   - when compiling: -g (types come from debug info) and the type-tagging
 *     pass plugin;
 *   - when linking an executable: the mcr runtime (whole archive, so its malloc
 *     replaces the C library's) with its entry points exported for shared
 *     objects;
 *   - when linking a shared object: weak stubs of those entry points;
 *   - --mcr-profile: the profiling variant (every call frame kept, a table of
 *     call sites for mcr-profile);
 *   - --mcr-quiescence=FILE: the production variant (the config's quiescent
 *     points marked), and after linking the executable the config names, a check
 *     that every quiescent point was marked.
 * Preprocessing, dependency generation and queries (-E, -M, --version, ...) go
 * to clang untouched. A failing compile gives clang's own output and exit code.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../mcr-ctl/elf.h" /* the ELF reader of mcr-ctl */
#include "mcr/qp.h"
#include "qpconfig.h"

/* Defined by runtime/blocking.c (the mcr/qp.h names and the fortified variants). */
static const char *const blocking_wrappers[] = {
    "epoll_wait", "epoll_pwait", "poll", "ppoll", "select", "pselect", "accept", "accept4",
    "read", "recv", "recvfrom", "recvmsg", "pthread_cond_wait", "pthread_cond_timedwait",
    "sem_wait", "sem_timedwait", "nanosleep", "clock_nanosleep", "usleep", "sleep",
    "sigsuspend", "sigwait", "sigwaitinfo", "sigtimedwait", "pause", "__read_chk",
    "__recv_chk", "__recvfrom_chk", "__poll_chk", "__ppoll_chk", "pthread_create", NULL};

/* Defined by runtime/startup.c (the startup log's wrappers). */
static const char *const startup_wrappers[] = {
    "socket", "socketpair", "bind", "listen", "setsockopt", "open", "open64", "openat",
    "openat64", "creat", "creat64", "__open_2", "__open64_2", "__openat_2", "__openat64_2",
    "close", "pipe", "pipe2", "epoll_create", "epoll_create1", "epoll_ctl", "eventfd", "signalfd",
    "timerfd_create", "timerfd_settime", "dup", "dup2", "dup3", "fork", "setsid", "chdir",
    "fchdir", "setuid", "setgid", "seteuid", "setegid", "setreuid", "setregid", "setresuid",
    "setresgid", "setgroups", "initgroups", "prctl", "mmap", "mmap64", NULL};

#ifndef MCR_CLANG_PATH
#define MCR_CLANG_PATH "/usr/lib/llvm-16/bin/clang"
#endif
#ifndef MCR_CLANGXX_PATH
#define MCR_CLANGXX_PATH "/usr/lib/llvm-16/bin/clang++"
#endif

static const char *prog = "mcr-clang";

static void die(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s: error: ", prog);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

static void usage(void) {
  printf("usage: %s [--mcr-wrappers=FILE] [--mcr-profile | --mcr-quiescence=FILE]\n"
         "       [clang arguments...]\n"
         "\n"
         "A drop-in C compiler (CC=%s) that builds programs mcr can live-update.\n"
         "Every argument except the --mcr-* options below goes to clang-16 unchanged.\n"
         "\n"
         "mcr options:\n"
         "  --mcr-wrappers=FILE   the program's allocator wrappers (their calls are\n"
         "                        allocation sites), the functions that give objects\n"
         "                        back to its own free lists, and type annotations for\n"
         "                        what inference cannot see (format: docs/wrappers.md;\n"
         "                        or env MCR_WRAPPERS)\n"
         "  --mcr-profile         build the profiling variant, to run under mcr-profile:\n"
         "                        no inlining, no sibling calls, frame pointers (every\n"
         "                        frame of the source is seen at run time), and a table\n"
         "                        of every call site in section mcr_calls\n"
         "  --mcr-quiescence=FILE build the production variant: mark the quiescent\n"
         "                        points of FILE, the config mcr-profile wrote (format:\n"
         "                        docs/quiescence.md). A malformed config stops the\n"
         "                        build with its file and line. Linking the executable\n"
         "                        the config's 'program' line names checks that every\n"
         "                        quiescent point was marked; if one was not (a config\n"
         "                        of another program or version), the output is deleted\n"
         "                        and the link fails\n"
         "  --mcr-help            this text\n"
         "\n"
         "Environment:\n"
         "  MCR_WRAPPERS=FILE     as --mcr-wrappers\n"
         "  MCR_PROFILE=1         as --mcr-profile\n"
         "  MCR_QUIESCENCE=FILE   as --mcr-quiescence\n"
         "  MCR_CLANG=PATH        the clang to run (default %s)\n"
         "\n"
         "What it adds: when compiling, -g and the type-tagging pass; when linking an\n"
         "executable, the mcr runtime (its malloc replaces the C library's); when\n"
         "linking a shared object, weak stubs. -E, -M, -MM and queries are untouched.\n",
         prog, prog, MCR_CLANG_PATH);
}

/* ---- argument list ---- */

struct args {
  char **v;
  size_t n, cap;
};

static void push(struct args *a, const char *s) {
  if (a->n + 2 > a->cap) {
    a->cap = a->cap ? a->cap * 2 : 64;
    a->v = realloc(a->v, a->cap * sizeof(*a->v));
    if (!a->v)
      die("out of memory");
  }
  a->v[a->n++] = (char *)s;
  a->v[a->n] = NULL;
}

/* Response files are expanded for our analysis only; clang gets them as is. */
static void expand_response(struct args *out, const char *path, int depth) {
  FILE *f = fopen(path, "r");
  if (!f || depth > 8) {
    if (f)
      fclose(f);
    push(out, path - 1); /* clang reports the missing file itself */
    return;
  }
  char buf[8192];
  size_t len = 0;
  int c, q = 0, have = 0;
  while ((c = fgetc(f)) != EOF) {
    if (q) {
      if (c == q) {
        q = 0;
        continue;
      }
      if (c == '\\' && q == '"') {
        int d = fgetc(f);
        if (d != EOF)
          c = d;
      }
    } else if (c == '\'' || c == '"') {
      q = c;
      have = 1;
      continue;
    } else if (c == '\\') {
      int d = fgetc(f);
      if (d == EOF)
        break;
      c = d;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (have || len) {
        buf[len] = 0;
        char *s = strdup(buf);
        if (s[0] == '@')
          expand_response(out, s + 1, depth + 1);
        else
          push(out, s);
      }
      len = 0;
      have = 0;
      continue;
    }
    if (len + 1 < sizeof(buf))
      buf[len++] = (char)c;
    have = 1;
  }
  if (have || len) {
    buf[len] = 0;
    push(out, strdup(buf));
  }
  fclose(f);
}

/* Options whose value is the next argument (so it is not an input file). */
static int takes_value(const char *a) {
  static const char *const opts[] = {
      "-o", "-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote",
      "-idirafter", "-iprefix", "-iwithprefix", "-iwithprefixbefore", "-isysroot",
      "-x", "-MF", "-MT", "-MQ", "-L", "-l", "-Xlinker", "-Xclang", "-Xassembler",
      "-Xpreprocessor", "-Xanalyzer", "-Xopenmp-target", "-arch", "-target", "-T",
      "-u", "-z", "-e", "-mllvm", "-aux-info", "-F", "-rpath", "-install_name",
      "-framework", "-dependency-file", "-MJ", "-ivfsoverlay", "-resource-dir",
      "--param", "-std-default", "-gcc-toolchain", "-B", NULL};
  for (int i = 0; opts[i]; i++)
    if (strcmp(a, opts[i]) == 0)
      return 1;
  return 0;
}

static int has_suffix(const char *s, const char *suf) {
  size_t n = strlen(s), m = strlen(suf);
  return n >= m && strcmp(s + n - m, suf) == 0;
}

/* Inputs the pass sees (assembly does not go through LLVM IR). */
static int is_source(const char *f) {
  static const char *const ext[] = {".c", ".i", ".C", ".cc", ".cpp", ".cxx", ".c++",
                                    ".ii", ".m", ".mi", NULL};
  for (int i = 0; ext[i]; i++)
    if (has_suffix(f, ext[i]))
      return 1;
  return 0;
}

/* What the command line asks clang to do. */
struct mode {
  int query;       /* --version, -###, -print-*, no inputs: pass through */
  int preprocess;  /* -E, -M, -MM, -fsyntax-only: no code generated */
  int compile_only;/* -c, -S, -emit-llvm */
  int shared;      /* -shared */
  int relocatable; /* -r */
  int nostdlib;    /* -nostdlib, -nodefaultlibs, -nolibc */
  int sources;     /* source inputs to compile */
  int inputs;      /* all inputs */
};

static void classify(struct args *a, struct mode *m) {
  int forced_lang = 0;
  for (size_t i = 1; i < a->n; i++) {
    const char *s = a->v[i];
    if (s[0] != '-' || s[1] == 0) {
      m->inputs++;
      if (forced_lang ? !has_suffix(s, ".o") && !has_suffix(s, ".a") && !has_suffix(s, ".so")
                      : is_source(s))
        m->sources++;
      continue;
    }
    if (strncmp(s, "-x", 2) == 0) {
      const char *lang = s[2] ? s + 2 : (i + 1 < a->n ? a->v[++i] : "none");
      forced_lang = strcmp(lang, "none") != 0 && strncmp(lang, "assembler", 9) != 0;
      continue;
    }
    if (takes_value(s)) {
      i++;
      continue;
    }
    if (!strcmp(s, "-E") || !strcmp(s, "-M") || !strcmp(s, "-MM") ||
        !strcmp(s, "-fsyntax-only") || !strcmp(s, "-P"))
      m->preprocess |= strcmp(s, "-P") != 0;
    else if (!strcmp(s, "-c") || !strcmp(s, "-S") || !strcmp(s, "-emit-llvm"))
      m->compile_only = 1;
    else if (!strcmp(s, "-shared"))
      m->shared = 1;
    else if (!strcmp(s, "-r"))
      m->relocatable = 1;
    else if (!strcmp(s, "-nostdlib") || !strcmp(s, "-nodefaultlibs") ||
             !strcmp(s, "-nolibc"))
      m->nostdlib = 1;
    else if (!strcmp(s, "-###") || !strcmp(s, "--version") || !strcmp(s, "-v") ||
             !strcmp(s, "--help") || !strcmp(s, "-dumpversion") ||
             !strcmp(s, "-dumpmachine") || !strncmp(s, "-print-", 7) ||
             !strncmp(s, "--print-", 8) || !strcmp(s, "-V") || !strcmp(s, "-qversion"))
      m->query = 1;
  }
  if (!m->inputs)
    m->query = 1;
}

/* ---- wrapper config: checked here so mistakes name file and line ---- */

static void check_wrappers(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f)
    die("cannot read allocator wrapper file '%s': %s", path, strerror(errno));
  char line[1024];
  int lineno = 0;
  while (fgets(line, sizeof(line), f)) {
    lineno++;
    char *hash = strchr(line, '#');
    if (hash)
      *hash = 0;
    char *save = NULL, *w = strtok_r(line, " \t\r\n", &save);
    if (!w)
      continue;
    if (strcmp(w, "type") == 0) {
      char *glob = strtok_r(NULL, " \t\r\n", &save);
      char *type = strtok_r(NULL, " \t\r\n", &save);
      if (!glob || !type)
        die("%s:%d: 'type' needs a function name (or pattern) and a type name", path,
            lineno);
      continue;
    }
    if (strcmp(w, "release") == 0) {
      char *name = strtok_r(NULL, " \t\r\n", &save);
      if (!name)
        die("%s:%d: 'release' needs a function name", path, lineno);
      while ((w = strtok_r(NULL, " \t\r\n", &save))) {
        char *end;
        long v = strncmp(w, "ptr=", 4) == 0 && w[4] ? strtol(w + 4, &end, 10) : -1;
        if (v < 0 || v >= 64 || *end)
          die("%s:%d: bad attribute '%s' for release %s: expected ptr=N (N the 0-based index "
              "of the argument holding the object)",
              path, lineno, w, name);
      }
      continue;
    }
    if (strcmp(w, "wrapper") != 0)
      die("%s:%d: expected 'wrapper NAME [size=N] [count=M] [out=K] [string]', "
          "'release NAME [ptr=N]' or 'type FUNCTION TYPE', found '%s' (see docs/wrappers.md)",
          path, lineno, w);
    char *name = strtok_r(NULL, " \t\r\n", &save);
    if (!name)
      die("%s:%d: 'wrapper' needs a function name", path, lineno);
    while ((w = strtok_r(NULL, " \t\r\n", &save))) {
      char *end;
      if (strcmp(w, "string") == 0)
        continue;
      if (strncmp(w, "size=", 5) == 0 || strncmp(w, "count=", 6) == 0 ||
          strncmp(w, "out=", 4) == 0) {
        const char *num = strchr(w, '=') + 1;
        long v = strtol(num, &end, 10);
        if (*num && !*end && v >= 0 && v < 64)
          continue;
      }
      die("%s:%d: bad attribute '%s' for wrapper %s: expected size=N, count=N or out=N "
          "(N a 0-based argument index) or string",
          path, lineno, w, name);
    }
  }
  fclose(f);
}

/* ---- quiescence config ---- */

static struct mcr_qpconfig *load_qpconfig(const char *path) {
  static struct mcr_qpconfig c;
  char err[1024];
  if (mcr_qpconfig_read(path, &c, err, sizeof(err)))
    die("%s", err);
  return &c;
}

/* The output file of a link: -o's value, else a.out. */
static const char *output_of(struct args *a) {
  const char *out = "a.out";
  for (size_t i = 1; i < a->n; i++) {
    if (!strcmp(a->v[i], "-o") && i + 1 < a->n)
      out = a->v[++i];
    else if (!strncmp(a->v[i], "-o", 2) && a->v[i][2] && strncmp(a->v[i], "-obj", 4))
      out = a->v[i] + 2;
    else if (takes_value(a->v[i]))
      i++;
  }
  return out;
}

/* Whether some struct mcr_qp in the section has this id. Records are 8-aligned
 * and each starts with the magic; only the integer fields are read (the
 * pointers are relocated at load time). */
static int has_qp(const struct mcr_elf_section *s, uint32_t id) {
  for (size_t off = 0; off + sizeof(struct mcr_qp) <= s->size; off += 8) {
    struct mcr_qp q;
    memcpy(&q, s->data + off, sizeof(q));
    if (q.magic != MCR_QP_MAGIC || q.version != MCR_QP_VERSION)
      continue;
    if (q.id == id)
      return 1;
    off += sizeof(q) - 8;
  }
  return 0;
}

/* After linking the executable the config names: every quiescent point must
 * have been marked somewhere, or the config does not fit this program. On a
 * miss the output is deleted and the link fails. */
static int check_link(const struct mcr_qpconfig *c, const char *output) {
  struct mcr_elf elf;
  struct mcr_elf_section sec = {0};
  char msg[256];
  int missing = 0;

  if (mcr_elf_open(&elf, output, msg, sizeof(msg)) != MCR_ELF_OK) {
    fprintf(stderr, "%s: error: cannot check the quiescent points of %s: %s\n", prog, output,
            msg);
    unlink(output);
    return 1;
  }
  if (mcr_elf_section(&elf, MCR_QPS_SECTION, &sec) == -2)
    sec.data = NULL; /* truncated: as if absent */
  for (size_t i = 0; i < c->nqps; i++) {
    const struct mcr_qpc_qp *q = &c->qps[i];
    if (sec.data && has_qp(&sec, q->id))
      continue;
    fprintf(stderr,
            "%s: error: %s:%u: quiescent point '%s' was not instrumented: no call to %s in a "
            "function %s was compiled with this config (profiled from another program or an "
            "older version? run mcr-profile again)\n",
            prog, c->path, q->line, q->stack.text, q->callee, q->stack.frames[q->caller]);
    missing = 1;
  }
  mcr_elf_close(&elf);
  if (missing)
    unlink(output);
  return missing;
}

/* Runs clang and waits: its exit status, or 128 + the signal that ended it. */
static int run(struct args *out) {
  pid_t pid = fork();
  int st;
  if (pid < 0)
    die("cannot fork: %s", strerror(errno));
  if (pid == 0) {
    execv(out->v[0], out->v);
    fprintf(stderr, "%s: error: cannot run %s: %s (set MCR_CLANG or install clang-16)\n",
            prog, out->v[0], strerror(errno));
    _exit(127);
  }
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      die("waiting for %s: %s", out->v[0], strerror(errno));
  if (WIFSIGNALED(st))
    return 128 + WTERMSIG(st);
  return WEXITSTATUS(st);
}

/* ---- main ---- */

static char *libdir(void) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n < 0)
    die("cannot find my own executable (/proc/self/exe): %s", strerror(errno));
  self[n] = 0;
  char *dir = dirname(self);
  char *out;
  if (asprintf(&out, "%s/../lib/mcr", dir) < 0)
    die("out of memory");
  char *real = realpath(out, NULL);
  if (!real)
    die("mcr's libraries are missing at %s (%s): rebuild or reinstall mcr", out,
        strerror(errno));
  return real;
}

static char *need_file(const char *dir, const char *name) {
  char *p;
  if (asprintf(&p, "%s/%s", dir, name) < 0)
    die("out of memory");
  if (access(p, R_OK) != 0)
    die("%s is missing (%s): rebuild or reinstall mcr", p, strerror(errno));
  return p;
}

int main(int argc, char **argv) {
  prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
  int cxx = has_suffix(prog, "++");
  const char *clang = getenv("MCR_CLANG");
  if (!clang || !*clang)
    clang = cxx ? MCR_CLANGXX_PATH : MCR_CLANG_PATH;

  /* Our own options come out; everything else goes to clang as given. */
  struct args user = {0};
  const char *wrappers = getenv("MCR_WRAPPERS");
  const char *quiescence = getenv("MCR_QUIESCENCE");
  const char *p = getenv("MCR_PROFILE");
  int profile = p && *p && strcmp(p, "0") != 0;
  push(&user, clang);
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "--mcr-wrappers=", 15) == 0) {
      wrappers = argv[i] + 15;
    } else if (strcmp(argv[i], "--mcr-profile") == 0) {
      profile = 1;
    } else if (strncmp(argv[i], "--mcr-quiescence=", 17) == 0) {
      quiescence = argv[i] + 17;
      if (!*quiescence)
        die("--mcr-quiescence needs a file (the config mcr-profile wrote)");
    } else if (strcmp(argv[i], "--mcr-help") == 0) {
      usage();
      return 0;
    } else if (strncmp(argv[i], "--mcr-", 6) == 0) {
      die("unknown option '%s' (see %s --mcr-help)", argv[i], prog);
    } else {
      push(&user, argv[i]);
    }
  }
  if (argc == 2 && strcmp(argv[1], "--help") == 0) {
    usage();
    printf("\nclang's own options follow.\n\n");
    fflush(stdout);
  }

  /* Classify with response files expanded. */
  struct args flat = {0};
  for (size_t i = 0; i < user.n; i++) {
    if (user.v[i][0] == '@' && i > 0)
      expand_response(&flat, user.v[i] + 1, 0);
    else
      push(&flat, user.v[i]);
  }
  struct mode m = {0};
  classify(&flat, &m);

  struct args out = {0};
  for (size_t i = 0; i < user.n; i++)
    push(&out, user.v[i]);

  if (quiescence && !*quiescence)
    quiescence = NULL;
  if (profile && quiescence)
    die("--mcr-profile (or MCR_PROFILE) and --mcr-quiescence (or MCR_QUIESCENCE) do not "
        "go together: profile with the first, then build with the config it wrote");
  /* Only the pass reads this; mcr-clang passes it on as 1 or not at all. */
  unsetenv("MCR_PROFILE");

  struct mcr_qpconfig *qpc = NULL;
  int check = 0;
  if (!m.query && m.sources) {
    /* <mcr/transform.h> for user transformations, after the user's own dirs
     * (also when only preprocessing: dependency scans see it too) */
    push(&out, "-idirafter");
    push(&out, need_file(libdir(), "include"));
  }
  if (!m.query && !m.preprocess) {
    char *dir = libdir();
    if (m.sources) {
      char *plugin = need_file(dir, "MCRPass.so");
      char *flag;
      if (asprintf(&flag, "-fpass-plugin=%s", plugin) < 0)
        die("out of memory");
      /* After the user's flags, so -g0 or -gline-tables-only can't drop types. */
      push(&out, "-g");
      /* Describe every declared struct, also those a unit reaches only
       * through an extern global (extern struct redisServer server). */
      push(&out, "-fno-eliminate-unused-debug-types");
      push(&out, flag);
      if (wrappers && *wrappers) {
        check_wrappers(wrappers);
        char *abs = realpath(wrappers, NULL);
        setenv("MCR_WRAPPERS", abs ? abs : wrappers, 1);
      }
      if (profile) {
        /* After the user's flags: every frame the profiler sees at run time
         * is a function of the source, so stacks match the config's. */
        push(&out, "-fno-inline");
        push(&out, "-fno-optimize-sibling-calls");
        push(&out, "-fno-omit-frame-pointer");
        setenv("MCR_PROFILE", "1", 1);
      }
    }
    if (quiescence) {
      qpc = load_qpconfig(quiescence);
      char *abs = realpath(quiescence, NULL);
      setenv("MCR_QUIESCENCE", abs ? abs : quiescence, 1);
      /* Only the program the config was profiled from: build helpers and
       * configure's test programs link with the same CC. */
      const char *o = output_of(&flat);
      const char *base = strrchr(o, '/') ? strrchr(o, '/') + 1 : o;
      check = !m.compile_only && !m.relocatable && !m.shared && !strcmp(base, qpc->program);
    }
    if (!m.compile_only && !m.relocatable) {
      if (m.shared || m.nostdlib) {
        push(&out, need_file(dir, "libmcr_stub.a"));
      } else {
        push(&out, "-Wl,--whole-archive");
        push(&out, need_file(dir, "libmcr_rt.a"));
        push(&out, "-Wl,--no-whole-archive");
        push(&out, "-Wl,--export-dynamic-symbol=__mcr_*");
        /* The runtime's wrappers of blocking functions (runtime/blocking.c) must
         * also win for libraries loaded later with dlopen, which the linker
         * cannot see: export them. */
        for (const char *const *w = blocking_wrappers; *w; w++) {
          char *flag;
          if (asprintf(&flag, "-Wl,--export-dynamic-symbol=%s", *w) < 0)
            die("out of memory");
          push(&out, flag);
        }
        for (const char *const *w = startup_wrappers; *w; w++) {
          char *flag;
          if (asprintf(&flag, "-Wl,--export-dynamic-symbol=%s", *w) < 0)
            die("out of memory");
          push(&out, flag);
        }
        push(&out, "-lpthread");
        /* the control socket's messages (runtime/control.c) */
        push(&out, "-lprotobuf-c");
        /* the quiescence grace period (runtime/quiesce.c) */
        push(&out, "-lurcu-bp");
      }
    }
  }

  if (check) {
    int rc = run(&out);
    if (rc)
      return rc;
    return check_link(qpc, output_of(&flat));
  }
  execv(clang, out.v);
  die("cannot run %s: %s (set MCR_CLANG or install clang-16)", clang, strerror(errno));
  return 1;
}
