/* dup1/dup.c and dup2/dup.c: same file name, same static: no way to tell them apart. */
static int dupvar;
int *dup2_var(void) { return &dupvar; }
