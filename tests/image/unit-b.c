/* unit-b.c: a file-local static named like the one in unit-a.c. */
#include "prog.h"

static int counter[4];

int *b_counter(void) { return counter; }
