#!/usr/bin/env bash
# fetch-source.sh NAME VERSION [--debian-patches]
#
# Fetches the Debian source package NAME at VERSION with `apt-get source` and
# extracts it into a cache outside the repository:
#
#   ${MCR_CACHE:-$HOME/.cache/mcr}/src/NAME-VERSION          pure upstream
#   ${MCR_CACHE:-$HOME/.cache/mcr}/src/NAME-VERSION-debian   Debian's patches applied
#
# and prints that path (the only thing printed on stdout). A second run reuses the
# cache and downloads nothing.
#
# VERSION is an upstream version (7.0.15: the newest Debian revision of it is used)
# or a full Debian version (7.0.15-1~deb12u7, 5:7.0.15-1~deb12u7).
#
# Adds deb-src entries for those of bookworm, bookworm-updates, bookworm-security,
# bullseye and trixie that have none yet (deb-src only, so no binary package can
# come from another release; same mirror as the binary entries) in
# /etc/apt/sources.list.d/mcr-deb-src.sources, and runs `apt-get update` then.
#
# vsftpd is always extracted with Debian's patches (as with --debian-patches):
# pure upstream 3.0.5 lacks Debian's builddefs.h (PAM, tcp_wrappers, SSL) and
# clones its session processes with CLONE_NEWPID (0015-disable-clone-newpid.patch
# removes it; in a new PID namespace each session's getpid() would be 1).
#
# Exit status: 0 path printed; 1 other failure (usage, apt, extraction);
# 2 the version is not available (not in any listed release, or the mirror
# answers 404 for its files).
set -euo pipefail

PROG=fetch-source
die() { echo "$PROG: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }

usage() {
  echo "usage: $0 NAME VERSION [--debian-patches]" >&2
  exit 1
}

NAME=""
VERSION=""
DEBIAN_PATCHES=0
for a in "$@"; do
  case "$a" in
    --debian-patches) DEBIAN_PATCHES=1 ;;
    -h|--help) usage ;;
    -*) echo "$PROG: unknown option $a" >&2; usage ;;
    *)
      if [ -z "$NAME" ]; then NAME=$a
      elif [ -z "$VERSION" ]; then VERSION=$a
      else usage
      fi ;;
  esac
done
[ -n "$NAME" ] && [ -n "$VERSION" ] || usage
case "$NAME" in vsftpd) DEBIAN_PATCHES=1 ;; esac   # see the header
case "$NAME$VERSION" in
  */*|*..*) die "bad package name or version: $NAME $VERSION" ;;
esac

CACHE=${MCR_CACHE:-$HOME/.cache/mcr}
SRC_ROOT=$CACHE/src
DL_ROOT=$CACHE/dl
DEST=$SRC_ROOT/$NAME-${VERSION//:/_}   # no colon: make cannot handle one in a path
[ "$DEBIAN_PATCHES" -eq 1 ] && DEST=$DEST-debian
STAMP=.mcr-source   # written last inside DEST: its presence means DEST is complete

if [ -f "$DEST/$STAMP" ]; then
  echo "$DEST"
  exit 0
fi

mkdir -p "$SRC_ROOT" "$DL_ROOT"
# Plain and instrumented builds may fetch the same source at once.
exec 9>"$SRC_ROOT/.lock"
flock 9
if [ -f "$DEST/$STAMP" ]; then
  echo "$DEST"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# --- deb-src entries ---------------------------------------------------------
SRC_LIST=/etc/apt/sources.list.d/mcr-deb-src.sources
SUITES=(bookworm bookworm-updates bullseye trixie)
SEC_SUITES=(bookworm-security)

# Is there a deb-src entry for SUITE (deb822 stanza or one-line format)?
have_deb_src_for() {
  local suite=$1 f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="$suite" 'BEGIN { RS = "" }
      {
        types = ""; suites = ""
        n = split($0, l, "\n")
        for (i = 1; i <= n; i++) {
          if (l[i] ~ /^[ \t]*#/) continue
          if (l[i] ~ /^Types:/) types = l[i]
          if (l[i] ~ /^Suites:/) suites = l[i] " "
        }
        if (types ~ /deb-src/ && index(suites, " " s " ")) found = 1
      }
      END { exit !found }' "$f" && return 0
  done
  grep -qsE "^[[:space:]]*deb-src[[:space:]]+(\[[^]]*\][[:space:]]+)?[^[:space:]]+[[:space:]]+$suite([[:space:]]|$)" \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list
}
have_source_indices() {
  compgen -G '/var/lib/apt/lists/*_Sources*' >/dev/null
}

# The mirror the binary entries use (the first non-security URI of a deb822
# file or a one-line entry); Debian's default otherwise.
mirror_uri() {
  local uri
  uri=$(grep -hsE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk '{print $2}' | grep -v -- '-security' | grep -E '/debian/?$' | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hsE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list 2>/dev/null |
          awk '{for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:/) {print $i; exit}}' |
          grep -v -- '-security' | head -n1 || true)
  fi
  uri=${uri%/}
  echo "${uri:-http://deb.debian.org/debian}"
}

need_update=0
if [ ! -f "$SRC_LIST" ]; then
  missing=() missing_sec=()
  for s in "${SUITES[@]}"; do have_deb_src_for "$s" || missing+=("$s"); done
  for s in "${SEC_SUITES[@]}"; do have_deb_src_for "$s" || missing_sec+=("$s"); done
  if [ ${#missing[@]} -gt 0 ] || [ ${#missing_sec[@]} -gt 0 ]; then
    uri=$(mirror_uri)
    sec_uri=${uri%/debian}/debian-security
    note "adding deb-src entries (${missing[*]} ${missing_sec[*]}) from $uri in $SRC_LIST"
    {
      echo "# Added by mcr scripts/fetch-source.sh: source packages only (Types: deb-src),"
      echo "# so no binary package can come from another release."
      if [ ${#missing[@]} -gt 0 ]; then
        printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\n' "$uri" "${missing[*]}"
        echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
      fi
      if [ ${#missing_sec[@]} -gt 0 ]; then
        [ ${#missing[@]} -eq 0 ] || echo
        printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\n' "$sec_uri" "${missing_sec[*]}"
        echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
      fi
    } | $SUDO tee "$SRC_LIST" >/dev/null
    need_update=1
  fi
fi
if [ "$need_update" -eq 1 ] || ! have_source_indices; then
  note "apt-get update"
  $SUDO apt-get update -qq >&2 || die "apt-get update failed"
fi

# --- version resolution ------------------------------------------------------
# Every Debian version of NAME the source indices know, newest first.
all_versions() {
  apt-cache showsrc "$NAME" 2>/dev/null |
    awk -v p="$NAME" '/^Package:/ {ok = ($2 == p)} ok && /^Version:/ {print $2}' |
    sort -u | sort -r -V | {
      # sort -V is close to dpkg ordering; fix it with dpkg --compare-versions.
      mapfile -t v
      for ((i = 1; i < ${#v[@]}; i++)); do
        for ((j = i; j > 0; j--)); do
          if dpkg --compare-versions "${v[j]}" gt "${v[j-1]}"; then
            t=${v[j]}; v[j]=${v[j-1]}; v[j-1]=$t
          else break; fi
        done
      done
      [ ${#v[@]} -eq 0 ] || printf '%s\n' "${v[@]}"
    }
}

# Upstream part of a Debian version: no epoch, no Debian revision.
upstream_of() {
  local v=${1#*:}
  case "$v" in *-*) v=${v%-*} ;; esac
  echo "$v"
}

mapfile -t ALL < <(all_versions)
if [ ${#ALL[@]} -eq 0 ]; then
  echo "$PROG: no Debian source package named '$NAME' in bookworm, bullseye or trixie" \
       "(check the name: 'apt-cache showsrc $NAME')" >&2
  exit 2
fi

CANDIDATES=()
for v in "${ALL[@]}"; do
  up=$(upstream_of "$v")
  if [ "$v" = "$VERSION" ] || [ "${v#*:}" = "$VERSION" ]; then
    CANDIDATES=("$v"); break            # an exact Debian version wins
  fi
  case "$up" in
    "$VERSION"|"$VERSION"+*|"$VERSION"~*) CANDIDATES+=("$v") ;;  # 1.6.9 matches 1.6.9+dfsg
  esac
done

available_list() {
  local v
  for v in "${ALL[@]}"; do upstream_of "$v"; done | sort -u -V | tr '\n' ' '
}

if [ ${#CANDIDATES[@]} -eq 0 ]; then
  echo "$PROG: $NAME $VERSION is not in the Debian source indices (bookworm, bullseye," \
       "trixie). Try one of: $(available_list)(a full Debian version is accepted too: 'apt-cache showsrc $NAME')" >&2
  exit 2
fi

# --- download ----------------------------------------------------------------
# Newest Debian revision first; for pure upstream an older revision with the
# same orig tarball will do if the mirror lacks the newest one's files.
missing_msgs=()
DSC=""
DEBVER=""
for v in "${CANDIDATES[@]}"; do
  dl=$DL_ROOT/$NAME/${v//:/_}
  noepoch=${v#*:}
  dsc=$dl/${NAME}_${noepoch}.dsc
  if [ -f "$dl/.complete" ] && [ -f "$dsc" ]; then
    DSC=$dsc; DEBVER=$v; break
  fi
  rm -rf "$dl"; mkdir -p "$dl"
  note "downloading $NAME=$v"
  log=$dl/apt-get.log
  # apt-get source exits 0 even when some files failed to fetch: read its log.
  if (cd "$dl" && $SUDO apt-get source --download-only -qq "$NAME=$v") >"$log" 2>&1 &&
     ! grep -q '^E:' "$log" && [ -f "$dsc" ]; then
    touch "$dl/.complete"
    DSC=$dsc; DEBVER=$v; break
  fi
  if grep -qE '404|Not Found' "$log"; then
    files=$(grep -oE "[^/ ]+  ?404" "$log" | awk '{print $1}' | sed 's/%2b/+/g' | tr '\n' ' ')
    missing_msgs+=("$v: the mirror answers 404 for ${files:-its files}")
    continue
  fi
  cat "$log" >&2
  die "apt-get source $NAME=$v failed (log above, also in $log)"
done

if [ -z "$DSC" ]; then
  {
    echo "$PROG: $NAME $VERSION cannot be downloaded: the mirror does not have its source files."
    for m in "${missing_msgs[@]}"; do echo "  $m"; done
    others=()
    for v in "${ALL[@]}"; do
      skip=0
      for c in "${CANDIDATES[@]}"; do [ "$v" = "$c" ] && skip=1; done
      [ "$skip" -eq 0 ] && others+=("$(upstream_of "$v")")
    done
    others_s=$(printf '%s\n' "${others[@]}" | sort -u -V | tr '\n' ' ')
    echo "  Try another version of $NAME: ${others_s:-none listed}"
  } >&2
  exit 2
fi

# --- extract -----------------------------------------------------------------
tmp=$(mktemp -d "$SRC_ROOT/.extract.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if [ "$DEBIAN_PATCHES" -eq 1 ]; then
  xargs=(-x)
else
  xargs=(-x --skip-debianization)
fi
if ! dpkg-source "${xargs[@]}" "$DSC" "$tmp/tree" >"$tmp/log" 2>&1; then
  cat "$tmp/log" >&2
  die "dpkg-source ${xargs[*]} $DSC failed"
fi
{
  echo "package=$NAME"
  echo "requested=$VERSION"
  echo "debian_version=$DEBVER"
  echo "debian_patches=$DEBIAN_PATCHES"
  echo "dsc=$DSC"
} >"$tmp/tree/$STAMP"
rm -rf "$DEST"
mv "$tmp/tree" "$DEST"
note "$NAME $VERSION (Debian $DEBVER$([ "$DEBIAN_PATCHES" -eq 1 ] && echo ', Debian patches applied')) in $DEST"
echo "$DEST"
