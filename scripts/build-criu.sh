#!/usr/bin/env bash
# build-criu.sh [--force] [--jobs N]
#
# Builds CRIU 4.1.1 (a peer for the live-update benchmark) from Debian trixie's
# source package and caches it:
#
#   ${MCR_CACHE:-$HOME/.cache/mcr}/criu-4.1.1/criu     the binary
#   ${MCR_CACHE:-$HOME/.cache/mcr}/criu-4.1.1/build-info
#
# and prints the binary's path (the only thing on stdout; progress on stderr). A
# second run reuses the binary and builds nothing (--force rebuilds).
#
# Why not Debian's package: bookworm's criu 3.17.1 fails on this kernel (vDSO
# layout); trixie's 4.1.1 works. Only its source is taken from trixie: the deb-src
# entry (added by scripts/fetch-source.sh if missing, Types: deb-src only) cannot
# make apt install a trixie binary. The build dependencies (and iptables, which
# dump --tcp-established uses) are bookworm's, installed when missing.
#
# The source: `apt-get source --download-only criu=4.1.1-*`. Some mirrors lack
# the .dsc and Debian tarball of this revision while serving the orig tarball;
# then the orig tarball is checked against the SHA-256 in the (signed) Sources
# index and built without Debian's patches (upstream 4.1.1), which build-info
# records.
#
# One local patch (LOCAL_PATCH below, ours): CRIU 4.1.1 cannot dump a TCP
# socket on Linux >= 6.16, where getsockopt(SO_PASSCRED / SO_PASSSEC) fails with
# EOPNOTSUPP for anything but AF_UNIX/NETLINK/BLUETOOTH (upstream CRIU issue
# #2705); the patch leaves those options out for such sockets (they are off).
# A cached binary built without the current patch is rebuilt.
#
# CRIU needs root to run (not to build); this script says so when not root.
# Exit status: 0 path printed; 1 failure.
set -euo pipefail

PROG=build-criu
VERSION=4.1.1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${MCR_CACHE:-$HOME/.cache/mcr}
DEST=$CACHE/criu-$VERSION
JOBS=${MCR_JOBS:-2}
FORCE=0
die() { echo "$PROG: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --force) FORCE=1 ;;
    --jobs) [ $# -ge 2 ] || die "--jobs needs a number"; JOBS=$2; shift ;;
    -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

mkdir -p "$CACHE"
LOCAL_PATCH=$(cat <<'PATCH'
--- a/criu/sockets.c
+++ b/criu/sockets.c
@@ -676,13 +676,27 @@
 	soe->so_reuseport = val ? true : false;
 	soe->has_so_reuseport = true;
 
-	ret |= dump_opt(sk, SOL_SOCKET, SO_PASSCRED, &val);
-	soe->has_so_passcred = true;
-	soe->so_passcred = val ? true : false;
+	/*
+	 * Since Linux 6.16 SO_PASSCRED and SO_PASSSEC exist only for AF_UNIX,
+	 * AF_NETLINK and AF_BLUETOOTH sockets: getsockopt fails with EOPNOTSUPP
+	 * on others. Those options are then off by definition (restore sets
+	 * them only when on), so they are left out of the image.
+	 */
+	if (getsockopt(sk, SOL_SOCKET, SO_DOMAIN, &val, &(socklen_t){ sizeof(val) }) == 0 &&
+	    val != AF_UNIX && val != AF_NETLINK && val != AF_BLUETOOTH &&
+	    getsockopt(sk, SOL_SOCKET, SO_PASSCRED, &val, &(socklen_t){ sizeof(val) }) < 0 &&
+	    errno == EOPNOTSUPP) {
+		soe->has_so_passcred = false;
+		soe->has_so_passsec = false;
+	} else {
+		ret |= dump_opt(sk, SOL_SOCKET, SO_PASSCRED, &val);
+		soe->has_so_passcred = true;
+		soe->so_passcred = val ? true : false;
 
-	ret |= dump_opt(sk, SOL_SOCKET, SO_PASSSEC, &val);
-	soe->has_so_passsec = true;
-	soe->so_passsec = val ? true : false;
+		ret |= dump_opt(sk, SOL_SOCKET, SO_PASSSEC, &val);
+		soe->has_so_passsec = true;
+		soe->so_passsec = val ? true : false;
+	}
 
 	ret |= dump_opt(sk, SOL_SOCKET, SO_DONTROUTE, &val);
 	soe->has_so_dontroute = true;
PATCH
)
PATCH_ID=$(printf '%s\n' "$LOCAL_PATCH" | sha256sum | cut -c1-16)

# --- dependencies (bookworm's) ---------------------------------------------------
# iptables: criu dump --tcp-established locks the connections with iptables-restore.
DEPS=(libnl-3-dev libnet1-dev libcap-dev libbsd-dev libprotobuf-dev libprotobuf-c-dev
      protobuf-c-compiler pkg-config make gcc iptables)
missing=()
for p in "${DEPS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  note "installing dependencies: ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 ||
    die "apt-get install ${missing[*]} failed"
fi

if [ "$FORCE" -eq 0 ] && [ -x "$DEST/criu" ] && [ -f "$DEST/build-info" ] &&
   grep -qx "local_patch=$PATCH_ID" "$DEST/build-info"; then
  note "reusing $DEST/criu ($("$DEST/criu" --version 2>/dev/null | head -n1))"
  [ "$(id -u)" -eq 0 ] || note "warning: criu dump/restore need root (uid is $(id -u))"
  echo "$DEST/criu"
  exit 0
fi

exec 9>"$CACHE/.criu-build.lock"
flock 9

# --- deb-src entry for trixie ----------------------------------------------------
# fetch-source.sh owns the deb-src list (source entries only) and the apt-get
# update; asking it for the package does both. It fails here when the mirror
# lacks the .dsc, which is handled below, so its status is not fatal.
src=""
if src=$("$HERE/fetch-source.sh" criu "$VERSION" --debian-patches 2>/tmp/$PROG.$$.log); then
  note "source with Debian's patches: $src"
else
  sed 's/^/  /' /tmp/$PROG.$$.log >&2
  src=""
fi
rm -f /tmp/$PROG.$$.log

# Newest Debian revision of 4.1.1 the source indices know.
debver=$(apt-cache showsrc criu 2>/dev/null |
  awk '/^Package:/ {ok = ($2 == "criu")} ok && /^Version:/ {print $2}' |
  grep -E "^([0-9]+:)?$VERSION-" | sort -V | tail -n1 || true)
[ -n "$debver" ] || die "no criu $VERSION in the source indices (is trixie's deb-src entry there? apt-cache showsrc criu)"

work=$(mktemp -d /tmp/$PROG.XXXXXX)
trap 'rm -rf "$work"' EXIT
patched=yes
if [ -z "$src" ]; then
  # Orig tarball only, checked against the Sources index.
  patched="no (the mirror lacks criu_$debver.dsc / .debian.tar.xz: upstream $VERSION)"
  dl=$CACHE/dl/criu/$debver
  orig=$dl/criu_$VERSION.orig.tar.xz
  # (apt-cache showsrc criu=VERSION does not select a stanza: pick it by Version:)
  want=$(apt-cache showsrc criu 2>/dev/null |
    awk -v v="$debver" -v f="criu_$VERSION.orig.tar.xz" '
      /^Package:/ {ok = 0} /^Version:/ {ok = ($2 == v)}
      /^Checksums-Sha256:/ {c = 1; next} /^[^ ]/ {c = 0}
      ok && c && $3 == f {print $1; exit}')
  [ -n "$want" ] || die "no SHA-256 for criu_$VERSION.orig.tar.xz in the Sources index"
  if [ ! -f "$orig" ] || [ "$(sha256sum <"$orig" | cut -d' ' -f1)" != "$want" ]; then
    mkdir -p "$dl"
    note "downloading criu=$debver (orig tarball)"
    (cd "$dl" && $SUDO apt-get source --download-only -qq "criu=$debver") >"$dl/apt-get.log" 2>&1 || true
  fi
  [ -f "$orig" ] || { cat "$dl/apt-get.log" >&2; die "could not download criu_$VERSION.orig.tar.xz"; }
  got=$(sha256sum <"$orig" | cut -d' ' -f1)
  [ "$got" = "$want" ] || die "$orig: SHA-256 $got, the Sources index says $want"
  note "orig tarball verified (sha256 $want); Debian's patches unavailable, building upstream $VERSION"
  mkdir -p "$work/src"
  tar -xJf "$orig" -C "$work/src" --strip-components=1 || die "extracting $orig failed"
else
  cp -a "$src" "$work/src"
fi

# --- build -----------------------------------------------------------------------
printf '%s\n' "$LOCAL_PATCH" | patch -d "$work/src" -p1 --forward -s ||
  die "the local patch (SO_PASSCRED on Linux >= 6.16) does not apply to criu $VERSION"
note "applied the local patch for Linux >= 6.16 (SO_PASSCRED/SO_PASSSEC on TCP sockets)"
log=$work/build.log
note "building criu $VERSION (make -j$JOBS criu; about a minute)"
start=$(date +%s.%N)
if ! make -C "$work/src" -j"$JOBS" criu >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  die "make criu failed (last lines above)"
fi
end=$(date +%s.%N)
bin=$work/src/criu/criu
[ -x "$bin" ] || die "make criu finished but $bin is missing"
"$bin" --version >/dev/null 2>&1 || die "$bin --version failed"

rm -rf "$DEST.new"
mkdir -p "$DEST.new"
cp "$bin" "$DEST.new/criu"
cp "$log" "$DEST.new/build.log"
{
  echo "version=$VERSION"
  echo "debian_version=$debver"
  echo "debian_patches=$patched"
  echo "local_patch=$PATCH_ID"
  echo "seconds=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b - a}')"
  echo "built=$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "criu_version=$("$bin" --version | tr '\n' ' ')"
} >"$DEST.new/build-info"
rm -rf "$DEST"
mv "$DEST.new" "$DEST"
note "built $DEST/criu in $(sed -n 's/^seconds=//p' "$DEST/build-info") s"
if "$DEST/criu" check >"$work/check.log" 2>&1; then
  note "criu check: $(tail -n1 "$work/check.log")"
else
  note "criu check failed (dump/restore may still work; last lines):"
  tail -n 5 "$work/check.log" | sed 's/^/  /' >&2
fi
[ "$(id -u)" -eq 0 ] || note "warning: criu dump/restore need root (uid is $(id -u))"
echo "$DEST/criu"
