#!/usr/bin/env bash
# Runs `strata bench --quick` once and checks its outputs: results.json
# parses and holds samples (at least 10 per headline row), report.md has
# tables whose ratio rows show n, median, p95 and a 95% CI, the plots exist
# as PNG and SVG, and the work dir is left empty. Needs root.
# Usage: scripts/bench-check.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "bench-check: needs root" >&2
    exit 1
fi
out=${1:-$(mktemp -d /tmp/strata-bench-check.XXXXXX)}
cargo build --quiet --bin strata
start=$(date +%s)
work=$(mktemp -d /var/tmp/strata-bench-check-work.XXXXXX)
target/debug/strata bench --quick --out "$out" --work-dir "$work/w"
elapsed=$(( $(date +%s) - start ))
echo "bench-check: strata bench --quick took ${elapsed} s"

fail() { echo "bench-check: $*" >&2; exit 1; }
[ ! -e "$work/w" ] || fail "the work dir $work/w was not cleaned up: $(ls -A "$work/w")"
rmdir "$work"
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
    headline = [s for s in t["series"]
                if s["workload"] in ("copy_up", "volume", "create", "commit", "remove")
                and s["metric"] in ("total", "latency")]
    for s in headline:
        assert len(s["samples"]) >= 10, f"{t['label']}: {s} has {len(s['samples'])} samples (< 10)"
PY
python3 - "$out/report.md" <<'PY' || fail "report.md ratio rows lack n, p95 or a 95% CI"
import re, sys
md = open(sys.argv[1]).read()
section = md.split("## First 4 KiB write into a 1 GiB file", 1)[1].split("\n## ", 1)[0]
rows = [l for l in section.splitlines() if l.startswith("|")]
header = [c.strip() for c in rows[0].strip("|").split("|")]
for col in ("n", "median", "p95", "baseline n", "ratio", "95% CI", "rank"):
    assert col in header, f"headline table lacks column {col!r}: {header}"
body = rows[2:]
assert body, "headline table has no rows"
for row in body:
    cells = dict(zip(header, [c.strip() for c in row.strip("|").split("|")]))
    assert int(cells["n"]) >= 10, row
    assert re.fullmatch(r"[\d.]+–[\d.]+×", cells["95% CI"]), row
    noisy = cells["ratio"].startswith("≈ (noisy)")
    assert (cells["rank"] == "-") == noisy, f"noisy rows, and only they, are unranked: {row}"
assert "≈ (noisy)" in md.split("## Drivers", 1)[0], "the header does not state the noise rule"
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
