#!/usr/bin/env bash
# Runs the csi-sanity command-line binary (csi-test v5) against bin/dirvol,
# once per pool in POOLS and access type in ACCESS_TYPES, each run with the
# driver started on a fresh socket and data dir. Needs root (bind mounts,
# loop devices). Arguments go to bin/dirvol.
#
#   POOLS         the default pool of the runs, any of:
#                   dir          rooted at the data dir, on TMPDIR's filesystem
#                   btrfs-image  --pool name=default,image=<work>/pool.img,size=4Gi
#                 (default: "dir btrfs-image" as root, else "dir")
#   ACCESS_TYPES  csi-sanity -csi.testvolumeaccesstype values (default "mount block")
#   JUNIT         a directory for one junit file per run (default: none)
#   SANITY_FLAGS  more csi-sanity flags, e.g. "--ginkgo.v" or "--ginkgo.focus=Snapshot"
#
# Everything a run leaves (driver, mounts under its work dir, the image's
# loop device, the work dir) is removed when it ends, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

CSI_TEST_VERSION=${CSI_TEST_VERSION:-v5.6.0}
SANITY=${CSI_SANITY:-$(go env GOPATH)/bin/csi-sanity}
if [[ ! -x "$SANITY" ]]; then
  GOFLAGS= go install "github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@${CSI_TEST_VERSION}"
fi

if [[ $(id -u) == 0 ]]; then POOLS=${POOLS:-dir btrfs-image}; else POOLS=${POOLS:-dir}; fi
ACCESS_TYPES=${ACCESS_TYPES:-mount block}
VOLUME_SIZE=$((64 << 20))
EXPAND_SIZE=$((128 << 20))

work= pid= image=
cleanup() {
  trap '' INT TERM # a second Ctrl-C must not cut the cleanup short
  if [[ -n "$pid" ]]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [[ -n "$work" ]]; then
    # Deepest first: publish mounts inside staging mounts, the image pool.
    findmnt -rn -o TARGET | grep -F "$work/" | sort -r | while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" || true
    done
    if [[ -n "$image" ]]; then
      losetup -j "$image" -O NAME -n 2>/dev/null | while read -r dev; do
        losetup -d "$dev" || true
      done
    fi
    rm -rf --one-file-system "$work"
  fi
  work= pid= image=
  trap 'exit 130' INT TERM
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run POOL ACCESS_TYPE: one csi-sanity run; prints its summary line last.
run() {
  local kind=$1 access=$2 pools=()
  work=$(mktemp -d /tmp/dirvol-sanity.XXXXXX)
  case "$kind" in
    dir) ;;
    btrfs-image)
      image=$work/pool.img
      pools=(--pool "name=default,image=$image,size=4Gi")
      ;;
    *) echo "sanity-binary: unknown pool kind $kind (want dir or btrfs-image)" >&2; cleanup; return 2 ;;
  esac
  bin/dirvol --endpoint "unix://$work/csi.sock" --data-dir "$work/data" --node-id sanity-node --kubelet-registration-dir= \
    --max-volumes 100 "${pools[@]}" "${DRIVER_ARGS[@]}" >"$work/dirvol.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do [[ -S "$work/csi.sock" ]] && break; sleep 0.1; done
  if [[ ! -S "$work/csi.sock" ]]; then
    echo "sanity-binary: bin/dirvol did not open its socket; its log:" >&2
    cat "$work/dirvol.log" >&2
    summary+=("pool=$kind access=$access: bin/dirvol did not start")
    cleanup
    return 1
  fi

  local junit=/dev/null rc=0
  if [[ -n "${JUNIT:-}" ]]; then
    mkdir -p "$JUNIT"
    junit=$JUNIT/sanity-$kind-$access.xml
  fi
  "$SANITY" \
    --csi.endpoint "$work/csi.sock" \
    --csi.mountdir "$work/target" \
    --csi.stagingdir "$work/staging" \
    --csi.testvolumesize "$VOLUME_SIZE" \
    --csi.testvolumeexpandsize "$EXPAND_SIZE" \
    --csi.testvolumeaccesstype "$access" \
    --csi.junitfile "$junit" \
    --ginkgo.v=false --ginkgo.no-color "${SANITY_ARGS[@]}" 2>&1 | tee "$work/sanity.log" || rc=$?
  if [[ $rc != 0 ]]; then
    echo "sanity-binary: pool $kind, access type $access failed; driver log:" >&2
    tail -n 50 "$work/dirvol.log" >&2
  fi
  summary+=("pool=$kind access=$access: $(grep -E 'Passed \|' "$work/sanity.log" | tail -n 1 || echo "no summary (exit $rc)")")
  cleanup
  return "$rc"
}

DRIVER_ARGS=("$@")
read -r -a SANITY_ARGS <<<"${SANITY_FLAGS:-}"
summary=()
failed=0
for kind in $POOLS; do
  for access in $ACCESS_TYPES; do
    run "$kind" "$access" || failed=1
  done
done
echo
echo "csi-sanity summary:"
printf '  %s\n' "${summary[@]}"
exit "$failed"
