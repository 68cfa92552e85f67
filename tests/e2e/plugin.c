/* A shared object built with mcr-clang -shared (see shared.c). */
#include <stdlib.h>
struct plug {
  int id;
  char name[16];
};
struct plug *plug_new(int id) {
  struct plug *p = malloc(sizeof(*p));
  if (p)
    p->id = id;
  return p;
}
