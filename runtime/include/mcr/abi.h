/*
 * mcr/abi.h - the contract between the mcr compiler pass and the mcr runtime.
 *
 * The pass (llvm-passes/TypeTags.cpp) emits, per translation unit:
 *   - one type table ("blob") in ELF section MCR_TYPES_SECTION: a self-contained,
 *     pointer-free, little-endian byte array described by the structs below, so
 *     tools can read it straight from an ELF file (mcr-ctl types) and the runtime
 *     can read it in memory;
 *   - one struct mcr_site per allocation site, in the writable section
 *     MCR_SITES_SECTION;
 *   - a call to __mcr_tag() after every allocation call, and a module constructor
 *     calling __mcr_register_types() with the bounds of the output's type section.
 *
 * Everything the pass inserts calls an extern "C" entry point named __mcr_*;
 * nothing else of the runtime is visible to instrumented code.
 *
 * Versioning: a reader refuses a blob whose version it does not know; fields are
 * only ever appended (header_size and the *_size fields tell a reader how large
 * each record is), never reordered or reused.
 */
#ifndef MCR_ABI_H
#define MCR_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MCR_TYPES_SECTION "mcr_types"
#define MCR_SITES_SECTION "mcr_sites"

#define MCR_BLOB_MAGIC 0x5452434dU /* "MCRT" little-endian */
#define MCR_BLOB_VERSION 1
#define MCR_BLOB_ALIGN 8 /* blobs are padded to and aligned on this */

/* A type index that names no type. */
#define MCR_NO_TYPE 0xffffffffU

/* Per-object heap tags kept by the runtime allocator. */
#define MCR_TAG_FREE 0U    /* slot not allocated */
#define MCR_TAG_UNTYPED 1U /* allocated by code the pass did not see */
/* allocated, but back on the program's own free list (a configured release
 * function, __mcr_untag): its words are dead to the program but the list's link,
 * which points to objects of the same list, never converted ones. So it is kept
 * as it is and its words point to nothing (no conservative pins). */
#define MCR_TAG_RELEASED 2U
#define MCR_TAG_FIRST_SITE 3U
#define MCR_TAG_MAX 0xffffU /* tags are 16 bits; later sites leave objects untyped */

/* Largest header an allocator wrapper may put before the object it returns. */
#define MCR_TAG_MAX_HEADER 16U

/* All *_off fields are byte offsets from the start of the blob; all string
 * fields are offsets into the string table, where offset 0 is "". */
struct mcr_blob_header {
  uint32_t magic;       /* MCR_BLOB_MAGIC */
  uint16_t version;     /* MCR_BLOB_VERSION */
  uint16_t header_size; /* sizeof(struct mcr_blob_header) */
  uint32_t total_size;  /* whole blob, a multiple of MCR_BLOB_ALIGN */
  uint32_t module;      /* str: source file of the translation unit */
  uint32_t comp_dir;    /* str: compilation directory */
  uint32_t producer;    /* str: pass name and LLVM version */
  uint32_t types_off, ntypes, type_size;       /* struct mcr_type_rec[] */
  uint32_t members_off, nmembers, member_size; /* struct mcr_member_rec[] */
  uint32_t sites_off, nsites, site_size;       /* struct mcr_site_rec[] */
  uint32_t globals_off, nglobals, global_size; /* struct mcr_global_rec[] */
  uint32_t strtab_off, strtab_size;
};

enum mcr_type_kind {
  MCR_TYPE_VOID = 0,
  MCR_TYPE_INT = 1,      /* integers, characters, _Bool; see MCR_TF_* flags */
  MCR_TYPE_FLOAT = 2,    /* float, double, long double */
  MCR_TYPE_POINTER = 3,  /* target: pointee (a VOID type for void *) */
  MCR_TYPE_ARRAY = 4,    /* target: element; count: elements (0 + FLEXIBLE if unknown) */
  MCR_TYPE_STRUCT = 5,   /* members [first_member, first_member + count) */
  MCR_TYPE_UNION = 6,    /* members as for struct, all at offset 0 */
  MCR_TYPE_ENUM = 7,     /* members are enumerators: value in offset_bits; target: underlying */
  MCR_TYPE_FUNCTION = 8, /* target: return type; count: parameters (members hold their types) */
  MCR_TYPE_TYPEDEF = 9,  /* name; target */
};

enum mcr_type_flags {
  MCR_TF_SIGNED = 1 << 0,     /* INT: signed */
  MCR_TF_CHAR = 1 << 1,       /* INT: a character type (char, signed/unsigned char) */
  MCR_TF_BOOL = 1 << 2,       /* INT: _Bool */
  MCR_TF_INCOMPLETE = 1 << 3, /* STRUCT/UNION/ENUM: declared but not defined in this TU */
  MCR_TF_FLEXIBLE = 1 << 4,   /* ARRAY: no bound (flexible array member, T x[]) */
  MCR_TF_VARIADIC = 1 << 5,   /* FUNCTION: takes ... */
};

struct mcr_type_rec {
  uint8_t kind;  /* enum mcr_type_kind */
  uint8_t flags; /* enum mcr_type_flags */
  uint16_t reserved;
  uint32_t name;         /* str: tag or typedef or base-type name; "" if anonymous */
  uint64_t size;         /* bytes; 0 for void, functions, incomplete types */
  uint32_t target;       /* see kinds; MCR_NO_TYPE if none */
  uint32_t count;        /* see kinds */
  uint32_t first_member; /* index into the member table */
  uint32_t decl_file;    /* str: where a struct/union/enum/typedef is declared */
  uint32_t decl_line;
  uint32_t reserved2;
};

struct mcr_member_rec {
  uint32_t name;        /* str; "" for anonymous members and function parameters */
  uint32_t type;        /* type index */
  uint64_t offset_bits; /* from the start of the struct; enumerators: the value */
  uint32_t bit_size;    /* 0 unless a bitfield */
  uint32_t reserved;
};

/* What an allocation holds, given its element type T. */
enum mcr_site_shape {
  MCR_SHAPE_UNKNOWN = 0, /* no type: see reason */
  MCR_SHAPE_SINGLE = 1,  /* one T (size == sizeof T) */
  MCR_SHAPE_ARRAY = 2,   /* size / sizeof T elements of T */
  MCR_SHAPE_FLEX = 3,    /* one T whose flexible array member takes the rest */
};

struct mcr_site_rec {
  uint32_t file;     /* str */
  uint32_t line;
  uint32_t column;
  uint32_t function; /* str: enclosing function (linkage name) */
  uint32_t callee;   /* str: "malloc", "calloc", a configured wrapper, ... */
  uint32_t type;     /* element type T, or MCR_NO_TYPE */
  uint32_t shape;    /* enum mcr_site_shape */
  uint32_t reason;   /* str: why there is no type (type == MCR_NO_TYPE) */
  uint32_t evidence; /* str: where the type came from ("local variable 'c'", ...) */
  uint32_t reserved;
};

enum mcr_global_flags {
  MCR_GF_INTERNAL = 1 << 0,     /* file-scope static (internal linkage) */
  MCR_GF_LOCAL_STATIC = 1 << 1, /* a static variable inside a function (scope names it) */
  MCR_GF_TLS = 1 << 2,          /* thread-local */
  MCR_GF_CONST = 1 << 3,        /* read-only (never needs transfer) */
  MCR_GF_DECL_ONLY = 1 << 4,    /* reserved */
};

struct mcr_global_rec {
  uint32_t name;   /* str: the C name */
  uint32_t symbol; /* str: the symbol name in the object file */
  uint32_t type;   /* type index, or MCR_NO_TYPE */
  uint32_t file;   /* str */
  uint32_t line;
  uint32_t flags; /* enum mcr_global_flags */
  uint32_t scope; /* str: enclosing function of a static local, else "" */
  uint32_t reserved;
  uint64_t size; /* bytes, from the IR */
};

/* One per allocation site, in MCR_SITES_SECTION (writable). */
struct mcr_site {
  const struct mcr_blob_header *blob; /* the TU's type table */
  uint32_t index;                     /* into the blob's site records */
  uint32_t id; /* process-wide heap tag, given by the runtime on first use; 0 = none yet */
};

/* Entry points the pass calls. */

/* Called by a constructor of every instrumented translation unit with the bounds of
 * the type section of the output (executable or shared object) it was linked into.
 * Several calls with the same bounds are expected and harmless. */
void __mcr_register_types(const char *start, const char *stop);

/* Called right after every allocation call with its result. The result may be NULL,
 * or point up to MCR_TAG_MAX_HEADER bytes into the object (allocator wrappers with
 * a size prefix); deeper inside it is a sub-allocation (a pool's) and the object's
 * tag is left alone. */
void __mcr_tag(void *ptr, struct mcr_site *site);

/* Called instead of __mcr_tag after a call to a configured allocator wrapper
 * with a size argument, with the size it asked for (times the count, for a
 * calloc-like one): while the startup is recorded, a result inside a heap
 * object (a pool's piece) is recorded as a startup object of its own. */
void __mcr_tag_sized(void *ptr, struct mcr_site *site, uint64_t size);

/* Called after allocators that return the object through a pointer argument
 * (posix_memalign): tags *out if rc == 0. */
void __mcr_tag_out(int rc, void **out, struct mcr_site *site);

/* Called right before a call to a configured release function (wrappers config:
 * "release NAME ptr=K") with the object it gets back: the object goes to the
 * program's own free list, so it is MCR_TAG_RELEASED until it is handed out
 * again. NULL, foreign pointers and pointers deeper than MCR_TAG_MAX_HEADER are
 * ignored. */
void __mcr_untag(void *ptr);

/* Stack objects (mcr-clang --mcr-quiescence): a function on a quiescent
 * point's call stack registers each of its local variables whose address it
 * lets out (a timer event nginx's cache manager links into the global timer
 * tree) on entry, with its site (type), and drops it before each return. An
 * update copies the parked old thread's into the new thread's same variable
 * and moves pointers to it (docs/update.md, "Stack objects"). */
void __mcr_stack_push(void *addr, struct mcr_site *site, uint64_t size);
void __mcr_stack_drop(void *addr);

#ifdef __cplusplus
}
#endif

#endif /* MCR_ABI_H */
