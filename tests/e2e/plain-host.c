/* An uninstrumented program loading an instrumented shared object: it must
 * work as if mcr were not there. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
  void *h = argc == 2 ? dlopen(argv[1], RTLD_NOW) : NULL;
  if (!h) {
    printf("FAIL dlopen: %s\n", dlerror());
    return 1;
  }
  int *(*plug_new)(int) = (int *(*)(int))dlsym(h, "plug_new");
  int *p = plug_new ? plug_new(42) : NULL;
  if (!p || *p != 42) {
    printf("FAIL plug_new\n");
    return 1;
  }
  free(p);
  printf("PASSED\n");
  return 0;
}
