# shellcheck shell=bash
# Shared by tests/real/update-<server>.sh; sourced after quiesce-lib.sh, not run.
#
#   update_args TOOL... -- ARGS...
#       the options every update-<server>.sh takes (--mcr-clang PATH, --rebuild,
#       --no-build, --help: the script's header up to "# Exit"); sets mcr_clang
#       (absolute) and MCR_CTL, checks that each TOOL is installed; the
#       arguments it does not know are left in UPDATE_ARGS for the script.
#   update_builds OUT MCR_CLANG [--v2-version V] PATCH...
#       v1 and v2 of $SERVER $VERSION, built as the pipeline builds a server:
#       scripts/profile-server.sh (profiling build, mcr-profile under the
#       standard workload, OUT/$SERVER.qp, the production build = v1 in
#       OUT/prod); v2 = the same upstream tree (V's with --v2-version) with each
#       PATCH applied in turn
#       (`patch -p1`, in the order given) in a source cache of its own
#       (OUT/v2-cache), built by scripts/build-server.sh into OUT/v2 with the
#       same compiler, wrappers, quiescence config and flags. Sets V1, V2, QP,
#       BUILD_SECS, V2SRC (v2's patched source tree, unbuilt).
#       Both are reused when OUT/update-key matches: a hash of mcr-clang, every
#       file of its lib/mcr (pass plugin, runtime), mcr-profile, the wrappers,
#       the source, the PATCHes (and their order) and the two build scripts.
#       UPDATE_REBUILD=1 builds anyway; UPDATE_NO_BUILD=1 reuses whatever OUT
#       holds.
#   update_reuse OUT KEY
#       0 and V1, V2 set when OUT holds builds of KEY (or UPDATE_NO_BUILD=1)
#   update_prep_source SRC CACHE PATCH...
#       SRC copied into the source cache CACHE (fetch-source.sh's layout, so
#       that MCR_CACHE=CACHE makes the build scripts build it) with each PATCH
#       applied and recorded in its .mcr-source; prints the copy's path.
#   update_log_json FILE
#       logs committed, new pid, pause, total, each phase, notes and reasons of
#       `mcr-ctl update --json`.
#   alive PID        0 when PID exists and is not a zombie
#   pause_ms FILE    the pause of an update --json, in ms ("?" if none)

UPDATE_PROFILE=$REPO/scripts/profile-server.sh
UPDATE_BUILD=$REPO/scripts/build-server.sh
UPDATE_FETCH=$REPO/scripts/fetch-source.sh

update_args() {
  local tools=() t
  while [ $# -gt 0 ] && [ "$1" != -- ]; do tools+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  mcr_clang=${MCR_BUILD_DIR:-$REPO/build}/bin/mcr-clang
  UPDATE_ARGS=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --mcr-clang) mcr_clang=$2; shift 2 ;;
      --mcr-clang=*) mcr_clang=${1#*=}; shift ;;
      --rebuild) export UPDATE_REBUILD=1; shift ;;
      --no-build) export UPDATE_NO_BUILD=1; shift ;;
      -h|--help) sed -n '2,/^# Exit/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
      *) UPDATE_ARGS+=("$1"); shift ;;
    esac
  done
  [ -x "$mcr_clang" ] || { log "mcr-clang not found at $mcr_clang (build mcr first, or pass --mcr-clang PATH)"; exit 1; }
  mcr_clang=$(cd "$(dirname "$mcr_clang")" && pwd)/$(basename "$mcr_clang")
  MCR_CTL=$(dirname "$mcr_clang")/mcr-ctl
  [ -x "$MCR_CTL" ] || { log "mcr-ctl not found next to $mcr_clang"; exit 1; }
  for t in "${tools[@]}"; do
    command -v "$t" >/dev/null || { log "$t not found (scripts/setup.sh installs it)"; exit 1; }
  done
}

update_reuse() {
  local out=$1 key=$2
  [ -f "$out/prod/build-info" ] && [ -f "$out/v2/build-info" ] && [ -s "$out/$SERVER.qp" ] &&
    { [ "${UPDATE_NO_BUILD:-0}" = 1 ] ||
      { [ "${UPDATE_REBUILD:-0}" != 1 ] && [ "$(cat "$out/update-key" 2>/dev/null)" = "$key" ]; }; } ||
    return 1
  V1=$(sed -n 's/^binary=//p' "$out/prod/build-info")
  V2=$(sed -n 's/^binary=//p' "$out/v2/build-info")
  [ -x "$V1" ] && [ -x "$V2" ] || return 1
  log "reusing the builds in $out (key $key: same mcr-clang, runtime, wrappers, sources, patches)"
}

update_prep_source() {
  local src=$1 cache=$2 dst patch
  shift 2
  dst=$cache/src/$(basename "$src")
  rm -rf "$cache"; mkdir -p "$cache/src"
  cp -a "$src" "$dst"
  for patch in "$@"; do
    patch -p1 -s -d "$dst" <"$patch" || { log "FAILED: $patch does not apply to $src (+ the patches before it)"; exit 1; }
    echo "patch=$(sha256sum <"$patch" | cut -c1-16) $(basename "$patch")" >>"$dst/.mcr-source"
  done
  echo "$dst"
}

alive() { kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

pause_ms() {
  python3 -c 'import json,sys; print("%.3f" % (json.load(open(sys.argv[1]))["pause_us"] / 1000))' \
    "$1" 2>/dev/null || echo "?"
}

update_log_json() {
  python3 - "$1" "$SERVER" >&2 <<'PY' || log "no JSON from mcr-ctl update in $1"
import json, sys
j = json.load(open(sys.argv[1]))
tag = "[%s]" % sys.argv[2]
if j.get("committed"):
    print("%s   committed, new pid %s, clients' pause %.3f ms, total %.3f s"
          % (tag, j["new_pid"], j["pause_us"] / 1000, j["total_us"] / 1e6))
else:
    print("%s   NOT committed (rolled back)" % tag)
for p in j.get("phases", []):
    print("%s     %-10s %9.3f ms  %s" % (tag, p["name"], p["us"] / 1000, p.get("detail") or ""))
for n in j.get("notes", []):
    print("%s   note: %s" % (tag, n))
for r in j.get("reasons", []):
    print("%s   reason: %s" % (tag, r))
if j.get("report"):
    print("%s   report: %s" % (tag, j["report"]))
PY
}

# update_key MCR_CLANG "SRC..." FILE...: what the two builds depend on (the
# sources' .mcr-source, the FILEs: patches, configs)
update_key() {
  local cc=$1 srcs=$2 f s
  shift 2
  {
    sha256sum "$cc" "$(dirname "$cc")/mcr-profile"
    for f in "$(dirname "$cc")"/../lib/mcr/*; do sha256sum "$f"; done
    sha256sum "$REPO/configs/$SERVER.wrappers" "$@" "$UPDATE_PROFILE" "$UPDATE_BUILD"
    for s in $srcs; do cat "$s/.mcr-source"; done
  } 2>&1 | sed 's|  .*/|  |' | sha256sum | cut -c1-16
}

update_builds() {
  local out=$1 cc=$2 v2v=$VERSION src src2 srcs key s=$SECONDS
  shift 2
  if [ "${1:-}" = --v2-version ]; then v2v=$2; shift 2; fi
  [ $# -gt 0 ] || { log "FAILED: update_builds: no patch"; exit 1; }
  QP=$out/$SERVER.qp
  src=$("$UPDATE_FETCH" "$SERVER" "$VERSION") || { log "FAILED: fetch-source.sh $SERVER $VERSION"; exit 1; }
  src2=$src srcs=$src
  if [ "$v2v" != "$VERSION" ]; then
    src2=$("$UPDATE_FETCH" "$SERVER" "$v2v") || { log "FAILED: fetch-source.sh $SERVER $v2v"; exit 1; }
    srcs="$src $src2"
  fi
  key=$(update_key "$cc" "$srcs" "$@")
  V2SRC=$out/v2-cache/src/$(basename "$src2")
  if update_reuse "$out" "$key"; then
    BUILD_SECS=$((SECONDS - s))
    return 0
  fi
  rm -f "$out/update-key"
  V1=$("$UPDATE_PROFILE" "$SERVER" "$VERSION" --cc "$cc" --out "$out") ||
    { log "FAILED: scripts/profile-server.sh $SERVER $VERSION failed (logs in $out)"; exit 1; }
  # v2's source: the upstream tree plus the patches in a source cache of its
  # own, so that build-server.sh builds it with the very same command as v1.
  V2SRC=$(update_prep_source "$src2" "$out/v2-cache" "$@") || exit 1
  V2=$(MCR_CACHE=$out/v2-cache MCR_WRAPPERS=$REPO/configs/$SERVER.wrappers MCR_PROFILE= \
       MCR_QUIESCENCE=$QP "$UPDATE_BUILD" "$SERVER" "$v2v" --cc "$cc" --out "$out/v2") ||
    { log "FAILED: the v2 build ($SERVER $v2v) failed (see $out/v2/build.log)"; exit 1; }
  echo "$key" >"$out/update-key"
  BUILD_SECS=$((SECONDS - s))
}
