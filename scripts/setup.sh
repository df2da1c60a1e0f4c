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
               time)  # GNU time: peak memory of strata in the hostile-archive tests
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
echo "setup.sh: host ready"
