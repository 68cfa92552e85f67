/*
 * elfsym.c - address to function name from ELF symbol tables; see elfsym.h.
 *
 * Runs only in the control thread, when a request asks for names.
 */
#define _GNU_SOURCE
#include "elfsym.h"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int range_ok(size_t size, uint64_t off, uint64_t len)
{
  return off <= size && len <= size - off;
}

/* Finds a section of the given type with a valid linked string table. */
static int find_table(struct mcr_elfsym *s, const Elf64_Ehdr *eh, uint32_t type)
{
  for (size_t i = 1; i < eh->e_shnum; i++) {
    Elf64_Shdr sh, str;
    memcpy(&sh, s->map + eh->e_shoff + i * sizeof(sh), sizeof(sh));
    if (sh.sh_type != type || sh.sh_entsize != sizeof(Elf64_Sym) ||
        !range_ok(s->size, sh.sh_offset, sh.sh_size) || sh.sh_link >= eh->e_shnum)
      continue;
    memcpy(&str, s->map + eh->e_shoff + sh.sh_link * sizeof(str), sizeof(str));
    if (str.sh_type != SHT_STRTAB || str.sh_size == 0 ||
        !range_ok(s->size, str.sh_offset, str.sh_size) ||
        s->map[str.sh_offset + str.sh_size - 1] != '\0')
      continue;
    s->syms = s->map + sh.sh_offset;
    s->nsyms = sh.sh_size / sizeof(Elf64_Sym);
    s->strtab = (const char *)s->map + str.sh_offset;
    s->strsz = str.sh_size;
    return 0;
  }
  return -1;
}

int mcr_elfsym_open(struct mcr_elfsym *s, const char *path)
{
  struct stat sb;
  Elf64_Ehdr eh;
  void *map;
  int fd;

  memset(s, 0, sizeof(*s));
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  if (fstat(fd, &sb) || !S_ISREG(sb.st_mode) || sb.st_size < (off_t)sizeof(eh)) {
    close(fd);
    return -1;
  }
  map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED)
    return -1;
  s->map = map;
  s->size = (size_t)sb.st_size;
  memcpy(&eh, map, sizeof(eh));
  if (memcmp(eh.e_ident, ELFMAG, SELFMAG) || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shnum == 0 ||
      !range_ok(s->size, eh.e_shoff, (uint64_t)eh.e_shnum * sizeof(Elf64_Shdr)) ||
      (find_table(s, &eh, SHT_SYMTAB) && find_table(s, &eh, SHT_DYNSYM))) {
    mcr_elfsym_close(s);
    return -1;
  }
  return 0;
}

void mcr_elfsym_close(struct mcr_elfsym *s)
{
  if (s->map)
    munmap((void *)s->map, s->size);
  memset(s, 0, sizeof(*s));
}

const char *mcr_elfsym_lookup(const struct mcr_elfsym *s, uint64_t vaddr)
{
  const char *best = NULL;
  uint64_t best_value = 0;

  for (size_t i = 0; i < s->nsyms; i++) {
    Elf64_Sym sym;
    memcpy(&sym, s->syms + i * sizeof(sym), sizeof(sym));
    if (ELF64_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_shndx == SHN_UNDEF ||
        sym.st_name >= s->strsz || sym.st_value > vaddr)
      continue;
    if (sym.st_size ? vaddr - sym.st_value < sym.st_size
                    : (!best || sym.st_value > best_value)) {
      if (sym.st_size)
        return s->strtab + sym.st_name; /* contains it: done */
      best = s->strtab + sym.st_name;
      best_value = sym.st_value;
    }
  }
  return best;
}

int mcr_elfsym_symbol(const struct mcr_elfsym *s, size_t i, Elf64_Sym *sym, const char **name)
{
  if (i >= s->nsyms)
    return -1;
  memcpy(sym, s->syms + i * sizeof(*sym), sizeof(*sym));
  *name = sym->st_name < s->strsz ? s->strtab + sym->st_name : "";
  return 0;
}

int mcr_elfsym_section(const struct mcr_elfsym *s, size_t i, Elf64_Shdr *sh, const char **name)
{
  Elf64_Ehdr eh;
  Elf64_Shdr str;

  if (!s->map)
    return -1;
  memcpy(&eh, s->map, sizeof(eh)); /* checked by mcr_elfsym_open */
  if (i >= eh.e_shnum)
    return -1;
  memcpy(sh, s->map + eh.e_shoff + i * sizeof(*sh), sizeof(*sh));
  *name = "";
  if (eh.e_shstrndx < eh.e_shnum) {
    memcpy(&str, s->map + eh.e_shoff + eh.e_shstrndx * sizeof(str), sizeof(str));
    if (str.sh_type == SHT_STRTAB && str.sh_size && sh->sh_name < str.sh_size &&
        range_ok(s->size, str.sh_offset, str.sh_size) &&
        s->map[str.sh_offset + str.sh_size - 1] == '\0')
      *name = (const char *)s->map + str.sh_offset + sh->sh_name;
  }
  return 0;
}

struct find_obj {
  uintptr_t addr;
  uintptr_t bias;
  const char *name;
  int found;
};

static int find_object(struct dl_phdr_info *info, size_t size, void *arg)
{
  struct find_obj *f = arg;
  (void)size;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type == PT_LOAD && f->addr >= lo && f->addr - lo < ph->p_memsz) {
      f->bias = info->dlpi_addr;
      f->name = info->dlpi_name;
      f->found = 1;
      return 1;
    }
  }
  return 0;
}

int mcr_elf_object_of(uintptr_t addr, uintptr_t *bias, char *path, size_t len)
{
  struct find_obj f = {.addr = addr};
  dl_iterate_phdr(find_object, &f);
  if (!f.found)
    return -1;
  *bias = f.bias;
  /* the first object, with an empty name, is the executable */
  snprintf(path, len, "%s", f.name && *f.name ? f.name : "/proc/self/exe");
  return 0;
}

void mcr_symbolize(struct mcr_symbolizer *c, uintptr_t addr, char *buf, size_t len)
{
  char path[512];
  uintptr_t bias;
  const char *name, *base;

  snprintf(buf, len, "?");
  if (!addr || mcr_elf_object_of(addr, &bias, path, sizeof(path)) != 0)
    return;
  if (!c->ok || strcmp(c->path, path)) {
    mcr_symbolizer_close(c);
    if (strlen(path) >= sizeof(c->path))
      return;
    strcpy(c->path, path);
    c->ok = mcr_elfsym_open(&c->sym, path) == 0;
    if (!c->ok)
      c->ok = -1; /* remember the failure for this path */
  }
  name = c->ok > 0 ? mcr_elfsym_lookup(&c->sym, addr - bias) : NULL;
  if (name && *name) {
    snprintf(buf, len, "%s", name);
    return;
  }
  base = strrchr(path, '/');
  snprintf(buf, len, "%s+0x%lx", base ? base + 1 : path, (unsigned long)(addr - bias));
}

void mcr_symbolizer_close(struct mcr_symbolizer *c)
{
  if (c->ok > 0)
    mcr_elfsym_close(&c->sym);
  memset(c, 0, sizeof(*c));
}
