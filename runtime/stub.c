/*
 * stub.c - weak, do-nothing entry points linked into instrumented shared
 * objects (mcr-clang -shared). Loaded into a program built by mcr-clang, the
 * executable's definitions win by ELF interposition; loaded anywhere else, the
 * shared object still works, untracked.
 */
#include "mcr/abi.h"

__attribute__((weak)) void __mcr_register_types(const char *start, const char *stop) {
  (void)start;
  (void)stop;
}

__attribute__((weak)) void __mcr_tag(void *ptr, struct mcr_site *site) {
  (void)ptr;
  (void)site;
}

__attribute__((weak)) void __mcr_tag_out(int rc, void **out, struct mcr_site *site) {
  (void)rc;
  (void)out;
  (void)site;
}
