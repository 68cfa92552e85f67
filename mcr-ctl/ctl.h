/*
 * ctl.h - what the mcr-ctl commands share: their entry points and error reporting.
 *
 * Each command lives in its own file (types.c: mcr-ctl types, status.c: mcr-ctl status) and is listed in the
 * command table of main.c. A command returns the process exit status:
 * 0 success, 1 refused or rolled back (update), 2 bad usage or bad input.
 */
#ifndef MCR_CTL_H
#define MCR_CTL_H

#define CTL_EXIT_OK 0
#define CTL_EXIT_FAILED 1
#define CTL_EXIT_USAGE 2

/* Prints "mcr-ctl: " and the message as one line on stderr. */
void ctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* mcr-ctl types BINARY [--json] [--sites-only|--globals-only]; argv[0] is "types". */
int cmd_types(int argc, char **argv);
void cmd_types_help(void);

/* mcr-ctl status PID [--json] [--timeout SEC]; argv[0] is "status" (status.c). */
int cmd_status(int argc, char **argv);
void cmd_status_help(void);

/* Grows *arr (elements of elem bytes, *cap of them) to hold need: 0, or -1 with
 * *arr unchanged (mem.c). */
int ctl_grow(void **arr, size_t *cap, size_t need, size_t elem);
/* A malloc'ed formatted string, or NULL (mem.c). */
char *ctl_fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

/* Writes s to f as a JSON string; NULL as null (json.c). */
#include <stdio.h>
void ctl_json_str(FILE *f, const char *s);
/* Length of the valid UTF-8 sequence at s, or 0 if s does not start one. */
int ctl_utf8_len(const unsigned char *s);

int cmd_quiesce(int argc, char **argv);
void cmd_quiesce_help(void);

/* mcr-ctl update PID NEW [--timeout SEC] [--report FILE] [--json] (update.c). */
int cmd_update(int argc, char **argv);
void cmd_update_help(void);

/* mcr-ctl check OLD NEW [--move-field TYPE.OLD=NEW]... [--json] (check.c). */
int cmd_check(int argc, char **argv);
void cmd_check_help(void);

/* The field moves of r ("@TYPE.OLD=NEW", rename.h) checked against the type
 * tables of the executables old_path and new_path (check.c): 0, or -1 after a
 * message (prefixed "cmd: ") naming the move or the unreadable executable. */
struct mcr_renames;
int ctl_check_moves(const char *cmd, const char *old_path, const char *new_path,
                    const struct mcr_renames *r);

/* mcr-ctl report FILE [--json] (report.c). */
int cmd_report(int argc, char **argv);
void cmd_report_help(void);

#endif /* MCR_CTL_H */
