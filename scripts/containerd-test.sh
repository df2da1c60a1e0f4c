#!/usr/bin/env bash
# Tier 4: a real containerd and ctr driving `strata serve`, plus the
# conformance suite through the gRPC socket, and the Kubernetes path (CRI).
# Needs root, containerd (with its CRI plug-in, as Debian builds it), runc,
# busybox-static (scripts/setup.sh --tests installs them). Nothing may skip.
#   scripts/containerd-test.sh            run the tests
#   scripts/containerd-test.sh --latency  also print socket vs in-process latency
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "containerd-test.sh: run as root" >&2
    exit 1
fi
for p in containerd ctr runc containerd-shim-runc-v2 busybox; do
    command -v "$p" >/dev/null || { echo "containerd-test.sh: $p missing (scripts/setup.sh --tests)" >&2; exit 1; }
done
export STRATA_TEST_STRICT=${STRATA_TEST_STRICT:-1}
cargo test --quiet --test serve_conformance --test serve_signal --test containerd --test cri -- --test-threads=2
if [ "${1:-}" = "--latency" ]; then
    cargo test --release --quiet --test serve_latency -- --ignored --nocapture
fi
