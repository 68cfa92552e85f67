/*
 * elf.c - ELF64 reading for mcr-ctl; see elf.h.
 */
#include "elf.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

__attribute__((format(printf, 4, 5))) static enum mcr_elf_status
elf_fail(enum mcr_elf_status st, char *msg, size_t len, const char *fmt, ...)
{
  va_list ap;

  if (len) {
    va_start(ap, fmt);
    vsnprintf(msg, len, fmt, ap);
    va_end(ap);
  }
  return st;
}

static const char *machine_name(unsigned m)
{
  switch (m) {
  case EM_386:
    return " (i386)";
  case EM_ARM:
    return " (ARM)";
  case EM_AARCH64:
    return " (AArch64)";
  case EM_PPC64:
    return " (PowerPC64)";
  case EM_S390:
    return " (s390)";
  case EM_RISCV:
    return " (RISC-V)";
  case EM_MIPS:
    return " (MIPS)";
  default:
    return "";
  }
}

static int read_shdr(const struct mcr_elf *e, size_t i, Elf64_Shdr *sh)
{
  if (i >= e->shnum)
    return -1;
  memcpy(sh, e->shdrs + i * sizeof(Elf64_Shdr), sizeof(*sh));
  return 0;
}

static int range_ok(size_t file_size, uint64_t off, uint64_t len)
{
  return off <= file_size && len <= file_size - off;
}

static enum mcr_elf_status check_elf(struct mcr_elf *e, char *msg, size_t len)
{
  Elf64_Ehdr eh;
  Elf64_Shdr sh0, shs;
  uint64_t shnum, shstrndx;

  if (e->size < EI_NIDENT || memcmp(e->data, ELFMAG, SELFMAG))
    return elf_fail(MCR_ELF_NOT_ELF, msg, len, "not an ELF file");
  if (e->data[EI_CLASS] != ELFCLASS64 || e->data[EI_DATA] != ELFDATA2LSB)
    return elf_fail(MCR_ELF_WRONG_ARCH, msg, len,
                    "not an x86-64 ELF64 file (ELF class %s, %s-endian); mcr supports "
                    "x86-64 Linux only",
                    e->data[EI_CLASS] == ELFCLASS32   ? "32-bit"
                    : e->data[EI_CLASS] == ELFCLASS64 ? "64-bit"
                                                      : "unknown",
                    e->data[EI_DATA] == ELFDATA2MSB ? "big" : "little");
  if (e->size < sizeof(eh))
    return elf_fail(MCR_ELF_CORRUPT, msg, len, "truncated ELF header (%zu bytes)", e->size);
  memcpy(&eh, e->data, sizeof(eh));
  if (eh.e_machine != EM_X86_64)
    return elf_fail(MCR_ELF_WRONG_ARCH, msg, len,
                    "not an x86-64 ELF64 file (machine %u%s); mcr supports x86-64 Linux only",
                    (unsigned)eh.e_machine, machine_name(eh.e_machine));
  if (eh.e_shoff == 0)
    return elf_fail(MCR_ELF_CORRUPT, msg, len, "no section header table");
  if (eh.e_shentsize != sizeof(Elf64_Shdr))
    return elf_fail(MCR_ELF_CORRUPT, msg, len, "section header size %u, expected %zu",
                    (unsigned)eh.e_shentsize, sizeof(Elf64_Shdr));
  if (!range_ok(e->size, eh.e_shoff, sizeof(Elf64_Shdr)))
    return elf_fail(MCR_ELF_CORRUPT, msg, len,
                    "section header table at offset %llu is past the end of the file "
                    "(%zu bytes): truncated?",
                    (unsigned long long)eh.e_shoff, e->size);
  memcpy(&sh0, e->data + eh.e_shoff, sizeof(sh0));
  /* extended numbering: counts that do not fit the ELF header live in section 0 */
  shnum = eh.e_shnum ? eh.e_shnum : sh0.sh_size;
  shstrndx = eh.e_shstrndx == SHN_XINDEX ? sh0.sh_link : eh.e_shstrndx;
  if (shnum == 0 || shnum > (e->size - eh.e_shoff) / sizeof(Elf64_Shdr))
    return elf_fail(MCR_ELF_CORRUPT, msg, len,
                    "section header table (%llu entries at offset %llu) does not fit in the "
                    "file (%zu bytes): truncated?",
                    (unsigned long long)shnum, (unsigned long long)eh.e_shoff, e->size);
  e->shdrs = e->data + eh.e_shoff;
  e->shnum = (size_t)shnum;
  if (read_shdr(e, (size_t)shstrndx, &shs) || shs.sh_type != SHT_STRTAB)
    return elf_fail(MCR_ELF_CORRUPT, msg, len, "bad section name table index %llu",
                    (unsigned long long)shstrndx);
  if (!range_ok(e->size, shs.sh_offset, shs.sh_size) || shs.sh_size == 0 ||
      e->data[shs.sh_offset + shs.sh_size - 1] != '\0')
    return elf_fail(MCR_ELF_CORRUPT, msg, len, "section name table is corrupt or truncated");
  e->shstrtab = (const char *)e->data + shs.sh_offset;
  e->shstrtab_size = (size_t)shs.sh_size;
  return MCR_ELF_OK;
}

enum mcr_elf_status mcr_elf_open(struct mcr_elf *e, const char *path, char *msg,
                                 size_t msg_len)
{
  enum mcr_elf_status st;
  struct stat sb;
  void *map = NULL;
  int fd;

  memset(e, 0, sizeof(*e));
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return elf_fail(MCR_ELF_EIO, msg, msg_len, "%s", strerror(errno));
  if (fstat(fd, &sb)) {
    st = elf_fail(MCR_ELF_EIO, msg, msg_len, "%s", strerror(errno));
    goto out;
  }
  if (!S_ISREG(sb.st_mode)) {
    st = elf_fail(MCR_ELF_EIO, msg, msg_len, "%s",
                  S_ISDIR(sb.st_mode) ? strerror(EISDIR) : "not a regular file");
    goto out;
  }
  if (sb.st_size == 0) {
    st = elf_fail(MCR_ELF_NOT_ELF, msg, msg_len, "not an ELF file (empty)");
    goto out;
  }
  map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) {
    map = NULL;
    st = elf_fail(MCR_ELF_EIO, msg, msg_len, "%s", strerror(errno));
    goto out;
  }
  e->path = path;
  e->data = map;
  e->size = (size_t)sb.st_size;
  st = check_elf(e, msg, msg_len);
out:
  close(fd);
  if (st != MCR_ELF_OK) {
    if (map)
      munmap(map, (size_t)sb.st_size);
    memset(e, 0, sizeof(*e));
  }
  return st;
}

void mcr_elf_close(struct mcr_elf *e)
{
  if (e->data)
    munmap((void *)e->data, e->size);
  memset(e, 0, sizeof(*e));
}

int mcr_elf_section(const struct mcr_elf *e, const char *name, struct mcr_elf_section *out)
{
  Elf64_Shdr sh;

  for (size_t i = 1; i < e->shnum; i++) {
    if (read_shdr(e, i, &sh) || sh.sh_name >= e->shstrtab_size ||
        strcmp(e->shstrtab + sh.sh_name, name))
      continue;
    memset(out, 0, sizeof(*out));
    out->name = e->shstrtab + sh.sh_name;
    out->type = sh.sh_type;
    out->flags = sh.sh_flags;
    out->addr = sh.sh_addr;
    out->offset = sh.sh_offset;
    if (sh.sh_type != SHT_NOBITS) {
      if (!range_ok(e->size, sh.sh_offset, sh.sh_size))
        return -2; /* its data would lie past the end of the file */
      out->data = e->data + sh.sh_offset;
      out->size = (size_t)sh.sh_size;
    }
    return 0;
  }
  return -1;
}

int mcr_elf_has_symtab(const struct mcr_elf *e)
{
  Elf64_Shdr sh;

  for (size_t i = 1; i < e->shnum; i++)
    if (!read_shdr(e, i, &sh) && sh.sh_type == SHT_SYMTAB && sh.sh_size > 0)
      return 1;
  return 0;
}
