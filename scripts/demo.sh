#!/usr/bin/env bash
# The main job on the embedded default: a loop-backed store, a small image
# made locally from Debian's busybox-static, two containers, and a write in
# one that the other does not see. Leaves no mount or loop device behind.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --quiet
strata=target/release/strata
root=${STRATA_DEMO_ROOT:-/var/lib/strata-demo}
work=$(mktemp -d /tmp/strata-demo.XXXXXX)

cleanup() {
    set +e
    for c in demo-a demo-b; do $strata --root "$root" rm --force "$c" >/dev/null 2>&1; done
    $strata --root "$root" rmi demo/busybox:latest >/dev/null 2>&1
    # A demo stopped half-way must not leave the backing on the host either.
    $strata --root "$root" release >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT

echo "== building a busybox rootfs tar"
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for app in sh ls cat echo; do ln -sf busybox "$work/rootfs/bin/$app"; done
echo "hello from the image" > "$work/rootfs/etc/motd"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .

echo "== store at $root"
$strata --root "$root" init ${STRATA_DEMO_DRIVER:+--driver "$STRATA_DEMO_DRIVER"}
$strata --root "$root" import "$work/busybox.tar" demo/busybox
$strata --root "$root" images

echo "== two containers"
a=$($strata --root "$root" create --name demo-a demo/busybox | tail -n1)
b=$($strata --root "$root" create --name demo-b demo/busybox | tail -n1)
$strata --root "$root" ps
ma=$($strata --root "$root" mount "$a")
mb=$($strata --root "$root" mount "$b")
echo "written in A" > "$ma/etc/motd"
echo "A sees: $(cat "$ma/etc/motd")"
echo "B sees: $(cat "$mb/etc/motd")"
[ "$(cat "$mb/etc/motd")" = "hello from the image" ] || { echo "B saw A's write" >&2; exit 1; }
$strata --root "$root" info

echo "== cleaning up"
$strata --root "$root" umount "$a"
$strata --root "$root" umount "$b"
$strata --root "$root" rm "$a" "$b"
$strata --root "$root" rmi demo/busybox
# The backing stays mounted between commands; release takes it off the host.
$strata --root "$root" release
if grep -q " $root" /proc/self/mountinfo; then
    echo "a mount under $root was left behind" >&2; exit 1
fi
if losetup -a | grep -q "$root"; then
    echo "a loop device on $root was left behind" >&2; exit 1
fi
echo "demo finished: no mount or loop device left"
