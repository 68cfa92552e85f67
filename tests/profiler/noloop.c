/*
 * noloop.c - blocks once, outside any loop, then exits: no quiescent point.
 */
#include <unistd.h>

static void wait_once(void)
{
  usleep(100 * 1000);
}

int main(void)
{
  wait_once();
  return 0;
}
