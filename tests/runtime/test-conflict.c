/*
 * test-conflict.c - the structured conflict lines of an update (update.h,
 * runtime/update_chan.c): parsing what the new version sends, the fixed-size
 * storage of the old process (long fields cut, short ones whole), and the
 * helpers that write a line.
 */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "update.h"

static const char *F(const struct mcr_update_conflict *c, enum mcr_conflict_field f)
{
  return mcr_update_conflict_get(c, f);
}

#define CHECK_STR(a, b, what)                                                            \
  do {                                                                                   \
    const char *check_s_ = (a);                                                          \
    if (!strcmp(check_s_, (b))) {                                                        \
      printf("ok - %s\n", what);                                                         \
    } else {                                                                             \
      printf("FAIL - %s: '%s', want '%s' at %s:%d\n", what, check_s_, (b), __FILE__,     \
             __LINE__);                                                                  \
      check_failures++;                                                                  \
    }                                                                                    \
  } while (0)

static void parse(struct mcr_update_conflict *c, const char *s)
{
  memset(c, 0x5a, sizeof(*c)); /* nothing may depend on it being zeroed */
  mcr_update_conflict_parse(c, s, strlen(s));
}

int main(void)
{
  static struct mcr_update_conflict c;

  /* all nine fields */
  parse(&c, "type\tstruct conn changed\theap object 0x10\tstruct conn (48 bytes)\t"
            "struct conn (56 bytes)\tkv.c:41\tkv.c:44:3\tmain > accept_conn\tkeep fd an int");
  CHECK_STR(F(&c, MCR_CF_KIND), "type", "full line: kind");
  CHECK_STR(F(&c, MCR_CF_MESSAGE), "struct conn changed", "full line: message");
  CHECK_STR(F(&c, MCR_CF_OBJECT), "heap object 0x10", "full line: object");
  CHECK_STR(F(&c, MCR_CF_OLD_TYPE), "struct conn (48 bytes)", "full line: old type");
  CHECK_STR(F(&c, MCR_CF_NEW_TYPE), "struct conn (56 bytes)", "full line: new type");
  CHECK_STR(F(&c, MCR_CF_OLD_LOCATION), "kv.c:41", "full line: old location");
  CHECK_STR(F(&c, MCR_CF_NEW_LOCATION), "kv.c:44:3", "full line: new location");
  CHECK_STR(F(&c, MCR_CF_STACK), "main > accept_conn", "full line: stack");
  CHECK_STR(F(&c, MCR_CF_FIX), "keep fd an int", "full line: fix");

  /* trailing fields left out, empty ones in the middle */
  parse(&c, "narrowing\tfield n: 300 does not fit\tglobal counter");
  CHECK_STR(F(&c, MCR_CF_KIND), "narrowing", "short line: kind");
  CHECK_STR(F(&c, MCR_CF_OBJECT), "global counter", "short line: object");
  CHECK_STR(F(&c, MCR_CF_FIX), "", "short line: fix empty");
  parse(&c, "heap\tm\t\t\t\t\t\tmain >  f\t");
  CHECK_STR(F(&c, MCR_CF_OBJECT), "", "empty middle field");
  CHECK_STR(F(&c, MCR_CF_STACK), "main >  f", "stack after empty fields");
  CHECK_STR(F(&c, MCR_CF_FIX), "", "trailing TAB: empty fix");

  /* the old text lines: kind other, the whole text */
  parse(&c, "startup replay: bind: the old version made bind(5, 1.2.3.4:80) here");
  CHECK_STR(F(&c, MCR_CF_KIND), "other", "no TAB: kind other");
  CHECK_STR(F(&c, MCR_CF_MESSAGE),
            "startup replay: bind: the old version made bind(5, 1.2.3.4:80) here",
            "no TAB: the whole text is the message");
  parse(&c, "Heap object at 0x10:\tbad");
  CHECK_STR(F(&c, MCR_CF_KIND), "other", "first field not a kind word: other");
  CHECK_STR(F(&c, MCR_CF_MESSAGE), "Heap object at 0x10: bad",
            "first field not a kind word: whole text, TAB made a space");
  parse(&c, "averyveryverylongkind\tm");
  CHECK_STR(F(&c, MCR_CF_KIND), "other", "a kind over 15 characters is no kind");
  parse(&c, "x-y_2\tm");
  CHECK_STR(F(&c, MCR_CF_KIND), "x-y_2", "a kind of letters, digits, - and _");
  parse(&c, "");
  CHECK_STR(F(&c, MCR_CF_KIND), "other", "empty line: kind other");
  CHECK_STR(F(&c, MCR_CF_MESSAGE), "", "empty line: empty message");

  /* more than nine fields: the last takes the rest; control characters */
  parse(&c, "fd\tm\to\tot\tnt\tol\tnl\ts\tfix one\tfix two\r");
  CHECK_STR(F(&c, MCR_CF_FIX), "fix one fix two ", "extra fields join the fix, as spaces");

  /* long fields: the longest lose their ends, the short ones stay whole */
  {
    static char line[8192], stack[5001], msg[1501];
    memset(stack, 'f', sizeof(stack) - 1);
    memset(msg, 'm', sizeof(msg) - 1);
    snprintf(line, sizeof(line), "stack\t%s\tobj\t\t\t\t\t%s\tthe fix", msg, stack);
    parse(&c, line);
    size_t total = 0;
    for (int f = 0; f < MCR_CF_COUNT; f++)
      total += strlen(F(&c, (enum mcr_conflict_field)f)) + 1;
    CHECK(total <= sizeof(c.text), "a 6.5 kB conflict fits its storage");
    CHECK_STR(F(&c, MCR_CF_KIND), "stack", "long: kind whole");
    CHECK_STR(F(&c, MCR_CF_OBJECT), "obj", "long: object whole");
    CHECK_STR(F(&c, MCR_CF_FIX), "the fix", "long: fix whole");
    CHECK_EQ(strlen(F(&c, MCR_CF_MESSAGE)), 1500, "long: a 1500-byte message kept whole");
    size_t sl = strlen(F(&c, MCR_CF_STACK));
    CHECK(sl > 400 && sl < 5000, "long: the 5000-byte stack cut (message, fix first)");
    CHECK(!strcmp(F(&c, MCR_CF_STACK) + sl - 3, "..."), "long: a cut field ends in ...");
  }
  {
    /* two long secondary fields share the room */
    static char line[8192], a[3001], b[3001];
    memset(a, 'a', sizeof(a) - 1);
    memset(b, 'b', sizeof(b) - 1);
    snprintf(line, sizeof(line), "type\tmsg\t%s\t\t\t\t\t%s\tfix", a, b);
    parse(&c, line);
    size_t la = strlen(F(&c, MCR_CF_OBJECT)), lb = strlen(F(&c, MCR_CF_STACK));
    CHECK(la == lb && la > 900, "long: object and stack cut to the same length");
    CHECK_STR(F(&c, MCR_CF_MESSAGE), "msg", "long: message whole");
  }
  {
    /* a message alone longer than the room: everything shares it */
    static char line[8192], a[3001], b[3001];
    memset(a, 'a', sizeof(a) - 1);
    memset(b, 'b', sizeof(b) - 1);
    snprintf(line, sizeof(line), "type\t%s\tobj\t\t\t\t\t%s\tfix", a, b);
    parse(&c, line);
    size_t la = strlen(F(&c, MCR_CF_MESSAGE)), lb = strlen(F(&c, MCR_CF_STACK));
    CHECK(la == lb && la > 900, "longer: message and stack cut to the same length");
    CHECK_STR(F(&c, MCR_CF_OBJECT), "obj", "longer: a short field whole");
  }

  /* what the new side writes */
  {
    struct mcr_buf b = {0};
    static char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    mcr_buf_printf(&b, "conflict stack\t%s\n", big);
    CHECK_EQ(b.len, strlen("conflict stack\t\n") + sizeof(big) - 1,
             "mcr_buf_printf keeps a line over 1 kB whole");
    CHECK_EQ(b.p[b.len - 1], '\n', "... to its end");
    mcr_buf_free(&b);
    mcr_buf_printf(&b, "conflict global\t");
    mcr_conflict_field_put(&b, "a\tb\nc\x01" "d");
    mcr_buf_printf(&b, "\tobj");
    parse(&c, (const char *)b.p + 9);
    CHECK_STR(F(&c, MCR_CF_MESSAGE), "a b c d", "mcr_conflict_field_put: no TAB or newline");
    CHECK_STR(F(&c, MCR_CF_OBJECT), "obj", "mcr_conflict_field_put: the next field intact");
    mcr_buf_free(&b);
  }

  /* what the old side sets itself */
  {
    const char *field[MCR_CF_COUNT] = {"crash", "killed by signal 9", NULL, NULL, NULL,
                                       NULL, NULL, NULL, "run it by itself"};
    size_t len[MCR_CF_COUNT] = {5, 18, 0, 0, 0, 0, 0, 0, 16};
    mcr_update_conflict_set(&c, field, len);
    CHECK_STR(F(&c, MCR_CF_MESSAGE), "killed by signal 9", "set: message");
    CHECK_STR(F(&c, MCR_CF_OBJECT), "", "set: NULL field empty");
    CHECK_STR(F(&c, MCR_CF_FIX), "run it by itself", "set: fix");
  }
  return check_failures ? 1 : 0;
}
