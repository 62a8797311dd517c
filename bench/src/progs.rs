//! The benchmark's XDP programs (C in bench/ebpf/, compiled by build.rs) and
//! the common steps to load and attach them.

use anyhow::{Context, Result};
use aya::programs::{Xdp, XdpFlags};
use aya::{Ebpf, EbpfLoader};

// `include_bytes_aligned!`: aya's ELF parser rejects the object when the bytes
// are not 8-byte aligned, which plain include_bytes! does not guarantee.
pub static TX_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tx.o"));
pub static SINK_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sink.o"));
pub static SINK_MEASURE_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sink_measure.o"));
pub static REDIRECT_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/redirect.o"));
pub static XSK_REDIRECT_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xsk_redirect.o"));

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum XdpMode {
    /// In the driver (veth, tap and most NICs); what a switch uses for speed.
    Native,
    /// Generic (skb) mode: works on any device, much slower.
    Generic,
}

impl std::fmt::Display for XdpMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        })
    }
}

impl XdpMode {
    fn flags(self) -> XdpFlags {
        match self {
            XdpMode::Native => XdpFlags::DRV_MODE,
            XdpMode::Generic => XdpFlags::SKB_MODE,
        }
    }
}

/// A value for a `volatile const` global of a C program; the variant must
/// match the C type's size.
pub enum Global {
    U16(u16),
    U32(u32),
    U64(u64),
}

/// Loads an object, setting the given read-only globals first.
pub fn load(obj: &[u8], what: &str, globals: &[(&str, Global)]) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    for (name, v) in globals {
        match v {
            Global::U16(v) => loader.set_global(name, v, true),
            Global::U32(v) => loader.set_global(name, v, true),
            Global::U64(v) => loader.set_global(name, v, true),
        };
    }
    loader.load(obj).with_context(|| {
        format!("loading the {what} BPF object (needs root or CAP_BPF + CAP_NET_ADMIN, and a kernel with BPF and BTF)")
    })
}

/// Finds the XDP program `name` in `ebpf` and loads it into the kernel.
pub fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .with_context(|| format!("internal error: program {name} missing from the object"))?
        .try_into()
        .with_context(|| format!("internal error: program {name} is not an XDP program"))?;
    prog.load()
        .with_context(|| format!("loading XDP program {name} into the kernel (the verifier refused it, or BPF is not permitted)"))?;
    Ok(prog)
}

/// Attaches through a bpf_link, so the program goes away with this process
/// (also on a crash or SIGKILL) and never lingers on the interface.
pub fn attach(prog: &mut Xdp, iface: &str, mode: XdpMode) -> Result<()> {
    prog.attach(iface, mode.flags()).with_context(|| {
        format!(
            "attaching XDP ({mode} mode) to {iface}: if another XDP program is attached, stop its owner or \
             remove it (`ip link set dev {iface} xdp off`); a driver without native XDP needs --xdp-mode generic"
        )
    })?;
    Ok(())
}
