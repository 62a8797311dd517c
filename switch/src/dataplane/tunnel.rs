//! VXLAN tunnel ports in the workers: decapsulation into UMEM frames, encapsulation out of
//! them, in batches of one syscall each way.
//!
//! Receive: one worker owns each tunnel endpoint's UDP socket. `recvmmsg` puts each
//! datagram's 8-byte VXLAN header in a scratch slot and the inner frame straight into a free
//! UMEM frame (a two-part iovec), so decapsulation copies nothing. The VNI picks the tunnel
//! port, the outer source address must be one of that port's remotes, and the frame then
//! runs through the pipeline like any other (see `Worker::switch_run`).
//!
//! Send: any worker sends on any tunnel port, with no handoff: frames for a tunnel are
//! staged during the turn and leave in one `sendmmsg` per run of frames for the same
//! port, each message a two-part iovec (UDP + VXLAN header, then the frame in its UMEM
//! frame). The remote comes from the MAC table: the endpoint learned (or set statically) for
//! the destination MAC, or every remote of the tunnel for broadcast, multicast and unknown
//! unicast (head-end replication, one message per remote, all pointing at the same frame).
//! The socket copies the data, so frames go back to the free list right after.

use std::net::{IpAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use xsk_rs::{FrameDesc, Umem};

use super::ledger::FrameLedger;
use super::snapshot::Snapshot;
use super::stats::{bump, WorkerStats};
use crate::packet::vxlan::{self, VxlanPacket, VxlanRepr, OVERHEAD_AFTER_IP};
use crate::packet::MacAddr;
use crate::pipeline::{DropReason, Fdb, PortId, TenantId};
use crate::port::tunnel::RawSockAddr;

/// What the workers know of a tunnel port (in its `PortView`).
#[derive(Debug)]
pub struct TunnelView {
    pub vni: u32,
    pub dstport: u16,
    /// The port's tenant: its MAC table entries say which remote a MAC is behind.
    pub tenant_id: TenantId,
    /// Remote endpoints; the MAC table stores index + 1.
    pub remotes: Box<[IpAddr]>,
    remote_addrs: Box<[RawSockAddr]>,
    pub sender: Arc<OwnedFd>,
}

impl TunnelView {
    pub fn new(
        vni: u32,
        dstport: u16,
        tenant_id: TenantId,
        remotes: &[IpAddr],
        sender: Arc<OwnedFd>,
    ) -> Self {
        TunnelView {
            vni,
            dstport,
            tenant_id,
            remotes: remotes.into(),
            remote_addrs: remotes.iter().map(|ip| RawSockAddr::new(*ip)).collect(),
            sender,
        }
    }

    /// The 1-based index the MAC table stores for `ip`, if it is one of the remotes.
    pub fn remote_index(&self, ip: IpAddr) -> Option<u8> {
        let position = self.remotes.iter().position(|r| *r == ip)?;
        u8::try_from(position + 1).ok()
    }
}

/// A local address and UDP port tunnels receive on, with the tunnel ports that share it
/// (one per VNI).
#[derive(Debug)]
pub struct TunnelEndpoint {
    pub socket: Arc<UdpSocket>,
    /// The worker that receives on it.
    pub rx_worker: usize,
    /// (VNI, port), sorted by VNI.
    pub ports: Box<[(u32, PortId)]>,
}

impl TunnelEndpoint {
    fn port_for(&self, vni: u32) -> Option<PortId> {
        self.ports
            .binary_search_by_key(&vni, |&(v, _)| v)
            .ok()
            .map(|i| self.ports[i].1)
    }

    /// Where drops of datagrams that name no port of this endpoint (malformed, unknown
    /// VNI) are counted: its first port.
    fn counting_port(&self) -> Option<PortId> {
        self.ports.iter().map(|&(_, port)| port).min()
    }
}

/// `n` all-zero values.
///
/// # Safety
/// All zeroes must be a valid `T` (plain C data: integers, raw pointers, arrays of them).
unsafe fn zeroed_slice<T>(n: usize) -> Box<[T]> {
    // SAFETY: the caller vouches that all zeroes is a valid T.
    (0..n).map(|_| unsafe { std::mem::zeroed() }).collect()
}

/// A decapsulated frame ready for the pipeline.
#[derive(Copy, Clone, Debug)]
pub struct Arrival {
    pub port: PortId,
    /// The remote it came from, 1-based (see `TunnelView::remote_index`).
    pub remote: u8,
    pub desc: FrameDesc,
}

/// A worker's receive buffers: sized once for the largest batch.
pub struct TunnelRx {
    headers: Box<[[u8; vxlan::HEADER_LEN]]>,
    names: Box<[libc::sockaddr_storage]>,
    iovecs: Box<[[libc::iovec; 2]]>,
    msgs: Box<[libc::mmsghdr]>,
    descs: Box<[FrameDesc]>,
    arrivals: Box<[Arrival]>,
    /// Turns to skip before the next `recvmmsg` (see `due`).
    idle_skip: u8,
    /// Whether a `recvmmsg` this turn returned datagrams.
    got_any: bool,
}

/// Turns without a `recvmmsg` after one found nothing: a syscall and a batch of frames
/// taken and given back cost more than a worker's idle turn, and a busy-polling worker
/// that also serves ports would otherwise pay them every turn.
const IDLE_SKIP_TURNS: u8 = 7;

// SAFETY: the raw pointers inside `iovecs` and `msgs` are set at the start of every
// `receive` call to point into this struct's own boxes and into frames of the UMEM of the
// worker calling it; they are never read across calls, so moving the struct to the
// worker's thread moves nothing that another thread could use.
unsafe impl Send for TunnelRx {}

impl TunnelRx {
    pub fn new(batch: usize) -> Self {
        TunnelRx {
            headers: vec![[0; vxlan::HEADER_LEN]; batch].into_boxed_slice(),
            // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C data for which all
            // zeroes (null pointers, zero lengths) is a valid value.
            names: unsafe { zeroed_slice(batch) },
            // SAFETY: as above.
            iovecs: unsafe { zeroed_slice(batch) },
            // SAFETY: as above.
            msgs: unsafe { zeroed_slice(batch) },
            descs: vec![FrameDesc::default(); batch].into_boxed_slice(),
            arrivals: vec![
                Arrival {
                    port: 0,
                    remote: 0,
                    desc: FrameDesc::default()
                };
                batch
            ]
            .into_boxed_slice(),
            idle_skip: 0,
            got_any: false,
        }
    }

    /// Whether to receive this turn: every turn while datagrams come, every
    /// `IDLE_SKIP_TURNS + 1`-th while none do, and at once after the worker woke up.
    pub fn due(&mut self) -> bool {
        if self.idle_skip == 0 {
            return true;
        }
        self.idle_skip -= 1;
        false
    }

    /// Ends a turn that was `due`: the next is due at once if datagrams came.
    pub fn finish_turn(&mut self) {
        self.idle_skip = if self.got_any { 0 } else { IDLE_SKIP_TURNS };
        self.got_any = false;
    }

    /// The worker slept in poll(), which a datagram may have ended: look at once.
    pub fn woke(&mut self) {
        self.idle_skip = 0;
    }

    /// The frames the last `receive` made ready.
    pub fn arrival(&self, i: usize) -> Option<Arrival> {
        self.arrivals.get(i).copied()
    }

    /// Receives up to `batch` datagrams on `endpoint`; returns how many frames are ready
    /// (read them with `arrival`). Datagrams that are not VXLAN for one of the endpoint's
    /// ports from one of its remotes are counted and their frames freed here.
    pub fn receive(
        &mut self,
        endpoint: &TunnelEndpoint,
        snapshot: &Snapshot,
        umem: &Umem,
        ledger: &mut FrameLedger,
        stats: &WorkerStats,
        batch: usize,
    ) -> usize {
        let mut wanted = batch.min(self.msgs.len());
        for i in 0..wanted {
            let Some(mut desc) = ledger.take() else {
                wanted = i;
                break;
            };
            // SAFETY: the worker just took `desc` from its free list: no ring and no other
            // view holds the frame while the kernel writes into it.
            let (buffer, capacity) = unsafe {
                let mut data = umem.data_mut(&mut desc);
                let mut cursor = data.cursor();
                let capacity = cursor.buf_len();
                cursor.set_pos(capacity);
                (data.contents_mut().as_mut_ptr(), capacity)
            };
            self.descs[i] = desc;
            self.iovecs[i] = [
                libc::iovec {
                    iov_base: self.headers[i].as_mut_ptr().cast(),
                    iov_len: vxlan::HEADER_LEN,
                },
                libc::iovec {
                    iov_base: buffer.cast(),
                    iov_len: capacity,
                },
            ];
            let hdr = &mut self.msgs[i].msg_hdr;
            hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = self.iovecs[i].as_mut_ptr();
            hdr.msg_iovlen = 2;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        if wanted == 0 {
            return 0;
        }
        // SAFETY: the first `wanted` mmsghdrs point at live buffers of the sizes they
        // state (this struct's boxes and worker-owned UMEM frames); MSG_DONTWAIT keeps the
        // call from blocking.
        let got = unsafe {
            libc::recvmmsg(
                endpoint.socket.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                wanted as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let got = usize::try_from(got).unwrap_or(0).min(wanted);
        self.got_any |= got > 0;
        for desc in &self.descs[got..wanted] {
            ledger.release(*desc);
        }
        let mut ready = 0;
        for i in 0..got {
            let mut desc = self.descs[i];
            let msg = &self.msgs[i];
            let len = msg.msg_len as usize;
            let truncated = msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let verdict = if truncated {
                Err((endpoint.counting_port(), DropReason::TunnelTooBig))
            } else {
                classify(
                    endpoint,
                    snapshot,
                    &self.headers[i][..len.min(vxlan::HEADER_LEN)],
                    &self.names[i],
                )
            };
            match verdict {
                Ok((port, remote)) => {
                    // SAFETY: the worker owns the frame (no ring holds it).
                    unsafe {
                        umem.data_mut(&mut desc)
                            .cursor()
                            .set_pos(len.saturating_sub(vxlan::HEADER_LEN))
                    };
                    self.arrivals[ready] = Arrival { port, remote, desc };
                    ready += 1;
                }
                Err((port, reason)) => {
                    if let Some(c) = port.and_then(|p| stats.port(p)) {
                        bump(&c.rx_frames, 1);
                        bump(&c.rx_bytes, len as u64);
                        bump(&c.drops[reason.index()], 1);
                    }
                    ledger.release(desc);
                }
            }
        }
        ready
    }
}

/// The tunnel port and remote a datagram belongs to, or where to count it and why not.
fn classify(
    endpoint: &TunnelEndpoint,
    snapshot: &Snapshot,
    header: &[u8],
    source: &libc::sockaddr_storage,
) -> Result<(PortId, u8), (Option<PortId>, DropReason)> {
    let packet = VxlanPacket::new_checked(header)
        .map_err(|_| (endpoint.counting_port(), DropReason::TunnelMalformed))?;
    let vni = VxlanRepr::parse(&packet).vni;
    let port = endpoint
        .port_for(vni)
        .ok_or((endpoint.counting_port(), DropReason::TunnelUnknownVni))?;
    let remote = snapshot
        .port(port)
        .and_then(|view| view.tunnel.as_ref())
        .zip(RawSockAddr::ip_of(source))
        .and_then(|(tunnel, ip)| tunnel.remote_index(ip))
        .ok_or((Some(port), DropReason::TunnelUnknownRemote))?;
    Ok((port, remote))
}

/// A worker's send buffers: frames staged this turn, and one message per copy to send.
pub struct TunnelTx {
    staged: Vec<(PortId, FrameDesc)>,
    headers: Box<[[u8; OVERHEAD_AFTER_IP]]>,
    iovecs: Box<[[libc::iovec; 2]]>,
    msgs: Box<[libc::mmsghdr]>,
}

// SAFETY: as for `TunnelRx`: the pointers in `iovecs` and `msgs` are set in `flush` to
// this struct's boxes, the snapshot's addresses and the worker's UMEM, and used only there.
unsafe impl Send for TunnelTx {}

/// Messages per `sendmmsg`: a batch of frames, or fewer frames each flooded to several
/// remotes.
const MESSAGES: usize = 256;

impl TunnelTx {
    pub fn new(batch: usize) -> Self {
        TunnelTx {
            // Room for every frame a turn can decide: a batch per queue is bounded by
            // `batch` times a few sockets; more wait for no one and are dropped (counted).
            staged: Vec::with_capacity(4 * batch),
            headers: vec![[0; OVERHEAD_AFTER_IP]; MESSAGES].into_boxed_slice(),
            // SAFETY: iovec and mmsghdr are plain C data; all zeroes is a valid value.
            iovecs: unsafe { zeroed_slice(MESSAGES) },
            // SAFETY: as above.
            msgs: unsafe { zeroed_slice(MESSAGES) },
        }
    }

    /// Keeps `desc` to be sent on tunnel `port` at the end of the turn; gives it back
    /// when the staging area is full.
    pub fn stage(&mut self, port: PortId, desc: FrameDesc) -> Result<(), FrameDesc> {
        if self.staged.len() < self.staged.capacity() {
            self.staged.push((port, desc));
            Ok(())
        } else {
            Err(desc)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// Encapsulates and sends everything staged, then frees the frames.
    pub fn flush(
        &mut self,
        snapshot: &Snapshot,
        fdb: &Fdb,
        now_ns: u64,
        umem: &Umem,
        ledger: &mut FrameLedger,
        stats: &WorkerStats,
    ) {
        let mut count = 0;
        let mut run_port: Option<PortId> = None;
        for s in 0..self.staged.len() {
            let (port, desc) = self.staged[s];
            let Some(tunnel) = snapshot.port(port).and_then(|v| v.tunnel.as_deref()) else {
                continue;
            };
            if run_port.is_some_and(|p| p != port) {
                self.send(snapshot, run_port, count, stats);
                count = 0;
            }
            run_port = Some(port);
            // SAFETY: the worker owns the staged frame (no ring holds it).
            let frame = unsafe { umem.data(&desc) }.contents();
            let target = remote_for(tunnel, port, fdb, frame, now_ns);
            let remotes = match target {
                Some(index) => index..index + 1,
                None => 0..tunnel.remotes.len(),
            };
            let src_port = vxlan::source_port(frame);
            for remote in remotes {
                if count == MESSAGES {
                    self.send(snapshot, run_port, count, stats);
                    count = 0;
                }
                if vxlan::emit_udp_vxlan(
                    &mut self.headers[count],
                    src_port,
                    tunnel.dstport,
                    tunnel.vni,
                    frame.len(),
                )
                .is_none()
                {
                    stats.drop_copy(port, DropReason::TunnelTooBig);
                    continue;
                }
                self.iovecs[count] = [
                    libc::iovec {
                        iov_base: self.headers[count].as_mut_ptr().cast(),
                        iov_len: OVERHEAD_AFTER_IP,
                    },
                    libc::iovec {
                        iov_base: frame.as_ptr().cast_mut().cast(),
                        iov_len: frame.len(),
                    },
                ];
                let hdr = &mut self.msgs[count].msg_hdr;
                let name = &tunnel.remote_addrs[remote];
                hdr.msg_name = name.as_ptr().cast_mut().cast();
                hdr.msg_namelen = name.len;
                hdr.msg_iov = self.iovecs[count].as_mut_ptr();
                hdr.msg_iovlen = 2;
                hdr.msg_control = std::ptr::null_mut();
                hdr.msg_controllen = 0;
                hdr.msg_flags = 0;
                count += 1;
            }
        }
        self.send(snapshot, run_port, count, stats);
        for (_, desc) in self.staged.drain(..) {
            ledger.release(desc);
        }
    }

    /// Sends the first `count` messages, all for tunnel `port`; counts what left and why
    /// the rest did not.
    fn send(
        &mut self,
        snapshot: &Snapshot,
        port: Option<PortId>,
        count: usize,
        stats: &WorkerStats,
    ) {
        let Some(port) = port else {
            return;
        };
        let Some(tunnel) = snapshot.port(port).and_then(|v| v.tunnel.as_deref()) else {
            return;
        };
        let counters = stats.port(port);
        let mut next = 0;
        while next < count {
            // SAFETY: messages next..count point at this struct's headers, the snapshot's
            // addresses (alive: the caller holds the snapshot) and worker-owned UMEM frames.
            let sent = unsafe {
                libc::sendmmsg(
                    tunnel.sender.as_raw_fd(),
                    self.msgs[next..count].as_mut_ptr(),
                    (count - next) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if sent > 0 {
                let sent = sent as usize;
                if let Some(c) = counters {
                    let bytes: usize = self.iovecs[next..next + sent]
                        .iter()
                        .map(|v| v[1].iov_len)
                        .sum();
                    bump(&c.tx_frames, sent as u64);
                    bump(&c.tx_bytes, bytes as u64);
                }
                next += sent;
                continue;
            }
            // The message at `next` was refused: count it and go on with the rest.
            let reason = match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EMSGSIZE) => DropReason::TunnelTooBig,
                Some(libc::EAGAIN | libc::ENOBUFS) => DropReason::TxRingFull,
                _ => DropReason::TunnelUnreachable,
            };
            stats.drop_copy(port, reason);
            next += 1;
        }
    }
}

/// The remote (0-based) a frame goes to: the one its destination MAC was learned behind
/// on this tunnel, or None to send it to every remote.
fn remote_for(
    tunnel: &TunnelView,
    port: PortId,
    fdb: &Fdb,
    frame: &[u8],
    now_ns: u64,
) -> Option<usize> {
    let dst = MacAddr(frame.get(..6)?.try_into().ok()?);
    if dst.is_multicast() {
        return None;
    }
    let entry = fdb.get(tunnel.tenant_id, dst).filter(|e| e.port == port)?;
    let live = entry.is_static || now_ns.saturating_sub(entry.last_seen_ns) < fdb.aging_ns();
    let index = usize::from(entry.remote).checked_sub(1)?;
    (live && index < tunnel.remotes.len()).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::snapshot::PortView;
    use crate::pipeline::stages::PortPolicy;
    use crate::pipeline::tenant::PortMode;

    const REMOTES: [&str; 2] = ["192.0.2.2", "192.0.2.3"];

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn view() -> PortView {
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let remotes: Vec<IpAddr> = REMOTES.iter().map(|r| ip(r)).collect();
        PortView {
            policy: Arc::new(PortPolicy {
                mode: PortMode::Access(3),
                guard: None,
                trust: Default::default(),
                storm: crate::pipeline::storm::StormLimits::OFF,
            }),
            link_up: true,
            ifindex: 0,
            fast: None,
            into_peer: false,
            tunnel: Some(Arc::new(TunnelView::new(
                100,
                vxlan::DEFAULT_PORT,
                3,
                &remotes,
                Arc::new(OwnedFd::from(sender)),
            ))),
            tx_worker: 0,
        }
    }

    /// Tunnel ports 5 (VNI 100) and 9 (VNI 200) on one endpoint.
    fn setup() -> (TunnelEndpoint, Snapshot) {
        let mut snapshot = Snapshot {
            ports: vec![None; 10],
            ..Snapshot::default()
        };
        snapshot.ports[5] = Some(view());
        snapshot.ports[9] = Some(view());
        let endpoint = TunnelEndpoint {
            socket: Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap()),
            rx_worker: 0,
            ports: vec![(100, 5), (200, 9)].into_boxed_slice(),
        };
        (endpoint, snapshot)
    }

    fn source(text: &str) -> libc::sockaddr_storage {
        let addr = RawSockAddr::new(ip(text));
        // SAFETY: the pointer is to a sockaddr of `addr.len` bytes, which fits the storage.
        unsafe {
            let mut storage: libc::sockaddr_storage = std::mem::zeroed();
            std::ptr::copy_nonoverlapping(
                addr.as_ptr().cast::<u8>(),
                (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
                addr.len as usize,
            );
            storage
        }
    }

    fn header(flags: u8, vni: u32) -> [u8; 8] {
        let v = vni.to_be_bytes();
        [flags, 0, 0, 0, v[1], v[2], v[3], 0]
    }

    #[test]
    fn classify_picks_the_port_by_vni_and_the_remote_by_address() {
        let (endpoint, snapshot) = setup();
        let b = source(REMOTES[0]);
        let c = source(REMOTES[1]);
        assert_eq!(
            classify(&endpoint, &snapshot, &header(0x08, 100), &b),
            Ok((5, 1))
        );
        assert_eq!(
            classify(&endpoint, &snapshot, &header(0x08, 200), &c),
            Ok((9, 2))
        );
        let malformed = Err((Some(5), DropReason::TunnelMalformed));
        assert_eq!(
            classify(&endpoint, &snapshot, &header(0x08, 100)[..7], &b),
            malformed
        );
        assert_eq!(
            classify(&endpoint, &snapshot, &header(0x0c, 100), &b),
            malformed
        );
        assert_eq!(
            classify(&endpoint, &snapshot, &header(0x08, 300), &b),
            Err((Some(5), DropReason::TunnelUnknownVni))
        );
        assert_eq!(
            classify(
                &endpoint,
                &snapshot,
                &header(0x08, 200),
                &source("192.0.2.4")
            ),
            Err((Some(9), DropReason::TunnelUnknownRemote))
        );
        // Not an IP socket address at all.
        // SAFETY: all zeroes is a valid sockaddr_storage (family AF_UNSPEC).
        let unspec: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        assert_eq!(
            classify(&endpoint, &snapshot, &header(0x08, 100), &unspec),
            Err((Some(5), DropReason::TunnelUnknownRemote))
        );
    }

    #[test]
    fn a_frame_goes_to_its_learned_remote_else_to_all() {
        let (_, snapshot) = setup();
        let tunnel = snapshot.port(5).and_then(|v| v.tunnel.clone()).unwrap();
        let mut fdb = Fdb::new(64, 1_000);
        let known = MacAddr([2, 0, 0, 0, 0, 7]);
        let mut frame = [0u8; 60];
        frame[..6].copy_from_slice(&known.0);
        assert_eq!(
            remote_for(&tunnel, 5, &fdb, &frame, 0),
            None,
            "unknown: flood"
        );
        fdb.learn(3, known, 5, 10);
        assert_eq!(
            remote_for(&tunnel, 5, &fdb, &frame, 20),
            None,
            "no remote recorded yet"
        );
        fdb.set_remote(3, known, 5, 2);
        assert_eq!(remote_for(&tunnel, 5, &fdb, &frame, 20), Some(1));
        assert_eq!(
            remote_for(&tunnel, 9, &fdb, &frame, 20),
            None,
            "learned on another port"
        );
        assert_eq!(
            remote_for(&tunnel, 5, &fdb, &frame, 2_000),
            None,
            "aged out"
        );
        fdb.set_remote(3, known, 5, 7);
        assert_eq!(
            remote_for(&tunnel, 5, &fdb, &frame, 20),
            None,
            "index past the list"
        );
        frame[0] = 0x01;
        assert_eq!(remote_for(&tunnel, 5, &fdb, &frame, 20), None, "multicast");
        assert_eq!(remote_for(&tunnel, 5, &fdb, &frame[..3], 20), None, "runt");
    }
}
