#!/usr/bin/env bash
# Runs `strata bench --quick` once and checks its outputs: results.json
# parses and holds samples, report.md has tables, the plots exist as PNG
# and SVG. Needs root. Usage: scripts/bench-check.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "bench-check: needs root" >&2
    exit 1
fi
out=${1:-$(mktemp -d /tmp/strata-bench-check.XXXXXX)}
cargo build --quiet --bin strata
start=$(date +%s)
target/debug/strata bench --quick --out "$out"
elapsed=$(( $(date +%s) - start ))
echo "bench-check: strata bench --quick took ${elapsed} s"

fail() { echo "bench-check: $*" >&2; exit 1; }
python3 -m json.tool "$out/results.json" >/dev/null || fail "results.json does not parse"
python3 - "$out/results.json" <<'PY' || fail "results.json lacks samples"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["host"]["kernel"], "no kernel version"
ran = [t for t in r["targets"] if t["skipped"] is None]
assert any(t["driver"] == "volume" for t in ran), "no volume baseline"
assert any(t["driver"] != "volume" for t in ran), "no driver ran"
for t in ran:
    assert t["series"], f"{t['label']}: no samples"
    assert all(s["samples"] for s in t["series"]), f"{t['label']}: empty series"
PY
[ -s "$out/report.md" ] || fail "report.md missing"
grep -q '^| target |' "$out/report.md" || fail "report.md has no table"
grep -q '^## First 4 KiB write into a 1 GiB file' "$out/report.md" || fail "report.md lacks the headline table"
for plot in first-write create-size create-depth; do
    for ext in png svg; do
        [ -s "$out/$plot.$ext" ] || fail "$plot.$ext missing"
    done
done
head -c 8 "$out/first-write.png" | grep -q PNG || fail "first-write.png is not a PNG"
grep -q '<svg' "$out/first-write.svg" || fail "first-write.svg is not an SVG"
if [ "$elapsed" -ge 180 ]; then
    echo "bench-check: warning: --quick took ${elapsed} s (target: under 180 s)" >&2
fi
echo "bench-check: ok ($out)"
