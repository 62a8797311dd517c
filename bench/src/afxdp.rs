//! AF_XDP set-up shared by `xsw-bench afxdp-fwd` and `gen --engine afxdp`.
//!
//! Sockets are configured the way xsw configures its own
//! (switch/src/port/afxdp.rs), so the bare forwarder is a fair baseline for
//! the switch: one UMEM shared by every socket (XDP_SHARED_UMEM), zero-copy
//! where the driver offers it and copy mode otherwise (veth and tap have no
//! zero-copy), need_wakeup on, libxdp's own XDP program inhibited (ours fills
//! its XSKMAP itself), and xsw's default ring and UMEM sizes
//! (switch/src/config.rs, `[umem]`).

use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use aya::maps::XskMap;
use aya::Ebpf;
use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

use crate::progs::{self, XdpMode};

const SOL_XDP: libc::c_int = 283;
const XDP_STATISTICS: libc::c_int = 7;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;

/// Sizes of the UMEM and the rings; the defaults are xsw's.
#[derive(Clone, Copy, Debug)]
pub struct UmemSettings {
    pub frame_count: u32,
    pub frame_size: u32,
    pub rx_ring: u32,
    pub tx_ring: u32,
    pub fill_ring: u32,
    pub comp_ring: u32,
}

impl Default for UmemSettings {
    fn default() -> Self {
        UmemSettings {
            frame_count: 4096,
            frame_size: 2048,
            rx_ring: 1024,
            tx_ring: 1024,
            fill_ring: 2048,
            comp_ring: 2048,
        }
    }
}

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

/// The four rings of one bound socket. Dropping it closes the socket.
pub struct XskSocket {
    pub rx: RxQueue,
    pub tx: TxQueue,
    pub fill: FillQueue,
    pub comp: CompQueue,
    pub zero_copy: bool,
}

impl XskSocket {
    pub fn fd(&self) -> RawFd {
        self.rx.fd().as_raw_fd()
    }

    /// Counters the kernel keeps for this socket.
    pub fn kernel_stats(&self) -> Option<KernelStats> {
        kernel_stats(self.fd())
    }
}

/// Binds a socket on (`iface`, `queue`) to `umem`; the first socket made on a
/// UMEM owns its fill and completion rings, later ones (other devices) get
/// their own pair, which is why every socket here has all four rings.
pub fn open_socket(umem: &Umem, iface: &str, queue: u32, s: &UmemSettings) -> Result<XskSocket> {
    let name: Interface = iface
        .parse()
        .map_err(|_| anyhow!("{iface:?} is not a usable interface name"))?;
    let mut last = String::new();
    for (copy_flag, zero_copy) in [
        (BindFlags::XDP_ZEROCOPY, true),
        (BindFlags::XDP_COPY, false),
    ] {
        let config = SocketConfig::builder()
            .rx_queue_size(queue_size(s.rx_ring, "rx")?)
            .tx_queue_size(queue_size(s.tx_ring, "tx")?)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP | copy_flag)
            .build();
        // The previous owner of a queue may still be releasing it for a few
        // milliseconds after it exits (seen as EBUSY): retry briefly.
        for attempt in 0..5 {
            // SAFETY: libxdp's program load is inhibited (flag above), the
            // condition xsk-rs states for sharing a UMEM safely.
            match unsafe { xsk_rs::Socket::new(config, umem, &name, queue) } {
                Ok((tx, rx, Some((fill, comp)))) => {
                    let zero_copy = zero_copy && socket_is_zero_copy(rx.fd().as_raw_fd());
                    return Ok(XskSocket {
                        rx,
                        tx,
                        fill,
                        comp,
                        zero_copy,
                    });
                }
                Ok((_, _, None)) => {
                    return Err(anyhow!(
                        "{iface} queue {queue} already has a socket on this UMEM: give two different interfaces"
                    ))
                }
                Err(e) => {
                    last = error_text(&e);
                    if !last.contains("busy") || attempt == 4 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
    Err(anyhow!(
        "cannot open an AF_XDP socket on {iface} queue {queue}: {last} (EBUSY: another program, \
         e.g. xswd or an earlier run, owns that queue; EINVAL: the device has no such queue; \
         ENOBUFS/ENOMEM: run as root with CAP_IPC_LOCK)"
    ))
}

fn socket_is_zero_copy(fd: RawFd) -> bool {
    let mut flags: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: fd is an open AF_XDP socket; flags and len are valid for
    // writes of the sizes given, which is what getsockopt(XDP_OPTIONS) writes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_OPTIONS,
            &mut flags as *mut u32 as *mut libc::c_void,
            &mut len,
        )
    };
    rc == 0 && flags & XDP_OPTIONS_ZEROCOPY != 0
}

fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    if let Some(source) = e.source() {
        text = format!("{text}: {source}");
    }
    text.to_lowercase()
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

/// Kicks the kernel to transmit what the TX ring holds. In copy mode one call
/// sends at most 32 frames and answers EAGAIN while more remain, so it loops,
/// bounded by the number of frames queued.
pub fn kick_tx(fd: RawFd, queued: usize) -> io::Result<()> {
    for _ in 0..queued / 32 + 2 {
        // SAFETY: a zero-length sendto with null buffers is the documented
        // AF_XDP TX wakeup; fd is an open AF_XDP socket.
        let rc = unsafe {
            libc::sendto(
                fd,
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if rc >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EBUSY) => continue,
            // The kernel could not take more yet (socket send buffer full):
            // the frames stay on the ring for the next kick.
            Some(libc::ENOBUFS) => return Ok(()),
            _ => return Err(err),
        }
    }
    Ok(())
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

/// XDP_STATISTICS of a socket: what the kernel dropped or could not do
/// before a frame reached (or after it left) userspace.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct KernelStats {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty: u64,
    pub tx_ring_empty: u64,
}

impl KernelStats {
    pub fn since(&self, before: &KernelStats) -> KernelStats {
        KernelStats {
            rx_dropped: self.rx_dropped.wrapping_sub(before.rx_dropped),
            rx_invalid_descs: self.rx_invalid_descs.wrapping_sub(before.rx_invalid_descs),
            tx_invalid_descs: self.tx_invalid_descs.wrapping_sub(before.tx_invalid_descs),
            rx_ring_full: self.rx_ring_full.wrapping_sub(before.rx_ring_full),
            rx_fill_ring_empty: self
                .rx_fill_ring_empty
                .wrapping_sub(before.rx_fill_ring_empty),
            tx_ring_empty: self.tx_ring_empty.wrapping_sub(before.tx_ring_empty),
        }
    }

    pub fn json(&self) -> String {
        format!(
            "{{\"rx_dropped\":{},\"rx_invalid_descs\":{},\"tx_invalid_descs\":{},\"rx_ring_full\":{},\
             \"rx_fill_ring_empty\":{},\"tx_ring_empty\":{}}}",
            self.rx_dropped,
            self.rx_invalid_descs,
            self.tx_invalid_descs,
            self.rx_ring_full,
            self.rx_fill_ring_empty,
            self.tx_ring_empty
        )
    }
}

fn kernel_stats(fd: RawFd) -> Option<KernelStats> {
    let mut stats = KernelStats::default();
    let mut len = std::mem::size_of::<KernelStats>() as libc::socklen_t;
    // SAFETY: `stats` is a live repr(C) struct of six u64, the layout of the
    // kernel's struct xdp_statistics; `len` tells the kernel its size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_STATISTICS,
            &mut stats as *mut KernelStats as *mut libc::c_void,
            &mut len,
        )
    };
    (rc == 0).then_some(stats)
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
