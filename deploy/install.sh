#!/usr/bin/env bash
# Installs xsw as a systemd service: xswd and xswctl, the unit, and a
# commented default config. Run as root from a clone of the repository:
#
#   sudo ./deploy/install.sh                   build (release) and install
#   sudo ./deploy/install.sh --bin-dir DIR     install prebuilt xswd/xswctl
#   ./deploy/install.sh --dest /tmp/root ...   install into a staging root
#                                              (packaging, tests); no
#                                              systemctl, no root needed
#
# Installs (under --dest, default /):
#   /usr/local/bin/xswd, /usr/local/bin/xswctl
#   /etc/systemd/system/xsw.service
#   /etc/xsw/xsw.toml            only if there is none: never overwritten
#   /usr/local/share/doc/xsw/    README.md and the commented xsw.toml
#
# Idempotent: running it again replaces the binaries, the unit and the docs,
# keeps the config, and says what changed. Dependencies to build: see
# deploy/install-deps.sh.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest=""
bin_dir=""

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  echo "options: --dest DIR  --bin-dir DIR  -h|--help"
}

while (($#)); do
  case "$1" in
    --dest) dest="${2:?--dest needs a directory}"; shift 2 ;;
    --dest=*) dest="${1#--dest=}"; shift ;;
    --bin-dir) bin_dir="${2:?--bin-dir needs a directory}"; shift 2 ;;
    --bin-dir=*) bin_dir="${1#--bin-dir=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

if [[ -n "$dest" ]]; then
  mkdir -p "$dest"
  dest="$(cd "$dest" && pwd)"
  [[ "$dest" == / ]] && dest=""
fi
if [[ -z "$dest" && "$(id -u)" != 0 ]]; then
  echo "install.sh: run as root (or use --dest DIR to install into a staging directory)" >&2
  exit 1
fi

# --- binaries -------------------------------------------------------------
if [[ -z "$bin_dir" ]]; then
  if command -v cargo >/dev/null 2>&1; then
    echo "building release binaries (cargo build --release -p xsw)..."
    (cd "$repo" && cargo build --release -p xsw --bins)
  else
    echo "cargo not found; using already built binaries in target/release" >&2
  fi
  bin_dir="$repo/target/release"
fi
for b in xswd xswctl; do
  if [[ ! -x "$bin_dir/$b" ]]; then
    echo "install.sh: $bin_dir/$b not found; build it first (cargo build --release -p xsw) or pass --bin-dir" >&2
    exit 1
  fi
done

changed=()
# install_file SRC DST MODE: copies only when the content or mode differs.
install_file() {
  local src="$1" dst="$2" mode="$3"
  if [[ -f "$dst" ]] && cmp -s "$src" "$dst" && [[ "$(stat -c %a "$dst")" == "${mode#0}" ]]; then
    return 0
  fi
  install -D -m "$mode" "$src" "$dst.xsw-new"
  mv -f "$dst.xsw-new" "$dst"   # atomic: a running xswd keeps its old inode
  changed+=("${dst#"$dest"}")
}

install_file "$bin_dir/xswd"   "$dest/usr/local/bin/xswd"   0755
install_file "$bin_dir/xswctl" "$dest/usr/local/bin/xswctl" 0755
install_file "$repo/deploy/xsw.service" "$dest/etc/systemd/system/xsw.service" 0644
install_file "$repo/README.md"          "$dest/usr/local/share/doc/xsw/README.md" 0644
install_file "$repo/deploy/xsw.toml"    "$dest/usr/local/share/doc/xsw/xsw.toml" 0644

# --- config: created once, never overwritten -----------------------------
install -d -m 0755 "$dest/etc/xsw"
config="$dest/etc/xsw/xsw.toml"
if [[ -e "$config" ]]; then
  echo "kept existing ${config#"$dest"}"
else
  install -m 0644 "$repo/deploy/xsw.toml" "$config"
  changed+=("/etc/xsw/xsw.toml (new, all defaults)")
fi

if ((${#changed[@]})); then
  printf 'installed %s\n' "${changed[@]}"
else
  echo "already up to date"
fi

# --- systemd ---------------------------------------------------------------
if [[ -n "$dest" ]]; then
  echo "staged in $dest; nothing was registered with systemd"
  exit 0
fi
# systemd is the service manager only if it is PID 1.
if [[ -d /run/systemd/system ]] && [[ "$(ps -o comm= -p 1 2>/dev/null)" == systemd ]]; then
  systemctl daemon-reload
  echo "systemd reloaded. Next:"
  echo "  edit /etc/xsw/xsw.toml (ports), then: systemctl enable --now xsw"
  echo "  already running? apply the new binaries: systemctl restart xsw"
else
  echo "systemd is not PID 1 here, so the unit cannot be started on this machine."
  echo "On a systemd host run: systemctl daemon-reload && systemctl enable --now xsw"
  echo "Here, start the daemon by hand:"
  echo "  /usr/local/bin/xswd --config /etc/xsw/xsw.toml --socket /run/xsw/xsw.sock"
fi
