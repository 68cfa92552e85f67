/*
 * test-report.c - writes conflict report files for the mcr-ctl report tests
 * (cli-report.sh) with mcr-ctl's own writer (mcr-ctl/reportfile.c).
 *
 *   test-report full FILE       a report with every field set (values: below, and
 *                               in cli-report.sh's expectations)
 *   test-report minimal FILE    only the schema version: every other field absent
 *   test-report newer FILE      a report of schema 2 (header and payload)
 *   test-report garbage FILE    a payload that is not a Report, with a correct CRC
 *   test-report mismatch FILE   header schema 1, payload schema_version 7
 *   test-report write-to PATH   writes the full report to PATH; on failure prints
 *                               the writer's message on stdout, exit 1
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

static Mcr__Report__Conflict conflicts[3];
static Mcr__Report__Conflict *conflictp[3];
static Mcr__Report__Phase phases[2];
static Mcr__Report__Phase *phasep[2];
static char *notes[] = {"startup replay: 6 calls replayed", "a \"quoted\" note \\ with a backslash"};

static void full(Mcr__Report__Report *r)
{
  r->has_schema_version = 1;
  r->schema_version = 1;
  r->has_created = 1;
  r->created = 1700000000; /* 2023-11-14 22:13:20 UTC */
  r->has_old_pid = 1;
  r->old_pid = 4242;
  r->has_new_pid = 1;
  r->new_pid = 4343;
  r->program = "/srv/kv/kvstore-v1";
  r->new_binary = "/srv/kv/kvstore-v2";
  r->has_committed = 1;
  r->committed = 0;
  r->has_pause_us = 1;
  r->pause_us = 12345;
  r->has_total_us = 1;
  r->total_us = 678901;
  r->mcr_version = "9.8.7";

  for (int i = 0; i < 3; i++) {
    mcr__report__conflict__init(&conflicts[i]);
    conflictp[i] = &conflicts[i];
  }
  conflicts[0].kind = "type";
  conflicts[0].message = "struct conn changed: field 'fd' is now a pointer (\xc3\xa9t\xc3\xa9)";
  conflicts[0].object = "heap object 0x7f0012345678 (48 bytes)";
  conflicts[0].old_type = "struct conn (48 bytes)";
  conflicts[0].new_type = "struct conn (56 bytes)";
  conflicts[0].old_location = "kvstore.c:41";
  conflicts[0].new_location = "kvstore.c:44:3";
  conflicts[0].stack = "main > accept_conn > new_conn";
  conflicts[0].fix = "keep 'fd' an int, or write a transformer for struct conn";
  conflicts[1].kind = "crash";
  conflicts[1].message = "the new version was killed by signal 9 (Killed)";
  conflicts[2].kind = "startup";
  conflicts[2].message = "bind: the old version made bind(5, 127.0.0.1:80) here";
  conflicts[2].object = "bind(5, 127.0.0.2:80)";
  conflicts[2].stack = "main > init_server";
  conflicts[2].fix = "bind the same address";
  r->n_conflicts = 3;
  r->conflicts = conflictp;

  for (int i = 0; i < 2; i++) {
    mcr__report__phase__init(&phases[i]);
    phasep[i] = &phases[i];
    phases[i].has_us = 1;
  }
  phases[0].name = "startup";
  phases[0].us = 20021;
  phases[0].detail = "new version started, startup replayed, threads parked";
  phases[1].name = "quiesce";
  phases[1].us = 322;
  phases[1].detail = "";
  r->n_phases = 2;
  r->phases = phasep;
  r->n_notes = 2;
  r->notes = notes;
}

static int write_packed(const char *path, uint32_t schema, const Mcr__Report__Report *r)
{
  size_t len = mcr__report__report__get_packed_size(r);
  uint8_t *buf = malloc(len + 1);
  char err[1024];
  int rc;

  if (!buf)
    return 1;
  mcr__report__report__pack(r, buf);
  rc = ctl_report_write_bytes(path, schema, buf, len, err, sizeof(err));
  free(buf);
  if (rc)
    printf("%s\n", err);
  return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
  Mcr__Report__Report r = MCR__REPORT__REPORT__INIT;
  char err[1024];

  if (argc != 3) {
    fprintf(stderr, "usage: test-report full|minimal|newer|garbage|mismatch|write-to FILE\n");
    return 2;
  }
  const char *mode = argv[1], *path = argv[2];
  if (!strcmp(mode, "full") || !strcmp(mode, "write-to")) {
    full(&r);
    if (ctl_report_write(path, &r, err, sizeof(err))) {
      printf("%s\n", err);
      return 1;
    }
    return 0;
  }
  if (!strcmp(mode, "minimal")) {
    r.has_schema_version = 1;
    r.schema_version = 1;
    return write_packed(path, 1, &r);
  }
  if (!strcmp(mode, "newer")) {
    full(&r);
    r.schema_version = 2;
    return write_packed(path, 2, &r);
  }
  if (!strcmp(mode, "mismatch")) {
    full(&r);
    r.schema_version = 7;
    return write_packed(path, 1, &r);
  }
  if (!strcmp(mode, "garbage")) {
    /* field 1 with wire type 7, which does not exist */
    static const unsigned char junk[] = {0x0f, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02};
    if (ctl_report_write_bytes(path, 1, junk, sizeof(junk), err, sizeof(err))) {
      printf("%s\n", err);
      return 1;
    }
    return 0;
  }
  fprintf(stderr, "test-report: unknown mode '%s'\n", mode);
  return 2;
}
