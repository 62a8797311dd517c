//! The fast path's user-space half: which decisions become flow entries
//! ([`flow_for`]), and the flow keeper, which folds the entries' counters into
//! the port and ACL statistics, keeps the MACs of fast-pathed hosts from
//! aging out, and removes stale, expired and idle entries.
//!
//! Exactness rests on one generation counter (see `xdp::fast`): an entry is
//! used only while it carries the current generation. Every change that can
//! alter a decision bumps it (the control plane before and after publishing a
//! snapshot, a worker when it sees a MAC move), so no entry outlives the
//! state it was decided by. An entry also carries its destination MAC's age
//! limit, so it cannot forward to a MAC that has aged out.
//!
//! Counters: every frame an entry switched is counted exactly once, either
//! in the entry while it lives or, from the moment it is removed, in the
//! statistics of whoever removed it (a worker replacing a stale entry, or the
//! keeper). Statistics read while entries live add those entries up too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use crossbeam::channel::Sender;

use super::handoff::Mesh;
use super::snapshot::Snapshot;
use super::stats::{bump, WorkerStats};
use super::worker::WorkerCommand;
use crate::packet::l4::protocol;
use crate::packet::{Fragment, FrameInfo, L3Info, L4Status, MacAddr, TagEdit};
use crate::pipeline::stages::{AclMatch, Verdict};
use crate::pipeline::{Decision, DropReason, FdbEntry, Learned, PortId, TenantId};
use crate::xdp::fast::{
    FlowEntry, FlowKey, FlowTable, KeyWidth, FLOW_DROP, FLOW_REDIRECT, FLOW_REDIRECT_PEER,
    NEVER_EXPIRES, TAG_INSERT, TAG_KEEP, TAG_REMOVE, TAG_REWRITE, UNTAGGED,
};

/// `FlowEntry::acl` value: no ACL entry decided in that direction.
const ACL_NONE: u16 = 0xffff;
/// `FlowEntry::acl` value: the default action decided.
const ACL_DEFAULT: u16 = 0xfffe;

/// How often the keeper folds counters and refreshes MACs.
pub const KEEPER_PERIOD: Duration = Duration::from_secs(1);

/// What the workers and the keeper share.
pub struct FastShared {
    pub table: FlowTable,
    /// CLOCK_MONOTONIC at the data plane's epoch: worker timestamps are
    /// nanoseconds since the epoch, the program's clock is CLOCK_MONOTONIC.
    pub monotonic_at_epoch: u64,
    /// Entries without traffic for this long are removed.
    pub idle_timeout_ns: AtomicU64,
    /// Inserts refused because the table was full.
    pub refused_full: AtomicU64,
}

/// CLOCK_MONOTONIC now, in nanoseconds (what bpf_ktime_get_ns reads).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn encode_acl(matched: Option<AclMatch>) -> u16 {
    match matched {
        None => ACL_NONE,
        Some(AclMatch::Default) => ACL_DEFAULT,
        Some(AclMatch::Rule(i)) => u16::try_from(i).unwrap_or(ACL_DEFAULT).min(ACL_DEFAULT - 1),
    }
}

fn decode_acl(value: u16) -> Option<AclMatch> {
    match value {
        ACL_NONE => None,
        ACL_DEFAULT => Some(AclMatch::Default),
        i => Some(AclMatch::Rule(usize::from(i))),
    }
}

/// Which ACL rule (or the default) `entry`'s frames matched in `direction`.
pub fn acl_match(entry: &FlowEntry, direction: usize) -> Option<AclMatch> {
    entry.acl.get(direction).copied().and_then(decode_acl)
}

/// Everything [`flow_for`] reads besides the frame and its verdict.
pub struct FlowContext<'a> {
    pub snapshot: &'a Snapshot,
    pub ingress: PortId,
    pub egress: PortId,
    /// The destination's MAC table entry, for its age limit.
    pub destination: Option<FdbEntry>,
    pub aging_ns: u64,
    pub monotonic_at_epoch: u64,
    pub generation: u64,
    pub edit: TagEdit,
}

/// The flow entry that switches every later frame with this frame's key the
/// way the pipeline just switched this one, or None when the decision must
/// stay in user space: anything but "forward to one known port" or a drop
/// that depends only on the key (see [`drop_is_keyed`]), a learning event, a
/// frame the key cannot describe exactly (options, fragments, extension
/// headers, a second tag), neighbour discovery.
pub fn flow_for(cx: &FlowContext, verdict: &Verdict, frame: &[u8]) -> Option<(FlowKey, FlowEntry)> {
    match verdict.decision {
        Decision::Forward(egress) => forward_entry(cx, verdict, frame, egress),
        Decision::Drop(reason) if drop_is_keyed(reason, verdict) => {
            let key = key_for(cx, verdict, frame)?;
            let entry = FlowEntry {
                generation: cx.generation,
                // Guards and ingress ACLs do not age.
                expires_ns: NEVER_EXPIRES,
                egress_port: NO_PORT,
                action: FLOW_DROP,
                vid: reason.index() as u16,
                tenant_id: verdict.tenant_id,
                acl: [encode_acl(verdict.acl[0]), encode_acl(verdict.acl[1])],
                ..FlowEntry::default()
            };
            Some((key, entry))
        }
        _ => None,
    }
}

/// The reason a drop entry's frames are counted under.
pub fn dropped_for(entry: &FlowEntry) -> Option<DropReason> {
    (entry.action == FLOW_DROP)
        .then(|| DropReason::ALL.get(usize::from(entry.vid)).copied())
        .flatten()
}

/// Egress port of a drop entry: none.
pub const NO_PORT: PortId = PortId::MAX;

/// Drops decided by the ingress port's guard or the tenant's ingress ACL
/// before any MAC table lookup: the same key always gets the same drop until
/// the configuration changes (which makes every entry stale). The frames of
/// a hostile port then cost the workers nothing.
fn drop_is_keyed(reason: DropReason, verdict: &Verdict) -> bool {
    match reason {
        DropReason::SpoofedMac | DropReason::SpoofedIp | DropReason::InvalidSourceMac => true,
        // An ingress deny: the egress ACL was never consulted.
        DropReason::AclDeny => verdict.acl[1].is_none(),
        _ => false,
    }
}

fn forward_entry(
    cx: &FlowContext,
    verdict: &Verdict,
    frame: &[u8],
    egress: PortId,
) -> Option<(FlowKey, FlowEntry)> {
    if egress != cx.egress || egress == cx.ingress {
        return None;
    }
    // Later frames of the flow change nothing in the MAC table: their source
    // is refreshed, or static (a host with a static entry must get entries
    // too). Refused learning is counted per frame, so it stays in user space.
    if !matches!(
        verdict.learned,
        Learned::Refreshed | Learned::New | Learned::Evicted { .. } | Learned::StaticKept
    ) {
        return None;
    }
    let out = cx.snapshot.port(egress)?;
    if !out.link_up || out.ifindex == 0 {
        return None;
    }
    let info = verdict.info.as_ref()?;
    if info.dst_mac.is_multicast() {
        return None;
    }
    let destination = cx.destination?;
    if destination.port != egress {
        return None;
    }
    let key = key_for(cx, verdict, frame)?;
    let (tag_op, vid) = match cx.edit {
        TagEdit::Keep => (TAG_KEEP, 0),
        TagEdit::Insert(vid) => (TAG_INSERT, vid),
        TagEdit::Remove => (TAG_REMOVE, 0),
        TagEdit::Rewrite(vid) => (TAG_REWRITE, vid),
    };
    let expires_ns = if destination.is_static {
        NEVER_EXPIRES
    } else {
        cx.monotonic_at_epoch
            .saturating_add(destination.last_seen_ns)
            .saturating_add(cx.aging_ns)
    };
    let entry = FlowEntry {
        generation: cx.generation,
        expires_ns,
        egress_ifindex: out.ifindex,
        egress_port: egress,
        // Into a container's veth, skip the veth's transmit and the receive
        // backlog: the peer's ingress takes the skb as it is.
        action: if out.into_peer {
            FLOW_REDIRECT_PEER
        } else {
            FLOW_REDIRECT
        },
        tag_op,
        vid,
        tenant_id: verdict.tenant_id,
        acl: [encode_acl(verdict.acl[0]), encode_acl(verdict.acl[1])],
        ..FlowEntry::default()
    };
    Some((key, entry))
}

/// The key the program builds for this frame on the ingress port, at the
/// width the control plane chose for it.
fn key_for(cx: &FlowContext, verdict: &Verdict, frame: &[u8]) -> Option<FlowKey> {
    let width = cx.snapshot.port(cx.ingress)?.fast?;
    let info = verdict.info.as_ref()?;
    let mut key = FlowKey {
        port: cx.ingress,
        dst: info.dst_mac.0,
        src: info.src_mac.0,
        ..FlowKey::default()
    };
    key.vlan = match info.vlan {
        None => UNTAGGED,
        Some(_) => {
            // Only a single 802.1Q tag: the program keys exactly that.
            if info.inner_tagged || frame.get(12..14)? != [0x81, 0x00] {
                return None;
            }
            u16::from_be_bytes([*frame.get(14)?, *frame.get(15)?])
        }
    };
    match width {
        KeyWidth::L2 => key.width = KeyWidth::L2 as u8,
        KeyWidth::L3 => {
            key.width = KeyWidth::L3 as u8;
            l3_fields(&mut key, info, frame)?;
        }
    }
    Some(key)
}

/// The L3/L4 part of a key, exactly as the program reads it; None for frames
/// it does not key (they stay in user space).
fn l3_fields(key: &mut FlowKey, info: &FrameInfo, frame: &[u8]) -> Option<()> {
    let (ip, v4) = match info.l3 {
        L3Info::Ipv4(ip) => (ip, true),
        L3Info::Ipv6(ip) => (ip, false),
        _ => return None,
    };
    if ip.l4 != L4Status::Read || ip.fragment != Fragment::Whole {
        return None;
    }
    let l3 = frame.get(info.l2_len..)?;
    if v4 {
        // No options: the program keys only 20-byte headers.
        if *l3.first()? != 0x45 {
            return None;
        }
    } else if *l3.get(6)? != ip.proto {
        // Extension headers: not keyed.
        return None;
    }
    let l4 = l3.get(if v4 { 20 } else { 40 }..)?;
    match ip.proto {
        protocol::TCP => {
            key.tcp_flags = *l4.get(13)?;
            key.sport = u16::from_ne_bytes([*l4.first()?, *l4.get(1)?]);
            key.dport = u16::from_ne_bytes([*l4.get(2)?, *l4.get(3)?]);
        }
        protocol::UDP => {
            key.sport = u16::from_ne_bytes([*l4.first()?, *l4.get(1)?]);
            key.dport = u16::from_ne_bytes([*l4.get(2)?, *l4.get(3)?]);
        }
        protocol::ICMP if v4 => {
            l4.get(3)?;
            key.icmp_type = *l4.first()?;
        }
        protocol::ICMPV6 if !v4 => {
            l4.get(3)?;
            let kind = *l4.first()?;
            // Router and neighbour discovery and redirects stay in user space.
            if (133..=137).contains(&kind) {
                return None;
            }
            key.icmp_type = kind;
        }
        _ => return None,
    }
    key.proto = ip.proto;
    key.ethertype = u16::from_ne_bytes(info.ethertype.to_be_bytes());
    match (ip.src, ip.dst) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            key.src_ip[..4].copy_from_slice(&s.octets());
            key.dst_ip[..4].copy_from_slice(&d.octets());
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            key.src_ip = s.octets();
            key.dst_ip = d.octets();
        }
        _ => return None,
    }
    Some(())
}

/// Adds a removed entry's frames to `stats` (both ports) and to its tenant's
/// ACL hits in `row`.
pub fn fold(
    stats: &WorkerStats,
    snapshot: &Snapshot,
    row: usize,
    key: &FlowKey,
    entry: &FlowEntry,
) {
    if entry.packets == 0 {
        return;
    }
    if let Some(c) = stats.port(key.port) {
        bump(&c.rx_frames, entry.packets);
        bump(&c.rx_bytes, entry.bytes);
        bump(&c.fast_rx_frames, entry.packets);
        match dropped_for(entry) {
            Some(reason) => bump(&c.drops[reason.index()], entry.packets),
            None => bump(&c.switched, entry.packets),
        }
    }
    if let Some(c) = stats
        .port(entry.egress_port)
        .filter(|_| entry.action != FLOW_DROP)
    {
        bump(&c.tx_frames, entry.packets);
        bump(&c.tx_bytes, entry.bytes);
        bump(&c.fast_tx_frames, entry.packets);
    }
    if let Some(tenant) = snapshot.tenant(entry.tenant_id) {
        for (direction, code) in entry.acl.iter().enumerate() {
            if let Some(matched) = decode_acl(*code) {
                tenant
                    .hits
                    .count_many(row, direction, matched, entry.packets);
            }
        }
    }
}

/// One entry as `xswctl flows` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FlowRow {
    pub in_port: PortId,
    pub out_port: PortId,
    pub vlan: Option<u16>,
    pub src_mac: String,
    pub dst_mac: String,
    pub width: &'static str,
    pub l3: Option<String>,
    pub action: String,
    /// Handed straight to the egress veth's peer (bpf_redirect_peer).
    pub peer: bool,
    pub packets: u64,
    pub bytes: u64,
    pub current: bool,
}

pub fn row(key: &FlowKey, entry: &FlowEntry, generation: u64, now_mono: u64) -> FlowRow {
    let l3 = (key.width == KeyWidth::L3 as u8).then(|| {
        let v4 = u16::from_be_bytes(key.ethertype.to_ne_bytes()) == 0x0800;
        let (src, dst) = if v4 {
            (
                std::net::IpAddr::from(<[u8; 4]>::try_from(&key.src_ip[..4]).unwrap_or_default()),
                std::net::IpAddr::from(<[u8; 4]>::try_from(&key.dst_ip[..4]).unwrap_or_default()),
            )
        } else {
            (
                std::net::IpAddr::from(key.src_ip),
                std::net::IpAddr::from(key.dst_ip),
            )
        };
        let sport = u16::from_be_bytes(key.sport.to_ne_bytes());
        let dport = u16::from_be_bytes(key.dport.to_ne_bytes());
        match key.proto {
            protocol::TCP => format!(
                "tcp {src}:{sport} > {dst}:{dport} flags {:#04x}",
                key.tcp_flags
            ),
            protocol::UDP => format!("udp {src}:{sport} > {dst}:{dport}"),
            p => format!("proto {p} {src} > {dst} type {}", key.icmp_type),
        }
    });
    let action = match entry.tag_op {
        TAG_INSERT => format!("push vlan {}", entry.vid),
        TAG_REMOVE => "pop vlan".to_string(),
        TAG_REWRITE => format!("set vlan {}", entry.vid),
        _ if entry.action == FLOW_DROP => format!(
            "drop ({})",
            dropped_for(entry).map_or("?", DropReason::as_str)
        ),
        _ => "forward".to_string(),
    };
    FlowRow {
        in_port: key.port,
        out_port: entry.egress_port,
        vlan: (key.vlan != UNTAGGED).then_some(key.vlan & 0x0fff),
        src_mac: MacAddr(key.src).to_string(),
        dst_mac: MacAddr(key.dst).to_string(),
        width: if key.width == KeyWidth::L3 as u8 {
            "l3"
        } else {
            "l2"
        },
        l3,
        action,
        peer: entry.action == FLOW_REDIRECT_PEER,
        packets: entry.packets,
        bytes: entry.bytes,
        current: entry.generation == generation && entry.expires_ns > now_mono,
    }
}

/// What the keeper remembers of an entry between passes.
#[derive(Copy, Clone)]
struct Seen {
    packets: u64,
    since_ns: u64,
}

/// The keeper's state and statistics; one sweep at a time (the keeper's
/// thread, or the control plane wanting stale entries gone now).
pub struct Keeper {
    shared: Arc<FastShared>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// Where removed entries' frames are counted (summed with the workers').
    pub stats: Arc<WorkerStats>,
    /// This keeper's row in every tenant's ACL hits.
    row: usize,
    workers: Vec<Sender<WorkerCommand>>,
    mesh: Arc<Mesh>,
    seen: Mutex<HashMap<FlowKey, Seen>>,
}

impl Keeper {
    pub fn new(
        shared: Arc<FastShared>,
        snapshot: Arc<ArcSwap<Snapshot>>,
        row: usize,
        workers: Vec<Sender<WorkerCommand>>,
        mesh: Arc<Mesh>,
    ) -> Keeper {
        Keeper {
            shared,
            snapshot,
            stats: Arc::new(WorkerStats::default()),
            row,
            workers,
            mesh,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// One pass: removes (and counts) entries that are stale, expired, idle,
    /// or that `doomed` picks; refreshes the source MACs of entries that
    /// switched frames since the last pass. Returns how many were removed.
    pub fn sweep(&self, doomed: impl Fn(&FlowKey, &FlowEntry) -> bool) -> usize {
        let Ok(mut seen) = self.seen.lock() else {
            return 0;
        };
        let table = &self.shared.table;
        let generation = table.generation();
        let now = monotonic_ns();
        let idle = self.shared.idle_timeout_ns.load(Ordering::Relaxed);
        let snapshot = self.snapshot.load();
        let mut scratch = vec![FlowEntry::default(); table.cpus()];
        let mut refresh: Vec<(TenantId, MacAddr, PortId)> = Vec::new();
        let mut live = HashMap::with_capacity(seen.len());
        let mut removed = 0;
        for (key, entry) in table.read_all() {
            let previous = seen.get(&key).copied();
            let active = previous.is_none_or(|p| p.packets != entry.packets);
            let since_ns = if active {
                now
            } else {
                previous.map_or(now, |p| p.since_ns)
            };
            let stale = entry.generation != generation || entry.expires_ns <= now;
            let idle_out = now.saturating_sub(since_ns) >= idle;
            if stale || idle_out || doomed(&key, &entry) {
                if let Some(taken) = table.take(&key, &mut scratch) {
                    fold(&self.stats, &snapshot, self.row, &key, &taken);
                    removed += 1;
                }
                continue;
            }
            if active && previous.is_some() && entry.action != FLOW_DROP {
                refresh.push((entry.tenant_id, MacAddr(key.src), key.port));
            }
            live.insert(
                key,
                Seen {
                    packets: entry.packets,
                    since_ns,
                },
            );
        }
        *seen = live;
        drop(seen);
        if !refresh.is_empty() {
            for (worker, commands) in self.workers.iter().enumerate() {
                if commands
                    .try_send(WorkerCommand::RefreshMacs(refresh.clone()))
                    .is_ok()
                {
                    self.mesh.wake(worker).notify();
                }
            }
        }
        removed
    }
}

/// The keeper's thread: a sweep every [`KEEPER_PERIOD`] until stopped.
pub struct KeeperThread {
    stop: Option<Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KeeperThread {
    pub fn spawn(keeper: Arc<Keeper>) -> std::io::Result<KeeperThread> {
        let (stop, stopped) = crossbeam::channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("xsw-flows".into())
            .spawn(move || {
                // A timeout is a period passed; a message or a dropped sender
                // is the stop.
                while let Err(crossbeam::channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(KEEPER_PERIOD)
                {
                    keeper.sweep(|_, _| false);
                }
            })?;
        Ok(KeeperThread {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for KeeperThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
