//! AF_XDP set-up shared by `xsw-bench afxdp-fwd` and `gen --engine afxdp`.
//!
//! Sockets are xsw's own (`xsw::port::afxdp`), so the bare forwarder is a
//! fair baseline for the switch: one UMEM shared by every socket
//! (XDP_SHARED_UMEM), zero-copy where the driver offers it and copy mode
//! otherwise (veth and tap have no zero-copy), need_wakeup on, libxdp's own
//! XDP program inhibited (ours fills its XSKMAP itself), and xsw's default
//! ring and UMEM sizes (`xsw::config::UmemSection`, `[umem]`).

use std::io;
use std::num::NonZeroU32;
use std::os::fd::RawFd;

use anyhow::{anyhow, Context, Result};
use aya::maps::XskMap;
use aya::Ebpf;
use xsk_rs::config::{FrameSize, QueueSize, UmemConfig};
use xsk_rs::{FrameDesc, Umem};
use xsw::port::afxdp::{self as xsw_afxdp, AfXdpError, KernelSocketStats, RingSizes, XskSocket};

use crate::progs::{self, XdpMode};

/// Sizes of the UMEM and the rings: xsw's `[umem]` section, whose defaults
/// are the bench's.
pub type UmemSettings = xsw::config::UmemSection;

fn queue_size(n: u32, what: &str) -> Result<QueueSize> {
    QueueSize::new(n).map_err(|e| anyhow!("{what} ring size {n}: {e} (use a power of two)"))
}

/// Creates the UMEM; returns it with one descriptor per frame, all free.
pub fn create_umem(s: &UmemSettings) -> Result<(Umem, Vec<FrameDesc>)> {
    let frame_size =
        FrameSize::new(s.frame_size).map_err(|e| anyhow!("frame size {}: {e}", s.frame_size))?;
    let config = UmemConfig::builder()
        .frame_size(frame_size)
        .fill_queue_size(queue_size(s.fill_ring, "fill")?)
        .comp_queue_size(queue_size(s.comp_ring, "completion")?)
        .build()
        .map_err(|e| anyhow!("UMEM configuration: {e}"))?;
    let count = NonZeroU32::new(s.frame_count).context("the UMEM needs at least one frame")?;
    Umem::new(config, count, false).map_err(|e| {
        anyhow!(
            "creating the AF_XDP UMEM ({} frames of {} bytes): {e}; ENOBUFS/ENOMEM/EPERM mean the \
             process may not lock that much memory: run as root with CAP_IPC_LOCK",
            s.frame_count,
            s.frame_size
        )
    })
}

/// Binds a socket on (`iface`, `queue`) to `umem` as xsw binds its ports';
/// the first socket made on a UMEM owns its fill and completion rings, later
/// ones (other devices) get their own pair, which is why every socket here
/// has all four rings. Only the hints of the errors are the bench's.
pub fn open_socket(umem: &Umem, iface: &str, queue: u32, s: &UmemSettings) -> Result<XskSocket> {
    let rings = RingSizes {
        rx: s.rx_ring,
        tx: s.tx_ring,
    };
    xsw_afxdp::open_queue(umem, iface, queue, rings).map_err(|e| match e {
        AfXdpError::QueueTaken { .. } => anyhow!(
            "{iface} queue {queue} already has a socket on this UMEM: give two different interfaces"
        ),
        AfXdpError::Socket { source, .. } => anyhow!(
            "cannot open an AF_XDP socket on {iface} queue {queue}: {} (EBUSY: another program, \
             e.g. xswd or an earlier run, owns that queue; EINVAL: the device has no such queue; \
             ENOBUFS/ENOMEM: run as root with CAP_IPC_LOCK)",
            xsw_afxdp::error_text(&source)
        ),
        other => anyhow::Error::new(other),
    })
}

/// The steering program of one interface (bench/ebpf/xsk_redirect.c) with
/// its own XSKMAP; dropping it detaches the program.
pub struct Steering {
    _ebpf: Ebpf,
}

/// Loads a steering program for `iface`, points its queue `queue` at
/// `socket`, and attaches it in native mode. The socket and its fill ring
/// should be ready first: from here on every frame of that queue goes to it.
pub fn steer(iface: &str, queue: u32, socket: &XskSocket) -> Result<Steering> {
    let mut ebpf = progs::load(progs::XSK_REDIRECT_OBJ, "AF_XDP steering", &[])?;
    {
        let map = ebpf
            .map_mut("XSKS")
            .context("internal error: XSKS map missing from the steering object")?;
        let mut xsks = XskMap::try_from(map).context("internal error: XSKS is not an XSKMAP")?;
        xsks.set(queue, socket.fd(), 0).with_context(|| {
            format!("putting the socket of {iface} queue {queue} into the XSKMAP")
        })?;
    }
    let prog = progs::xdp_program(&mut ebpf, "xsw_bench_xsk_redirect")?;
    progs::attach(prog, iface, XdpMode::Native)?;
    Ok(Steering { _ebpf: ebpf })
}

/// Tells the kernel the fill ring has frames again, without blocking.
pub fn wake_fill(fd: RawFd) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is a valid pollfd; a zero timeout makes this the documented
    // fill-ring wakeup without blocking.
    unsafe { libc::poll(&mut pfd, 1, 0) };
}

/// XDP_STATISTICS of a socket as one JSON object, for the bench's result line.
pub fn kernel_stats_json(stats: &KernelSocketStats) -> String {
    // Six integer fields: serialising them cannot fail.
    serde_json::to_string(stats).unwrap_or_else(|_| "null".to_string())
}

/// User and system CPU time of the calling thread, in seconds.
#[derive(Clone, Copy, Debug)]
pub struct ThreadCpu {
    pub user: f64,
    pub system: f64,
}

impl ThreadCpu {
    pub fn now() -> Result<Self> {
        // SAFETY: an all-zero rusage is a valid value for getrusage to fill.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable rusage for the duration of the call.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
        if rc != 0 {
            return Err(io::Error::last_os_error())
                .context("reading the thread's CPU time (getrusage)");
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        Ok(ThreadCpu {
            user: secs(ru.ru_utime),
            system: secs(ru.ru_stime),
        })
    }
}
