//! AF_XDP sockets for one (interface, queue), created on a worker's UMEM.
//!
//! Every socket of a worker shares that worker's UMEM (XDP_SHARED_UMEM), so
//! a frame received on one port can be sent on another by passing its
//! address. libxdp binds the UMEM's own descriptor to the first socket made
//! on it and never releases that binding while the UMEM lives; so each
//! worker first binds an idle "anchor" socket to its own queue of a private
//! tap (`tap::AnchorTap`), and ports can then come and go in any order (see
//! ARCHITECTURE.md).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use xsk_rs::config::{BindFlags, Interface, LibxdpFlags, QueueSize, SocketConfig};
use xsk_rs::socket::SocketCreateError;
use xsk_rs::{CompQueue, FillQueue, RxQueue, Socket, TxQueue, Umem};

const SOL_XDP: libc::c_int = 283;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;
const XDP_STATISTICS: libc::c_int = 7;

#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    #[error("ring size {0} is not a power of two")]
    RingSize(u32),
    #[error("{0:?} is not a usable interface name")]
    Name(String),
    // The message shows the source's text itself, lower-cased as it always
    // was; `error::chain` does not repeat a source the message already shows.
    #[error(
        "cannot open an AF_XDP socket on {iface} queue {queue}: {} \
         (EBUSY: another program owns the queue; EINVAL: no such queue; \
         ENOBUFS/ENOMEM: grant xswd CAP_IPC_LOCK or lower [umem] frame_count)",
        error_text(.source)
    )]
    Socket {
        iface: String,
        queue: u32,
        #[source]
        source: SocketCreateError,
    },
    /// The UMEM's fill and completion rings already belong to a socket on the
    /// same (interface, queue): libxdp hands out one pair per queue.
    #[error(
        "cannot open an AF_XDP socket on {iface} queue {queue}: this worker already has a socket \
         on that queue (EBUSY: another program owns the queue; EINVAL: no such queue; \
         ENOBUFS/ENOMEM: grant xswd CAP_IPC_LOCK or lower [umem] frame_count)"
    )]
    QueueTaken { iface: String, queue: u32 },
}

#[derive(Copy, Clone, Debug)]
pub struct RingSizes {
    pub rx: u32,
    pub tx: u32,
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

    /// What the kernel counted for this socket; None if it refuses.
    pub fn kernel_stats(&self) -> Option<KernelSocketStats> {
        kernel_stats(self.fd())
    }
}

fn queue_size(n: u32) -> Result<QueueSize, AfXdpError> {
    QueueSize::new(n).map_err(|_| AfXdpError::RingSize(n))
}

/// Binds a socket on (`iface`, `queue`) to `umem`: zero-copy where the
/// driver offers it, copy mode otherwise; need_wakeup always on so an idle
/// switch makes no syscalls.
pub fn open_queue(
    umem: &Umem,
    iface: &str,
    queue: u32,
    rings: RingSizes,
) -> Result<XskSocket, AfXdpError> {
    let name: Interface = iface
        .parse()
        .map_err(|_| AfXdpError::Name(iface.to_string()))?;
    let mut last_error = None;
    for (copy_flag, zero_copy) in [
        (BindFlags::XDP_ZEROCOPY, true),
        (BindFlags::XDP_COPY, false),
    ] {
        let config = SocketConfig::builder()
            .rx_queue_size(queue_size(rings.rx)?)
            .tx_queue_size(queue_size(rings.tx)?)
            // xsw loads its own XDP program and fills the XSKMAP itself.
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP | copy_flag)
            .build();
        // The previous owner of a queue may still be releasing it for a few
        // milliseconds after it exits (seen as EBUSY): retry briefly.
        for attempt in 0..5 {
            // SAFETY: libxdp's own program load is inhibited (the flag above),
            // which is the condition xsk-rs states for sharing a UMEM safely.
            match unsafe { Socket::new(config, umem, &name, queue) } {
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
                    return Err(AfXdpError::QueueTaken {
                        iface: iface.to_string(),
                        queue,
                    })
                }
                Err(e) => {
                    let busy = is_busy(&e);
                    last_error = Some(e);
                    if !busy || attempt == 4 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
    match last_error {
        Some(source) => Err(AfXdpError::Socket {
            iface: iface.to_string(),
            queue,
            source,
        }),
        // Both bind modes were tried and each attempt either returned or
        // recorded its error, so this is unreachable; report it as taken
        // rather than panic.
        None => Err(AfXdpError::QueueTaken {
            iface: iface.to_string(),
            queue,
        }),
    }
}

/// The kernel refused the bind with EBUSY: the queue still has an owner.
fn is_busy(e: &SocketCreateError) -> bool {
    std::error::Error::source(e)
        .and_then(|source| source.downcast_ref::<io::Error>())
        .and_then(io::Error::raw_os_error)
        == Some(libc::EBUSY)
}

fn socket_is_zero_copy(fd: RawFd) -> bool {
    let mut flags: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: fd is an open AF_XDP socket; flags and len are valid for writes
    // of the sizes given, which is what getsockopt(XDP_OPTIONS) writes.
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

/// The error and its first source, lower-cased: the form operators have
/// always seen in the socket error's message.
pub fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    if let Some(source) = e.source() {
        text = format!("{text}: {source}");
    }
    text.to_lowercase()
}

/// Kicks the kernel to transmit what the TX ring holds. In copy mode one call
/// sends at most 32 frames and answers EAGAIN when more remain, so it loops,
/// bounded by the number of frames queued.
pub fn kick_tx(fd: RawFd, queued: usize) -> io::Result<()> {
    let max_calls = queued / 32 + 2;
    for _ in 0..max_calls {
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
            // Ring full of frames the kernel could not send yet: try next round.
            Some(libc::ENOBUFS) => return Ok(()),
            _ => return Err(err),
        }
    }
    Ok(())
}

/// What the kernel counted for one socket: frames it could not hand to
/// xsw (ring full, no fill frame) never reach a worker's counters.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
#[repr(C)]
pub struct KernelSocketStats {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty: u64,
    pub tx_ring_empty: u64,
}

impl KernelSocketStats {
    /// The counts since `before`, an earlier reading of the same socket.
    pub fn since(&self, before: &KernelSocketStats) -> KernelSocketStats {
        KernelSocketStats {
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

    pub fn add(&mut self, other: &KernelSocketStats) {
        self.rx_dropped += other.rx_dropped;
        self.rx_invalid_descs += other.rx_invalid_descs;
        self.tx_invalid_descs += other.tx_invalid_descs;
        self.rx_ring_full += other.rx_ring_full;
        self.rx_fill_ring_empty += other.rx_fill_ring_empty;
        self.tx_ring_empty += other.tx_ring_empty;
    }
}

/// Reads XDP_STATISTICS of an open AF_XDP socket; None if the kernel refuses.
pub fn kernel_stats(fd: RawFd) -> Option<KernelSocketStats> {
    let mut stats = KernelSocketStats::default();
    let mut len = std::mem::size_of::<KernelSocketStats>() as libc::socklen_t;
    // SAFETY: `stats` is a live repr(C) struct of six u64, the layout of the
    // kernel's struct xdp_statistics; `len` tells the kernel its size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_STATISTICS,
            &mut stats as *mut KernelSocketStats as *mut libc::c_void,
            &mut len,
        )
    };
    (rc == 0).then_some(stats)
}

/// Bytes the kernel keeps in front of each received frame in copy mode
/// (XDP_PACKET_HEADROOM; the UMEM's own frame headroom is 0).
const XDP_PACKET_HEADROOM: u32 = 256;

/// The longest frame (Ethernet header on) one UMEM frame of `frame_size`
/// bytes receives: the kernel drops a longer one at the socket (only its
/// `rx_dropped` counts it), since the sockets are not bound with
/// XDP_USE_SG. 1,792 bytes for 2048-byte frames, 3,840 for 4096.
pub fn longest_frame(frame_size: u32) -> u32 {
    frame_size.saturating_sub(XDP_PACKET_HEADROOM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::tap::AnchorTap;
    use std::num::NonZeroU32;
    use std::time::Instant;
    use xsk_rs::config::UmemConfig;

    fn umem() -> Umem {
        let frames = NonZeroU32::new(64).expect("64 is not 0");
        Umem::new(UmemConfig::default(), frames, false)
            .expect("creating a UMEM (needs root or CAP_IPC_LOCK)")
            .0
    }

    const RINGS: RingSizes = RingSizes { rx: 64, tx: 64 };

    /// A private single-queue tap, gone when dropped.
    fn one_queue_tap() -> AnchorTap {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert!(
            euid == 0,
            "this test needs root to create a tap and AF_XDP sockets"
        );
        AnchorTap::create(1).expect("creating a private tap")
    }

    /// A queue another UMEM's socket holds answers EBUSY: recognised by its
    /// errno (so the bind is retried), reported with the kernel's words, and
    /// the xsk-rs error is kept as the source.
    #[test]
    fn a_queue_held_by_another_umem_is_busy_and_retried() {
        let tap = one_queue_tap();
        let (first, second) = (umem(), umem());
        let _held = open_queue(&first, tap.name(), 0, RINGS)
            .unwrap_or_else(|e| panic!("binding the first socket: {e}"));

        let started = Instant::now();
        let err = match open_queue(&second, tap.name(), 0, RINGS) {
            Ok(_) => panic!("a second UMEM bound a queue that is already held"),
            Err(e) => e,
        };
        let waited = started.elapsed();

        let AfXdpError::Socket { ref source, .. } = err else {
            panic!("expected a socket error, got {err:?}");
        };
        assert!(is_busy(source), "EBUSY not recognised in {source:?}");
        // Four 10 ms pauses between the five attempts of the copy-mode bind.
        assert!(
            waited >= Duration::from_millis(40),
            "EBUSY was not retried (gave up after {waited:?})"
        );
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "cannot open an AF_XDP socket on {} queue 0: non-zero error code returned when \
                 creating af_xdp socket: device or resource busy (os error 16) (EBUSY: ",
                tap.name()
            )),
            "{message}"
        );
        assert_eq!(
            crate::error::chain(&err),
            message,
            "the quoted source is not repeated"
        );
    }

    #[test]
    fn an_error_other_than_ebusy_is_not_retried() {
        let tap = one_queue_tap();
        let started = Instant::now();
        // The tap has one queue: queue 5 does not exist (EINVAL).
        let err = match open_queue(&umem(), tap.name(), 5, RINGS) {
            Ok(_) => panic!("bound a queue the tap does not have"),
            Err(e) => e,
        };
        let AfXdpError::Socket { ref source, .. } = err else {
            panic!("expected a socket error, got {err:?}");
        };
        assert!(!is_busy(source), "{source:?} taken for EBUSY");
        assert!(
            started.elapsed() < Duration::from_millis(40),
            "a non-EBUSY error was retried"
        );
    }
}
