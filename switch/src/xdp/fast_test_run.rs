//! The fast path's programs (ebpf/xsw_fast.c) run on crafted frames with
//! BPF_PROG_TEST_RUN: the kernel runs a loaded program once on a buffer and
//! hands back its verdict and the buffer as the program left it, and the maps
//! keep what the program wrote (flow counters, slow-path drops). Every test
//! loads its own object, so no two share a map.
//!
//! What a test run can and cannot show (net/bpf/test_run.c):
//! - The tc program's skb belongs to the device `__sk_buff.ifindex` of the
//!   calling thread's network namespace: loopback when it is 0 or 1 (every
//!   namespace's loopback is ifindex 1, so most tests make that the port),
//!   any other must exist there (see [`in_fresh_netns`]).
//! - A redirect is only recorded: hit and miss both answer TC_ACT_REDIRECT.
//!   The tests tell them apart by what only one of them does: a hit counts in
//!   its entry; a miss with no slow-path device configured is TC_ACT_SHOT and
//!   counted in `slow_path_drops` under the port id, which only
//!   `to_slow_path` does (see [`Lab::assert_slow_path`]).
//! - VLAN tags: the kernel takes no `vlan_*` field in the context, so the
//!   program never sees a tag out of band (`skb->vlan_present`), and what
//!   bpf_skb_vlan_push adds is out of band too (`skb->vlan_tci`), which a
//!   test run does not return. So test runs of the tc program prove that
//!   each tag operation succeeds (a failed one is TC_ACT_SHOT) and leaves
//!   the data as it was, not which tag it left, and cannot give it a frame
//!   that arrives tagged. One test therefore sends real frames through the
//!   attached program in a namespace of its own and captures what leaves,
//!   tag included ([`tag_operations_and_the_slow_path_tag_on_real_traffic`]).
//!   The slow path's XDP program reads its tag from the data, so test runs
//!   cover it whole.
//! - A buffer shorter than an Ethernet header is refused by the kernel
//!   (EINVAL) before the program runs ([`runts_cannot_be_test_run`]), and
//!   so, since a 2026 fix, is an IPv4 or IPv6 header cut short.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::process::Command;

use super::fast::{
    FastPath, FlowEntry, FlowKey, InsertError, KeyWidth, PortConf, SlowPathDrops, FLOW_DROP,
    FLOW_REDIRECT, MAX_PORT_ID, PORT_FAST, PORT_L3, TAG_INSERT, TAG_KEEP, TAG_REMOVE, TAG_REWRITE,
    UNTAGGED,
};
use crate::dataplane::fastpath::monotonic_ns;
use crate::packet::MacAddr;

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const XDP_DROP: u32 = 1;
const XDP_REDIRECT: u32 = 4;

/// Loopback's ifindex, in every network namespace.
const LO: u32 = 1;
/// The port id of the port at [`LO`].
const PORT: u16 = 17;
/// Where entries send frames: a redirect is only recorded in a test run, so
/// no device needs this ifindex.
const EGRESS: u32 = 4242;
/// The slow-path device's ifindex, likewise.
const SLOW: u32 = 4343;
/// `SLOW_PATH_MTU` in xsw_fast.h.
const SLOW_PATH_MTU: usize = crate::port::slow_path::MTU as usize;

const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const HOST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const BROADCAST: [u8; 6] = [0xff; 6];
const V4_SRC: [u8; 4] = [10, 0, 0, 1];
const V4_DST: [u8; 4] = [10, 0, 0, 2];
const V4_HOST: [u8; 4] = [10, 0, 0, 254];
const V6_SRC: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6_DST: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_ARP: u16 = 0x0806;
const ETH_8021Q: u16 = 0x8100;
const ETH_8021AD: u16 = 0x88a8;
/// IEEE 802 local experimental EtherType: a frame that is neither ARP nor IP.
const ETH_EXPERIMENTAL: u16 = 0x88b5;
const ICMP: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;
const GRE: u8 = 47;
const ICMPV6: u8 = 58;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// Ethernet header length: where L3 starts in an untagged frame.
const L3: usize = 14;
/// Where L4 starts after an IPv4 header without options.
const L4_V4: usize = L3 + 20;
/// Where L4 starts after an IPv6 header without extension headers.
const L4_V6: usize = L3 + 40;

fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the fast-path program tests load BPF programs and run them with \
         BPF_PROG_TEST_RUN, which needs root: run the tests as root (scripts/test.sh does)"
    );
}

// ---------------------------------------------------------------------------
// Frames

fn eth_to(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&SRC);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    eth_to(DST, ethertype, payload)
}

/// Pads `frame` with zeros to Ethernet's 60-byte minimum, as a NIC does.
fn padded(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < 60 {
        frame.resize(60, 0);
    }
    frame
}

/// An IPv4 header without options and with a total length that covers
/// exactly `l4`, then `l4`.
fn ipv4(proto: u8, l4: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + l4.len()).expect("a test datagram fits in 64 KiB");
    let mut packet = vec![0x45, 0];
    packet.extend_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0, 0]);
    packet.extend_from_slice(&V4_SRC);
    packet.extend_from_slice(&V4_DST);
    packet.extend_from_slice(l4);
    packet
}

/// An IPv6 header whose payload length covers exactly `payload`, then it.
fn ipv6(next_header: u8, payload: &[u8]) -> Vec<u8> {
    let length = u16::try_from(payload.len()).expect("a test payload fits in 64 KiB");
    let mut packet = vec![0x60, 0, 0, 0];
    packet.extend_from_slice(&length.to_be_bytes());
    packet.extend_from_slice(&[next_header, 64]);
    packet.extend_from_slice(&V6_SRC);
    packet.extend_from_slice(&V6_DST);
    packet.extend_from_slice(payload);
    packet
}

/// A 20-byte TCP header (data offset 5).
fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut header = Vec::with_capacity(20);
    header.extend_from_slice(&sport.to_be_bytes());
    header.extend_from_slice(&dport.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    header
}

/// A UDP header and 4 bytes of payload.
fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut datagram = Vec::with_capacity(12);
    datagram.extend_from_slice(&sport.to_be_bytes());
    datagram.extend_from_slice(&dport.to_be_bytes());
    datagram.extend_from_slice(&[0, 12, 0, 0, b'x', b's', b'w', b'!']);
    datagram
}

/// An 8-byte ICMP (or ICMPv6) echo header.
fn icmp(icmp_type: u8) -> Vec<u8> {
    vec![icmp_type, 0, 0, 0, 0, 7, 0, 1]
}

/// An Ethernet/IPv4 ARP packet with operation `oper` asking for `target`.
fn arp(oper: u16, target: [u8; 4]) -> Vec<u8> {
    let mut packet = vec![0, 1, 0x08, 0x00, 6, 4];
    packet.extend_from_slice(&oper.to_be_bytes());
    packet.extend_from_slice(&SRC);
    packet.extend_from_slice(&V4_SRC);
    packet.extend_from_slice(&[0; 6]);
    packet.extend_from_slice(&target);
    packet
}

fn set_u16(frame: &mut [u8], at: usize, value: u16) {
    frame[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

// ---------------------------------------------------------------------------
// Keys, built here from the frame bytes the way user space builds them
// (`dataplane::fastpath::key_for`), independently of the program.

fn l2_key(frame: &[u8]) -> FlowKey {
    let mut key = FlowKey {
        port: PORT,
        vlan: UNTAGGED,
        width: KeyWidth::L2 as u8,
        ..FlowKey::default()
    };
    key.dst.copy_from_slice(&frame[0..6]);
    key.src.copy_from_slice(&frame[6..12]);
    key
}

/// The L3 key of `frame` with its L4 header read at `l4`, whatever the
/// frame's version, lengths, options or fragment fields say, bytes past its
/// end read as 0. For a well-formed frame and the usual `l4`, the key user
/// space installs for it; for a malformed one, the key a program that
/// skipped a check would build.
fn l3_key_at(frame: &[u8], l4: usize) -> FlowKey {
    let byte = |at: usize| frame.get(at).copied().unwrap_or(0);
    let ne16 = |at: usize| u16::from_ne_bytes([byte(at), byte(at + 1)]);
    let mut key = l2_key(frame);
    key.width = KeyWidth::L3 as u8;
    key.ethertype = ne16(12);
    let v4 = [byte(12), byte(13)] == ETH_IPV4.to_be_bytes();
    if v4 {
        key.proto = byte(L3 + 9);
        for i in 0..4 {
            key.src_ip[i] = byte(L3 + 12 + i);
            key.dst_ip[i] = byte(L3 + 16 + i);
        }
    } else {
        key.proto = byte(L3 + 6);
        for i in 0..16 {
            key.src_ip[i] = byte(L3 + 8 + i);
            key.dst_ip[i] = byte(L3 + 24 + i);
        }
    }
    match key.proto {
        TCP | UDP => {
            key.sport = ne16(l4);
            key.dport = ne16(l4 + 2);
            if key.proto == TCP {
                key.tcp_flags = byte(l4 + 13);
            }
        }
        ICMP | ICMPV6 => key.icmp_type = byte(l4),
        _ => {}
    }
    key
}

/// [`l3_key_at`] where a header without options or extension headers ends.
fn l3_key(frame: &[u8]) -> FlowKey {
    let v4 = frame.get(12..14) == Some(&ETH_IPV4.to_be_bytes()[..]);
    l3_key_at(frame, if v4 { L4_V4 } else { L4_V6 })
}

// ---------------------------------------------------------------------------
// Test runs

/// The `struct __sk_buff` a tc test run takes and returns, as 32-bit words
/// (192 bytes in 6.x; the kernel accepts a shorter one and zero-fills).
#[repr(C)]
#[derive(Clone, Copy)]
struct SkBuffCtx([u32; 48]);

impl SkBuffCtx {
    // Word indexes of the fields used (offsetof / 4, from linux/bpf.h).
    const IFINDEX: usize = 40 / 4;
    const GSO_SEGS: usize = 164 / 4;
    const GSO_SIZE: usize = 176 / 4;
}

#[derive(Debug)]
struct Run {
    retval: u32,
    data: Vec<u8>,
}

/// Runs `prog` once on `data` with context `ctx` (its output written back
/// into `ctx`), or returns the errno the kernel refused the run with.
fn test_run<C: Copy>(prog: BorrowedFd<'_>, data: &[u8], ctx: &mut C) -> Result<Run, i32> {
    // Room for whatever a program could add (tags, metadata).
    let mut out = vec![0u8; data.len() + 256];
    let ctx_in = *ctx;
    let mut opts = libxdp_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libxdp_sys::bpf_test_run_opts>(),
        data_in: data.as_ptr().cast(),
        data_out: out.as_mut_ptr().cast(),
        data_size_in: u32::try_from(data.len()).expect("a test frame is small"),
        data_size_out: u32::try_from(out.len()).expect("a test frame is small"),
        ctx_in: (&ctx_in as *const C).cast(),
        ctx_out: (ctx as *mut C).cast(),
        ctx_size_in: std::mem::size_of::<C>() as u32,
        ctx_size_out: std::mem::size_of::<C>() as u32,
        retval: 0,
        repeat: 1,
        duration: 0,
        flags: 0,
        cpu: 0,
        batch_size: 0,
    };
    // SAFETY: opts is a bpf_test_run_opts with sz set; its buffers are live
    // for the call and their sizes are the ones given; the kernel writes at
    // most data_size_out bytes to out and ctx_size_out bytes to ctx.
    let rc = unsafe { libxdp_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    if rc != 0 {
        return Err(-rc);
    }
    out.truncate(opts.data_size_out as usize);
    Ok(Run {
        retval: opts.retval,
        data: out,
    })
}

/// One loaded object with a port at [`LO`] (port id [`PORT`]).
struct Lab {
    fast: FastPath,
    scratch: Vec<FlowEntry>,
}

impl Lab {
    fn new(flags: u8) -> Lab {
        require_root();
        let mut fast = FastPath::load(256)
            .unwrap_or_else(|e| panic!("loading the fast path: {}", crate::error::chain(&e)));
        fast.set_port(
            LO,
            PortConf {
                port: PORT,
                flags,
                pad: 0,
            },
        )
        .expect("configuring the port");
        let scratch = vec![FlowEntry::default(); fast.table().cpus()];
        Lab { fast, scratch }
    }

    /// A redirect entry of the current generation that does not expire.
    fn entry(&self, tag_op: u8, vid: u16) -> FlowEntry {
        FlowEntry {
            generation: self.fast.table().generation(),
            expires_ns: u64::MAX,
            egress_ifindex: EGRESS,
            egress_port: 3,
            action: FLOW_REDIRECT,
            tag_op,
            vid,
            ..FlowEntry::default()
        }
    }

    fn insert(&mut self, key: &FlowKey, entry: &FlowEntry) {
        self.fast
            .table()
            .insert(key, entry, &mut self.scratch)
            .unwrap_or_else(|e| panic!("inserting {key:?}: {e:?}"));
    }

    /// `key`'s entry with its counters summed over CPUs.
    fn counted(&self, key: &FlowKey) -> FlowEntry {
        self.fast
            .table()
            .read_all()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, e)| e)
            .unwrap_or_else(|| panic!("no entry for {key:?}"))
    }

    /// Frames counted by every entry.
    fn all_counted(&self) -> u64 {
        self.fast
            .table()
            .read_all()
            .iter()
            .map(|(_, e)| e.packets)
            .sum()
    }

    fn drops(&self, port: u16) -> SlowPathDrops {
        self.fast.slow_path_drops()[usize::from(port)]
    }

    fn all_drops(&self) -> u64 {
        self.fast
            .slow_path_drops()
            .iter()
            .map(|d| d.unavailable + d.too_big)
            .sum()
    }

    fn set_slow_path(&mut self, ifindex: u32) {
        self.fast
            .set_slow_path(ifindex)
            .expect("setting the slow-path device");
    }

    /// Runs the port program on `frame` arriving at `ifindex`, with the
    /// given (gso_segs, gso_size).
    fn tc_with(&self, ifindex: u32, frame: &[u8], gso: (u32, u32)) -> Run {
        let mut ctx = SkBuffCtx([0; 48]);
        ctx.0[SkBuffCtx::IFINDEX] = ifindex;
        ctx.0[SkBuffCtx::GSO_SEGS] = gso.0;
        ctx.0[SkBuffCtx::GSO_SIZE] = gso.1;
        test_run(self.fast.program_fd("xsw_port_ingress"), frame, &mut ctx).unwrap_or_else(|e| {
            panic!(
                "BPF_PROG_TEST_RUN of xsw_port_ingress on {} bytes: {}",
                frame.len(),
                std::io::Error::from_raw_os_error(e)
            )
        })
    }

    fn tc(&self, frame: &[u8]) -> Run {
        self.tc_with(LO, frame, (0, 0))
    }

    /// `frame` is switched by `key`'s entry: redirected, counted there
    /// (once, its length), its data as it came. Run without a slow-path
    /// device, where a miss would be TC_ACT_SHOT.
    fn assert_switched(&mut self, frame: &[u8], key: &FlowKey, what: &str) {
        self.set_slow_path(0);
        let before = self.counted(key);
        let drops = self.all_drops();
        let run = self.tc(frame);
        assert_eq!(run.retval, TC_ACT_REDIRECT, "{what}: not redirected");
        let after = self.counted(key);
        assert_eq!(
            after.packets,
            before.packets + 1,
            "{what}: the entry did not count the frame"
        );
        assert_eq!(
            after.bytes,
            before.bytes + frame.len() as u64,
            "{what}: the entry did not count the frame's bytes"
        );
        assert_eq!(run.data, frame, "{what}: the frame changed");
        assert_eq!(
            self.all_drops(),
            drops,
            "{what}: counted as a slow-path drop"
        );
    }

    /// `frame` takes the slow path at the port and no entry counts it: with
    /// no slow-path device it is dropped and counted as unavailable under the
    /// port id (which only the slow path does), with one it is redirected
    /// there, its data as it came.
    fn assert_slow_path(&mut self, frame: &[u8], what: &str) {
        let counted = self.all_counted();
        self.set_slow_path(0);
        let before = self.drops(PORT).unavailable;
        let run = self.tc(frame);
        assert_eq!(
            run.retval, TC_ACT_SHOT,
            "{what}: without a slow-path device, expected a drop (a miss)"
        );
        assert_eq!(
            self.drops(PORT).unavailable,
            before + 1,
            "{what}: not counted as a slow-path drop of port {PORT}"
        );
        self.set_slow_path(SLOW);
        let run = self.tc(frame);
        assert_eq!(
            run.retval, TC_ACT_REDIRECT,
            "{what}: not redirected to the slow path"
        );
        assert_eq!(run.data, frame, "{what}: the frame changed in its data");
        assert_eq!(self.drops(PORT).unavailable, before + 1, "{what}");
        assert_eq!(self.all_counted(), counted, "{what}: counted by an entry");
    }

    /// `frame` goes up the stack untouched: TC_ACT_OK, counted nowhere.
    fn assert_passed(&mut self, ifindex: u32, frame: &[u8], what: &str) {
        self.set_slow_path(0);
        let counted = self.all_counted();
        let drops = self.all_drops();
        let run = self.tc_with(ifindex, frame, (0, 0));
        assert_eq!(run.retval, TC_ACT_OK, "{what}: not passed to the stack");
        assert_eq!(run.data, frame, "{what}: the frame changed");
        assert_eq!(self.all_counted(), counted, "{what}: counted by an entry");
        assert_eq!(
            self.all_drops(),
            drops,
            "{what}: counted as a slow-path drop"
        );
    }
}

fn l2_frame() -> Vec<u8> {
    padded(eth(ETH_EXPERIMENTAL, b"xsw fast path"))
}

fn tcp_v4(flags: u8) -> Vec<u8> {
    padded(eth(ETH_IPV4, &ipv4(TCP, &tcp(40000, 443, flags))))
}

// ---------------------------------------------------------------------------
// Hits

#[test]
fn a_hit_is_redirected_counted_and_left_as_it_is() {
    let mut lab = Lab::new(PORT_FAST);
    let frame = l2_frame();
    let key = l2_key(&frame);
    lab.insert(&key, &lab.entry(TAG_KEEP, 0));
    lab.assert_switched(&frame, &key, "first frame");
    lab.assert_switched(&frame, &key, "second frame");
    assert_eq!(lab.counted(&key).packets, 2);

    // A GSO packet counts as the frames it will be on the wire.
    let run = lab.tc_with(LO, &frame, (5, 1000));
    assert_eq!(run.retval, TC_ACT_REDIRECT);
    assert_eq!(lab.counted(&key).packets, 7, "gso_segs 5 counts 5 frames");
    assert_eq!(lab.counted(&key).bytes, 3 * frame.len() as u64);

    // A frame longer than the slow path's MTU is switched all the same: the
    // limit is the slow-path device's, not the egress port's.
    let mut big = frame.clone();
    big.resize(SLOW_PATH_MTU + 100, 0x5a);
    lab.assert_switched(&big, &key, "a frame over the slow path's MTU");
}

#[test]
fn every_tag_operation_succeeds_on_a_hit() {
    // The tag each one leaves is out of band (skb->vlan_tci), which a test
    // run does not return (see the module docs): this proves the verdict,
    // the count and the untouched data, on an untagged frame, the only kind
    // a test run can give the program.
    let mut lab = Lab::new(PORT_FAST);
    for (i, (op, vid, name)) in [
        (TAG_KEEP, 0, "keep"),
        (TAG_INSERT, 100, "insert VID 100"),
        (TAG_REMOVE, 0, "remove (nothing to remove)"),
        (TAG_REWRITE, 200, "rewrite to VID 200"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut frame = l2_frame();
        frame[11] = 0x10 + i as u8; // one source MAC, so one key, per operation
        let key = l2_key(&frame);
        lab.insert(&key, &lab.entry(op, vid));
        lab.assert_switched(&frame, &key, name);
    }
}

#[test]
fn l3_keys_hold_the_addresses_ports_flags_and_icmp_type() {
    let mut lab = Lab::new(PORT_FAST | PORT_L3);
    let frames = [
        ("TCP over IPv4", tcp_v4(TCP_ACK)),
        (
            "UDP over IPv4",
            padded(eth(ETH_IPV4, &ipv4(UDP, &udp(5000, 53)))),
        ),
        (
            "ICMP echo over IPv4",
            padded(eth(ETH_IPV4, &ipv4(ICMP, &icmp(8)))),
        ),
        (
            "TCP over IPv6",
            eth(ETH_IPV6, &ipv6(TCP, &tcp(40000, 443, TCP_ACK))),
        ),
        ("UDP over IPv6", eth(ETH_IPV6, &ipv6(UDP, &udp(5000, 53)))),
        (
            "ICMPv6 echo over IPv6",
            eth(ETH_IPV6, &ipv6(ICMPV6, &icmp(128))),
        ),
    ];
    for (what, frame) in &frames {
        let key = l3_key(frame);
        lab.insert(&key, &lab.entry(TAG_KEEP, 0));
        lab.assert_switched(frame, &key, what);
    }

    // One field off, and the frame misses.
    lab.assert_slow_path(&tcp_v4(TCP_SYN), "TCP with other flags");
    let mut other_port = padded(eth(ETH_IPV4, &ipv4(UDP, &udp(5000, 54))));
    lab.assert_slow_path(&other_port, "UDP to another port");
    other_port[L4_V4 + 1] = 0x89; // source port 5001, destination 53 again
    set_u16(&mut other_port, L4_V4 + 2, 53);
    lab.assert_slow_path(&other_port, "UDP from another port");
    lab.assert_slow_path(
        &padded(eth(ETH_IPV4, &ipv4(ICMP, &icmp(0)))),
        "another ICMP type",
    );
    let mut other_source = tcp_v4(TCP_ACK);
    other_source[L3 + 15] = 9;
    lab.assert_slow_path(&other_source, "another source address");
    let mut other_destination = tcp_v4(TCP_ACK);
    other_destination[L3 + 19] = 9;
    lab.assert_slow_path(&other_destination, "another destination address");

    // An L2 entry does not switch the frames of an L3-keyed port.
    let frame = l2_frame();
    lab.insert(&l2_key(&frame), &lab.entry(TAG_KEEP, 0));
    lab.assert_slow_path(&frame, "an L2 key on an L3 port");

    // The UDP and ICMP frames above were switched with Ethernet padding
    // after their datagrams.
    for (what, frame) in &frames[1..3] {
        let ip_len = usize::from(u16::from_be_bytes([frame[L3 + 2], frame[L3 + 3]]));
        assert!(L3 + ip_len < frame.len(), "{what} is padded");
    }
    // Don't Fragment is no fragment.
    let mut df = tcp_v4(TCP_ACK);
    df[L3 + 6] = 0x40;
    lab.assert_switched(&df, &l3_key(&df), "Don't Fragment set");
}

#[test]
fn gso_packets_are_switched_whole_even_over_64k() {
    // A GSO packet's IP length covers all of it; BIG TCP's (over 64 KiB)
    // says 0, which the kernel reads as "the whole packet" (iph_totlen()).
    // Test runs make linear skbs, so only the GSO fields are as on a real
    // one; the program reads no more.
    let mut lab = Lab::new(PORT_FAST | PORT_L3);
    let whole_v4 = eth(ETH_IPV4, &ipv4(TCP, &tcp(40000, 443, TCP_ACK)));
    let mut big_v4 = whole_v4.clone();
    set_u16(&mut big_v4, L3 + 2, 0);
    let whole_v6 = eth(ETH_IPV6, &ipv6(TCP, &tcp(40000, 443, TCP_ACK)));
    let mut big_v6 = whole_v6.clone();
    set_u16(&mut big_v6, L3 + 4, 0);
    for (what, frame) in [
        ("IPv4", whole_v4),
        ("IPv4, length 0", big_v4),
        ("IPv6", whole_v6),
        ("IPv6, length 0", big_v6),
    ] {
        let key = l3_key(&frame);
        // Whole and length-0 packets share a key: start its count afresh.
        lab.fast.table().remove(&key);
        lab.insert(&key, &lab.entry(TAG_KEEP, 0));
        lab.set_slow_path(0);
        let run = lab.tc_with(LO, &frame, (4, 1000));
        assert_eq!(run.retval, TC_ACT_REDIRECT, "{what}");
        assert_eq!(lab.counted(&key).packets, 4, "{what}: 4 segments");
    }
    assert_eq!(lab.all_drops(), 0);
}

#[test]
fn a_drop_entry_drops_and_counts_in_the_kernel() {
    let mut lab = Lab::new(PORT_FAST);
    let frame = l2_frame();
    let key = l2_key(&frame);
    let entry = FlowEntry {
        action: FLOW_DROP,
        egress_ifindex: 0,
        vid: 3,
        ..lab.entry(TAG_KEEP, 0)
    };
    lab.insert(&key, &entry);
    lab.set_slow_path(SLOW);
    let run = lab.tc(&frame);
    assert_eq!(run.retval, TC_ACT_SHOT);
    assert_eq!(lab.counted(&key).packets, 1);
    assert_eq!(lab.all_drops(), 0, "a drop entry is no slow-path drop");
}

// ---------------------------------------------------------------------------
// Misses

#[test]
fn a_miss_goes_to_the_slow_path() {
    let mut lab = Lab::new(PORT_FAST);
    lab.assert_slow_path(&l2_frame(), "no entry");

    // With a device, it is the only thing counted nowhere.
    lab.set_slow_path(SLOW);
    let run = lab.tc(&l2_frame());
    assert_eq!(run.retval, TC_ACT_REDIRECT);
    assert_eq!(lab.all_drops(), 1, "only the run without a device counted");
}

#[test]
fn a_port_without_the_fast_path_sends_everything_to_the_slow_path() {
    let mut lab = Lab::new(0);
    let frame = l2_frame();
    lab.insert(&l2_key(&frame), &lab.entry(TAG_KEEP, 0));
    lab.assert_slow_path(&frame, "a port without PORT_FAST, with an entry");
}

#[test]
fn a_port_id_the_tag_cannot_carry_is_dropped_and_counted() {
    let mut lab = Lab::new(PORT_FAST);
    lab.fast
        .set_port(
            LO,
            PortConf {
                port: MAX_PORT_ID + 1,
                flags: PORT_FAST,
                pad: 0,
            },
        )
        .expect("configuring the port");
    lab.set_slow_path(SLOW);
    let run = lab.tc(&l2_frame());
    assert_eq!(run.retval, TC_ACT_SHOT, "VID 4095 is reserved");
    assert_eq!(lab.drops(0).unavailable, 1, "counted under index 0");
}

#[test]
fn a_frame_over_the_slow_path_mtu_is_dropped_and_counted_unless_gso() {
    let mut lab = Lab::new(PORT_FAST);
    lab.set_slow_path(SLOW);
    let mut frame = l2_frame();
    frame.resize(14 + SLOW_PATH_MTU, 0x5a);
    let run = lab.tc(&frame);
    assert_eq!(run.retval, TC_ACT_REDIRECT, "exactly the MTU fits");
    frame.push(0x5a);
    let run = lab.tc(&frame);
    assert_eq!(run.retval, TC_ACT_SHOT, "one byte over the MTU");
    assert_eq!(lab.drops(PORT).too_big, 1);
    assert_eq!(lab.drops(PORT).unavailable, 0);
    // A GSO packet is segmented on its way to the slow-path device.
    let run = lab.tc_with(LO, &frame, (3, 1400));
    assert_eq!(run.retval, TC_ACT_REDIRECT, "a GSO packet over the MTU");
    assert_eq!(lab.drops(PORT).too_big, 1);
}

#[test]
fn a_frame_longer_than_a_umem_frame_is_counted_as_too_big() {
    // 2048-byte UMEM frames: the workers receive frames of at most 1,792 bytes.
    let longest = crate::port::afxdp::longest_frame(2048) as usize;
    let mut lab = Lab::new(PORT_FAST);
    lab.set_slow_path(SLOW);
    lab.fast
        .set_slow_path_longest(longest as u32)
        .expect("setting the longest frame");
    let mut frame = l2_frame();
    frame.resize(longest, 0x5a);
    let run = lab.tc(&frame);
    assert_eq!(
        run.retval, TC_ACT_REDIRECT,
        "exactly a UMEM frame's worth fits"
    );
    frame.push(0x5a);
    let run = lab.tc(&frame);
    assert_eq!(run.retval, TC_ACT_SHOT, "one byte over a UMEM frame");
    assert_eq!(lab.drops(PORT).too_big, 1);
    // A GSO packet whose segments fit is passed on to be segmented...
    let run = lab.tc_with(LO, &frame, (3, 1400));
    assert_eq!(run.retval, TC_ACT_REDIRECT, "GSO segments that fit");
    // ...one whose segments would not is counted once per segment.
    let run = lab.tc_with(LO, &frame, (3, longest as u32));
    assert_eq!(run.retval, TC_ACT_SHOT, "GSO segments over a UMEM frame");
    assert_eq!(lab.drops(PORT).too_big, 4);
    assert_eq!(lab.drops(PORT).unavailable, 0);
}

#[test]
fn a_stale_entry_is_a_miss() {
    let mut lab = Lab::new(PORT_FAST);
    let frame = l2_frame();
    let key = l2_key(&frame);
    lab.insert(&key, &lab.entry(TAG_KEEP, 0));
    lab.assert_switched(&frame, &key, "current generation");
    lab.fast.table().invalidate();
    lab.assert_slow_path(&frame, "after the generation moved on");
    assert_eq!(
        lab.counted(&key).packets,
        1,
        "the stale entry kept its count"
    );

    // A generation ahead of the counter is no better than one behind it.
    let mut ahead = l2_frame();
    ahead[11] = 0x77;
    let entry = FlowEntry {
        generation: lab.fast.table().generation() + 1,
        ..lab.entry(TAG_KEEP, 0)
    };
    lab.insert(&l2_key(&ahead), &entry);
    lab.assert_slow_path(&ahead, "a generation ahead");
}

#[test]
fn an_expired_entry_is_a_miss() {
    let mut lab = Lab::new(PORT_FAST);
    let now = monotonic_ns();
    for (i, (expires_ns, switched, what)) in [
        (now + 3_600_000_000_000, true, "expires in an hour"),
        (now - 1, false, "expired a nanosecond ago"),
        (
            now.saturating_sub(3_600_000_000_000),
            false,
            "expired an hour ago",
        ),
        (0, false, "expires at 0"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut frame = l2_frame();
        frame[11] = 0x20 + i as u8;
        let key = l2_key(&frame);
        let entry = FlowEntry {
            expires_ns,
            ..lab.entry(TAG_KEEP, 0)
        };
        lab.insert(&key, &entry);
        if switched {
            lab.assert_switched(&frame, &key, what);
        } else {
            lab.assert_slow_path(&frame, what);
            assert_eq!(lab.counted(&key).packets, 0, "{what}");
        }
    }
}

// ---------------------------------------------------------------------------
// Frames that are not the switch's

#[test]
fn host_frames_go_up_the_stack() {
    for flags in [PORT_FAST, PORT_FAST | PORT_L3, 0] {
        let mut lab = Lab::new(flags);
        lab.fast
            .add_host_mac(LO, MacAddr(HOST))
            .expect("adding the host MAC");
        lab.fast
            .add_host_ipv4(LO, V4_HOST.into())
            .expect("adding the host address");
        // Another port's host MAC is not this port's.
        let other = [0x02, 0, 0, 0, 0, 0x02];
        lab.fast
            .add_host_mac(7, MacAddr(other))
            .expect("adding the other port's host MAC");

        // The host stage comes before the flow table: even a frame with an
        // entry goes up.
        let to_host = padded(eth_to(HOST, ETH_IPV4, &ipv4(TCP, &tcp(1, 2, TCP_ACK))));
        for key in [l2_key(&to_host), l3_key(&to_host)] {
            lab.insert(&key, &lab.entry(TAG_KEEP, 0));
        }
        let what = format!("flags {flags}");
        lab.assert_passed(LO, &to_host, &format!("{what}: to the host MAC"));
        let request = padded(eth_to(BROADCAST, ETH_ARP, &arp(1, V4_HOST)));
        lab.assert_passed(
            LO,
            &request,
            &format!("{what}: ARP request for a host address"),
        );

        let reply = padded(eth_to(BROADCAST, ETH_ARP, &arp(2, V4_HOST)));
        lab.assert_slow_path(&reply, &format!("{what}: ARP reply naming a host address"));
        let request = padded(eth_to(BROADCAST, ETH_ARP, &arp(1, [10, 0, 0, 3])));
        lab.assert_slow_path(
            &request,
            &format!("{what}: ARP request for another address"),
        );
        let mut cut = padded(eth_to(BROADCAST, ETH_ARP, &arp(1, V4_HOST)));
        cut.truncate(L3 + 27);
        lab.assert_slow_path(&cut, &format!("{what}: ARP request cut before its target"));
        let to_other = padded(eth_to(other, ETH_EXPERIMENTAL, b"x"));
        lab.assert_slow_path(&to_other, &format!("{what}: another port's host MAC"));
    }
}

#[test]
fn host_addresses_stay_looked_for_whatever_the_order_of_port_and_address() {
    // The control plane adds a port's host addresses before or after it sets
    // the port's flags, and sets the flags again on every change: the
    // program must look for host addresses on that port all the same.
    let conf = PortConf {
        port: PORT,
        flags: PORT_FAST,
        pad: 0,
    };
    let to_host = padded(eth_to(HOST, ETH_EXPERIMENTAL, b"to the host"));
    let request = padded(eth_to(BROADCAST, ETH_ARP, &arp(1, V4_HOST)));

    let mut before = Lab::new(0);
    before.fast.remove_port(LO).expect("removing the port");
    before
        .fast
        .add_host_mac(LO, MacAddr(HOST))
        .expect("adding the host MAC");
    before.fast.set_port(LO, conf).expect("setting the port");
    before.assert_passed(LO, &to_host, "host MAC added before the port was set");

    let mut after = Lab::new(PORT_FAST);
    after
        .fast
        .add_host_ipv4(LO, V4_HOST.into())
        .expect("adding the host address");
    after
        .fast
        .set_port(LO, conf)
        .expect("setting the port again");
    after.assert_passed(LO, &request, "ARP request after the port was set again");
    // Without host addresses, the same frames are switched or go to the
    // workers.
    let mut none = Lab::new(PORT_FAST);
    none.assert_slow_path(&request, "ARP request on a port without host addresses");
    none.assert_slow_path(&to_host, "a frame to a MAC that is no host MAC here");
}

#[test]
fn each_key_width_has_its_own_table() {
    // One frame, the entry under its L2 key in the L2 table and under its L3
    // key in the L3 table, each sending it elsewhere: a port of either width
    // finds only its own.
    let frame = tcp_v4(TCP_ACK);
    let (l2, l3) = (l2_key(&frame), l3_key(&frame));
    for (flags, own, other) in [(PORT_FAST, l2, l3), (PORT_FAST | PORT_L3, l3, l2)] {
        let mut lab = Lab::new(flags);
        let what = format!("flags {flags}");
        lab.insert(&other, &lab.entry(TAG_KEEP, 0));
        lab.assert_slow_path(&frame, &format!("{what}: only the other width's entry"));
        lab.insert(&own, &lab.entry(TAG_KEEP, 0));
        lab.assert_switched(&frame, &own, &what);
        assert_eq!(
            lab.counted(&other).packets,
            0,
            "{what}: the other entry counted"
        );

        // Both come back from read_all with their widths, and take and
        // remove find each in its table.
        let mut all = lab.fast.table().read_all();
        all.sort_by_key(|(k, _)| k.width);
        let keys: Vec<FlowKey> = all.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![l2, l3], "{what}: read_all");
        let mut scratch = vec![FlowEntry::default(); lab.fast.table().cpus()];
        let taken = lab.fast.table().take(&own, &mut scratch);
        assert_eq!(taken.map(|e| e.packets), Some(1), "{what}: take");
        assert!(lab.fast.table().remove(&other), "{what}: remove");
        assert!(lab.fast.table().read_all().is_empty(), "{what}: left over");
        lab.assert_slow_path(&frame, &format!("{what}: after both were removed"));
    }
}

#[test]
fn frames_of_an_interface_that_is_no_port_pass_untouched() {
    let mut lab = Lab::new(PORT_FAST);
    let frame = l2_frame();
    lab.insert(&l2_key(&frame), &lab.entry(TAG_KEEP, 0));
    lab.fast.remove_port(LO).expect("removing the port");
    lab.fast
        .set_port(
            LO + 1000,
            PortConf {
                port: PORT,
                flags: PORT_FAST,
                pad: 0,
            },
        )
        .expect("configuring another port");
    lab.assert_passed(LO, &frame, "a frame with an entry, at a removed port");
    let tagged = padded(eth(ETH_8021Q, &[0, 5, 0x88, 0xb5]));
    lab.assert_passed(LO, &tagged, "a tagged frame at a removed port");
    lab.assert_passed(LO, &[0u8; 14], "a bare Ethernet header at a removed port");
}

// ---------------------------------------------------------------------------
// Malformed frames

#[test]
fn runts_cannot_be_test_run() {
    // The program sends a frame shorter than an Ethernet header to the slow
    // path (whose pipeline counts and drops it), but the kernel builds no
    // skb from one for a test run, so that branch cannot be run here.
    let lab = Lab::new(PORT_FAST);
    let mut ctx = SkBuffCtx([0; 48]);
    ctx.0[SkBuffCtx::IFINDEX] = LO;
    let refused = test_run(
        lab.fast.program_fd("xsw_port_ingress"),
        &[0u8; 13],
        &mut ctx,
    );
    assert_eq!(
        refused.map(|r| r.retval),
        Err(libc::EINVAL),
        "the kernel now runs tc programs on runts: test them here"
    );
}

#[test]
fn tags_in_the_data_take_the_slow_path() {
    // The kernel untags an 802.1Q frame before tc ingress, so a tag still in
    // the data is a second tag (or 802.1ad): the program keys only the
    // first, out-of-band one. An entry for the frame's addresses untagged
    // must not switch it.
    let mut lab = Lab::new(PORT_FAST);
    // The key ignores the EtherType: one entry for both.
    lab.insert(&l2_key(&l2_frame()), &lab.entry(TAG_KEEP, 0));
    for (tpid, what) in [(ETH_8021Q, "802.1Q tag"), (ETH_8021AD, "802.1ad tag")] {
        let mut payload = vec![0, 100];
        payload.extend_from_slice(&ETH_EXPERIMENTAL.to_be_bytes());
        payload.extend_from_slice(b"x");
        let frame = padded(eth(tpid, &payload));
        assert_eq!(l2_key(&frame), l2_key(&l2_frame()));
        lab.assert_slow_path(&frame, what);
    }
}

/// Frames an L3-keyed port must not switch whatever entries exist: each
/// has entries for the keys a program that skipped one check would build
/// ([`l3_key_at`] at the fixed L4 offset and where the header says L4 is).
fn malformed_frames() -> Vec<(&'static str, Vec<u8>)> {
    let mut cases: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let tcp_frame = eth(ETH_IPV4, &ipv4(TCP, &tcp(40000, 443, TCP_ACK)));
    let udp_frame = eth(ETH_IPV4, &ipv4(UDP, &udp(5000, 53)));

    // Cut by the end of the frame (for a cut IP header see
    // `cut_ip_headers_take_the_slow_path_where_they_can_be_run`).
    let mut frame = tcp_frame.clone();
    frame.truncate(L4_V4 + 13);
    cases.push(("TCP header cut at the end of the frame", frame));
    let mut frame = udp_frame.clone();
    frame.truncate(L4_V4 + 7);
    cases.push(("UDP header cut at the end of the frame", frame));
    let mut frame = eth(ETH_IPV4, &ipv4(ICMP, &icmp(8)));
    frame.truncate(L4_V4 + 3);
    cases.push(("ICMP header cut at the end of the frame", frame));
    let mut frame = eth(ETH_IPV6, &ipv6(TCP, &tcp(40000, 443, TCP_ACK)));
    frame.truncate(L4_V6 + 13);
    cases.push(("TCP header over IPv6 cut at the end of the frame", frame));

    // Cut by the IP length, the rest of the header in the Ethernet padding
    // (the pipeline reads nothing past the IP length).
    let mut frame = tcp_frame.clone();
    set_u16(&mut frame, L3 + 2, 20 + 12);
    cases.push(("TCP header cut by the IPv4 total length", padded(frame)));
    let mut frame = udp_frame.clone();
    set_u16(&mut frame, L3 + 2, 20 + 4);
    cases.push(("UDP header cut by the IPv4 total length", padded(frame)));
    let mut frame = eth(ETH_IPV4, &ipv4(ICMP, &icmp(8)));
    set_u16(&mut frame, L3 + 2, 20 + 2);
    cases.push(("ICMP header cut by the IPv4 total length", padded(frame)));
    let mut frame = eth(ETH_IPV6, &ipv6(TCP, &tcp(40000, 443, TCP_ACK)));
    set_u16(&mut frame, L3 + 4, 12);
    cases.push(("TCP header cut by the IPv6 payload length", frame));

    // Lengths that claim more than the frame holds, or less than a header.
    let mut frame = tcp_frame.clone();
    set_u16(&mut frame, L3 + 2, 20 + 20 + 100);
    cases.push(("IPv4 total length past the frame", padded(frame)));
    let mut frame = tcp_frame.clone();
    set_u16(&mut frame, L3 + 2, 19);
    cases.push(("IPv4 total length shorter than its header", padded(frame)));
    let mut frame = tcp_frame.clone();
    set_u16(&mut frame, L3 + 2, 0);
    cases.push(("IPv4 total length 0, not a GSO packet", padded(frame)));
    let mut frame = eth(ETH_IPV6, &ipv6(TCP, &tcp(40000, 443, TCP_ACK)));
    set_u16(&mut frame, L3 + 4, 0);
    cases.push(("IPv6 payload length 0, not a GSO packet", frame));
    let mut frame = eth(ETH_IPV6, &ipv6(UDP, &udp(5000, 53)));
    set_u16(&mut frame, L3 + 4, 12 + 100);
    cases.push(("IPv6 payload length past the frame", frame));
    let mut frame = tcp_frame.clone();
    frame[L4_V4 + 12] = 0x40;
    cases.push(("TCP data offset below 5 words", padded(frame)));
    let mut frame = tcp_frame.clone();
    frame[L4_V4 + 12] = 0xf0;
    cases.push(("TCP data offset past the segment", padded(frame)));

    // Headers the key cannot describe.
    let mut options = tcp(40000, 443, TCP_ACK);
    options.splice(0..0, [1, 1, 1, 0]); // NOP, NOP, NOP, end of options
                                        // An acknowledgment number whose first byte reads as a data offset of
                                        // 5 where a program ignoring the IHL would look for one.
    options[4 + 8] = 0x50;
    let mut frame = eth(ETH_IPV4, &ipv4(TCP, &options));
    frame[L3] = 0x46;
    cases.push(("IPv4 with options", frame));
    let mut frame = tcp_frame.clone();
    frame[L3 + 6] = 0x20;
    cases.push(("first fragment (More Fragments)", padded(frame)));
    let mut frame = tcp_frame.clone();
    set_u16(&mut frame, L3 + 6, 0x2000 | 185);
    cases.push(("middle fragment", padded(frame)));
    let mut frame = tcp_frame.clone();
    set_u16(&mut frame, L3 + 6, 185);
    cases.push(("last fragment", padded(frame)));
    let mut frame = tcp_frame.clone();
    frame[L3] = 0x65;
    cases.push(("version 6 under the IPv4 EtherType", padded(frame)));
    let mut frame = eth(ETH_IPV6, &ipv6(TCP, &tcp(40000, 443, TCP_ACK)));
    frame[L3] = 0x40;
    cases.push(("version 4 under the IPv6 EtherType", frame));
    let mut hop_by_hop = vec![TCP, 0, 1, 4, 0, 0, 0, 0];
    hop_by_hop.extend_from_slice(&tcp(40000, 443, TCP_ACK));
    cases.push((
        "IPv6 hop-by-hop options header",
        eth(ETH_IPV6, &ipv6(0, &hop_by_hop)),
    ));
    let mut fragment = vec![TCP, 0, 0, 1, 0, 0, 0, 9];
    fragment.extend_from_slice(&tcp(40000, 443, TCP_ACK));
    cases.push(("IPv6 fragment header", eth(ETH_IPV6, &ipv6(44, &fragment))));
    cases.push(("ICMP in IPv6", eth(ETH_IPV6, &ipv6(ICMP, &icmp(8)))));
    cases.push((
        "ICMPv6 in IPv4",
        padded(eth(ETH_IPV4, &ipv4(ICMPV6, &icmp(128)))),
    ));
    cases.push((
        "a protocol the key has no fields for (GRE)",
        padded(eth(ETH_IPV4, &ipv4(GRE, &[0; 8]))),
    ));
    cases.push(("neither ARP nor IP", l2_frame()));
    cases.push((
        "ARP",
        padded(eth_to(BROADCAST, ETH_ARP, &arp(1, [10, 0, 0, 3]))),
    ));
    cases
}

#[test]
fn malformed_frames_on_an_l3_port_take_the_slow_path() {
    let mut lab = Lab::new(PORT_FAST | PORT_L3);
    for (what, frame) in malformed_frames() {
        assert_slow_path_whatever_the_entries(&mut lab, &frame, what);
    }
}

/// Inserts entries for every key a program skipping one check could build
/// from `frame`, then checks it takes the slow path.
fn assert_slow_path_whatever_the_entries(lab: &mut Lab, frame: &[u8], what: &str) {
    let mut keys = vec![l3_key(frame)];
    if frame.get(12..14) == Some(&ETH_IPV4.to_be_bytes()[..]) {
        let ihl = usize::from(frame.get(L3).copied().unwrap_or(0x45) & 0x0f);
        keys.push(l3_key_at(frame, L3 + 4 * ihl));
    }
    keys.dedup();
    let mut scratch = vec![FlowEntry::default(); lab.fast.table().cpus()];
    for key in &keys {
        match lab
            .fast
            .table()
            .insert(key, &lab.entry(TAG_KEEP, 0), &mut scratch)
        {
            // Two cases may share a key: one entry is enough.
            Ok(()) | Err(InsertError::Exists) => {}
            Err(e) => panic!("{what}: inserting {key:?}: {e:?}"),
        }
    }
    lab.assert_slow_path(frame, what);
}

#[test]
fn cut_ip_headers_take_the_slow_path_where_they_can_be_run() {
    // Kernels with the 2026 fix to bpf_prog_test_run_skb refuse (EINVAL) to
    // build an skb whose IPv4 or IPv6 header is cut short; older ones run
    // the program, and then it must take the slow path.
    let mut lab = Lab::new(PORT_FAST | PORT_L3);
    let probe = Lab::new(PORT_FAST | PORT_L3);
    let mut v4 = eth(ETH_IPV4, &ipv4(TCP, &tcp(40000, 443, TCP_ACK)));
    v4.truncate(L3 + 19);
    let mut v6 = eth(ETH_IPV6, &ipv6(TCP, &tcp(40000, 443, TCP_ACK)));
    v6.truncate(L3 + 39);
    for (what, frame) in [("IPv4 header cut short", v4), ("IPv6 header cut short", v6)] {
        let mut ctx = SkBuffCtx([0; 48]);
        ctx.0[SkBuffCtx::IFINDEX] = LO;
        match test_run(probe.fast.program_fd("xsw_port_ingress"), &frame, &mut ctx) {
            Err(libc::EINVAL) => eprintln!("{what}: this kernel cannot test-run it"),
            Err(e) => panic!("{what}: {}", std::io::Error::from_raw_os_error(e)),
            Ok(_) => assert_slow_path_whatever_the_entries(&mut lab, &frame, what),
        }
    }
}

#[test]
fn malformed_l3_is_the_pipeline_s_business_on_an_l2_port() {
    // An L2-keyed port's decision reads no L3 field, so a damaged IP header
    // switches like any frame with its addresses (the pipeline does the
    // same: see packet::info).
    let mut lab = Lab::new(PORT_FAST);
    let frame = tcp_v4(TCP_ACK);
    let key = l2_key(&frame);
    lab.insert(&key, &lab.entry(TAG_KEEP, 0));
    for (what, frame) in malformed_frames() {
        // All but those to the broadcast address, and IPv6 with extension
        // headers, which the RA guard must see (see `guarded_frames`); IPv4 with
        // options goes to the workers.
        let extension_header =
            frame[12..14] == ETH_IPV6.to_be_bytes() && [0, 43, 44, 60].contains(&frame[L3 + 6]);
        // IPv4 with a header length other than 5 words: the guard check cannot read its
        // ports without a variable offset (refused without CAP_PERFMON), so the workers
        // check it.
        let ipv4_options = frame[12..14] == ETH_IPV4.to_be_bytes()
            && frame.len() >= L3 + 20
            && frame[L3] & 0x0f != 5;
        if frame[0..6] != DST || extension_header {
            continue;
        }
        if ipv4_options {
            lab.assert_slow_path(&frame, what);
        } else {
            lab.assert_switched(&frame, &key, what);
        }
    }
}

// ---------------------------------------------------------------------------
// Guarded frames: the pipeline's RA and DHCP guards read what no key holds

/// Frames a guard of the pipeline (`pipeline::guard`) must see, whatever the
/// port's key width and its entries: router advertisements and redirects,
/// DHCP and DHCPv6 in both directions, also behind IPv4 options and IPv6
/// extension headers.
fn guarded_frames() -> Vec<(&'static str, Vec<u8>)> {
    let mut cases = vec![
        (
            "router advertisement",
            eth(ETH_IPV6, &ipv6(ICMPV6, &icmp(134))),
        ),
        ("redirect", eth(ETH_IPV6, &ipv6(ICMPV6, &icmp(137)))),
        (
            "DHCP offer (67 to 68)",
            eth(ETH_IPV4, &ipv4(UDP, &udp(67, 68))),
        ),
        (
            "DHCP request (68 to 67)",
            eth(ETH_IPV4, &ipv4(UDP, &udp(68, 67))),
        ),
        (
            "DHCP offer from another port",
            eth(ETH_IPV4, &ipv4(UDP, &udp(4000, 68))),
        ),
        (
            "DHCPv6 reply (547 to 546)",
            eth(ETH_IPV6, &ipv6(UDP, &udp(547, 546))),
        ),
        (
            "DHCPv6 solicit (546 to 547)",
            eth(ETH_IPV6, &ipv6(UDP, &udp(546, 547))),
        ),
    ];
    // IPv4 with 4 bytes of options (IHL 6), then a DHCP offer.
    let mut options = ipv4(UDP, &udp(67, 68));
    options[0] = 0x46;
    options.splice(20..20, [1, 1, 1, 0]);
    let total = u16::try_from(options.len()).expect("small");
    options[2..4].copy_from_slice(&total.to_be_bytes());
    cases.push(("DHCP offer behind IPv4 options", eth(ETH_IPV4, &options)));
    // IPv6 hop-by-hop options (8 bytes of padding), then a router advertisement.
    let mut hop_by_hop = vec![ICMPV6, 0, 1, 4, 0, 0, 0, 0];
    hop_by_hop.extend_from_slice(&icmp(134));
    cases.push((
        "router advertisement behind a hop-by-hop header",
        eth(ETH_IPV6, &ipv6(0, &hop_by_hop)),
    ));
    cases
}

#[test]
fn guarded_frames_take_the_slow_path_on_l2_and_l3_ports() {
    for flags in [PORT_FAST, PORT_FAST | PORT_L3] {
        let mut lab = Lab::new(flags);
        for (what, frame) in guarded_frames() {
            let frame = padded(frame);
            // An entry for the frame's MACs, as traffic between the two
            // hosts would have made on an L2 port ...
            let key = l2_key(&frame);
            let mut scratch = vec![FlowEntry::default(); lab.fast.table().cpus()];
            match lab
                .fast
                .table()
                .insert(&key, &lab.entry(TAG_KEEP, 0), &mut scratch)
            {
                Ok(()) | Err(InsertError::Exists) => {}
                Err(e) => panic!("{what}: inserting {key:?}: {e:?}"),
            }
            // ... and for every L3 key it could be read as.
            assert_slow_path_whatever_the_entries(&mut lab, &frame, what);
        }
    }
}

#[test]
fn frames_beside_the_guarded_ones_are_still_switched() {
    // The guard's test is narrow: neighbour discovery's other messages, ICMPv6
    // echo and other UDP ports keep their entries.
    let mut lab = Lab::new(PORT_FAST | PORT_L3);
    for (what, frame) in [
        ("ICMPv6 echo", eth(ETH_IPV6, &ipv6(ICMPV6, &icmp(128)))),
        ("DNS", eth(ETH_IPV4, &ipv4(UDP, &udp(5000, 53)))),
        ("UDP 69", eth(ETH_IPV4, &ipv4(UDP, &udp(69, 66)))),
        (
            "DHCPv6-like ports over IPv4 TCP",
            eth(ETH_IPV4, &ipv4(TCP, &tcp(547, 546, TCP_ACK))),
        ),
    ] {
        let frame = padded(frame);
        let key = l3_key(&frame);
        lab.insert(&key, &lab.entry(TAG_KEEP, 0));
        lab.assert_switched(&frame, &key, what);
    }
    let mut lab = Lab::new(PORT_FAST);
    let frame = padded(eth(ETH_IPV6, &ipv6(ICMPV6, &icmp(128))));
    let key = l2_key(&frame);
    lab.insert(&key, &lab.entry(TAG_KEEP, 0));
    lab.assert_switched(&frame, &key, "ICMPv6 echo on an L2 port");
}

// ---------------------------------------------------------------------------
// Devices of a namespace of the test's own

/// Runs `body` on a thread of its own that first moves into a new network
/// namespace: unshare(CLONE_NEWNET) moves only the calling thread (and the
/// commands it starts), and the namespace goes away with the thread, with
/// every device made in it.
fn in_fresh_netns<T: Send>(body: impl FnOnce() -> T + Send) -> T {
    require_root();
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            // SAFETY: unshare takes flags only; CLONE_NEWNET affects this
            // thread alone.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "unshare(CLONE_NEWNET): {}",
                std::io::Error::last_os_error()
            );
            body()
        });
        match worker.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("running ip {args:?}: {e} (iproute2 is needed)"));
    assert!(status.success(), "ip {args:?} failed: {status}");
}

fn ifindex(name: &str) -> u32 {
    let c_name = CString::new(name).expect("an interface name has no NUL");
    // SAFETY: c_name is a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    assert_ne!(
        index,
        0,
        "no interface {name}: {}",
        std::io::Error::last_os_error()
    );
    index
}

#[test]
fn ports_are_told_apart_by_ifindex() {
    in_fresh_netns(|| {
        ip(&["link", "add", "xa", "type", "veth", "peer", "name", "xb"]);
        let (a, b) = (ifindex("xa"), ifindex("xb"));
        let mut lab = Lab::new(PORT_FAST);
        // The port at LO is PORT; xa is port 18, xb no port at all.
        lab.fast
            .set_port(
                a,
                PortConf {
                    port: 18,
                    flags: PORT_FAST,
                    pad: 0,
                },
            )
            .expect("configuring xa");
        lab.fast
            .add_host_mac(a, MacAddr(HOST))
            .expect("adding xa's host MAC");
        let frame = l2_frame();
        let key = FlowKey {
            port: 18,
            ..l2_key(&frame)
        };
        lab.insert(&key, &lab.entry(TAG_KEEP, 0));

        let run = lab.tc_with(a, &frame, (0, 0));
        assert_eq!(run.retval, TC_ACT_REDIRECT, "port 18's entry at xa");
        assert_eq!(lab.counted(&key).packets, 1);
        lab.assert_slow_path(&frame, "port 18's entry at the port at lo");
        lab.assert_passed(b, &frame, "at xb, no port");

        let to_host = padded(eth_to(HOST, ETH_EXPERIMENTAL, b"x"));
        lab.assert_passed(a, &to_host, "xa's host MAC at xa");
        lab.assert_slow_path(&to_host, "xa's host MAC at the port at lo");
    });
}

// ---------------------------------------------------------------------------
// The slow path's XDP program

/// Runs xsw_slow_path on `frame`; the output is the metadata then the frame.
fn xdp(
    fast: &FastPath,
    frame: &[u8],
    ingress_ifindex: u32,
    queue: u32,
) -> (Run, libxdp_sys::xdp_md) {
    // No metadata in (data 0), the frame whole (data_end its length): what
    // the kernel requires of a test run's xdp_md.
    let mut ctx = libxdp_sys::xdp_md {
        data: 0,
        data_end: frame.len() as u32,
        data_meta: 0,
        ingress_ifindex,
        rx_queue_index: queue,
        egress_ifindex: 0,
    };
    let run = test_run(fast.program_fd("xsw_slow_path"), frame, &mut ctx).unwrap_or_else(|e| {
        panic!(
            "BPF_PROG_TEST_RUN of xsw_slow_path: {}",
            std::io::Error::from_raw_os_error(e)
        )
    });
    (run, ctx)
}

/// `frame` with an 802.1Q tag carrying `tci` after its MACs.
fn tagged(frame: &[u8], tci: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&ETH_8021Q.to_be_bytes());
    out.extend_from_slice(&tci.to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

#[test]
fn the_slow_path_pops_the_tag_and_hands_over_the_port_id() {
    require_root();
    let fast = FastPath::load(16)
        .unwrap_or_else(|e| panic!("loading the fast path: {}", crate::error::chain(&e)));
    let frame = tcp_v4(TCP_ACK);
    // Priority 5 and DEI set: only the VID is the port id.
    for (tci, port) in [(0xb02a, 42u32), (0x0001, 1), (0x0ffe, 4094)] {
        let (run, ctx) = xdp(&fast, &tagged(&frame, tci), 0, 0);
        // No socket at queue 0: the frame is dropped, as made.
        assert_eq!(run.retval, XDP_DROP, "TCI {tci:#x}");
        assert_eq!(ctx.data, 4, "TCI {tci:#x}: 4 bytes of metadata");
        assert_eq!(run.data[..4], port.to_ne_bytes(), "TCI {tci:#x}: port id");
        assert_eq!(run.data[4..], frame, "TCI {tci:#x}: the frame untagged");
    }
    for (what, bytes) in [
        ("untagged", frame.clone()),
        ("802.1ad", {
            let mut f = tagged(&frame, 42);
            set_u16(&mut f, 12, ETH_8021AD);
            f
        }),
        ("tag cut short", tagged(&frame, 42)[..17].to_vec()),
    ] {
        let (run, ctx) = xdp(&fast, &bytes, 0, 0);
        assert_eq!(run.retval, XDP_DROP, "{what}");
        assert_eq!(ctx.data, 0, "{what}: no metadata");
        assert_eq!(run.data, bytes, "{what}: untouched");
    }
}

#[test]
fn the_slow_path_steers_each_queue_to_its_socket() {
    use crate::port::afxdp::{open_queue, RingSizes};
    use xsk_rs::config::UmemConfig;
    use xsk_rs::Umem;

    in_fresh_netns(|| {
        ip(&[
            "link",
            "add",
            "xq",
            "numtxqueues",
            "2",
            "numrxqueues",
            "2",
            "type",
            "veth",
            "peer",
            "name",
            "xr",
            "numtxqueues",
            "2",
            "numrxqueues",
            "2",
        ]);
        ip(&["link", "set", "xq", "up"]);
        ip(&["link", "set", "xr", "up"]);
        let queue_device = ifindex("xq");
        let mut fast = FastPath::load(16)
            .unwrap_or_else(|e| panic!("loading the fast path: {}", crate::error::chain(&e)));
        let frames = std::num::NonZeroU32::new(64).expect("64 is not 0");
        let (umem, _frames) =
            Umem::new(UmemConfig::default(), frames, false).expect("creating a UMEM");
        let socket = open_queue(&umem, "xq", 1, RingSizes { rx: 64, tx: 64 })
            .unwrap_or_else(|e| panic!("binding an AF_XDP socket to xq queue 1: {e}"));
        fast.set_socket(1, &socket.fd())
            .expect("steering queue 1 to the socket");

        let frame = tagged(&tcp_v4(TCP_ACK), 42);
        let (run, ctx) = xdp(&fast, &frame, queue_device, 1);
        assert_eq!(run.retval, XDP_REDIRECT, "queue 1 has a socket");
        assert_eq!(ctx.data, 4, "the port id went along");
        assert_eq!(run.data[..4], 42u32.to_ne_bytes());
        let (run, _) = xdp(&fast, &frame, queue_device, 0);
        assert_eq!(run.retval, XDP_DROP, "queue 0 has none");
    });
}

// ---------------------------------------------------------------------------
// Real traffic: the tags test runs cannot show

/// An AF_PACKET socket on one interface of the current namespace.
struct PacketSocket {
    fd: std::os::fd::OwnedFd,
    ifindex: u32,
}

/// What a capture read: the out-of-band tag, if any, and the frame.
#[derive(Debug, PartialEq, Eq)]
struct Captured {
    tci: Option<u16>,
    frame: Vec<u8>,
}

impl PacketSocket {
    /// A socket that sends on `name` (protocol 0: it receives nothing).
    fn sender(name: &str) -> PacketSocket {
        Self::open(name, 0)
    }

    /// A socket that receives every frame arriving at `name`, with the tag
    /// the kernel holds out of band (PACKET_AUXDATA).
    fn capture(name: &str) -> PacketSocket {
        let socket = Self::open(name, (libc::ETH_P_ALL as u16).to_be());
        socket.set_option(libc::SOL_PACKET, libc::PACKET_AUXDATA, &1 as &libc::c_int);
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        socket.set_option(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout);
        socket
    }

    /// setsockopt(level, option) to `value` (a plain C value).
    fn set_option<T>(&self, level: libc::c_int, option: libc::c_int, value: &T) {
        // SAFETY: `value` is a live T of the size given, which the kernel
        // only reads.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                option,
                (value as *const T).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        assert_eq!(
            rc,
            0,
            "setsockopt({level}, {option}): {}",
            std::io::Error::last_os_error()
        );
    }

    fn open(name: &str, protocol: u16) -> PacketSocket {
        use std::os::fd::FromRawFd;
        let ifindex = ifindex(name);
        // SAFETY: plain socket(2) call; the result is checked below.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::c_int::from(protocol),
            )
        };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd is a descriptor just returned to us and owned by no one else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let socket = PacketSocket { fd, ifindex };
        if protocol != 0 {
            let address = socket.address(protocol);
            // SAFETY: `address` is a live sockaddr_ll of the size given.
            let rc = unsafe {
                libc::bind(
                    socket.fd.as_raw_fd(),
                    (&address as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            assert_eq!(
                rc,
                0,
                "binding to {name}: {}",
                std::io::Error::last_os_error()
            );
        }
        socket
    }

    fn address(&self, protocol: u16) -> libc::sockaddr_ll {
        // SAFETY: sockaddr_ll is plain data, valid all zero.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_protocol = protocol;
        address.sll_ifindex = self.ifindex as i32;
        address
    }

    fn send(&self, frame: &[u8]) {
        let address = self.address(0);
        // SAFETY: frame and address are live for the call, of the sizes given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert_eq!(
            sent,
            frame.len() as isize,
            "sending: {}",
            std::io::Error::last_os_error()
        );
    }

    /// The frames that arrived (not those the interface sent) with `ethertype`
    /// after their tags in the data, until none came for 200 ms.
    fn received(&self, ethertype: u16) -> Vec<Captured> {
        let mut out = Vec::new();
        loop {
            let mut buffer = vec![0u8; 4096];
            // Room for one cmsghdr and a tpacket_auxdata, 8-byte aligned.
            let mut control = [0u64; 16];
            // SAFETY: plain data, valid all zero.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut iov = libc::iovec {
                iov_base: buffer.as_mut_ptr().cast(),
                iov_len: buffer.len(),
            };
            // SAFETY: plain data, valid all zero; the fields are set below.
            let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
            message.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
            message.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            message.msg_iov = &mut iov;
            message.msg_iovlen = 1;
            message.msg_control = control.as_mut_ptr().cast();
            message.msg_controllen = std::mem::size_of_val(&control);
            // SAFETY: every pointer in `message` refers to live buffers of
            // the lengths it gives.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut message, 0) };
            if n < 0 {
                let error = std::io::Error::last_os_error();
                assert_eq!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock,
                    "receiving: {error}"
                );
                return out;
            }
            buffer.truncate(n as usize);
            let mut tci = None;
            // SAFETY: `message` was filled by recvmsg; CMSG_FIRSTHDR and
            // CMSG_NXTHDR stay within its control buffer, and an
            // SOL_PACKET/PACKET_AUXDATA message holds a tpacket_auxdata
            // (read unaligned, as CMSG_DATA need not be aligned for it).
            unsafe {
                let mut cmsg = libc::CMSG_FIRSTHDR(&message);
                while !cmsg.is_null() {
                    if (*cmsg).cmsg_level == libc::SOL_PACKET
                        && (*cmsg).cmsg_type == libc::PACKET_AUXDATA
                    {
                        let aux: libc::tpacket_auxdata =
                            std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                        if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                            tci = Some(aux.tp_vlan_tci);
                        }
                    }
                    cmsg = libc::CMSG_NXTHDR(&message, cmsg);
                }
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let mut at = 12;
            while buffer.get(at..at + 2) == Some(&ETH_8021Q.to_be_bytes()[..]) {
                at += 4;
            }
            if buffer.get(at..at + 2) == Some(&ethertype.to_be_bytes()[..]) {
                out.push(Captured { tci, frame: buffer });
            }
        }
    }
}

#[test]
fn tag_operations_and_the_slow_path_tag_on_real_traffic() {
    // Frames sent into a port's veth reach the program at its tc ingress
    // with their tag out of band, as in service; what the program sends on
    // is captured at the egress and slow-path veths' peers, with the tag the
    // kernel holds out of band (PACKET_AUXDATA).
    in_fresh_netns(|| {
        for (name, peer) in [("pin", "pinp"), ("pout", "poutp"), ("slow", "slowp")] {
            ip(&["link", "add", name, "type", "veth", "peer", "name", peer]);
            ip(&["link", "set", name, "up"]);
            ip(&["link", "set", peer, "up"]);
        }
        let (port_if, egress_if, slow_if) = (ifindex("pin"), ifindex("pout"), ifindex("slow"));
        let mut fast = FastPath::load(16)
            .unwrap_or_else(|e| panic!("loading the fast path: {}", crate::error::chain(&e)));
        const PORT_ID: u16 = 5;
        fast.set_port(
            port_if,
            PortConf {
                port: PORT_ID,
                flags: PORT_FAST,
                pad: 0,
            },
        )
        .expect("configuring the port");
        fast.set_slow_path(slow_if)
            .expect("setting the slow-path device");
        let _hook = fast
            .attach_port("pin", port_if, false)
            .unwrap_or_else(|e| panic!("attaching to pin: {}", crate::error::chain(&e)));
        let table = fast.table();
        let mut scratch = vec![FlowEntry::default(); table.cpus()];

        let send = PacketSocket::sender("pinp");
        let at_egress = PacketSocket::capture("poutp");
        let at_slow_path = PacketSocket::capture("slowp");

        /// A frame from source MAC ...:`last`, sent with `tci_in`, whose
        /// entry does `tag_op` with `vid`, and leaves with `tci_out`.
        struct Case {
            last: u8,
            tci_in: Option<u16>,
            tag_op: u8,
            vid: u16,
            tci_out: Option<u16>,
        }
        let case = |last, tci_in, tag_op, vid, tci_out| Case {
            last,
            tci_in,
            tag_op,
            vid,
            tci_out,
        };
        let cases = [
            case(1, None, TAG_INSERT, 100, Some(100)),
            case(2, Some(0xa00a), TAG_REMOVE, 0, None),
            // Priority 5 kept, VID 10 becomes 200.
            case(3, Some(0xa00a), TAG_REWRITE, 200, Some(0xa0c8)),
            case(4, Some(0x0014), TAG_KEEP, 0, Some(0x0014)),
        ];
        let frame_from = |last: u8| {
            let mut frame = l2_frame();
            frame[11] = last;
            frame
        };
        let on_the_wire = |frame: &[u8], tci: Option<u16>| match tci {
            Some(tci) => tagged(frame, tci),
            None => frame.to_vec(),
        };
        for c in &cases {
            let frame = frame_from(c.last);
            let key = FlowKey {
                port: PORT_ID,
                vlan: c.tci_in.unwrap_or(UNTAGGED),
                ..l2_key(&frame)
            };
            let entry = FlowEntry {
                generation: table.generation(),
                expires_ns: u64::MAX,
                egress_ifindex: egress_if,
                egress_port: 6,
                action: FLOW_REDIRECT,
                tag_op: c.tag_op,
                vid: c.vid,
                ..FlowEntry::default()
            };
            table
                .insert(&key, &entry, &mut scratch)
                .unwrap_or_else(|e| panic!("inserting {key:?}: {e:?}"));
            send.send(&on_the_wire(&frame, c.tci_in));
        }
        let mut got = at_egress.received(ETH_EXPERIMENTAL);
        got.sort_by_key(|c| c.frame[11]);
        let expected: Vec<Captured> = cases
            .iter()
            .map(|c| Captured {
                tci: c.tci_out,
                frame: frame_from(c.last),
            })
            .collect();
        assert_eq!(got, expected, "at the egress port");
        assert_eq!(
            table.read_all().iter().map(|(_, e)| e.packets).sum::<u64>(),
            4,
            "each entry counted its frame"
        );
        assert!(
            at_slow_path.received(ETH_EXPERIMENTAL).is_empty(),
            "a hit also reached the slow path"
        );

        // Misses: tagged with the port id; a tag the frame had stays inside.
        let untagged = frame_from(7);
        send.send(&untagged);
        let inner = frame_from(8);
        send.send(&tagged(&inner, 0x001e));
        let mut got = at_slow_path.received(ETH_EXPERIMENTAL);
        got.sort_by_key(|c| c.frame[11]);
        assert_eq!(
            got,
            vec![
                Captured {
                    tci: Some(PORT_ID),
                    frame: untagged,
                },
                Captured {
                    tci: Some(PORT_ID),
                    frame: tagged(&inner, 0x001e),
                },
            ],
            "at the slow-path device"
        );
        assert!(
            at_egress.received(ETH_EXPERIMENTAL).is_empty(),
            "a miss also reached the egress port"
        );
    });
}
