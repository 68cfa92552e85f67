# cli-lib.sh - helpers for the mcr-ctl CLI tests (POSIX sh), sourced with the scratch
# directory as $1. ctest passes the tools in the environment (see CMakeLists.txt):
# MCR_CTL, TEST_TYPETAB, CLANG, OBJCOPY, STRIP, PYTHON, MCR_CLANG_DRIVER.
set -u

WORK=${1:?usage: $0 SCRATCH-DIR}
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
fails=0

fail() {
  echo "FAIL: $*" >&2
  fails=$((fails + 1))
}

# Skips the whole test (ctest SKIP_RETURN_CODE 77) when a tool it needs is absent.
need() {
  for v; do
    eval "val=\${$v:-}"
    if [ -z "$val" ] || ! [ -x "$val" ]; then
      echo "SKIP: $v is not set or not executable ('$val')"
      exit 77
    fi
  done
}

finish() {
  if [ "$fails" -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
  fi
  echo "all checks passed"
  exit 0
}

# expect_error NAME WANT ARGS...: mcr-ctl ARGS exits 2, prints nothing on stdout and
# exactly one line on stderr, which contains WANT.
expect_error() {
  name=$1 want=$2
  shift 2
  before=$fails
  "$MCR_CTL" "$@" >out.txt 2>err.txt
  rc=$?
  [ "$rc" -eq 2 ] || fail "$name: exit $rc, want 2"
  [ -s out.txt ] && fail "$name: printed on stdout: $(head -3 out.txt)"
  n=$(wc -l <err.txt)
  [ "$n" -eq 1 ] || fail "$name: $n lines on stderr, want 1: $(cat err.txt)"
  grep -qF -- "$want" err.txt || fail "$name: stderr lacks '$want': $(cat err.txt)"
  [ "$fails" -eq "$before" ] && echo "ok - $name: $(cat err.txt)"
}

# A plain (uninstrumented) x86-64 executable with symbols.
make_plain() {
  printf 'int counter;\nint main(void) { return counter; }\n' >plain.c
  "$CLANG" -g plain.c -o "$1" || { echo "cannot build a plain program with $CLANG"; exit 1; }
}

# make_fake OUT [--write-corrupt]: a plain executable given a hand-built mcr_types
# section (test-typetab writes it), so mcr-ctl can be tested without mcr-clang.
make_fake() {
  out=$1 mode=${2:---write-section}
  [ -f plain ] || make_plain plain
  "$TEST_TYPETAB" "$mode" "$out.sec" || exit 1
  "$OBJCOPY" --add-section "mcr_types=$out.sec" plain "$out" ||
    { echo "$OBJCOPY cannot add a section"; exit 1; }
}
