#!/usr/bin/env bash
# The VM test tier: runs the devmapper tests as root inside a stock Debian
# kernel (which ships dm-thin-pool as a module) under qemu, for hosts whose
# own kernel has no device-mapper. See notes/dm-thin-in-a-vm.md.
#
# Idempotent: installs what is missing (qemu, kmod, busybox, virtme-ng, the
# unpacked kernel under $STRATA_VM_CACHE), builds the test binaries on the
# host, boots the guest once and runs every binary in it with
# STRATA_TEST_STRICT=1, so a missing prerequisite fails instead of skipping.
# The exit status is the guest's: non-zero when any test binary failed.
#
# The guest runs binaries from its tmpfs: executing a 150 MiB debug binary
# straight off the host's shared root costs about 3 s per start under TCG,
# and the reliability tests start strata thousands of times.
#
# Usage: scripts/vm-test.sh [--check | --bench] [ARG...]
#   --check        only boot the guest and show that dm-thin loads
#   --bench        run the devmapper benchmarks instead of the tests (not
#                  part of CI): `strata bench --drivers devmapper --quick`,
#                  `strata bench --containerd --drivers devmapper --quick`
#                  (against containerd's own devmapper snapshotter through
#                  a containerd daemon), the same with --direct (that
#                  snapshotter served directly by target/ctrd-snapshotter,
#                  built by scripts/build-ctrd-snapshotter.sh) and
#                  every criterion bench with STRATA_BENCH_DEVMAPPER=1,
#                  on an ext4 scratch disk (virtio, so fsync reaches a
#                  real file on the host); outputs land in target/vm-bench
#   ARG            appended to every test (or bench) binary's arguments,
#                  e.g. a name filter
# Environment: STRATA_VM_CACHE (default /var/cache/strata-vm),
#   STRATA_VM_MEMORY (default 4G), STRATA_VM_TMPFS (guest tmpfs size, 2G),
#   STRATA_VM_SUITES (what to run: suites separated by ';', each
#     "CARGO_TEST_ARGS [-- TEST_ARGS]"; default: every strata-devmapper test,
#     then the devmapper cases of the reliability, hostile-archive, size
#     limit and layer sizing tests, then overlay2's project quota cases (the host kernel has
#     no xfs/ext4 quotas)),
#   STRATA_VM_UDEV=1 (keep udevd running in the guest: tests the udev-sync path),
#   STRATA_VM_CLI (the strata binary the tests run in the guest, bound over
#     target/debug/strata; default that debug build),
#   STRATA_VM_BENCH (--bench: which parts to run, of "strata containerd
#     direct criterion"; default all four; without criterion no bench is built).
# Every other STRATA_* variable of the caller (STRATA_CRASH_KILLS, ...) is
# passed into the guest.
set -euo pipefail

cache=${STRATA_VM_CACHE:-/var/cache/strata-vm}
memory=${STRATA_VM_MEMORY:-4G}
tmpfs_size=${STRATA_VM_TMPFS:-2G}
default_suites="-p strata-devmapper;
  -p strata --test conformance --test serve_conformance --test crash --test concurrency --test shared_store --test interrupt --test hygiene
  --test data_integrity --test archive_bombs --test export_race --test backing --test hostile_store
  --test size_limits --test layer_sizing --test bench_containerd -- --include-ignored devmapper;
  -p strata --test size_limits -- --include-ignored project_quotas"
suites=${STRATA_VM_SUITES:-$default_suites}
bench_parts=" ${STRATA_VM_BENCH:-strata containerd direct criterion} "
repo=$(cd "$(dirname "$0")/.." && pwd)

log() { printf 'vm-test: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

[ "$(id -u)" = 0 ] || die "must run as root (installs packages, boots a VM with root tests)"

ensure_packages() {
    local missing=() pkg
    # udev: the guest init finds vng's script I/O ports (exit status, stdout)
    # through the /dev/virtio-ports links udev makes; without it vng exits 255.
    declare -A need=([qemu-system-x86]=qemu-system-x86_64 [kmod]=depmod [busybox-static]=busybox
        [udev]=/lib/systemd/systemd-udevd)
    for pkg in "${!need[@]}"; do
        command -v "${need[$pkg]}" >/dev/null 2>&1 || [ -x "${need[$pkg]}" ] || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    fi
}

ensure_vng() {
    if ! command -v vng >/dev/null 2>&1; then
        log "installing virtme-ng"
        # Debian's own python refuses plain pip installs (PEP 668).
        python3 -m pip install --quiet virtme-ng >&2 ||
            python3 -m pip install --quiet --break-system-packages virtme-ng >&2
        hash -r
    fi
    if ! command -v vng >/dev/null 2>&1 && [ -x /usr/local/bin/vng ]; then
        export PATH="/usr/local/bin:$PATH"
    fi
    command -v vng >/dev/null 2>&1 || die "vng not on PATH after pip install virtme-ng"
}

# Prints the kernel version; leaves $cache/vmlinuz-<ver> and /lib/modules/<ver>
# (with depmod run) in place. The image is copied out of the unpacked tree:
# next to a lib/modules, vng would link the guest's modules from there, and
# the guest does not see the host's /var.
ensure_kernel() {
    local ver dir="$cache/kernel"
    if [ -s "$cache/kernel.version" ]; then
        ver=$(cat "$cache/kernel.version")
    else
        ver=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: linux-image-//p' | head -n1)
        [ -n "$ver" ] || die "cannot find the linux-image-amd64 dependency (apt-get update?)"
    fi
    if [ ! -f "$dir/boot/vmlinuz-$ver" ]; then
        log "fetching linux-image-$ver"
        mkdir -p "$cache/dl"
        rm -rf "$dir"
        (cd "$cache/dl" && apt-get download "linux-image-$ver" >&2)
        dpkg -x "$cache/dl"/linux-image-"$ver"_*.deb "$dir"
    fi
    if [ ! -d "/lib/modules/$ver/kernel" ]; then
        mkdir -p /lib/modules
        cp -a "$dir/lib/modules/$ver" /lib/modules/
    fi
    if [ ! -s "/lib/modules/$ver/modules.dep" ]; then
        depmod "$ver"
    fi
    [ -f "$cache/vmlinuz-$ver" ] || cp "$dir/boot/vmlinuz-$ver" "$cache/vmlinuz-$ver"
    echo "$ver" >"$cache/kernel.version"
    echo "$ver"
}

# Reads cargo's JSON messages on stdin and prints the executables built:
# test binaries, or bench binaries when $1 is "bench".
executables() {
    python3 -c '
import json, sys
want_bench = sys.argv[1] == "bench"
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
        continue
    is_bench = "bench" in msg.get("target", {}).get("kind", [])
    if is_bench if want_bench else msg.get("profile", {}).get("test"):
        print(msg["executable"])
' "$1"
}

# Prints the test executables that `cargo test $1 --no-run` builds.
build_tests() {
    local args
    read -r -a args <<<"$1"
    (cd "$repo" && cargo test "${args[@]}" --no-run --message-format=json) | executables test
}

# Fills $runs with one line per test binary to run: "BINARY TEST_ARGS...".
plan_runs() {
    local suite cargo_args test_args bin
    runs=""
    while read -r -d ';' suite || [ -n "$suite" ]; do
        suite=$(echo $suite)
        [ -n "$suite" ] || continue
        cargo_args=${suite%% -- *}
        test_args=""
        case "$suite" in *" -- "*) test_args=${suite#* -- } ;; esac
        local built
        built=$(build_tests "$cargo_args")
        [ -n "$built" ] || die "no test executables built for: $cargo_args"
        for bin in $built; do
            runs+="$bin $test_args"$'\n'
        done
        suite=""
    done <<<"$suites"
}

# Prints `export` lines for the caller's STRATA_* variables (not the VM's own).
guest_env() {
    local name
    for name in $(compgen -e | grep '^STRATA_' | grep -v '^STRATA_VM_'); do
        printf "export %s=%q\n" "$name" "${!name}"
    done
}

# Writes the script the guest runs to $1.
write_guest_script() {
    local out=$1; shift
    local extra=("$@")
    {
        echo '#!/bin/bash'
        echo 'set -u'
        echo 'modprobe loop || exit 3'
        echo 'modprobe dm-thin-pool || exit 3'
        echo "mount -t tmpfs -o size=$tmpfs_size,mode=1777 strata-vm-tmp /tmp || exit 3"
        if [ "${STRATA_VM_UDEV:-0}" != 1 ]; then
            # The guest's udevd only serves vng's script ports, which are set
            # up by now. Stopping it tests the udev-less path (containers),
            # and is much faster under TCG: otherwise every dm resume/remove
            # waits for udev to run its rules and `dmsetup udevcomplete`.
            echo 'udevadm control --exit 2>/dev/null; rm -f /run/udev/control'
        fi
        echo 'export TMPDIR=/tmp STRATA_TEST_STRICT=1 RUST_BACKTRACE=1'
        guest_env
        echo "cd '$repo'"
        echo 'status=0'
        if [ -n "$runs" ]; then
            local cli="$repo/target/debug/strata" cli_build=${STRATA_VM_CLI:-$repo/target/debug/strata}
            # Tests find strata by its build path: a tmpfs copy of the chosen
            # build bound over it.
            echo "if [ -x '$cli' ]; then cp '$cli_build' /tmp/strata-cli && mount --bind /tmp/strata-cli '$cli' || exit 3; fi"
            local bin args
            while read -r bin args; do
                [ -n "$bin" ] || continue
                echo "echo \"vm-test: running $bin $args\""
                echo "start=\$(date +%s)"
                echo "cp '$bin' /tmp/test-bin || exit 3"
                printf "/tmp/test-bin --test-threads=1 --nocapture %s" "$args"
                local a
                for a in "${extra[@]}"; do printf " '%s'" "$a"; done
                echo ' 2>&1 || status=1'
                echo 'rm -f /tmp/test-bin'
                echo "echo \"vm-test: $(basename "$bin") took \$((\$(date +%s) - start)) s; guest /tmp: \$(df -h --output=used,avail /tmp | tail -1)\""
                # What a suite leaves in the guest's small tmpfs starves the next.
                echo "du -sx /tmp/* 2>/dev/null | sort -n | tail -3 | sed 's/^/vm-test:   /'"
            done <<<"$runs"
        else
            echo 'ls -l /dev/mapper/control && grep -E "thin|device-mapper" /proc/devices /proc/modules'
        fi
        echo 'exit $status'
    } >"$out"
    chmod +x "$out"
}

# Prints the bench executables (release profile) and builds the CLI.
build_benches() {
    (cd "$repo" && cargo build --release --quiet --bin strata >&2)
    [[ $bench_parts != *" direct "* ]] || "$repo/scripts/build-ctrd-snapshotter.sh" >&2
    [[ $bench_parts == *" criterion "* ]] || return 0
    (cd "$repo" && cargo bench --no-run --message-format=json) | executables bench
}

# Writes the bench script the guest runs to $1; results go to $2.
write_guest_bench_script() {
    local out=$1 results=$2; shift 2
    local extra=("$@")
    {
        echo '#!/bin/bash'
        echo 'set -u'
        echo 'modprobe loop && modprobe dm-thin-pool || exit 3'
        echo 'modprobe virtio_scsi; modprobe sd_mod'
        echo "mount -t tmpfs -o size=$tmpfs_size,mode=1777 strata-vm-tmp /tmp || exit 3"
        echo 'udevadm control --exit 2>/dev/null; rm -f /run/udev/control'
        # vng attaches --disk as virtio-blk (vda) or virtio-scsi (sda).
        echo 'disk=""; for i in $(seq 50); do for d in /dev/vda /dev/sda; do [ -b $d ] && disk=$d; done; [ -n "$disk" ] && break; sleep 0.2; done'
        echo '[ -n "$disk" ] || { echo "vm-bench: the scratch disk did not appear"; exit 3; }'
        echo 'mkfs.ext4 -q -F $disk && mkdir -p /tmp/disk && mount $disk /tmp/disk || exit 3'
        echo 'export TMPDIR=/tmp/disk STRATA_BENCH_WORK_DIR=/tmp/disk/bench-work STRATA_BENCH_DEVMAPPER=1 STRATA_BENCH_DRIVERS=devmapper'
        # The guest's view of target/ is read-only.
        echo "export CRITERION_HOME='$results/criterion'"
        guest_env
        echo "cd '$repo'"
        echo 'status=0'
        echo "cp '$repo/target/release/strata' /tmp/strata-cli || exit 3"
        if [[ $bench_parts == *" strata "* ]]; then
            echo 'echo "vm-bench: strata bench --drivers devmapper --quick"'
            echo "/tmp/strata-cli bench --drivers devmapper --quick --out '$results/strata-bench' 2>&1 || status=1"
        fi
        if [[ $bench_parts == *" containerd "* ]]; then
            echo 'echo "vm-bench: strata bench --containerd --drivers devmapper --quick"'
            echo "/tmp/strata-cli bench --containerd --drivers devmapper --quick --out '$results/containerd' 2>&1 || status=1"
        fi
        if [[ $bench_parts == *" direct "* ]]; then
            echo 'echo "vm-bench: strata bench --containerd --direct --drivers devmapper --quick"'
            echo "STRATA_CTRD_SNAPSHOTTER='$repo/target/ctrd-snapshotter' /tmp/strata-cli bench --containerd --direct --drivers devmapper --quick --out '$results/containerd' 2>&1 || status=1"
        fi
        local bin
        for bin in $runs; do
            local name
            name=$(basename "$bin" | sed 's/-[0-9a-f]*$//')
            echo "echo \"vm-bench: $name\""
            echo "cp '$bin' /tmp/bench-bin || exit 3"
            printf "/tmp/bench-bin --bench"
            local a
            for a in "${extra[@]}"; do printf " '%s'" "$a"; done
            echo " 2>&1 | tee '$results/$name.txt'; [ \${PIPESTATUS[0]} = 0 ] || status=1"
            echo 'rm -f /tmp/bench-bin'
        done
        echo 'exit $status'
    } >"$out"
    chmod +x "$out"
}

main() {
    local mode=test
    case "${1:-}" in
    --check) mode=check; shift ;;
    --bench) mode=bench; shift ;;
    esac
    ensure_packages
    ensure_vng
    local ver
    ver=$(ensure_kernel)
    runs=""
    # The guest sees the host's / read-only, but not /var (an overlay there).
    mkdir -p "$repo/target/vm-test"
    local guest="$repo/target/vm-test/guest-$$.sh"
    local vng_args=()
    case $mode in
    test)
        plan_runs
        write_guest_script "$guest" "$@"
        ;;
    check) write_guest_script "$guest" ;;
    bench)
        runs=$(build_benches)
        [ -n "$runs" ] || [[ $bench_parts != *" criterion "* ]] || die "no bench executables built"
        local results="$repo/target/vm-bench" disk="$cache/bench-disk-$$.img"
        rm -rf "$results" "$disk"
        mkdir -p "$results"
        truncate -s 32G "$disk"
        vng_args=(--disk "$disk" --rwdir "$results")
        write_guest_bench_script "$guest" "$results" "$@"
        ;;
    esac
    trap 'rm -f "$guest"' EXIT
    log "booting linux $ver under TCG (about 20 s)"
    local start=$SECONDS status=0
    vng --run "$cache/vmlinuz-$ver" --memory "$memory" --disable-kvm \
        "${vng_args[@]}" --exec "$guest" || status=$?
    [ $mode != bench ] || rm -f "$cache/bench-disk-$$.img"
    log "guest exited with status $status after $((SECONDS - start)) s"
    exit "$status"
}

main "$@"
