/* An instrumented shared object, dlopen'ed by an instrumented program: its
 * type section is registered and its allocation sites are tagged. (The same
 * object loaded into an uninstrumented program is checked by run.sh.) */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "typeof.h"

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PLUGIN.so\n", argv[0]);
    return 2;
  }
  const struct mcr_module *mods;
  size_t before = mcr_types_modules(&mods);
  void *h = dlopen(argv[1], RTLD_NOW);
  CHECK(h != NULL);
  if (!h) {
    printf("dlopen: %s\n", dlerror());
    CHECK_DONE();
  }
  void *(*plug_new)(int) = (void *(*)(int))dlsym(h, "plug_new");
  CHECK(plug_new != NULL);
  CHECK_EQ(mcr_types_modules(&mods), before + 1);
  char b[128];
  void *p = plug_new(7);
  CHECK_STR(type_of(p, b, sizeof(b)), "struct plug");
  free(p);
  CHECK_DONE();
}
