#!/bin/sh
# cli-errors.sh SCRATCH-DIR - every user error of 'mcr-ctl types' exits 2 with one
# clear line on stderr and nothing on stdout.
. "$(dirname "$0")/cli-lib.sh"
need MCR_CTL TEST_TYPETAB CLANG OBJCOPY STRIP

make_plain plain
make_fake fake
make_fake fake-corrupt --write-corrupt

expect_error "missing file" "no-such-binary: No such file or directory" types no-such-binary
echo "just text" >text.txt
expect_error "text file" "text.txt: not an ELF file" types text.txt
: >empty
expect_error "empty file" "empty: not an ELF file" types empty
mkdir adir
expect_error "directory" "adir: Is a directory" types adir

# 32-bit and non-x86 ELF: from clang's other targets, and by hand (an ELF32 identity)
if "$CLANG" --target=i386-linux-gnu -c plain.c -o plain32.o 2>/dev/null; then
  expect_error "32-bit x86 ELF (clang)" "not an x86-64 ELF64 file (ELF class 32-bit" types plain32.o
fi
if "$CLANG" --target=aarch64-linux-gnu -c plain.c -o plain-arm64.o 2>/dev/null; then
  expect_error "AArch64 ELF64 (clang)" "not an x86-64 ELF64 file (machine 183 (AArch64))" types plain-arm64.o
fi
printf '\177ELF\001\001\001\000\000\000\000\000\000\000\000\000\002\000\003\000' >hand32
expect_error "32-bit ELF (by hand)" "hand32: not an x86-64 ELF64 file" types hand32
printf '\177ELF\002\002\001\000\000\000\000\000\000\000\000\000' >handbe
expect_error "big-endian ELF64 (by hand)" "big-endian" types handbe

head -c 200 plain >truncated
expect_error "truncated ELF" "truncated: corrupt ELF file" types truncated

expect_error "uninstrumented binary" \
  "plain: no mcr_types section: not built by mcr-clang: rebuild with CC=mcr-clang" types plain
"$STRIP" -o fake-stripped fake || fail "strip failed"
expect_error "stripped binary" \
  "fake-stripped: stripped (no .symtab): mcr needs symbols to match globals and functions across versions; rebuild without -s/strip" \
  types fake-stripped
expect_error "corrupt type table" \
  "fake-corrupt: corrupt mcr_types section: type table 2 (section offset 0x" types fake-corrupt
grep -q "element type 99 out of range" err.txt || fail "corrupt table: the message does not say what is wrong"
echo "not a type table at all" >garbage.sec
"$OBJCOPY" --add-section mcr_types=garbage.sec plain fake-garbage
expect_error "garbage mcr_types section" "corrupt mcr_types section: at section offset 0x0: bad magic" types fake-garbage
: >empty.sec
"$OBJCOPY" --add-section mcr_types=empty.sec plain fake-empty
expect_error "empty mcr_types section" "corrupt mcr_types section: it is empty" types fake-empty

# usage errors
expect_error "types without BINARY" "missing BINARY" types
expect_error "unknown option" "unknown option '--frob'" types --frob fake
expect_error "two binaries" "one BINARY only" types fake fake
expect_error "exclusive options" "exclude each other" types --sites-only --globals-only fake
"$MCR_CTL" frobnicate >out.txt 2>err.txt
rc=$?
[ "$rc" -eq 2 ] || fail "unknown command: exit $rc, want 2"
[ -s out.txt ] && fail "unknown command: printed on stdout"
grep -q "unknown command 'frobnicate'" err.txt || fail "unknown command: $(cat err.txt)"
grep -q "Usage: mcr-ctl" err.txt || fail "unknown command: no usage on stderr"
"$MCR_CTL" >out.txt 2>err.txt
[ $? -eq 2 ] && grep -q "Usage:" err.txt || fail "no arguments: want usage on stderr and exit 2"

# help and version: stdout, exit 0, only commands that exist
"$MCR_CTL" --help >out.txt 2>err.txt || fail "--help: exit $?"
grep -q "types  BINARY" out.txt || fail "--help does not list types"
grep -q "status PID" out.txt || fail "--help does not list status"
grep -qE "^  +quiesce +PID" out.txt || fail "--help does not list quiesce"
grep -qE "^  +update +PID NEW" out.txt || fail "--help does not list update"
grep -qE "^  +check +OLD NEW" out.txt || fail "--help does not list check"
grep -qE "^  +report +FILE" out.txt || fail "--help does not list report"
"$MCR_CTL" types --help >out.txt 2>err.txt || fail "types --help: exit $?"
grep -q -- "--json" out.txt || fail "types --help does not mention --json"
"$MCR_CTL" --version >out.txt 2>err.txt || fail "--version: exit $?"
grep -qE "^mcr-ctl [0-9]+\.[0-9]+" out.txt || fail "--version: $(cat out.txt)"
finish
