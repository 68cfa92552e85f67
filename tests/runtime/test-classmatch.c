/* test-classmatch.c - thread classes across versions (classmatch.h): a frame
 * inlined away or added matches, another start routine or another function in
 * the stack does not, and a pick is refused when two classes are alike. */
#include "check.h"
#include "classmatch.h"

int main(void)
{
  /* memcached 1.6.18 -> 1.6.38: start_conn_timeout_thread inlined into main */
  CHECK(mcr_class_like("main > start_conn_timeout_thread (conn_timeout_thread)",
                       "main (conn_timeout_thread)"), "a frame inlined away");
  CHECK(mcr_class_like("main (conn_timeout_thread)",
                       "main > start_conn_timeout_thread (conn_timeout_thread)"),
        "a frame no longer inlined");
  CHECK(mcr_class_like("main > a > b > c (r)", "main > b (r)"), "two frames inlined away");
  CHECK(mcr_class_like("main", "main"), "the main thread");
  CHECK(!mcr_class_like("main > a (r)", "main > a (s)"), "another start routine");
  CHECK(!mcr_class_like("main > a (r)", "main > b (r)"), "another function in the stack");
  CHECK(!mcr_class_like("main > a > b (r)", "main > b > a (r)"), "frames in another order");
  CHECK(!mcr_class_like("main > ab (r)", "main > a (r)"), "a frame is a whole name");
  CHECK(!mcr_class_like("main", "main > x (main)"), "the main thread and a thread named main");

  const char *olds[] = {"main", "main > create_worker (worker)",
                        "main > start_conn_timeout_thread (conn_timeout_thread)"};
  const char *news[] = {"main", "main > create_worker (worker)", "main (conn_timeout_thread)"};
  CHECK_EQ(mcr_class_pick(olds[1], olds, 3, news, 3), 1, "pick: the equal class");
  CHECK_EQ(mcr_class_pick(olds[2], olds, 3, news, 3), 2, "pick: the one alike");

  /* two new classes alike: no pick */
  const char *news2[] = {"main > a > w (r)", "main > b > w (r)"};
  const char *olds2[] = {"main > w (r)"};
  CHECK_EQ(mcr_class_pick(olds2[0], olds2, 1, news2, 2), -1, "pick: two alike, none taken");

  /* a new class equal to another old class is that one's, even if alike */
  const char *olds3[] = {"main > x > w (r)", "main > w (r)"};
  const char *news3[] = {"main > w (r)"};
  CHECK_EQ(mcr_class_pick(olds3[0], olds3, 2, news3, 1), -1,
           "pick: the alike class is another old class's own");
  CHECK_EQ(mcr_class_pick(olds3[1], olds3, 2, news3, 1), 0, "pick: and that class has it");
  return check_done();
}
