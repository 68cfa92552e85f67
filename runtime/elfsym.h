/*
 * elfsym.h - function names for addresses, from an ELF file's own symbol table.
 *
 * dladdr only sees exported (.dynsym) symbols; a server's static functions are in
 * .symtab, which is not loaded into memory. This reads the file (mapped read-only,
 * nothing allocated on the heap), bounds-checks everything it reads, and finds the
 * function symbol that contains an address. Falls back to .dynsym when the file was
 * stripped.
 */
#ifndef MCR_ELFSYM_H
#define MCR_ELFSYM_H

#include <elf.h>
#include <stddef.h>
#include <stdint.h>

struct mcr_elfsym {
  const unsigned char *map; /* the whole file, or NULL */
  size_t size;
  const unsigned char *syms; /* Elf64_Sym array inside map */
  size_t nsyms;
  const char *strtab; /* its string table, inside map */
  size_t strsz;
};

/* Maps path and finds its symbol table; returns 0 or -1 (s is then empty). */
int mcr_elfsym_open(struct mcr_elfsym *s, const char *path);
void mcr_elfsym_close(struct mcr_elfsym *s);

/* The name of the function symbol whose [value, value + size) contains the
 * link-time address vaddr (for the nearest preceding one when sizes are 0), or
 * NULL. The name points into the mapping. */
const char *mcr_elfsym_lookup(const struct mcr_elfsym *s, uint64_t vaddr);

/* Raw access for readers that need more than function names (runtime/image.c):
 * entry i of the symbol table, of the section table (its name through *name, or
 * "" when the section-name table is unusable). Each returns 0, or -1 past the end;
 * names point into the mapping and are bounds-checked (NUL-terminated inside it). */
int mcr_elfsym_symbol(const struct mcr_elfsym *s, size_t i, Elf64_Sym *sym, const char **name);
int mcr_elfsym_section(const struct mcr_elfsym *s, size_t i, Elf64_Shdr *sh, const char **name);

/* The loaded object (dl_iterate_phdr) that holds addr: its load bias and file
 * ("/proc/self/exe" for the executable). Returns 0, or -1 if none does. */
int mcr_elf_object_of(uintptr_t addr, uintptr_t *bias, char *path, size_t len);

/* Symbolizes an address of this process: finds the loaded object that contains
 * it (dl_iterate_phdr), looks it up in that object's file, and writes the function
 * name, or "OBJECT+0xOFFSET", or "?" into buf. cache (zeroed by the caller, closed
 * with mcr_symbolizer_close) keeps the last file open across calls. */
struct mcr_symbolizer {
  struct mcr_elfsym sym;
  char path[512];
  int ok;
};
void mcr_symbolize(struct mcr_symbolizer *c, uintptr_t addr, char *buf, size_t len);
void mcr_symbolizer_close(struct mcr_symbolizer *c);

#endif /* MCR_ELFSYM_H */
