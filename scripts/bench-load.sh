#!/usr/bin/env bash
# Load throughput: a ~200 MiB, 4-layer image (gzip OCI archive) loaded with
# `strata load` on each driver given (default: vfs btrfs), against
# `zcat | tar -x` and `tar -x` of the same layers on the filesystem of
# $BENCH_DIR (default /tmp). Needs root and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${STRATA:-target/release/strata}
DRIVERS=${*:-vfs btrfs}
W=$(mktemp -d "${BENCH_DIR:-/tmp}/strata-bench-load-XXXX")
trap 'for r in "$W"/store-*; do [ -d "$r" ] && "$BIN" --root "$r" info >/dev/null 2>&1 || true; done; rm -rf "$W"' EXIT

# Four layers of ~50 MiB: one 16 MiB random file, 16 MiB of text, 600 small files.
for i in 1 2 3 4; do
    d="$W/src$i/layer$i"
    mkdir -p "$d/small"
    head -c 16M /dev/urandom >"$d/random.bin"
    head -c 12M /dev/urandom | base64 >"$d/text.txt"
    for f in $(seq 1 600); do head -c 30000 /dev/urandom | base64 >"$d/small/f$f"; done
    tar -C "$W/src$i" -cf "$W/layer$i.tar" .
done
du -sh "$W"/layer*.tar | sed 's/^/layer tar: /'

# Build the image through the CLI: import layer 1, then add one layer per commit.
B="$W/store-build"
"$BIN" --root "$B" --driver vfs init >/dev/null
"$BIN" --root "$B" import "$W/layer1.tar" bench/img:1 >/dev/null
for i in 2 3 4; do
    c=$("$BIN" --root "$B" create bench/img:$((i - 1)) | tail -1)
    m=$("$BIN" --root "$B" mount "$c" | tail -1)
    tar -C "$m" -xf "$W/layer$i.tar"
    "$BIN" --root "$B" umount "$c"
    "$BIN" --root "$B" commit "$c" bench/img:$i >/dev/null
    "$BIN" --root "$B" rm "$c"
done
"$BIN" --root "$B" save -o "$W/image.tar" bench/img:4
ls -l "$W/image.tar" | awk '{printf "archive: %.1f MiB (gzip blobs)\n", $5/1048576}'
SIZE=$(cat "$W"/layer*.tar | wc -c)

rate() { awk -v s="$SIZE" -v t="$1" 'BEGIN { printf "%.2f s, %.0f MiB/s", t, s / 1048576 / t }'; }
now() { date +%s.%N; }

sync; echo 3 >/proc/sys/vm/drop_caches || true
t0=$(now); mkdir "$W/tarx"; for i in 1 2 3 4; do tar -C "$W/tarx" -xf "$W/layer$i.tar"; done; sync; t1=$(now)
echo "tar -x (plain layers):        $(rate "$(echo "$t1 - $t0" | bc)")"
mkdir "$W/ztarx"; for i in 1 2 3 4; do gzip -1 -c "$W/layer$i.tar" >"$W/layer$i.tar.gz"; done
sync; t0=$(now); for i in 1 2 3 4; do zcat "$W/layer$i.tar.gz" | tar -C "$W/ztarx" -x; done; sync; t1=$(now)
echo "zcat | tar -x (gzip layers):  $(rate "$(echo "$t1 - $t0" | bc)")"
for d in $DRIVERS; do
    R="$W/store-$d"
    "$BIN" --root "$R" --driver "$d" init >/dev/null
    sync; t0=$(now); "$BIN" --root "$R" load -i "$W/image.tar" >/dev/null; sync; t1=$(now)
    echo "strata load ($d):$(printf '%*s' $((14 - ${#d})) '')$(rate "$(echo "$t1 - $t0" | bc)")"
done
