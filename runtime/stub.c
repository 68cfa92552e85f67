/*
 * stub.c - weak, do-nothing entry points linked into instrumented shared
 * objects (mcr-clang -shared). Loaded into a program built by mcr-clang, the
 * executable's definitions win by ELF interposition; loaded anywhere else, the
 * shared object still works, untracked.
 */
#include "mcr/abi.h"
#include "mcr/qp.h"

#include <stddef.h>

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

__attribute__((weak)) void __mcr_tag_sized(void *ptr, struct mcr_site *site, uint64_t size) {
  (void)ptr;
  (void)site;
  (void)size;
}

__attribute__((weak)) void __mcr_untag(void *ptr) {
  (void)ptr;
}

__attribute__((weak)) void __mcr_stack_push(void *addr, struct mcr_site *site, uint64_t size) {
  (void)addr;
  (void)site;
  (void)size;
}

__attribute__((weak)) void __mcr_stack_drop(void *addr) {
  (void)addr;
}

/* Quiescent-point markers (mcr-clang --mcr-quiescence): outside an mcr program
 * there is no quiescence, so nothing to mark. */
__attribute__((weak)) const struct mcr_qp *__mcr_qp_enter(const struct mcr_qp *qp) {
  (void)qp;
  return NULL;
}

__attribute__((weak)) void __mcr_qp_exit(const struct mcr_qp *prev) { (void)prev; }
