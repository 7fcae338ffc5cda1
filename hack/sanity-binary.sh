#!/usr/bin/env bash
# Runs the csi-sanity command-line binary (csi-test v5) against bin/dirvol
# started on a fresh socket and data dir. Needs root (bind mounts).
set -euo pipefail
cd "$(dirname "$0")/.."

CSI_TEST_VERSION=${CSI_TEST_VERSION:-v5.6.0}
SANITY=${CSI_SANITY:-$(go env GOPATH)/bin/csi-sanity}
if [[ ! -x "$SANITY" ]]; then
  GOFLAGS= go install "github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@${CSI_TEST_VERSION}"
fi

work=$(mktemp -d /tmp/dirvol-sanity.XXXXXX)
bin/dirvol --endpoint "unix://$work/csi.sock" --data-dir "$work/data" --node-id sanity-node \
  --max-volumes 100 "$@" >"$work/dirvol.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for _ in $(seq 100); do [[ -S "$work/csi.sock" ]] && break; sleep 0.1; done

"$SANITY" \
  --csi.endpoint "$work/csi.sock" \
  --csi.mountdir "$work/target" \
  --csi.stagingdir "$work/staging" \
  --csi.testvolumesize $((64 << 20)) \
  --csi.junitfile "${JUNIT:-/dev/null}" \
  --ginkgo.v=false
