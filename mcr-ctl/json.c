/*
 * json.c - JSON output helpers shared by the mcr-ctl commands.
 */
#include <stdio.h>

#include "ctl.h"

/* Length of the valid UTF-8 sequence at s, or 0 if s does not start one. */
int ctl_utf8_len(const unsigned char *s)
{
  unsigned char c = s[0];
  int n;
  unsigned char lo = 0x80, hi = 0xbf;

  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    n = 2;
  else if (c >= 0xe0 && c <= 0xef)
    n = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
  else
    return 0;
  if (s[1] < lo || s[1] > hi)
    return 0;
  for (int i = 2; i < n; i++)
    if (s[i] < 0x80 || s[i] > 0xbf)
      return 0;
  return n;
}

/* A JSON string; NULL is null. Bytes that are not UTF-8 are read as Latin-1, so the
 * output is always valid JSON in UTF-8. */
void ctl_json_str(FILE *f, const char *s)
{
  const unsigned char *p = (const unsigned char *)s;

  if (!s) {
    fputs("null", f);
    return;
  }
  fputc('"', f);
  while (*p) {
    unsigned char c = *p;
    int n;

    switch (c) {
    case '"':
      fputs("\\\"", f);
      break;
    case '\\':
      fputs("\\\\", f);
      break;
    case '\b':
      fputs("\\b", f);
      break;
    case '\f':
      fputs("\\f", f);
      break;
    case '\n':
      fputs("\\n", f);
      break;
    case '\r':
      fputs("\\r", f);
      break;
    case '\t':
      fputs("\\t", f);
      break;
    default:
      if (c < 0x20 || c == 0x7f) {
        fprintf(f, "\\u%04x", c);
      } else if ((n = ctl_utf8_len(p)) > 0) {
        fwrite(p, 1, (size_t)n, f);
        p += n;
        continue;
      } else {
        fprintf(f, "\\u%04x", c); /* not UTF-8: the byte as a Latin-1 character */
      }
      break;
    }
    p++;
  }
  fputc('"', f);
}
