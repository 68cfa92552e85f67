/* A shared library the test loads with dlopen (several copies, see run.sh). */
int extra_value = 5;
int extra_fn(int x) { return x + extra_value; }
