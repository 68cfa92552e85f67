#!/usr/bin/env bash
# Installs every Debian package mcr needs to build, test and run its demos.
# Idempotent: quiet and fast when everything is already there.
set -euo pipefail

PKGS=(
  # toolchain (LLVM 16 pinned; clang-14 stays the system default)
  clang-16 llvm-16-dev lld-16 llvm-16-tools libclang-rt-16-dev
  cmake ninja-build make pkg-config python3
  # runtime and tool dependencies
  libunwind-dev libdwarf-dev libelf-dev liburcu-dev libprotobuf-c-dev protobuf-c-compiler
  # real-server builds, load generators and their test suites
  dpkg-dev libevent-dev tcl redis-tools wrk apache2-utils libmemcached-tools
  curl procps gdb   # gdb: tests/e2e/quiesce-reply.sh holds a runtime thread at a breakpoint
  meson libpcre2-dev zlib1g-dev binutils perl   # lighttpd (meson, regex, deflate); readelf; memcached/lighttpd suites
  libwrap0-dev libpam0g-dev libssl-dev libcap-dev   # vsftpd (its Debian build: tcp_wrappers, PAM, SSL, capabilities)
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
