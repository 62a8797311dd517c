#!/usr/bin/env bash
# Builds the Debian package with cargo-deb:
#
#   ./deploy/build-deb.sh                  release build, then
#                                          target/debian/xsw_<version>-1_<arch>.deb
#   ./deploy/build-deb.sh --profile dev    from the debug build (quick; for
#                                          tests, not for release)
#   ... --no-build                         package the binaries already built
#                                          (tests/package.rs, inside cargo test)
#
# Other arguments go to `cargo deb` (e.g. --fast, --output FILE).
#
# Three steps, because cargo-deb only copies files: build xswd and xswctl;
# have xswctl write the man pages and shell completions generated from the
# binaries' own clap definitions (hidden `xswctl generate-assets`) plus the
# unit with the package's /usr/bin paths into <profile dir>/xsw-assets/; then
# `cargo deb -p xsw --no-build`, which packages what switch/Cargo.toml's
# [package.metadata.deb] lists. cargo-deb itself: deploy/install-deps.sh.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

profile=release
build=1
deb_args=()
while (($#)); do
  case "$1" in
    --profile) profile="${2:?--profile needs a name}"; shift 2 ;;
    --profile=*) profile="${1#--profile=}"; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) deb_args+=("$1"); shift ;;
  esac
done

if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-deb: cargo-deb is not installed; run deploy/install-deps.sh (or: cargo install cargo-deb --locked)" >&2
  exit 1
fi

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
case "$profile" in
  dev|debug) profile_dir="$target_dir/debug" ;;
  *) profile_dir="$target_dir/$profile" ;;
esac

if ((build)); then
  echo "== building xswd and xswctl ($profile)"
  cargo build --profile "$profile" -p xsw --bins
fi
for b in xswd xswctl; do
  [[ -x "$profile_dir/$b" ]] || { echo "build-deb: $profile_dir/$b not built" >&2; exit 1; }
done

assets="$profile_dir/xsw-assets"
echo "== generating man pages, completions and the unit into $assets"
rm -rf "$assets"
"$profile_dir/xswctl" generate-assets "$assets"
# Debian ships man pages gzipped; cargo-deb compresses only files from
# outside the target directory. -n: no name or time stamp, reproducible.
gzip -9n "$assets"/man/man1/*.1
# The unit in deploy/ serves deploy/install.sh (/usr/local); the package
# installs under /usr.
sed -e 's#/usr/local/bin/#/usr/bin/#g' \
    -e 's#/usr/local/share/doc/xsw/#/usr/share/doc/xsw/#g' \
    -e 's#Installed by deploy/install.sh\.#Installed by the xsw Debian package.#' \
    -e 's#install.sh overwrites it on upgrade#an upgrade of the package overwrites it#' \
    deploy/xsw.service > "$assets/xsw.service"

echo "== packaging"
# --strip: the release profile keeps line tables for profiling (debug = 1);
# the installed binaries do not need them (88 MB installed without, 8.5 MB with).
cargo deb -p xsw --no-build --strip --profile "$profile" "${deb_args[@]}"
