/*
 * types.h - what the runtime knows of the program's types: the type sections
 * of the executable and of instrumented shared objects, and the allocation
 * sites, numbered on first use (the number is the heap tag).
 */
#ifndef MCR_TYPES_H
#define MCR_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include "mcr/abi.h"

struct mcr_module {
  const char *start; /* bounds of the output's MCR_TYPES_SECTION */
  const char *stop;
};

/* The registered type sections, in registration order. */
size_t mcr_types_modules(const struct mcr_module **out);

/* The site with heap tag id, or NULL (untyped, free or unknown tags). */
struct mcr_site *mcr_site_by_id(uint32_t id);

struct mcr_typetab;
struct mcr_site_rec;

/* The site with heap tag id, with its type table opened into *tt and its record
 * copied into *rec. Returns 0, or -1 for untyped, free or unknown tags and for a
 * table that does not validate. */
int mcr_site_record(uint32_t id, struct mcr_typetab *tt, struct mcr_site_rec *rec);

/* The heap tag of site, numbering it now if it has none yet. */
uint32_t mcr_site_id_of(struct mcr_site *site);

/* One past the highest site id handed out so far. */
uint32_t mcr_site_id_limit(void);
/* site's key, the same in every version of the program: "FILE FUNCTION CALLEE
 * ORDINAL" (typetab.h). 0, or -1 when it has none. */
int mcr_site_key(const struct mcr_site *site, char *buf, size_t len);
/* Its hash, or 0. */
uint64_t mcr_site_key_hash(const struct mcr_site *site);

#endif /* MCR_TYPES_H */
