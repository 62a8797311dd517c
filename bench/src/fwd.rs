//! `xsw-bench fwd`: the upper bound for a two-port switch on this host. An
//! XDP program sends every frame from one port straight to the other through
//! a DEVMAP: no lookup, no copy, no userspace. A real switch can approach
//! this but not pass it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aya::maps::{DevMapHash, MapData};

use crate::progs::{self, XdpMode};
use crate::sys;

pub struct FwdOpts {
    pub a: String,
    pub b: String,
    pub duration: Option<f64>,
    pub xdp_mode: XdpMode,
}

pub fn run(o: FwdOpts) -> Result<()> {
    if o.a == o.b {
        bail!("--a and --b must be two different interfaces");
    }
    if let Some(d) = o.duration {
        if !(d > 0.0 && d.is_finite()) {
            bail!("--duration must be a positive number of seconds");
        }
    }
    let ia = sys::ifindex(&o.a)?;
    let ib = sys::ifindex(&o.b)?;
    let mut ebpf = progs::load(progs::REDIRECT_OBJ, "forwarder", &[])?;
    {
        let map = ebpf
            .map_mut("FWD_PORTS")
            .context("internal error: FWD_PORTS map missing from the forwarder object")?;
        let mut ports: DevMapHash<&mut MapData> =
            DevMapHash::try_from(map).context("internal error: FWD_PORTS is not a DEVMAP_HASH")?;
        // Filled before attaching, so no frame meets an empty map.
        ports
            .insert(ia, ib, None, 0)
            .with_context(|| format!("adding {} -> {} to the DEVMAP", o.a, o.b))?;
        ports
            .insert(ib, ia, None, 0)
            .with_context(|| format!("adding {} -> {} to the DEVMAP", o.b, o.a))?;
    }
    let prog = progs::xdp_program(&mut ebpf, "xsw_bench_redirect")?;
    progs::attach(prog, &o.a, o.xdp_mode)?;
    progs::attach(prog, &o.b, o.xdp_mode)?;

    sys::install_stop_handler()?;
    match o.duration {
        Some(d) => eprintln!(
            "fwd: forwarding {} <-> {} for {d} s (Ctrl-C stops)",
            o.a, o.b
        ),
        None => eprintln!(
            "fwd: forwarding {} <-> {} until Ctrl-C or SIGTERM",
            o.a, o.b
        ),
    }
    // Without a duration, wait in long steps; the stop handler cuts sleeps short.
    let deadline = Instant::now()
        + o.duration.map_or(
            Duration::from_secs(u32::MAX as u64),
            Duration::from_secs_f64,
        );
    sys::sleep_until(deadline);
    // Dropping `ebpf` closes the bpf_links, which detaches the program.
    eprintln!("fwd: stopped, XDP detached from {} and {}", o.a, o.b);
    Ok(())
}
