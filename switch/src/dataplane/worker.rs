//! One worker: a thread pinned to a core that owns a UMEM, the AF_XDP
//! sockets of the queues assigned to it, and its own MAC table.
//!
//! Each turn of the loop: take commands, apply MAC moves learned by the other
//! workers, then for every queue receive a batch, switch it, stage the
//! results per egress socket; then transmit the staged frames, collect
//! completions and refill the fill rings. Nothing in the loop allocates or
//! locks; the config snapshot is loaded once per turn.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use crossbeam::channel::{Receiver, Sender};
use xsk_rs::{FrameDesc, Umem};

use super::delivery;
use super::fastpath::{flow_for, fold, FastShared, FlowContext, NO_PORT};
use super::handoff::{LearnEvent, Mesh};
use super::ledger::FrameLedger;
use super::snapshot::Snapshot;
use super::stats::{bump, WorkerStats};
use super::trace::{trace_frame, TraceRun};
use super::tunnel::{TunnelRx, TunnelTx};
use crate::packet::checksum::{self, ChecksumFix};
use crate::packet::l4::protocol;
use crate::packet::TagEdit;
use crate::packet::{Fragment, FrameInfo, L3Info, L4Status, MacAddr};
use crate::pipeline::decision::MAX_PORTS;
use crate::pipeline::stages::Verdict;
use crate::pipeline::{Decision, DropReason, Fdb, FdbEntry, Learned, PortId, TenantId};
use crate::port::afxdp::{kick_tx, XskSocket};
use crate::xdp::fast::{FlowEntry, FlowKey, InsertError};

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PollMode {
    /// Sleep in poll() after a short spin without traffic: an idle switch
    /// costs almost nothing, at some microseconds of wake-up latency.
    Adaptive,
    /// Never sleep: lowest latency, one core always at 100%.
    BusyPoll,
}

impl std::str::FromStr for PollMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "adaptive" => Ok(PollMode::Adaptive),
            "busy-poll" => Ok(PollMode::BusyPoll),
            other => Err(format!("unknown mode {other:?}: use adaptive or busy-poll")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct WorkerTuning {
    pub batch_size: usize,
    pub mode: PollMode,
    /// Adaptive mode: turns without traffic before the worker sleeps.
    pub poll_budget: u32,
    pub fdb_capacity: usize,
    pub aging_ns: u64,
    /// MAC table limits: (per port, per tenant); None is no limit.
    pub mac_limits: (Option<u32>, Option<u32>),
    pub frame_size: u32,
    pub fill_ring: u32,
    pub tx_ring: u32,
}

/// Counts refused learning on `port` and evictions on the port that lost
/// an entry; an evicted address that flow entries forwarded to makes them
/// stale (the pipeline would flood to it now).
fn note_learning(stats: &WorkerStats, fast: Option<&WorkerFast>, learned: Learned, port: PortId) {
    match learned {
        Learned::LimitReached | Learned::TableFull => {
            if let Some(c) = stats.port(port) {
                bump(&c.learning_refused, 1);
            }
        }
        Learned::Evicted {
            from,
            flow_destination,
        } => {
            if let Some(c) = stats.port(from) {
                bump(&c.learning_evicted, 1);
            }
            if flow_destination {
                if let Some(fast) = fast {
                    fast.shared.table.invalidate();
                }
            }
        }
        _ => {}
    }
}

/// What a worker's socket is for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum QueueKind {
    /// A port's rx queue, steered by the per-port XDP program: frames in,
    /// frames out.
    Port,
    /// The internal slow-path device: frames of tc-hooked ports that missed
    /// the fast path, each with its ingress port id in its metadata.
    Internal,
    /// A tc-hooked port: frames out only (its frames come in on `Internal`),
    /// so its fill ring is never stocked.
    TxOnly,
}

pub enum WorkerCommand {
    AddQueue {
        port: PortId,
        queue_id: u32,
        kind: QueueKind,
        xsk: Box<XskSocket>,
        done: Sender<()>,
    },
    /// Source MACs whose frames the fast path switched: refresh them where
    /// they are still learned on that port.
    RefreshMacs(Vec<(TenantId, MacAddr, PortId)>),
    RemovePort {
        port: PortId,
        done: Sender<()>,
    },
    FdbAddStatic {
        tenant_id: TenantId,
        mac: MacAddr,
        port: PortId,
        /// On a tunnel port: the remote (1-based) the MAC is behind; else 0.
        remote: u8,
        done: Sender<Result<(), String>>,
    },
    FdbRemove {
        tenant_id: TenantId,
        mac: MacAddr,
        done: Sender<bool>,
    },
    /// Forgets every MAC on a port whose tenants changed.
    FdbFlushPort {
        port: PortId,
        done: Sender<()>,
    },
    FdbDump {
        reply: Sender<Vec<FdbEntry>>,
    },
    /// What the pipeline would do with `frame` entering on `ingress`, decided
    /// on a copy of the MAC table (see `dataplane::trace`): nothing changes.
    Trace {
        ingress: PortId,
        frame: Vec<u8>,
        reply: Sender<Box<TraceRun>>,
    },
    /// Live tuning: batch size and poll mode, taken between two turns.
    SetPolling {
        batch_size: usize,
        mode: PollMode,
        poll_budget: u32,
    },
    SetMacLimits {
        per_port: Option<u32>,
        per_tenant: Option<u32>,
    },
    SetAging {
        aging_ns: u64,
    },
    Stop,
}

struct LocalQueue {
    port: PortId,
    queue_id: u32,
    kind: QueueKind,
    xsk: XskSocket,
    /// Frames switched this turn, waiting to go on the tx ring.
    staged: Vec<FrameDesc>,
    /// Frames this socket's fill and rx rings hold now.
    in_fill: usize,
    /// How many frames its fill ring should hold: grows while traffic
    /// drains the ring, decays when it does not (see `refill`).
    fill_target: usize,
    /// The kernel's count of frames it had to drop because this socket's
    /// fill ring was empty, as of the last once-a-second check.
    fill_empty_seen: u64,
}

/// The largest batch size a worker accepts (config and live tuning).
pub const MAX_BATCH: usize = 1024;
/// Longest sleep: bounds how late aging runs and how often an idle worker wakes (an
/// idle switch should cost close to nothing; frames and commands wake it at once).
const POLL_TIMEOUT_MS: i32 = 1000;

pub struct Worker {
    id: usize,
    umem: Umem,
    ledger: FrameLedger,
    queues: Vec<Option<LocalQueue>>,
    /// PortId -> the local queue slot that transmits on it.
    egress: Box<[Option<u16>]>,
    fdb: Fdb,
    tuning: WorkerTuning,
    snapshot: Arc<ArcSwap<Snapshot>>,
    stats: Arc<WorkerStats>,
    commands: Receiver<WorkerCommand>,
    mesh: Arc<Mesh>,
    rx_batch: Vec<FrameDesc>,
    /// The pipeline's verdicts for one run of frames (see [`DECIDE_RUN`]).
    verdicts: Vec<Verdict>,
    scratch: Vec<FrameDesc>,
    pollfds: Vec<libc::pollfd>,
    started: Instant,
    fast: Option<WorkerFast>,
    /// When the next "MAC table full" warning may be logged.
    mac_table_warned_ns: u64,
    tunnel_rx: TunnelRx,
    tunnel_tx: TunnelTx,
}

/// A worker's share of the fast path: flow entries decided this turn, written
/// once per turn, with buffers sized once so the hot path does not allocate.
struct WorkerFast {
    shared: Arc<FastShared>,
    /// The generation read at the start of the turn, before the snapshot:
    /// entries decided by this turn's snapshot are valid only with it.
    turn_generation: u64,
    pending: Vec<(FlowKey, FlowEntry)>,
    /// One value per CPU for the per-CPU map's syscalls.
    scratch: Vec<FlowEntry>,
}

/// Flow entries a worker writes per turn at most; more wait for later frames.
const MAX_INSTALLS_PER_TURN: usize = 64;
/// Pending flow entries a new one is compared with: the frames of a burst of
/// one flow come in a row, and a longer look would cost every frame.
const RECENT_FLOWS: usize = 4;
/// Frames the pipeline decides in one call: a batch of up to [`MAX_BATCH`]
/// frames goes through in runs of this many (the frames' slices and their
/// verdicts have room for this many without allocating). The pipeline works
/// in groups of this many anyway, and under copy mode batches hold a few
/// frames: a larger array of slices, filled in for every run, cost more
/// than it saved.
const DECIDE_RUN: usize = crate::pipeline::stages::PREFETCH_AHEAD;

pub struct WorkerParts {
    pub id: usize,
    pub umem: Umem,
    pub frames: Vec<FrameDesc>,
    pub tuning: WorkerTuning,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub stats: Arc<WorkerStats>,
    pub commands: Receiver<WorkerCommand>,
    pub mesh: Arc<Mesh>,
    /// Shared by all workers so their MAC timestamps compare.
    pub epoch: Instant,
    pub fast: Option<Arc<FastShared>>,
}

impl Worker {
    pub fn new(p: WorkerParts) -> Self {
        // Sized for the largest batch allowed, so a live change never allocates.
        let batch = MAX_BATCH;
        let scratch_len = (p.tuning.fill_ring.max(p.tuning.tx_ring) as usize).max(batch);
        Worker {
            id: p.id,
            ledger: FrameLedger::new(p.frames, p.tuning.frame_size),
            umem: p.umem,
            queues: Vec::new(),
            egress: vec![None; MAX_PORTS].into_boxed_slice(),
            fdb: {
                let mut fdb = Fdb::new(p.tuning.fdb_capacity, p.tuning.aging_ns);
                fdb.set_limits(p.tuning.mac_limits.0, p.tuning.mac_limits.1);
                fdb
            },
            rx_batch: vec![FrameDesc::default(); batch],
            verdicts: vec![Verdict::default(); DECIDE_RUN],
            scratch: vec![FrameDesc::default(); scratch_len],
            tuning: p.tuning,
            snapshot: p.snapshot,
            stats: p.stats,
            commands: p.commands,
            mesh: p.mesh,
            pollfds: Vec::new(),
            started: p.epoch,
            mac_table_warned_ns: 0,
            tunnel_rx: TunnelRx::new(batch),
            tunnel_tx: TunnelTx::new(batch),
            fast: p.fast.map(|shared| WorkerFast {
                scratch: vec![FlowEntry::default(); shared.table.cpus()],
                pending: Vec::with_capacity(MAX_INSTALLS_PER_TURN),
                turn_generation: shared.table.generation(),
                shared,
            }),
        }
    }

    fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    pub fn run(mut self) {
        let mut idle_turns: u32 = 0;
        let mut next_expiry = self.now_ns();
        // The config snapshot, loaded again only when the control plane has
        // published a new one: a pointer compare per turn, not a reference
        // count taken and given back. (Read after the generation, as before:
        // that read is an acquire, so the compare sees every snapshot
        // published before the generation the turn read.)
        let mut snapshots = arc_swap::Cache::new(Arc::clone(&self.snapshot));
        loop {
            if !self.take_commands() {
                break;
            }
            bump(&self.stats.turns, 1);
            let now = self.now_ns();
            if now >= next_expiry {
                self.fdb.expire(now);
                self.warn_if_mac_table_full(now);
                self.stats
                    .frames_free
                    .store(self.ledger.free_count() as u64, Relaxed);
                self.stats
                    .frame_violations
                    .store(self.ledger.violations(), Relaxed);
                let queues = &self.queues;
                let (held, stranded) = self
                    .ledger
                    .leaks(|slot| matches!(queues.get(usize::from(slot)), Some(Some(_))));
                self.stats.frames_held.store(held as u64, Relaxed);
                self.stats.frames_stranded.store(stranded as u64, Relaxed);
                next_expiry = now + 1_000_000_000;
                let floor = self.min_fill();
                for queue in self.queues.iter_mut().flatten() {
                    // One syscall per socket per second: the kernel says
                    // whether the ring ran dry. If it did, the target was too
                    // small for this port's bursts; if not, let it shrink.
                    let empty = crate::port::afxdp::kernel_stats(queue.xsk.fd())
                        .map_or(0, |k| k.rx_fill_ring_empty);
                    if empty > queue.fill_empty_seen {
                        queue.fill_target = queue.fill_target.saturating_mul(2);
                    } else {
                        queue.fill_target = (queue.fill_target * 3 / 4).max(floor);
                    }
                    queue.fill_empty_seen = empty;
                }
            }
            if let Some(fast) = &mut self.fast {
                // Before the snapshot: see `WorkerFast::turn_generation`.
                fast.turn_generation = fast.shared.table.generation();
            }
            let snapshot: &Snapshot = snapshots.load();
            self.apply_peer_learning(now);
            let mut work = 0;
            for slot in 0..self.queues.len() {
                work += self.receive(slot as u16, snapshot, now);
            }
            work += self.receive_tunnels(snapshot, now);
            self.install_flows(snapshot);
            work += self.take_handoffs(snapshot);
            self.transmit();
            self.flush_tunnels(snapshot, now);
            self.collect_completions();
            self.refill();
            if work > 0 {
                idle_turns = 0;
                self.mesh.notify_peers(self.id);
                bump(&self.stats.batches, 1);
                bump(&self.stats.frames, work as u64);
            } else if self.tuning.mode == PollMode::Adaptive {
                idle_turns += 1;
                if idle_turns >= self.tuning.poll_budget {
                    self.sleep();
                    idle_turns = 0;
                }
            } else {
                std::hint::spin_loop();
            }
        }
        tracing::debug!(worker = self.id, "worker stopped");
    }

    /// Returns false when told to stop.
    fn take_commands(&mut self) -> bool {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                WorkerCommand::AddQueue {
                    port,
                    queue_id,
                    kind,
                    xsk,
                    done,
                } => {
                    self.add_queue(port, queue_id, kind, *xsk);
                    let _ = done.send(());
                }
                WorkerCommand::RefreshMacs(macs) => {
                    let now = self.now_ns();
                    for (tenant_id, mac, port) in macs {
                        self.fdb.refresh(tenant_id, mac, port, now);
                    }
                }
                WorkerCommand::RemovePort { port, done } => {
                    self.remove_port(port);
                    let _ = done.send(());
                }
                WorkerCommand::FdbAddStatic {
                    tenant_id,
                    mac,
                    port,
                    remote,
                    done,
                } => {
                    let result = self
                        .fdb
                        .insert_static(tenant_id, mac, port)
                        .map(|()| {
                            self.fdb.set_remote(tenant_id, mac, port, remote);
                        })
                        .map_err(|e| e.to_string());
                    let _ = done.send(result);
                }
                WorkerCommand::FdbRemove {
                    tenant_id,
                    mac,
                    done,
                } => {
                    let _ = done.send(self.fdb.remove(tenant_id, mac));
                }
                WorkerCommand::FdbFlushPort { port, done } => {
                    self.fdb.flush_port(port);
                    let _ = done.send(());
                }
                WorkerCommand::FdbDump { reply } => {
                    let _ = reply.send(self.fdb.iter().collect());
                }
                WorkerCommand::Trace {
                    ingress,
                    frame,
                    reply,
                } => {
                    let snapshot = self.snapshot.load();
                    let run = trace_frame(
                        self.id,
                        &self.fdb,
                        &snapshot,
                        ingress,
                        &frame,
                        self.now_ns(),
                        self.fast.is_some(),
                    );
                    let _ = reply.send(Box::new(run));
                }
                WorkerCommand::SetAging { aging_ns } => self.fdb.set_aging_ns(aging_ns),
                WorkerCommand::SetMacLimits {
                    per_port,
                    per_tenant,
                } => self.fdb.set_limits(per_port, per_tenant),
                WorkerCommand::SetPolling {
                    batch_size,
                    mode,
                    poll_budget,
                } => {
                    self.tuning.batch_size = batch_size.clamp(1, self.rx_batch.len());
                    self.tuning.mode = mode;
                    self.tuning.poll_budget = poll_budget.max(1);
                }
                WorkerCommand::Stop => return false,
            }
        }
        true
    }

    fn add_queue(&mut self, port: PortId, queue_id: u32, kind: QueueKind, xsk: XskSocket) {
        let queue = LocalQueue {
            port,
            queue_id,
            kind,
            xsk,
            staged: Vec::with_capacity(self.tuning.tx_ring as usize + self.rx_batch.len()),
            in_fill: 0,
            fill_target: self.min_fill(),
            fill_empty_seen: 0,
        };
        let slot = match self.queues.iter().position(Option::is_none) {
            Some(free) => {
                self.queues[free] = Some(queue);
                free
            }
            None => {
                self.queues.push(Some(queue));
                self.queues.len() - 1
            }
        };
        if kind != QueueKind::Internal {
            if let Some(entry) = self.egress.get_mut(usize::from(port)) {
                entry.get_or_insert(slot as u16);
            }
        }
        self.rebuild_pollfds();
        self.refill();
    }

    fn remove_port(&mut self, port: PortId) {
        for slot in 0..self.queues.len() {
            if self.queues[slot].as_ref().is_some_and(|q| q.port == port) {
                if let Some(mut queue) = self.queues[slot].take() {
                    for desc in queue.staged.drain(..) {
                        self.ledger.release(desc);
                    }
                    tracing::debug!(
                        worker = self.id,
                        port,
                        queue = queue.queue_id,
                        "closing socket"
                    );
                    // Closing the socket first: the kernel has let go of the
                    // frames once close returns, so they can be reused.
                    drop(queue);
                    self.ledger.reclaim(slot as u16);
                }
            }
        }
        if let Some(entry) = self.egress.get_mut(usize::from(port)) {
            *entry = None;
        }
        self.fdb.flush_port(port);
        self.rebuild_pollfds();
    }

    fn apply_peer_learning(&mut self, now: u64) {
        for peer in 0..self.mesh.workers() {
            if peer == self.id {
                continue;
            }
            if let Some(events) = self.mesh.learned(peer, self.id) {
                while let Some(event) = events.pop() {
                    let learned = self.fdb.learn(event.tenant_id, event.mac, event.port, now);
                    if event.remote != 0 {
                        self.fdb
                            .set_remote(event.tenant_id, event.mac, event.port, event.remote);
                    }
                    if let Learned::Evicted { .. } = learned {
                        note_learning(&self.stats, self.fast.as_ref(), learned, event.port);
                    }
                }
            }
        }
    }

    /// Once a minute at most, while the MAC table is full: learning now
    /// evicts entries of the port that holds the most (see `Fdb::learn`).
    fn warn_if_mac_table_full(&mut self, now: u64) {
        if self.fdb.len() < self.fdb.capacity() || now < self.mac_table_warned_ns {
            return;
        }
        self.mac_table_warned_ns = now.saturating_add(60_000_000_000);
        tracing::warn!(
            worker = self.id,
            entries = self.fdb.len(),
            "MAC table full: new addresses take the place of entries of the port that holds the most \
             (learning_evicted in xswctl stats; raise fdb_capacity or set mac_limit_per_port)"
        );
    }

    fn publish_learning(&self, event: LearnEvent) {
        for peer in 0..self.mesh.workers() {
            if peer != self.id {
                // A full queue loses the event; the peer then floods until it
                // learns the MAC itself, which is correct, only slower.
                if let Some(events) = self.mesh.learned(self.id, peer) {
                    let _ = events.push(event);
                }
            }
        }
    }

    /// Receives and switches one batch from queue `slot`.
    fn receive(&mut self, slot: u16, snapshot: &Snapshot, now: u64) -> usize {
        let batch = self.tuning.batch_size.min(self.rx_batch.len());
        let Some(queue) = self
            .queues
            .get_mut(usize::from(slot))
            .and_then(Option::as_mut)
        else {
            return 0;
        };
        // SAFETY: rx_batch receives descriptors of this worker's UMEM, which
        // the socket shares.
        let received = unsafe { queue.xsk.rx.consume(&mut self.rx_batch[..batch]) };
        if received == 0 {
            return 0;
        }
        queue.in_fill = queue.in_fill.saturating_sub(received);
        if received == batch || queue.in_fill < queue.fill_target / 2 {
            // A full batch, or half the ring gone in one turn: this port is
            // busy and its ring must hold more than one turn's worth.
            queue.fill_target = queue.fill_target.saturating_mul(2);
        }
        let fixed_ingress = queue.port;
        let internal = queue.kind == QueueKind::Internal;
        for desc in &self.rx_batch[..received] {
            self.ledger.received(slot, desc);
        }
        // The pipeline decides runs of frames from one port in one call: the
        // whole batch of a port's socket; on the internal device, frames of
        // several ports come in turn.
        let mut start = 0;
        while start < received {
            let ingress = self.ingress_of(start, internal, fixed_ingress);
            let mut end = start + 1;
            while end < received
                && end - start < DECIDE_RUN
                && self.ingress_of(end, internal, fixed_ingress) == ingress
            {
                end += 1;
            }
            self.switch_run(snapshot, ingress, start..end, now, 0);
            start = end;
        }
        received
    }

    /// The port frame `index` of `rx_batch` came in on.
    #[inline]
    fn ingress_of(&self, index: usize, internal: bool, fixed: PortId) -> PortId {
        if !internal {
            return fixed;
        }
        // SAFETY: off the rx ring, the frame (of this worker's UMEM) is the
        // worker's alone. The slow-path program put the ingress port id in
        // the 4 bytes of XDP metadata right before the frame. Every UMEM
        // frame has XDP_PACKET_HEADROOM (256) bytes before its data in the
        // same mapping, so the read stays inside the UMEM.
        let port = unsafe {
            let frame = self.umem.data(&self.rx_batch[index]);
            std::ptr::read_unaligned(frame.contents().as_ptr().sub(4).cast::<u32>())
        };
        PortId::try_from(port).unwrap_or(PortId::MAX)
    }

    /// Switches frames `run` of `rx_batch`, all from `ingress` (at most
    /// [`DECIDE_RUN`]): the pipeline decides them in one call, then each
    /// goes where its verdict says. Counters are added once per run.
    /// `remote`: for frames a tunnel port decapsulated, the remote they came
    /// from (1-based), else 0.
    fn switch_run(
        &mut self,
        snapshot: &Snapshot,
        ingress: PortId,
        run: std::ops::Range<usize>,
        now: u64,
        remote: u8,
    ) {
        let count = run.len();
        let mut bytes = 0u64;
        let decided = {
            let mut frames: [&[u8]; DECIDE_RUN] = [&[]; DECIDE_RUN];
            for (frame, desc) in frames.iter_mut().zip(&self.rx_batch[run.clone()]) {
                // SAFETY: off the rx ring, the frame (of this worker's UMEM)
                // is the worker's alone until it is put on a ring again.
                *frame = unsafe { self.umem.data(desc) }.contents();
                bytes += frame.len() as u64;
            }
            delivery::decide_batch(
                &mut self.fdb,
                snapshot,
                ingress,
                &frames[..count],
                now,
                &mut self.verdicts,
            )
        };
        if decided < count {
            // The port is being removed: its frames go nowhere.
            for index in run {
                self.ledger.release(self.rx_batch[index]);
            }
            return;
        }
        // Read in place: a copy of each verdict (152 bytes) made the next
        // reads of it wait for the copy's wide stores (perf: the worker's
        // hottest instruction). Taken out of `self` for the loop (a move of
        // the Vec, no allocation), since `dispatch` needs `&mut self`.
        let verdicts = std::mem::take(&mut self.verdicts);
        let mut switched = 0u64;
        for (verdict, desc_index) in verdicts.iter().zip(run) {
            let desc = self.rx_batch[desc_index];
            switched += u64::from(self.dispatch(snapshot, ingress, desc, verdict, remote));
        }
        self.verdicts = verdicts;
        if let Some(c) = self.stats.port(ingress) {
            bump(&c.rx_frames, count as u64);
            bump(&c.rx_bytes, bytes);
            bump(&c.switched, switched);
        }
    }

    /// Acts on one frame's verdict: learning news, ACL hits, the fast path's
    /// flow entry, then the frame itself to every port that takes it.
    /// Returns whether any port took it; if not, the frame is counted as
    /// dropped on `ingress` under exactly one reason.
    fn dispatch(
        &mut self,
        snapshot: &Snapshot,
        ingress: PortId,
        mut desc: FrameDesc,
        verdict: &Verdict,
        remote: u8,
    ) -> bool {
        self.count_acl_hits(snapshot, verdict);
        note_learning(&self.stats, self.fast.as_ref(), verdict.learned, ingress);
        // A MAC behind a tunnel that moved to another remote is news too.
        let remote_changed = self.learn_remote(verdict, ingress, remote);
        if remote_changed
            || matches!(
                verdict.learned,
                Learned::New | Learned::Evicted { .. } | Learned::Moved { .. }
            )
        {
            if let (true, Some(info)) = (self.mesh.workers() > 1, verdict.info) {
                self.publish_learning(LearnEvent {
                    tenant_id: verdict.tenant_id,
                    mac: info.src_mac,
                    port: ingress,
                    remote,
                });
            }
        }
        if let Learned::Moved { .. } = verdict.learned {
            // Entries keyed by the old port, or forwarding to it, are wrong now.
            if let Some(fast) = &self.fast {
                fast.shared.table.invalidate();
            }
        }
        if let Decision::Drop(reason) = verdict.decision {
            self.consider_flow(snapshot, ingress, &desc, verdict, NO_PORT, TagEdit::Keep);
            self.stats.drop_frame(ingress, reason);
            self.ledger.release(desc);
            return false;
        }
        self.finish_checksum(ingress, &mut desc, verdict.info.as_ref());
        // Every port that takes the frame but the last gets a copy, the last
        // the original (so a two-port flood copies nothing); copies are taken
        // before the original is edited.
        let mut last: Option<(PortId, TagEdit)> = None;
        delivery::offer_to_egress(snapshot, ingress, verdict, |port, outcome| match outcome {
            Err(reason) => self.stats.drop_copy(port, reason),
            Ok(edit) => {
                if let Some((previous, previous_edit)) = last.replace((port, edit)) {
                    match self.copy_frame(&desc) {
                        Some(copy) => self.deliver_edited(snapshot, previous, copy, previous_edit),
                        None => self.stats.drop_copy(previous, DropReason::NoBuffer),
                    }
                }
            }
        });
        let Some((port, edit)) = last else {
            self.stats.drop_frame(ingress, DropReason::NoEgress);
            self.ledger.release(desc);
            return false;
        };
        if let Decision::Forward(_) = verdict.decision {
            self.consider_flow(snapshot, ingress, &desc, verdict, port, edit);
        }
        self.deliver_edited(snapshot, port, desc, edit);
        true
    }

    /// For a frame from a tunnel: remembers which remote its source is behind. True
    /// when that changed (the other workers must hear of it).
    fn learn_remote(&mut self, verdict: &Verdict, ingress: PortId, remote: u8) -> bool {
        let learned = matches!(
            verdict.learned,
            Learned::New | Learned::Refreshed | Learned::Moved { .. } | Learned::Evicted { .. }
        );
        match (remote, learned, verdict.info.as_ref()) {
            (1.., true, Some(info)) => {
                self.fdb
                    .set_remote(verdict.tenant_id, info.src_mac, ingress, remote)
            }
            _ => false,
        }
    }

    /// Receives and switches a batch from each tunnel endpoint this worker reads:
    /// the decapsulated frames go through `switch_run` in runs from one port and
    /// remote, as a port's frames do.
    fn receive_tunnels(&mut self, snapshot: &Snapshot, now: u64) -> usize {
        if snapshot.tunnel_endpoints.is_empty() || !self.tunnel_rx.due() {
            return 0;
        }
        let batch = self.tuning.batch_size.min(self.rx_batch.len());
        let mut work = 0;
        for endpoint in &snapshot.tunnel_endpoints {
            if endpoint.rx_worker != self.id {
                continue;
            }
            let ready = self.tunnel_rx.receive(
                endpoint,
                snapshot,
                &self.umem,
                &mut self.ledger,
                &self.stats,
                batch,
            );
            let mut start = 0;
            while start < ready {
                let Some(first) = self.tunnel_rx.arrival(start) else {
                    break;
                };
                let mut end = start;
                while end < ready && end - start < DECIDE_RUN {
                    match self.tunnel_rx.arrival(end) {
                        Some(a) if a.port == first.port && a.remote == first.remote => {
                            self.rx_batch[end] = a.desc;
                            end += 1;
                        }
                        _ => break,
                    }
                }
                self.switch_run(snapshot, first.port, start..end, now, first.remote);
                start = end;
            }
            work += ready;
        }
        self.tunnel_rx.finish_turn();
        work
    }

    /// Encapsulates and sends the frames staged for tunnel ports this turn.
    fn flush_tunnels(&mut self, snapshot: &Snapshot, now: u64) {
        if self.tunnel_tx.is_empty() {
            return;
        }
        self.tunnel_tx.flush(
            snapshot,
            &self.fdb,
            now,
            &self.umem,
            &mut self.ledger,
            &self.stats,
        );
    }

    /// Queues a flow entry for what was just decided (to send the frame out
    /// of `egress` with `edit`, or to drop it), if the fast path can take
    /// frames like this one (see `dataplane::fastpath::flow_for`).
    fn consider_flow(
        &mut self,
        snapshot: &Snapshot,
        ingress: PortId,
        desc: &FrameDesc,
        verdict: &Verdict,
        egress: PortId,
        edit: TagEdit,
    ) {
        let Some(fast) = &mut self.fast else {
            return;
        };
        if fast.pending.len() == fast.pending.capacity()
            || snapshot.port(ingress).is_none_or(|v| v.fast.is_none())
        {
            return;
        }
        let destination = verdict
            .info
            .as_ref()
            .and_then(|info| self.fdb.get(verdict.tenant_id, info.dst_mac));
        let cx = FlowContext {
            snapshot,
            ingress,
            egress,
            destination,
            aging_ns: self.fdb.aging_ns(),
            monotonic_at_epoch: fast.shared.monotonic_at_epoch,
            generation: fast.turn_generation,
            edit,
        };
        // SAFETY: the worker owns the frame (it is in no ring).
        let frame = unsafe { self.umem.data(desc) };
        if let Some((key, entry)) = flow_for(&cx, verdict, frame.contents()) {
            if let (Decision::Forward(_), Some(info)) = (verdict.decision, verdict.info.as_ref()) {
                self.fdb
                    .mark_flow_destination(verdict.tenant_id, info.dst_mac);
            }
            // A burst of one flow comes in a row: one entry. (A flow seen
            // again later in the turn replaces its entry at install.)
            let recent = fast.pending.len().saturating_sub(RECENT_FLOWS);
            if !fast.pending[recent..].iter().any(|(k, _)| *k == key) {
                fast.pending.push((key, entry));
            }
        }
    }

    /// Writes the entries decided this turn, unless the generation moved
    /// meanwhile (they would be stale at once).
    fn install_flows(&mut self, snapshot: &Snapshot) {
        let Some(fast) = &mut self.fast else {
            return;
        };
        if fast.pending.is_empty() {
            return;
        }
        let table = &fast.shared.table;
        if table.generation() != fast.turn_generation {
            fast.pending.clear();
            return;
        }
        for (key, entry) in fast.pending.drain(..) {
            match table.insert(&key, &entry, &mut fast.scratch) {
                Ok(()) => {}
                Err(InsertError::Exists) => {
                    // A stale entry (or a twin from another worker): count
                    // what it switched, then replace it.
                    if let Some(old) = table.take(&key, &mut fast.scratch) {
                        fold(&self.stats, snapshot, self.id, &key, &old);
                    }
                    let _ = table.insert(&key, &entry, &mut fast.scratch);
                }
                Err(InsertError::Full) => {
                    fast.shared.refused_full.fetch_add(1, Relaxed);
                }
                Err(InsertError::Other(errno)) => {
                    tracing::debug!(worker = self.id, errno, "flow insert failed");
                }
            }
        }
    }

    /// Finishes a TCP/UDP checksum the sender left to offload (see
    /// `packet::checksum`): the receiver would drop the frame otherwise.
    fn finish_checksum(&self, ingress: PortId, desc: &mut FrameDesc, info: Option<&FrameInfo>) {
        let Some(info) = info else {
            return;
        };
        let carries_checksum = match info.l3 {
            L3Info::Ipv4(ip) | L3Info::Ipv6(ip) => {
                (ip.proto == protocol::TCP || ip.proto == protocol::UDP)
                    && ip.l4 == L4Status::Read
                    && ip.fragment == Fragment::Whole
            }
            _ => false,
        };
        if !carries_checksum {
            return;
        }
        // SAFETY: the worker owns the frame (it is in no ring), so nothing else
        // reads or writes it while it is edited.
        let mut data = unsafe { self.umem.data_mut(desc) };
        let fix = checksum::finish_partial(data.contents_mut(), info.l2_len, info.ethertype);
        if fix == ChecksumFix::Finished {
            if let Some(c) = self.stats.port(ingress) {
                bump(&c.checksums_finished, 1);
            }
        }
    }

    fn count_acl_hits(&self, snapshot: &Snapshot, verdict: &Verdict) {
        if let Some(tenant) = snapshot.tenant(verdict.tenant_id) {
            for (direction, matched) in verdict.acl.iter().enumerate() {
                if let Some(matched) = matched {
                    tenant.hits.count(self.id, direction, *matched);
                }
            }
        }
    }

    /// Sends `desc` out of `port` after the tag edit its checks settled on.
    fn deliver_edited(
        &mut self,
        snapshot: &Snapshot,
        port: PortId,
        mut desc: FrameDesc,
        edit: TagEdit,
    ) {
        if edit != TagEdit::Keep && !self.retag(&mut desc, edit) {
            self.stats.drop_copy(port, DropReason::Malformed);
            self.ledger.release(desc);
            return;
        }
        self.send(snapshot, port, desc);
    }

    /// Applies a tag edit to a frame the worker owns.
    fn retag(&self, desc: &mut FrameDesc, edit: TagEdit) -> bool {
        // SAFETY: the worker owns the frame (it is in no ring), so nothing
        // else reads or writes it while it is edited.
        let mut data = unsafe { self.umem.data_mut(desc) };
        let old_len = data.contents().len();
        let Some(new_len) = edit.new_len(old_len) else {
            return false;
        };
        let mut cursor = data.cursor();
        if cursor.buf_len() < new_len.max(old_len) {
            return false;
        }
        // Expose the room the edit needs, edit, then settle on the new length.
        cursor.set_pos(new_len.max(old_len));
        let edited = edit.apply(data.contents_mut(), old_len).is_some();
        data.cursor()
            .set_pos(if edited { new_len } else { old_len });
        edited
    }

    /// Queues `desc` (owned by the worker, ready to leave) on `port`'s socket.
    fn send(&mut self, snapshot: &Snapshot, port: PortId, desc: FrameDesc) {
        let Some(view) = snapshot.port(port) else {
            self.ledger.release(desc);
            return;
        };
        if !view.link_up {
            self.stats.drop_copy(port, DropReason::LinkDown);
            self.ledger.release(desc);
            return;
        }
        if view.tunnel.is_some() {
            // Any worker sends on a tunnel: no handoff (see `dataplane::tunnel`).
            if let Err(desc) = self.tunnel_tx.stage(port, desc) {
                self.stats.drop_copy(port, DropReason::TxRingFull);
                self.ledger.release(desc);
            }
            return;
        }
        let local = self.egress.get(usize::from(port)).copied().flatten();
        if let Some(queue) = local
            .and_then(|slot| self.queues.get_mut(usize::from(slot)))
            .and_then(Option::as_mut)
        {
            if queue.staged.len() < queue.staged.capacity() {
                queue.staged.push(desc);
            } else {
                self.stats.drop_copy(port, DropReason::TxRingFull);
                self.ledger.release(desc);
            }
            return;
        }
        if view.tx_worker == self.id {
            // The port's socket is on its way to this worker (port add in
            // progress): nothing can send on it yet.
            self.stats.drop_copy(port, DropReason::LinkDown);
            self.ledger.release(desc);
            return;
        }
        // Another worker transmits on this port: hand a copy over.
        // SAFETY: the worker owns `desc` (it is in no ring).
        let frame = unsafe { self.umem.data(&desc) };
        let handed = self
            .mesh
            .frames(self.id, view.tx_worker)
            .is_some_and(|ring| ring.push(port, frame.contents()));
        if !handed {
            self.stats.drop_copy(port, DropReason::TxRingFull);
        }
        self.ledger.release(desc);
    }

    /// A new frame of this worker's UMEM with the same bytes as `desc`.
    fn copy_frame(&mut self, desc: &FrameDesc) -> Option<FrameDesc> {
        let mut copy = self.ledger.take()?;
        // SAFETY: both are distinct frames of this UMEM that the worker owns
        // (in no ring), so the shared and the mutable view cannot overlap.
        let written = unsafe {
            let source = self.umem.data(desc);
            let mut target = self.umem.data_mut(&mut copy);
            let mut cursor = target.cursor();
            cursor.set_pos(0);
            std::io::Write::write_all(&mut cursor, source.contents()).is_ok()
        };
        if written {
            Some(copy)
        } else {
            self.ledger.release(copy);
            None
        }
    }

    fn take_handoffs(&mut self, snapshot: &Snapshot) -> usize {
        let mut taken = 0;
        for peer in 0..self.mesh.workers() {
            if peer == self.id {
                continue;
            }
            if !self
                .mesh
                .frames(peer, self.id)
                .is_some_and(|ring| ring.has_ready())
            {
                continue;
            }
            // The ring borrows the mesh while frames go to `self.send`: a
            // reference of its own, taken only when there is something to take.
            let mesh = Arc::clone(&self.mesh);
            let Some(ring) = mesh.frames(peer, self.id) else {
                continue;
            };
            for _ in 0..self.tuning.batch_size {
                let mut target: Option<(PortId, FrameDesc)> = None;
                let mut short_of_frames = None;
                let popped = ring.pop_with(|port, bytes| match self.ledger.take() {
                    Some(mut desc) => {
                        // SAFETY: the worker just took `desc` from its free
                        // list, so nothing else reads or writes that frame.
                        let ok = unsafe {
                            let mut data = self.umem.data_mut(&mut desc);
                            let mut cursor = data.cursor();
                            cursor.set_pos(0);
                            std::io::Write::write_all(&mut cursor, bytes).is_ok()
                        };
                        if ok {
                            target = Some((port, desc));
                        } else {
                            self.ledger.release(desc);
                        }
                    }
                    None => short_of_frames = Some(port),
                });
                if !popped {
                    break;
                }
                taken += 1;
                if let Some((port, desc)) = target {
                    self.send(snapshot, port, desc);
                }
                if let Some(port) = short_of_frames {
                    self.stats.drop_copy(port, DropReason::NoBuffer);
                }
            }
        }
        taken
    }

    fn transmit(&mut self) {
        for slot in 0..self.queues.len() {
            let Some(queue) = self.queues[slot].as_mut() else {
                continue;
            };
            if queue.staged.is_empty() {
                continue;
            }
            let wanted = queue.staged.len();
            let room = queue.xsk.tx.nb_free(wanted as u32) as usize;
            let sending = wanted.min(room);
            // SAFETY: every staged descriptor is a frame of this worker's
            // UMEM that the worker owns and no ring holds.
            let produced = unsafe { queue.xsk.tx.produce(&queue.staged[..sending]) };
            let mut bytes = 0u64;
            for desc in &queue.staged[..produced] {
                bytes += desc.lengths().data() as u64;
                self.ledger.queued_for_tx(slot as u16, desc);
            }
            for desc in &queue.staged[produced..] {
                self.stats.drop_copy(queue.port, DropReason::TxRingFull);
                self.ledger.release(*desc);
            }
            queue.staged.clear();
            if let Some(c) = self.stats.port(queue.port) {
                bump(&c.tx_frames, produced as u64);
                bump(&c.tx_bytes, bytes);
            }
            if produced > 0 && (queue.xsk.tx.needs_wakeup() || !queue.xsk.zero_copy) {
                if let Err(e) = kick_tx(queue.xsk.tx.fd().as_raw_fd(), produced) {
                    // ENETDOWN and the like: the frames wait on the ring
                    // until the link is back.
                    tracing::trace!(worker = self.id, port = queue.port, error = %e, "tx wakeup failed");
                }
            }
        }
    }

    fn collect_completions(&mut self) {
        for slot in 0..self.queues.len() {
            let Some(queue) = self.queues[slot].as_mut() else {
                continue;
            };
            // SAFETY: scratch receives descriptors of frames this worker's
            // UMEM owns, which the kernel has finished sending.
            let done = unsafe { queue.xsk.comp.consume(&mut self.scratch) };
            for desc in &self.scratch[..done] {
                self.ledger.completed(slot as u16, *desc);
            }
        }
    }

    /// The fill level a socket starts at and never decays below.
    fn min_fill(&self) -> usize {
        (2 * self.tuning.batch_size).min(self.tuning.fill_ring as usize)
    }

    /// Keeps each fill ring stocked without emptying the pool. Frames in an
    /// idle socket's fill ring are parked: nothing can take them back until
    /// traffic arrives there. So each socket's target starts small and only
    /// grows while its traffic drains the ring (and decays once a second),
    /// a reserve of free frames stays for flood copies and handoffs, and no
    /// socket's target exceeds an equal share of the rest.
    fn refill(&mut self) {
        let sockets = self
            .queues
            .iter()
            .flatten()
            .filter(|q| q.kind != QueueKind::TxOnly)
            .count();
        if sockets == 0 {
            return;
        }
        let total = self.ledger.total();
        let batch = self.tuning.batch_size;
        let reserve = (total / 8).max(4 * batch).min(total / 2);
        let share = ((total - reserve) / sockets).min(self.tuning.fill_ring as usize);
        let floor = self.min_fill().min(share);
        for slot in 0..self.queues.len() {
            let Some(queue) = self.queues[slot].as_mut() else {
                continue;
            };
            if queue.kind == QueueKind::TxOnly {
                continue;
            }
            let available = self.ledger.free_count().saturating_sub(reserve);
            queue.fill_target = queue.fill_target.clamp(floor, share.max(floor));
            let wanted = queue
                .fill_target
                .saturating_sub(queue.in_fill)
                .min(available)
                .min(self.scratch.len());
            if wanted == 0 || (wanted < batch && queue.in_fill >= batch) {
                continue;
            }
            let room = queue.xsk.fill.nb_free(wanted as u32) as usize;
            let n = self
                .ledger
                .take_for_fill(slot as u16, &mut self.scratch[..wanted.min(room)]);
            if n == 0 {
                continue;
            }
            // SAFETY: free frames of this UMEM, now the socket's; `nb_free`
            // said the ring has room for all, so all-or-nothing `produce` fits.
            let produced = unsafe { queue.xsk.fill.produce(&self.scratch[..n]) };
            if produced == n {
                queue.in_fill += n;
            } else {
                // The ring refused: the frames never left the worker.
                for desc in &self.scratch[..n] {
                    self.ledger.received(slot as u16, desc);
                    self.ledger.release(*desc);
                }
            }
            if queue.xsk.fill.needs_wakeup() {
                let fd = queue.xsk.fd();
                wake_fill(fd);
            }
        }
    }

    fn rebuild_pollfds(&mut self) {
        self.pollfds.clear();
        self.pollfds.push(libc::pollfd {
            fd: self.mesh.wake(self.id).as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for queue in self.queues.iter().flatten() {
            if queue.kind == QueueKind::TxOnly {
                continue;
            }
            self.pollfds.push(libc::pollfd {
                fd: queue.xsk.fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        for endpoint in &self.snapshot.load().tunnel_endpoints {
            if endpoint.rx_worker == self.id {
                self.pollfds.push(libc::pollfd {
                    fd: endpoint.socket.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
    }

    fn sleep(&mut self) {
        // Rebuilt every time: the tunnel endpoints come with the snapshot (a handful of
        // entries, into a vector that keeps its capacity).
        self.rebuild_pollfds();
        self.mesh.wake(self.id).arm();
        // Re-check after arming: a command or handoff that raced the arm
        // must not wait for the timeout.
        if !self.commands.is_empty() || self.handoffs_pending() {
            self.mesh.wake(self.id).disarm();
            return;
        }
        bump(&self.stats.sleeps, 1);
        // SAFETY: pollfds is a live, correctly sized array of pollfd that
        // poll only writes the revents fields of.
        unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                POLL_TIMEOUT_MS,
            )
        };
        self.mesh.wake(self.id).disarm();
        self.tunnel_rx.woke();
    }

    fn handoffs_pending(&self) -> bool {
        (0..self.mesh.workers())
            .filter(|&p| p != self.id)
            .any(|peer| {
                self.mesh
                    .learned(peer, self.id)
                    .is_some_and(|q| !q.is_empty())
                    || self
                        .mesh
                        .frames(peer, self.id)
                        .is_some_and(|r| r.has_ready())
            })
    }
}

fn wake_fill(fd: RawFd) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is a valid pollfd; a zero timeout makes this the
    // documented fill-ring wakeup without blocking.
    unsafe { libc::poll(&mut pfd, 1, 0) };
}
