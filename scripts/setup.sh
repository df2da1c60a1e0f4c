#!/usr/bin/env bash
# Installs what Strata and its tests need on a Debian/Ubuntu host (idempotent).
#   scripts/setup.sh          packages for building and running strata
#   scripts/setup.sh --tests  also the VM tier (qemu, virtme-ng, a stock kernel) and containerd
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "setup.sh: run as root (it installs packages and makes loop devices)" >&2
        exit 1
    fi
}
need_root

packages=(btrfs-progs xfsprogs e2fsprogs util-linux libbtrfsutil-dev busybox-static
          pkg-config clang libclang-dev protobuf-compiler kmod thin-provisioning-tools
          fonts-dejavu-core
          libdevmapper-dev)  # dm-ioctl headers for devicemapper-sys's bindgen (nothing links it)
if [ "${1:-}" = "--tests" ]; then
    packages+=(qemu-system-x86 containerd runc python3-pip udev  # udev: vng's guest finds its script ports
               time  # GNU time: peak memory of strata in the hostile-archive tests
               dmsetup  # test cleanup removes the thin pools a devmapper store keeps
               # Go and containerd's source: scripts/build-ctrd-snapshotter.sh
               # builds containerd's snapshotters served directly (bench --containerd --direct)
               golang-go golang-github-containerd-containerd-dev)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
    for c in "$HOME/.cargo/bin/cargo" /usr/local/cargo/bin/cargo; do
        [ -x "$c" ] && export PATH="$(dirname "$c"):$PATH"
    done
fi
if ! command -v cargo >/dev/null; then
    echo "setup.sh: no Rust toolchain found: install one with rustup (rust 1.85 or newer)" >&2
    exit 1
fi
# The crash tests run `btrfs check --readonly` on stores the driver made with
# simple quotas (kernel 6.7+): btrfs-progs older than 6.7 cannot read that
# feature. Debian 12's is 6.2; its backports have a current one.
if [ "${1:-}" = "--tests" ] && command -v btrfs >/dev/null; then
    progs=$(btrfs --version | grep -o 'v[0-9]*\.[0-9]*' | head -1 | tr -d v)
    if [ "$(printf '%s\n6.7\n' "$progs" | sort -V | head -1)" != 6.7 ] \
        && grep -q 'VERSION_CODENAME=bookworm' /etc/os-release; then
        echo "setup.sh: btrfs-progs $progs cannot check simple-quota filesystems; installing bookworm-backports' one"
        echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/strata-backports.list
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports btrfs-progs >/dev/null
    fi
fi
echo "setup.sh: host ready"
