/*
 * elf.h - just enough ELF64 reading for mcr-ctl: open a file, check that it is an
 * x86-64 ELF64, find sections by name. Everything read from the file is bounds-
 * checked; no libelf.
 */
#ifndef MCR_CTL_ELF_H
#define MCR_CTL_ELF_H

#include <stddef.h>
#include <stdint.h>

enum mcr_elf_status {
  MCR_ELF_OK = 0,
  MCR_ELF_EIO,       /* could not open, stat, map or read the file (errno in msg) */
  MCR_ELF_NOT_ELF,   /* no ELF magic */
  MCR_ELF_WRONG_ARCH,/* ELF, but not little-endian ELF64 for x86-64 */
  MCR_ELF_CORRUPT,   /* ELF64 x86-64 whose headers or section table do not hold together */
};

struct mcr_elf {
  const char *path;
  const unsigned char *data; /* the whole file, mapped read-only */
  size_t size;
  const unsigned char *shdrs; /* section header table (validated) */
  size_t shnum;
  const char *shstrtab; /* section name table (validated: ends in NUL) */
  size_t shstrtab_size;
};

struct mcr_elf_section {
  const char *name;
  uint32_t type;  /* SHT_* */
  uint64_t flags; /* SHF_* */
  uint64_t addr;
  const unsigned char *data; /* NULL for SHT_NOBITS */
  size_t size;               /* bytes of data (0 for SHT_NOBITS) */
  uint64_t offset;           /* in the file */
};

/* Maps and checks path. On failure returns the status and writes one line (no
 * trailing newline, not naming the path) into msg; e is then empty. */
enum mcr_elf_status mcr_elf_open(struct mcr_elf *e, const char *path, char *msg,
                                 size_t msg_len);
void mcr_elf_close(struct mcr_elf *e);

/* Finds the first section named name; returns 0 and fills *out, -1 if there is none,
 * -2 if its data lies (partly) past the end of the file. */
int mcr_elf_section(const struct mcr_elf *e, const char *name, struct mcr_elf_section *out);

/* Whether the file has a symbol table (SHT_SYMTAB), i.e. was not stripped. */
int mcr_elf_has_symtab(const struct mcr_elf *e);

#endif /* MCR_CTL_ELF_H */
