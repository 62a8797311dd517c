//! The Debian package: `deploy/build-deb.sh` (cargo-deb) builds it from the
//! binaries under test, and its file list, control data and the generated
//! files in it are what an operator installing it needs.
//!
//! It packages the debug build already made for the tests (`--profile dev
//! --no-build`, fast compression), so it costs seconds, not a release build;
//! the release package differs only in the binaries' optimisation.

use anyhow::{ensure, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use xsw_integration::cmd;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn build_package(scratch: &Path) -> Result<PathBuf> {
    let deb = scratch.join("xsw.deb");
    let script = repo().join("deploy/build-deb.sh");
    let out = cmd::run_args(
        &[
            script.to_str().unwrap_or_default(),
            "--profile",
            "dev",
            "--no-build",
            "--fast",
            "--output",
            deb.to_str().unwrap_or_default(),
        ],
        Duration::from_secs(240),
    )?;
    ensure!(out.success(), "build-deb.sh failed:\n{}", out.describe());
    ensure!(
        deb.is_file(),
        "no package at {}:\n{}",
        deb.display(),
        out.describe()
    );
    Ok(deb)
}

#[test]
fn the_debian_package_builds_and_installs_what_an_operator_needs() -> Result<()> {
    xsw_integration::require_root()?;
    let scratch = Scratch(PathBuf::from(format!(
        "/tmp/xsw-it-package-{}",
        std::process::id()
    )));
    let _ = std::fs::remove_dir_all(&scratch.0);
    std::fs::create_dir_all(&scratch.0)?;
    let deb = build_package(&scratch.0)?;
    let deb_path = deb.to_str().unwrap_or_default();

    // The file list: exactly these files (directories aside).
    let listing = cmd::sh_ok(&["dpkg-deb", "-c", deb_path])?;
    let files: BTreeSet<String> = listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_string())
        .collect();
    let mut expected: BTreeSet<String> = [
        "/usr/bin/xswd",
        "/usr/bin/xswctl",
        "/usr/lib/systemd/system/xsw.service",
        "/usr/share/xsw/xsw.toml",
        "/usr/share/doc/xsw/README.md",
        "/usr/share/doc/xsw/copyright",
        "/usr/share/man/man1/xswd.1.gz",
        "/usr/share/bash-completion/completions/xswctl",
        "/usr/share/bash-completion/completions/xswd",
        "/usr/share/zsh/vendor-completions/_xswctl",
        "/usr/share/zsh/vendor-completions/_xswd",
        "/usr/share/fish/vendor_completions.d/xswctl.fish",
        "/usr/share/fish/vendor_completions.d/xswd.fish",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    // One man page per xswctl command and subcommand (the hidden
    // generate-assets has none).
    for page in [
        "xswctl",
        "xswctl-port",
        "xswctl-port-add",
        "xswctl-tenant",
        "xswctl-acl",
        "xswctl-stats",
        "xswctl-top",
        "xswctl-config",
        "xswctl-tune",
    ] {
        expected.insert(format!("/usr/share/man/man1/{page}.1.gz"));
    }
    let missing: Vec<_> = expected.difference(&files).collect();
    ensure!(
        missing.is_empty(),
        "the package lacks {missing:?}; it holds:\n{listing}"
    );
    let unexpected: Vec<_> = files
        .iter()
        .filter(|f| {
            let subcommand_page =
                f.starts_with("/usr/share/man/man1/xswctl-") && f.ends_with(".1.gz");
            !expected.contains(*f) && !subcommand_page
        })
        .collect();
    ensure!(
        unexpected.is_empty(),
        "the package holds unexpected files {unexpected:?}:\n{listing}"
    );
    ensure!(
        !files.iter().any(|f| f.contains("generate-assets")),
        "the hidden generate-assets command got a man page:\n{listing}"
    );

    // Control data: name, the libraries xswd links (found by dpkg-shlibdeps),
    // and the maintainer scripts.
    let info = cmd::sh_ok(&["dpkg-deb", "-I", deb_path])?;
    for needle in [
        "Package: xsw",
        "libelf",
        "zlib1g",
        "iproute2",
        "postinst",
        "prerm",
        "postrm",
    ] {
        ensure!(
            info.contains(needle),
            "dpkg-deb -I shows no {needle}:\n{info}"
        );
    }

    // The contents: the unit runs the packaged binary, the generated pages
    // and completions describe the commands this build has, and the binary
    // in the package is the one under test.
    let root = scratch.0.join("root");
    cmd::sh_ok(&[
        "dpkg-deb",
        "-x",
        deb_path,
        root.to_str().unwrap_or_default(),
    ])?;
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/xsw.service"))?;
    ensure!(
        unit.contains("ExecStart=/usr/bin/xswd --config /etc/xsw/xsw.toml")
            && !unit.contains("/usr/local"),
        "the packaged unit does not run /usr/bin/xswd:\n{unit}"
    );
    let bash = std::fs::read_to_string(root.join("usr/share/bash-completion/completions/xswctl"))?;
    for word in ["top", "stats", "antispoof", "--count"] {
        ensure!(bash.contains(word), "bash completion lacks {word}");
    }
    let man = cmd::sh_ok(&[
        "sh",
        "-c",
        &format!(
            "gzip -dc {}",
            root.join("usr/share/man/man1/xswd.1.gz").display()
        ),
    ])?;
    ensure!(
        man.contains("metrics") && man.contains(".TH xswd"),
        "xswd.1 lacks --metrics:\n{man}"
    );
    let version = cmd::sh_ok(&[
        root.join("usr/bin/xswctl").to_str().unwrap_or_default(),
        "--version",
    ])?;
    ensure!(
        version.starts_with("xswctl "),
        "packaged xswctl --version: {version}"
    );
    let config = std::fs::read_to_string(root.join("usr/share/xsw/xsw.toml"))?;
    let ours =
        std::fs::read_to_string(repo().join("deploy/xsw.toml")).context("deploy/xsw.toml")?;
    ensure!(config == ours, "the packaged config is not deploy/xsw.toml");
    Ok(())
}
