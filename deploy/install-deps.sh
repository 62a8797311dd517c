#!/usr/bin/env bash
# Installs everything xsw needs to build, test and run on Debian.
# Idempotent: a second run only checks. Needs root.
set -euo pipefail

packages=(
  # build: xsk-rs builds libxdp from source; the XDP program is C compiled by clang
  clang llvm m4 libelf-dev zlib1g-dev pkg-config make gcc libc6-dev libbpf-dev
  # run and test: namespaces, veths, taps, traffic, inspection
  iproute2 iputils-ping ethtool iperf3 netcat-openbsd bpftool tcpdump procps
  # service tests: run xswd with only the unit's capabilities, check its sandbox
  util-linux strace systemd
  # VM tests (tests/vm.rs): a real virtio-net guest under QEMU (TCG); the guest
  # is built by tests/vm/build-guest.sh from Debian's cloud kernel and busybox
  qemu-system-x86 busybox-static cpio gzip dpkg binutils
  # benchmark baselines and profiles. openvswitch-switch: the bench's "ovs"
  # system (userspace datapath, AF_XDP ports), run from the bench's own
  # temporary directory inside its namespace; the package's own service (where
  # systemd starts it) is not used. iperf3 (above): the TCP scenario.
  bridge-utils nftables linux-perf openvswitch-switch
  # the Debian package (deploy/build-deb.sh, tests/package.rs): cargo-deb's
  # dependency detection runs dpkg-shlibdeps
  dpkg-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found. Install a stable Rust toolchain (https://rustup.rs) and run again." >&2
  exit 1
fi
# cargo-deb builds the Debian package (deploy/build-deb.sh); tests/package.rs
# builds it too, so the test machine needs it. Not packaged by Debian: from
# crates.io, pinned, compiled once (a few minutes) and kept in ~/.cargo/bin.
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  echo "installing cargo-deb $CARGO_DEB_VERSION (cargo install)"
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi
echo "dependencies: ok"
