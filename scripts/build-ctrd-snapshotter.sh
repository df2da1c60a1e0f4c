#!/usr/bin/env bash
# Builds target/ctrd-snapshotter (contrib/bench/ctrd-snapshotter): containerd
# 1.6's own btrfs, overlayfs and devmapper snapshotters served directly on a
# unix socket, for `strata bench --containerd --direct`. Offline, from
# Debian's packages: Go and containerd's source with its dependencies
# (installed when missing, as root), built in GOPATH mode. Idempotent: does
# nothing when the binary is newer than its source and this script.
set -euo pipefail
cd "$(dirname "$0")/.."

src=contrib/bench/ctrd-snapshotter
out=target/ctrd-snapshotter
packages=(golang-go golang-github-containerd-containerd-dev)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "build-ctrd-snapshotter.sh: needs ${missing[*]}: run as root to install them" >&2
        exit 1
    fi
    echo "build-ctrd-snapshotter.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ -x "$out" ] && [ "$out" -nt "$src/main.go" ] && [ "$out" -nt "$0" ]; then
    echo "build-ctrd-snapshotter.sh: $out is up to date"
    exit 0
fi
mkdir -p target
version=$(dpkg-query -W -f='${Version}' golang-github-containerd-containerd-dev)
# Debian's golang-*-dev packages lay their source out as a GOPATH; no
# module download happens (GOPROXY=off).
GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS= \
    GOCACHE="$PWD/target/go-cache" \
    go build -o "$out" -ldflags "-X github.com/containerd/containerd/version.Version=$version" "./$src"
echo "build-ctrd-snapshotter.sh: built $out"
