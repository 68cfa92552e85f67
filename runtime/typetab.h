/*
 * typetab.h - reader of mcr type tables (abi.h: struct mcr_blob_header and friends).
 *
 * Shared by the runtime (inside production servers) and mcr-ctl. The reader never
 * trusts its input: mcr_typetab_open() validates a blob completely (header, every
 * offset, count, record size, string offset, type and member index, and the depth
 * of type chains), after which the accessors and the renderer cannot read outside
 * the blob. Nothing here allocates, prints, aborts or exits; records are copied out
 * with memcpy, so blobs need no particular alignment.
 *
 * Errors: functions returning int return 0 on success and -1 on failure, filling
 * the optional struct mcr_typetab_error with what is wrong and where.
 */
#ifndef MCR_TYPETAB_H
#define MCR_TYPETAB_H

#include <stddef.h>
#include <stdint.h>

#include "mcr/abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest chain of pointer/array/typedef/function links the reader follows before it
 * calls a type graph cyclic or too deep (C types never get near it). */
#define MCR_TYPE_MAX_DEPTH 64

struct mcr_typetab_error {
  uint64_t offset; /* byte offset of the problem, from the start of the buffer given */
  char msg[200];   /* "type 3: target 99 out of range (12 types)", NUL-terminated */
};

/* A validated view of one blob. Fill it with mcr_typetab_open(); it points into the
 * caller's buffer, which must outlive it. Fields are read-only for callers. */
struct mcr_typetab {
  const unsigned char *base; /* first byte of the blob */
  uint32_t size;             /* header.total_size */
  struct mcr_blob_header hdr;
};

/*
 * Iterates the blobs of a section (concatenated, each aligned on MCR_BLOB_ALIGN from
 * the start of the section, possibly with zero padding between them). *pos is the
 * cursor: start at 0. Returns 1 and sets *blob and *blob_len to the next blob (only its
 * magic and total_size have been checked: validate it with mcr_typetab_open), 0 at
 * the end, -1 if the section holds something that is not a blob.
 */
int mcr_typetab_next(const void *sec, size_t sec_len, size_t *pos, const void **blob,
                     size_t *blob_len, struct mcr_typetab_error *err);

/* Validates the blob at buf (len bytes available, total_size may be smaller) and
 * fills *tt. Error offsets are relative to buf. */
int mcr_typetab_open(struct mcr_typetab *tt, const void *buf, size_t len,
                     struct mcr_typetab_error *err);

/* Counts. */
static inline uint32_t mcr_typetab_ntypes(const struct mcr_typetab *tt) { return tt->hdr.ntypes; }
static inline uint32_t mcr_typetab_nmembers(const struct mcr_typetab *tt) { return tt->hdr.nmembers; }
static inline uint32_t mcr_typetab_nsites(const struct mcr_typetab *tt) { return tt->hdr.nsites; }
static inline uint32_t mcr_typetab_nglobals(const struct mcr_typetab *tt) { return tt->hdr.nglobals; }

/* Copy record i out (fields a newer writer appended are dropped). Return -1 if i is
 * out of range. */
int mcr_typetab_type(const struct mcr_typetab *tt, uint32_t i, struct mcr_type_rec *out);
int mcr_typetab_member(const struct mcr_typetab *tt, uint32_t i, struct mcr_member_rec *out);
int mcr_typetab_site(const struct mcr_typetab *tt, uint32_t i, struct mcr_site_rec *out);
int mcr_typetab_global(const struct mcr_typetab *tt, uint32_t i, struct mcr_global_rec *out);

/* The string at offset off of the string table, or NULL if off is out of range. Every
 * string field of a validated blob's records is in range. */
const char *mcr_typetab_str(const struct mcr_typetab *tt, uint32_t off);

/*
 * Spells type t as C does, as an abstract declarator: "int", "unsigned long",
 * "char *", "struct client *", "robj", "char [16]", "struct node *[8]",
 * "int (*)(void *, int)", "void (*[4])(void)", "union u", "enum e", "char []".
 * MCR_NO_TYPE renders as "void". Like snprintf: writes at most len bytes including
 * the NUL (buf may be NULL if len is 0) and returns the length the whole string has;
 * -1 if t is out of range or the type graph is malformed.
 */
int mcr_type_render(const struct mcr_typetab *tt, uint32_t t, char *buf, size_t len);

/* Spells what an allocation holds given its element type and enum mcr_site_shape:
 * SINGLE and FLEX -> "struct client", ARRAY -> "char []" (an array of unknown
 * bound of the element type). Returns as mcr_type_render; -1 too for
 * MCR_SHAPE_UNKNOWN, an unknown shape or MCR_NO_TYPE. */
int mcr_type_render_shape(const struct mcr_typetab *tt, uint32_t t, uint32_t shape,
                          char *buf, size_t len);

/* Type t through its typedefs: 0 with the first other record in *out (and its
 * index in *idx, if idx), or -1 (MCR_NO_TYPE, a bad index, a chain too long). */
int mcr_typetab_strip(const struct mcr_typetab *tt, uint32_t t, struct mcr_type_rec *out,
                      uint32_t *idx);

/* The name type t goes by: its struct/union/enum tag or typedef name, the first met
 * through typedefs (MCR_TRANSFORM_TYPE uses it), or NULL for an anonymous type. */
const char *mcr_type_name(const struct mcr_typetab *tt, uint32_t t);

/* The key that pairs allocation site i across versions of a program:
 * "module|function|callee|ordinal", the ordinal counting the module's earlier sites
 * with the same function and callee (line numbers move with any change, these do
 * not). Like snprintf into buf; 0, or -1 if i is out of range or buf too small. */
int mcr_typetab_site_key(const struct mcr_typetab *tt, uint32_t i, char *buf, size_t len);

/* "single", "array", "flex", or "unknown". */
const char *mcr_site_shape_name(uint32_t shape);

#ifdef __cplusplus
}
#endif

#endif /* MCR_TYPETAB_H */
