/* unit-a.c: a file-local static named like the one in unit-b.c. */
#include "prog.h"

#ifdef V2
static int a_added[32]; /* v2: shifts what follows */
int *a_added_ptr(void) { return a_added; }
#endif
static int counter[4];

int *a_counter(void) { return counter; }
