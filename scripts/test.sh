#!/usr/bin/env bash
# Runs every test tier (unit, host, vm, client) after installing what they
# need. CI runs this through .ci/run. STRATA_TEST_STRICT=1 turns a skipped
# test into a failure, so nothing passes by skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests
# containerd's own snapshotters served directly, for tests/bench_containerd.rs.
scripts/build-ctrd-snapshotter.sh
export STRATA_TEST_STRICT=${STRATA_TEST_STRICT:-1}
# The interrupt loop (tests/crash.rs): 200 SIGKILLs and 200 SIGINTs at
# random moments per host driver, on top of the 33 failpoint kills.
export STRATA_CRASH_KILLS=${STRATA_CRASH_KILLS:-200}
export STRATA_CRASH_INTERRUPTS=${STRATA_CRASH_INTERRUPTS:-200}
# Every skip is also appended here and listed at the end (none under STRICT).
export STRATA_SKIP_LOG=${STRATA_SKIP_LOG:-$PWD/target/strata-skips.log}
mkdir -p target && : > "$STRATA_SKIP_LOG"
start=$(date +%s)

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== unit, host and client tests (root, loop devices, real filesystems, containerd)"
# strata-devmapper needs dm-thin: its tests run in the VM tier below.
cargo test --workspace --exclude strata-devmapper --quiet -- --test-threads=2

echo "== vm tier: dm-thin under a stock kernel in qemu"
# Under the VM's emulated CPU (no KVM: nested KVM here cannot boot a guest
# kernel) a signal with its checks costs ~6 s, so devmapper gets fewer
# (STRATA_VM_CRASH_* to change), worked on two stores at once, one per vCPU;
# and a smaller archive for the shared-store test.
STRATA_CRASH_KILLS=${STRATA_VM_CRASH_KILLS:-50} \
STRATA_CRASH_INTERRUPTS=${STRATA_VM_CRASH_INTERRUPTS:-50} \
STRATA_CRASH_SHARDS=${STRATA_VM_CRASH_SHARDS:-2} \
STRATA_SHARED_LOAD_MB=${STRATA_SHARED_LOAD_MB:-16} \
    scripts/vm-test.sh

echo "== strata bench --quick, outputs checked"
scripts/bench-check.sh
skips=$(grep -c . "$STRATA_SKIP_LOG" || true)
echo "skipped tests: $skips"
[ "$skips" = 0 ] || cat "$STRATA_SKIP_LOG"
echo "all tiers passed in $(( $(date +%s) - start )) s"
