//! `xswctl generate-assets DIR` (hidden): man pages and shell completions
//! for xswctl and xswd, generated from their clap definitions so they never
//! disagree with the binaries. `deploy/build-deb.sh` runs it between the
//! release build and `cargo deb`, which packages DIR's files (see the
//! `[package.metadata.deb]` assets in switch/Cargo.toml).
//!
//! Layout under DIR, named as Debian installs them:
//!   man/man1/xswctl.1, xswctl-port.1, ..., xswd.1
//!   bash-completion/completions/{xswctl,xswd}
//!   zsh/vendor-completions/{_xswctl,_xswd}
//!   fish/vendor_completions.d/{xswctl,xswd}.fish

use std::fs::File;
use std::io;
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct AssetError {
    path: String,
    source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> AssetError + '_ {
    move |source| AssetError {
        path: path.display().to_string(),
        source,
    }
}

/// Writes every asset under `dir`; returns how many files were written.
pub fn generate(dir: &Path) -> Result<usize, AssetError> {
    let man = dir.join("man").join("man1");
    let bash = dir.join("bash-completion").join("completions");
    let zsh = dir.join("zsh").join("vendor-completions");
    let fish = dir.join("fish").join("vendor_completions.d");
    for d in [&man, &bash, &zsh, &fish] {
        std::fs::create_dir_all(d).map_err(at(d))?;
    }
    let mut written = 0;
    for mut command in [
        crate::cli::Args::command(),
        xsw::daemon_cli::Args::command(),
    ] {
        let name = command.get_name().to_string();
        clap_mangen::generate_to(command.clone(), &man).map_err(at(&man))?;
        for (shell, path) in [
            (Shell::Bash, bash.join(&name)),
            (Shell::Zsh, zsh.join(format!("_{name}"))),
            (Shell::Fish, fish.join(format!("{name}.fish"))),
        ] {
            let mut file = File::create(&path).map_err(at(&path))?;
            clap_complete::generate(shell, &mut command, &name, &mut file);
            written += 1;
        }
    }
    written += std::fs::read_dir(&man).map_err(at(&man))?.count();
    Ok(written)
}

pub fn run(dir: &Path) -> std::process::ExitCode {
    match generate(dir) {
        Ok(count) => {
            println!("{count} files written under {}", dir.display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
