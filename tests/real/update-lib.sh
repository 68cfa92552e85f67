# shellcheck shell=bash
# Shared by tests/real/update-<server>.sh; sourced after quiesce-lib.sh, not run.
#
#   update_builds OUT MCR_CLANG PATCH...
#       v1 and v2 of $SERVER $VERSION, built as the pipeline builds a server:
#       scripts/profile-server.sh (profiling build, mcr-profile under the
#       standard workload, OUT/$SERVER.qp, the production build = v1 in
#       OUT/prod); v2 = the same upstream tree with each PATCH applied in turn
#       (`patch -p1`, in the order given) in a source cache of its own
#       (OUT/v2-cache), built by scripts/build-server.sh into OUT/v2 with the
#       same compiler, wrappers, quiescence config and flags. Sets V1, V2, QP,
#       BUILD_SECS, V2SRC (v2's patched source tree, unbuilt).
#       Both are reused when OUT/update-key matches: a hash of mcr-clang, every
#       file of its lib/mcr (pass plugin, runtime), mcr-profile, the wrappers,
#       the source, the PATCHes (and their order) and the two build scripts.
#       UPDATE_REBUILD=1 builds anyway; UPDATE_NO_BUILD=1 reuses whatever OUT
#       holds.
#   update_log_json FILE
#       logs committed, new pid, pause, total, each phase, notes and reasons of
#       `mcr-ctl update --json`.
#   alive PID        0 when PID exists and is not a zombie
#   pause_ms FILE    the pause of an update --json, in ms ("?" if none)

UPDATE_PROFILE=$REPO/scripts/profile-server.sh
UPDATE_BUILD=$REPO/scripts/build-server.sh
UPDATE_FETCH=$REPO/scripts/fetch-source.sh

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

# update_key MCR_CLANG SRC PATCH...: what the two builds depend on
update_key() {
  local cc=$1 src=$2 f
  shift 2
  {
    sha256sum "$cc" "$(dirname "$cc")/mcr-profile"
    for f in "$(dirname "$cc")"/../lib/mcr/*; do sha256sum "$f"; done
    sha256sum "$REPO/configs/$SERVER.wrappers" "$@" "$UPDATE_PROFILE" "$UPDATE_BUILD"
    cat "$src/.mcr-source"
  } 2>&1 | sed 's|  .*/|  |' | sha256sum | cut -c1-16
}

update_builds() {
  local out=$1 cc=$2 patch src key s=$SECONDS
  shift 2
  [ $# -gt 0 ] || { log "FAILED: update_builds: no patch"; exit 1; }
  QP=$out/$SERVER.qp
  src=$("$UPDATE_FETCH" "$SERVER" "$VERSION") || { log "FAILED: fetch-source.sh $SERVER $VERSION"; exit 1; }
  key=$(update_key "$cc" "$src" "$@")
  V2SRC=$out/v2-cache/src/$(basename "$src")
  if [ -f "$out/prod/build-info" ] && [ -f "$out/v2/build-info" ] && [ -s "$QP" ] &&
     { [ "${UPDATE_NO_BUILD:-0}" = 1 ] ||
       { [ "${UPDATE_REBUILD:-0}" != 1 ] && [ "$(cat "$out/update-key" 2>/dev/null)" = "$key" ]; }; }; then
    V1=$(sed -n 's/^binary=//p' "$out/prod/build-info")
    V2=$(sed -n 's/^binary=//p' "$out/v2/build-info")
    if [ -x "$V1" ] && [ -x "$V2" ]; then
      log "reusing the builds in $out (key $key: same mcr-clang, runtime, wrappers, source, patch)"
      BUILD_SECS=$((SECONDS - s))
      return 0
    fi
  fi
  rm -f "$out/update-key"
  V1=$("$UPDATE_PROFILE" "$SERVER" "$VERSION" --cc "$cc" --out "$out") ||
    { log "FAILED: scripts/profile-server.sh $SERVER $VERSION failed (logs in $out)"; exit 1; }
  # v2's source: the upstream tree plus the patch in a source cache of its own,
  # so that build-server.sh builds it with the very same command as v1.
  local v2cache=$out/v2-cache
  local v2src
  v2src=$v2cache/src/$(basename "$src")
  rm -rf "$v2cache"; mkdir -p "$v2cache/src"
  cp -a "$src" "$v2src"
  for patch in "$@"; do
    patch -p1 -s -d "$v2src" <"$patch" || { log "FAILED: $patch does not apply to $src (+ the patches before it)"; exit 1; }
    echo "patch=$(sha256sum <"$patch" | cut -c1-16) $(basename "$patch")" >>"$v2src/.mcr-source"
  done
  V2=$(MCR_CACHE=$v2cache MCR_WRAPPERS=$REPO/configs/$SERVER.wrappers MCR_PROFILE= \
       MCR_QUIESCENCE=$QP "$UPDATE_BUILD" "$SERVER" "$VERSION" --cc "$cc" --out "$out/v2") ||
    { log "FAILED: the v2 build failed (see $out/v2/build.log)"; exit 1; }
  echo "$key" >"$out/update-key"
  BUILD_SECS=$((SECONDS - s))
}
