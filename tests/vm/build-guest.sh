#!/usr/bin/env bash
# Builds the guest for the VM integration tests (tests/vm.rs): a Debian
# bookworm cloud kernel and a small busybox initramfs whose /init is
# tests/vm/init. The result is cached under
#   <target>/vm/guest-<KEY>/{vmlinuz,initrd.gz}
# where KEY hashes this script and the init, so a change to either builds a
# new guest; the downloaded packages are cached under <target>/vm/debs.
#
#   build-guest.sh [--target-dir DIR]
#       prints "kernel=PATH" and "initrd=PATH" (the base initramfs).
#   build-guest.sh [--target-dir DIR] --agent BIN [--extra BIN]... --initrd OUT
#       also writes OUT: the base initramfs followed by a second archive with
#       BIN as /bin/xsw-vm-agent, each --extra BIN as /bin/<its name>, and the
#       shared libraries they need (ldd), so dynamically linked binaries from
#       `cargo build` run in the guest as they are. Prints "initrd=OUT".
#
# Needs: apt-get (Debian's archive reachable), dpkg-deb, cpio, gzip, ldd.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
target_dir="$here/../../target"
agent=""
extras=()
out=""
while (($#)); do
  case "$1" in
    --target-dir) target_dir=$2; shift 2 ;;
    --agent) agent=$2; shift 2 ;;
    --extra) extras+=("$2"); shift 2 ;;
    --initrd) out=$2; shift 2 ;;
    *) echo "build-guest.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [[ -n "$agent" && -z "$out" ]] || [[ -z "$agent" && -n "$out" ]]; then
  echo "build-guest.sh: --agent and --initrd go together" >&2
  exit 2
fi

for tool in apt-get dpkg-deb cpio gzip ldd; do
  command -v "$tool" >/dev/null || { echo "build-guest.sh: $tool not found (run deploy/install-deps.sh)" >&2; exit 1; }
done

vmdir=$(mkdir -p "$target_dir/vm" && cd "$target_dir/vm" && pwd)
key=$(cat "${BASH_SOURCE[0]}" "$here/init" | sha256sum | cut -c1-16)
guest="$vmdir/guest-$key"

# One build at a time (tests in parallel processes may all ask for it).
exec 9>"$vmdir/.lock"
flock 9

build_base() {
  local debs="$vmdir/debs" work
  mkdir -p "$debs"
  work=$(mktemp -d "$vmdir/build.XXXXXX")
  trap 'rm -rf "$work"' RETURN

  # The cloud kernel: the metapackage names the versioned image package.
  local image
  image=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9].*-cloud-amd64/ {print $2; exit}')
  if [[ -z "$image" ]]; then
    apt-get update -qq >&2
    image=$(apt-cache depends linux-image-cloud-amd64 |
      awk '/Depends: linux-image-[0-9].*-cloud-amd64/ {print $2; exit}')
  fi
  [[ -n "$image" ]] || { echo "build-guest.sh: no linux-image-*-cloud-amd64 package found" >&2; exit 1; }
  if ! ls "$debs/${image}_"*.deb >/dev/null 2>&1; then
    (cd "$debs" && apt-get download "$image" >&2)
  fi
  if ! ls "$debs"/busybox-static_*.deb >/dev/null 2>&1; then
    (cd "$debs" && apt-get download busybox-static >&2)
  fi
  dpkg-deb -x "$(ls "$debs/${image}_"*.deb | head -n1)" "$work/kernel"
  dpkg-deb -x "$(ls "$debs"/busybox-static_*.deb | head -n1)" "$work/busybox"

  local root="$work/root"
  mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,etc,lib/modules}
  cp "$work/busybox/bin/busybox" "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [[ -e "$root/bin/$applet" ]] || ln -s busybox "$root/bin/$applet"
  done
  install -m 0755 "$here/init" "$root/init"

  # virtio_net and what it depends on, in load order; the ones the kernel
  # has built in are simply absent from the package and skipped.
  local kver moddir
  kver=$(ls "$work/kernel/lib/modules")
  moddir="$work/kernel/lib/modules/$kver/kernel"
  local -a order=()
  add_module() {
    local name=$1 file dep
    for seen in "${order[@]}"; do [[ "$seen" == "$name" ]] && return 0; done
    file=$(find "$moddir" -name "$name.ko" -print -quit)
    if [[ -z "$file" ]]; then
      grep -q "/$name.ko$" "$work/kernel/lib/modules/$kver/modules.builtin" 2>/dev/null ||
        echo "build-guest.sh: note: module $name neither in the package nor built in" >&2
      return 0
    fi
    for dep in $(tr '\0' '\n' <"$file" | sed -n 's/^depends=//p' | tr ',' ' '); do
      add_module "${dep//-/_}"
    done
    order+=("$name")
    cp "$file" "$root/lib/modules/$name.ko"
  }
  add_module virtio_pci
  add_module virtio_net
  printf '%s\n' "${order[@]}" >"$root/lib/modules/load-order"

  mkdir -p "$guest.tmp"
  cp "$(ls "$work/kernel/boot"/vmlinuz-* | head -n1)" "$guest.tmp/vmlinuz"
  (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$guest.tmp/initrd.gz"
  rm -rf "$guest"
  mv "$guest.tmp" "$guest"
}

[[ -f "$guest/vmlinuz" && -f "$guest/initrd.gz" ]] || build_base
echo "kernel=$guest/vmlinuz"

if [[ -z "$agent" ]]; then
  echo "initrd=$guest/initrd.gz"
  exit 0
fi

# The agent archive: binaries plus the shared objects ldd names (with the
# dynamic loader under its absolute path).
work=$(mktemp -d "$vmdir/agent.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"
cp "$agent" "$work/bin/xsw-vm-agent"
for x in "${extras[@]}"; do cp "$x" "$work/bin/$(basename "$x")"; done
for b in "$work"/bin/*; do
  ldd "$b" 2>/dev/null | grep -oE '/[^ ]+' | while read -r lib; do
    mkdir -p "$work$(dirname "$lib")"
    cp -L "$lib" "$work$lib"
  done
done
command -v strip >/dev/null && strip --strip-debug "$work"/bin/* 2>/dev/null || true
(cd "$work" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$work/agent.cpio.gz"
cat "$guest/initrd.gz" "$work/agent.cpio.gz" >"$out.tmp"
mv "$out.tmp" "$out"
echo "initrd=$out"
