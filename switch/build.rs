//! Compiles the BPF programs in ../ebpf with clang so the daemon can embed them.
// A build script fails the build by panicking: expect is its error report.
#![allow(clippy::expect_used)]
use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    for header in ["xsw_common.h", "xsw_fast.h"] {
        println!(
            "cargo:rerun-if-changed={}",
            manifest_dir.join("../ebpf").join(header).display()
        );
    }
    for name in ["xsw_steer", "xsw_fast"] {
        compile(&manifest_dir, name);
    }
}

fn compile(manifest_dir: &std::path::Path, name: &str) {
    let source = manifest_dir.join(format!("../ebpf/{name}.c"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out_dir.join(format!("{name}.o"));
    println!("cargo:rerun-if-changed={}", source.display());

    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        // Debian keeps asm/types.h under the multiarch include directory.
        .arg(format!(
            "-I/usr/include/{}-linux-gnu",
            env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into())
        ))
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(&object)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "clang failed ({s}) compiling {}: see the errors above",
            source.display()
        ),
        Err(e) => panic!(
            "cannot run {clang} ({e}): install clang and libbpf-dev (deploy/install-deps.sh does)"
        ),
    }
}
