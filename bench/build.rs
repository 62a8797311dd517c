//! Compiles the benchmark's XDP programs (C, bench/ebpf/) with clang so the
//! binary can embed them; the BPF toolchain for Rust is not dependable here.
// A build script fails the build by panicking: expect is its error report.
#![allow(clippy::expect_used)]

use std::env;
use std::path::PathBuf;
use std::process::Command;

const PROGRAMS: &[&str] = &["tx", "sink", "sink_measure", "redirect", "xsk_redirect"];

fn main() {
    let out_dir =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed=ebpf/bench_bpf.h");

    for name in PROGRAMS {
        let src = format!("ebpf/{name}.c");
        let obj = out_dir.join(format!("{name}.o"));
        println!("cargo:rerun-if-changed={src}");
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
            // Debian keeps asm/types.h under the multiarch directory, which
            // clang does not search when targeting bpf.
            .arg("-I/usr/include/x86_64-linux-gnu")
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("clang failed ({s}) compiling {src}; see the errors above"),
            Err(e) => panic!(
                "cannot run {clang} ({e}) to compile {src}: install clang (deploy/install-deps.sh) or set CLANG"
            ),
        }
    }
}
