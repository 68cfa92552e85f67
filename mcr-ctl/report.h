/*
 * report.h - the conflict report file (proto/report.proto, docs/update.md
 * "Conflict reports"): what mcr-ctl update writes when an update rolls back and
 * mcr-ctl report reads.
 *
 * The file: the 8-byte magic "MCRREPT1", then three little-endian u32 (the schema
 * version, the payload length, the CRC-32 of the payload), then the payload: one
 * packed mcr.report.Report. reportfile.c reads and writes it (no other mcr-ctl
 * code: the tests link it alone); report.c renders it.
 */
#ifndef MCR_CTL_REPORT_H
#define MCR_CTL_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "report.pb-c.h"

#define CTL_REPORT_MAGIC "MCRREPT1"
#define CTL_REPORT_MAGIC_LEN 8
#define CTL_REPORT_HEADER_LEN 20
/* The schema this mcr writes and the newest it reads. */
#define CTL_REPORT_SCHEMA 1
/* Larger payloads are refused (a report holds at most a few hundred KB). */
#define CTL_REPORT_MAX_PAYLOAD (64u << 20)

/* CRC-32 (IEEE 802.3, reflected, as zlib's crc32). */
uint32_t ctl_crc32(const void *p, size_t n);

/* Writes header + payload to path atomically (a temporary file next to it,
 * then rename). Returns 0, or -1 with err set to one line naming the file that
 * failed, the step and the errno text. */
int ctl_report_write_bytes(const char *path, uint32_t schema, const void *payload, size_t len,
                           char *err, size_t errlen);
/* Packs r and writes it (schema CTL_REPORT_SCHEMA). */
int ctl_report_write(const char *path, const Mcr__Report__Report *r, char *err, size_t errlen);

/* Reads and checks the report at path. Returns 0 and *out (free it with
 * mcr__report__report__free_unpacked(*out, NULL)), or -1 with err set to one line
 * "PATH: what is wrong" (missing, empty, not a report, truncated, corrupt, from a
 * newer schema). */
int ctl_report_read(const char *path, Mcr__Report__Report **out, char *err, size_t errlen);

/* report.c: JSON of conflicts (an array), shared with mcr-ctl update --json. */
void ctl_report_json_conflicts(FILE *f, Mcr__Report__Conflict *const *c, size_t n);

#endif /* MCR_CTL_REPORT_H */
