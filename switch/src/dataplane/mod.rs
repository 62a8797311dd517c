//! The data plane: workers, each pinned to a core, each owning a UMEM and
//! the AF_XDP sockets of its queues. The control plane talks to them only
//! through a published config snapshot and a command channel per worker.

pub mod delivery;
pub mod fastpath;
pub mod handoff;
pub mod ledger;
pub mod snapshot;
pub mod stats;
pub mod trace;
pub mod tunnel;
pub mod wake;
pub mod worker;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam::channel::{bounded, Sender};
use xsk_rs::config::{FrameSize, QueueSize, UmemConfig};
use xsk_rs::Umem;

use crate::config::FastPathSection;
use crate::packet::MacAddr;
use crate::pipeline::stages::AclMatch;
use crate::pipeline::{FdbEntry, PortId, TenantId};
use crate::port::afxdp::{self, AfXdpError, RingSizes, XskSocket};
use crate::port::slow_path::{SlowPathDevice, SlowPathError};
use crate::port::tap::{AnchorTap, TapError};
use crate::xdp::fast::{FastPath, SlowPathDrops, SlowPathHook, FLOW_DROP};
use crate::xdp::XdpError;
use fastpath::{FastShared, Keeper, KeeperThread};
use handoff::Mesh;
use snapshot::Snapshot;
use stats::{PortTotals, WorkerStats};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use worker::{QueueKind, Worker, WorkerCommand, WorkerParts, WorkerTuning};

/// How long the control plane waits for a worker to carry out a command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct DataplaneSettings {
    pub cores: Vec<usize>,
    pub tuning: WorkerTuning,
    pub frame_count: u32,
    pub comp_ring: u32,
    pub rings: RingSizes,
    pub fast_path: FastPathSection,
}

impl DataplaneSettings {
    pub fn from_config(
        d: &crate::config::DataplaneSection,
        u: &crate::config::UmemSection,
        f: &FastPathSection,
    ) -> Self {
        DataplaneSettings {
            fast_path: f.clone(),
            cores: d.workers.clone(),
            tuning: WorkerTuning {
                batch_size: d.batch_size,
                mode: d.mode,
                poll_budget: d.poll_budget,
                fdb_capacity: d.fdb_capacity,
                aging_ns: d.mac_aging_secs.saturating_mul(1_000_000_000),
                mac_limits: (d.mac_limit_per_port, d.mac_limit_per_tenant),
                frame_size: u.frame_size,
                fill_ring: u.fill_ring,
                tx_ring: u.tx_ring,
            },
            frame_count: u.frame_count,
            comp_ring: u.comp_ring,
            rings: RingSizes {
                rx: u.rx_ring,
                tx: u.tx_ring,
            },
        }
    }
}

// Messages that quote their source keep it as `#[source]` too: `error::chain`
// does not print a source twice.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("core {core} does not exist or cannot be used (this machine offers cores {available:?}); fix [dataplane] workers")]
    NoSuchCore { core: usize, available: Vec<usize> },
    #[error("cannot create the UMEM for worker {worker}: {source} (lower [umem] frame_count, or grant xswd CAP_IPC_LOCK)")]
    Umem {
        worker: usize,
        #[source]
        source: xsk_rs::umem::UmemCreateError,
    },
    #[error("bad [umem] setting: {0}")]
    Setting(&'static str),
    #[error("bad [umem] setting: frame_size {size}: {source}")]
    FrameSize {
        size: u32,
        #[source]
        source: xsk_rs::config::FrameSizeError,
    },
    #[error("bad [umem] setting: {ring}: {source}")]
    RingSize {
        ring: &'static str,
        #[source]
        source: xsk_rs::config::QueueSizeError,
    },
    #[error("bad [umem] setting: {0}")]
    UmemConfig(#[source] xsk_rs::config::UmemConfigBuilderError),
    #[error("cannot start worker {worker}: {source}")]
    Spawn {
        worker: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start worker 0: anchor tap: {0}")]
    AnchorTap(#[source] TapError),
    #[error("cannot start worker 0: flow keeper: {0}")]
    Keeper(#[source] std::io::Error),
    #[error(
        "worker {0} did not answer within {COMMAND_TIMEOUT:?}; it may have stopped (see the log)"
    )]
    WorkerGone(usize),
    #[error(transparent)]
    Socket(#[from] AfXdpError),
    #[error("cannot set up the fast path")]
    FastPath(#[source] XdpError),
    #[error("cannot set up the slow-path device")]
    SlowPath(#[source] SlowPathError),
}

struct WorkerHandle {
    core: usize,
    umem: Umem,
    commands: Sender<WorkerCommand>,
    stats: Arc<WorkerStats>,
    thread: Option<JoinHandle<()>>,
    // Keeps the UMEM's own descriptor bound to loopback, away from the ports.
    _anchor: XskSocket,
}

pub struct Dataplane {
    workers: Vec<WorkerHandle>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    mesh: Arc<Mesh>,
    rings: RingSizes,
    epoch: Instant,
    fast_settings: FastPathSection,
    /// The longest frame a worker receives (see `afxdp::longest_frame`).
    longest_worker_frame: u32,
    fast_shared: Arc<FastShared>,
    keeper: Arc<Keeper>,
    // Stopped (joined) in `stop`, before the workers.
    keeper_thread: Option<KeeperThread>,
    // The programs and maps; ports' hooks hold links into it.
    fast: Mutex<FastPath>,
    _slow_path_hook: SlowPathHook,
    // After the workers' sockets on it are closed (the workers stop first).
    _slow_path: SlowPathDevice,
    // Declared last: dropped after the workers' sockets bound to it.
    _anchor_tap: AnchorTap,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct WorkerSummary {
    pub id: usize,
    pub core: usize,
    pub frames: u64,
    pub batches: u64,
    pub sleeps: u64,
    pub umem_frames_free: u64,
    pub frame_violations: u64,
    pub umem_frames_held: u64,
    pub umem_frames_stranded: u64,
}

impl Dataplane {
    pub fn start(settings: &DataplaneSettings) -> Result<Self, DataplaneError> {
        let available: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        for &core in &settings.cores {
            if !available.contains(&core) {
                return Err(DataplaneError::NoSuchCore { core, available });
            }
        }
        let frame_size = FrameSize::new(settings.tuning.frame_size).map_err(|source| {
            DataplaneError::FrameSize {
                size: settings.tuning.frame_size,
                source,
            }
        })?;
        let ring_size = |ring: &'static str, size: u32| {
            QueueSize::new(size).map_err(|source| DataplaneError::RingSize { ring, source })
        };
        let fill = ring_size("fill_ring", settings.tuning.fill_ring)?;
        let comp = ring_size("comp_ring", settings.comp_ring)?;
        let umem_config = UmemConfig::builder()
            .frame_size(frame_size)
            .fill_queue_size(fill)
            .comp_queue_size(comp)
            .build()
            .map_err(DataplaneError::UmemConfig)?;
        let frame_count = NonZeroU32::new(settings.frame_count)
            .ok_or(DataplaneError::Setting("frame_count must be above 0"))?;

        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
        let mesh = Arc::new(
            Mesh::new(settings.cores.len(), 1024, 4096)
                .map_err(|source| DataplaneError::Spawn { worker: 0, source })?,
        );
        let anchor_tap =
            AnchorTap::create(settings.cores.len()).map_err(DataplaneError::AnchorTap)?;
        let mut fast =
            FastPath::load(settings.fast_path.flows).map_err(DataplaneError::FastPath)?;
        let slow_path = SlowPathDevice::create(settings.cores.len() as u32)
            .map_err(DataplaneError::SlowPath)?;
        let slow_path_hook = fast
            .attach_slow_path(slow_path.receiver())
            .map_err(DataplaneError::FastPath)?;
        fast.set_slow_path(slow_path.sender_ifindex())
            .map_err(DataplaneError::FastPath)?;
        fast.set_slow_path_longest(crate::port::afxdp::longest_frame(
            settings.tuning.frame_size,
        ))
        .map_err(DataplaneError::FastPath)?;
        let epoch = Instant::now();
        let fast_shared = Arc::new(FastShared {
            table: fast.table(),
            monotonic_at_epoch: fastpath::monotonic_ns()
                .saturating_sub(epoch.elapsed().as_nanos() as u64),
            idle_timeout_ns: AtomicU64::new(
                settings
                    .fast_path
                    .idle_timeout_secs
                    .saturating_mul(1_000_000_000),
            ),
            refused_full: AtomicU64::new(0),
        });
        let mut internal_queues = Vec::with_capacity(settings.cores.len());
        let mut workers = Vec::with_capacity(settings.cores.len());
        for (id, &core) in settings.cores.iter().enumerate() {
            let (umem, frames) = Umem::new(umem_config, frame_count, false)
                .map_err(|source| DataplaneError::Umem { worker: id, source })?;
            let anchor = afxdp::open_queue(&umem, anchor_tap.name(), id as u32, settings.rings)?;
            // This worker's queue of the slow-path device: frames of tc-hooked
            // ports that missed the fast path.
            let internal =
                afxdp::open_queue(&umem, slow_path.receiver(), id as u32, settings.rings)?;
            fast.set_socket(id as u32, &internal.fd())
                .map_err(DataplaneError::FastPath)?;
            internal_queues.push(internal);
            let (tx, rx) = bounded(64);
            let stats = Arc::new(WorkerStats::default());
            let parts = WorkerParts {
                id,
                umem: umem.clone(),
                frames,
                tuning: settings.tuning.clone(),
                snapshot: snapshot.clone(),
                stats: stats.clone(),
                commands: rx,
                mesh: mesh.clone(),
                epoch,
                fast: Some(fast_shared.clone()),
            };
            let thread = std::thread::Builder::new()
                .name(format!("xsw-worker-{id}"))
                .spawn(move || {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                        tracing::warn!(worker = id, core, "could not pin worker to its core");
                    }
                    Worker::new(parts).run();
                })
                .map_err(|source| DataplaneError::Spawn { worker: id, source })?;
            workers.push(WorkerHandle {
                core,
                umem,
                commands: tx,
                stats,
                thread: Some(thread),
                _anchor: anchor,
            });
        }
        let keeper = Arc::new(Keeper::new(
            fast_shared.clone(),
            snapshot.clone(),
            workers.len(),
            workers.iter().map(|w| w.commands.clone()).collect(),
            mesh.clone(),
        ));
        let keeper_thread = KeeperThread::spawn(keeper.clone()).map_err(DataplaneError::Keeper)?;
        let dataplane = Dataplane {
            workers,
            snapshot,
            mesh,
            rings: settings.rings,
            epoch,
            fast_settings: settings.fast_path.clone(),
            longest_worker_frame: crate::port::afxdp::longest_frame(settings.tuning.frame_size),
            fast_shared,
            keeper,
            keeper_thread: Some(keeper_thread),
            fast: Mutex::new(fast),
            _slow_path_hook: slow_path_hook,
            _slow_path: slow_path,
            _anchor_tap: anchor_tap,
        };
        for (id, internal) in internal_queues.into_iter().enumerate() {
            dataplane.add_queue(id, PortId::MAX, id as u32, QueueKind::Internal, internal)?;
        }
        Ok(dataplane)
    }

    /// The fast path's settings as configured.
    pub fn fast_path_settings(&self) -> &FastPathSection {
        &self.fast_settings
    }

    /// Turns the fast path on or off for the whole switch (takes effect with
    /// the next snapshot the control plane publishes).
    pub fn set_fast_path_enabled(&mut self, enabled: bool) {
        self.fast_settings.enabled = enabled;
    }

    pub fn set_flow_idle_timeout(&mut self, secs: u64) {
        self.fast_settings.idle_timeout_secs = secs;
        self.fast_shared
            .idle_timeout_ns
            .store(secs.saturating_mul(1_000_000_000), Relaxed);
    }

    /// Runs `f` on the fast path's programs and maps (port hooks, port flags).
    pub fn with_fast_path<T>(&self, f: impl FnOnce(&mut FastPath) -> T) -> T {
        let mut fast = self
            .fast
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut fast)
    }

    /// Rows each tenant's ACL hit counters need: one per worker, one for the
    /// flow keeper.
    pub fn acl_rows(&self) -> usize {
        self.workers.len() + 1
    }

    /// Makes every flow entry stale now; the keeper removes them.
    pub fn invalidate_flows(&self) {
        self.fast_shared.table.invalidate();
    }

    /// Removes every flow entry now, counting what they switched (frames,
    /// ACL hits) into the keeper's counters under the current snapshot.
    pub fn retire_flows(&self) {
        self.fast_shared.table.invalidate();
        self.keeper.sweep(|_, _| false);
    }

    /// ACL hits of `tenant_id`'s live flow entries in `direction`: per rule
    /// (`rules` of them) and for the default. Entries count their hits into
    /// the tenant's counters only when they are removed.
    pub fn live_acl_hits(
        &self,
        tenant_id: TenantId,
        direction: usize,
        rules: usize,
    ) -> (Vec<u64>, u64) {
        let mut hits = vec![0; rules];
        let mut default = 0;
        for (_, entry) in self.fast_shared.table.read_all() {
            if entry.tenant_id != tenant_id {
                continue;
            }
            match fastpath::acl_match(&entry, direction) {
                Some(AclMatch::Rule(i)) => {
                    if let Some(hit) = hits.get_mut(i) {
                        *hit += entry.packets;
                    }
                }
                Some(AclMatch::Default) => default += entry.packets,
                None => {}
            }
        }
        (hits, default)
    }

    /// Per port id: frames the fast path missed and could not pass on.
    pub fn slow_path_drops(&self) -> Vec<SlowPathDrops> {
        self.with_fast_path(|fast| fast.slow_path_drops())
    }

    /// Every flow entry, for `xswctl flows`.
    pub fn flows(&self) -> Vec<fastpath::FlowRow> {
        let generation = self.fast_shared.table.generation();
        let now = fastpath::monotonic_ns();
        self.fast_shared
            .table
            .read_all()
            .iter()
            .map(|(key, entry)| fastpath::row(key, entry, generation, now))
            .collect()
    }

    /// The flow table's fill and limits, for `xswctl stats`.
    pub fn flow_table_summary(&self) -> serde_json::Value {
        let entries = self.fast_shared.table.read_all().len();
        let drops = self.slow_path_drops();
        serde_json::json!({
            "enabled": self.fast_settings.enabled,
            "entries": entries,
            "capacity": self.fast_shared.table.capacity(),
            "refused_table_full": self.fast_shared.refused_full.load(Relaxed),
            "idle_timeout_secs": self.fast_settings.idle_timeout_secs,
            "slow_path_unavailable": drops.iter().map(|d| d.unavailable).sum::<u64>(),
            "slow_path_too_big": drops.iter().map(|d| d.too_big).sum::<u64>(),
        })
    }

    /// The clock origin of every worker's MAC timestamps.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// The longest frame (Ethernet header on) the workers receive: longer
    /// ones cross only the fast path.
    pub fn longest_worker_frame(&self) -> u32 {
        self.longest_worker_frame
    }

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Publishes `snapshot`. Flow entries decided by the old one are made
    /// stale before it goes (so none switches a frame the new one would not)
    /// and again after (an entry a worker decided meanwhile by the old one);
    /// the stale ones are removed, their frames counted, before this returns.
    pub fn publish(&self, snapshot: Snapshot) {
        self.fast_shared.table.invalidate();
        self.keeper.sweep(|_, _| false);
        self.snapshot.store(Arc::new(snapshot));
        self.fast_shared.table.invalidate();
    }

    fn command(&self, worker: usize, command: WorkerCommand) -> Result<(), DataplaneError> {
        let handle = self
            .workers
            .get(worker)
            .ok_or(DataplaneError::WorkerGone(worker))?;
        handle
            .commands
            .send_timeout(command, COMMAND_TIMEOUT)
            .map_err(|_| DataplaneError::WorkerGone(worker))?;
        self.mesh.wake(worker).notify();
        Ok(())
    }

    fn ask<T>(
        &self,
        worker: usize,
        make: impl FnOnce(Sender<T>) -> WorkerCommand,
    ) -> Result<T, DataplaneError> {
        let (tx, rx) = bounded(1);
        self.command(worker, make(tx))?;
        rx.recv_timeout(COMMAND_TIMEOUT)
            .map_err(|_| DataplaneError::WorkerGone(worker))
    }

    /// Opens a socket for (`iface`, `queue`) on `worker`'s UMEM. The caller
    /// puts it in the XSKMAP, then hands it over with `add_queue`.
    pub fn open_queue(
        &self,
        worker: usize,
        iface: &str,
        queue: u32,
    ) -> Result<XskSocket, DataplaneError> {
        let handle = self
            .workers
            .get(worker)
            .ok_or(DataplaneError::WorkerGone(worker))?;
        Ok(afxdp::open_queue(&handle.umem, iface, queue, self.rings)?)
    }

    pub fn add_queue(
        &self,
        worker: usize,
        port: PortId,
        queue_id: u32,
        kind: QueueKind,
        xsk: XskSocket,
    ) -> Result<(), DataplaneError> {
        self.ask(worker, |done| WorkerCommand::AddQueue {
            port,
            queue_id,
            kind,
            xsk: Box::new(xsk),
            done,
        })
    }

    /// Closes every socket of `port` and forgets its MACs, on every worker,
    /// and removes every flow entry from or to it.
    pub fn remove_port(&self, port: PortId) -> Result<(), DataplaneError> {
        for worker in 0..self.workers.len() {
            self.ask(worker, |done| WorkerCommand::RemovePort { port, done })?;
        }
        self.invalidate_flows();
        self.keeper
            .sweep(|key, entry| key.port == port || entry.egress_port == port);
        Ok(())
    }

    pub fn flush_port_macs(&self, port: PortId) -> Result<(), DataplaneError> {
        for worker in 0..self.workers.len() {
            self.ask(worker, |done| WorkerCommand::FdbFlushPort { port, done })?;
        }
        self.invalidate_flows();
        Ok(())
    }

    pub fn fdb_add_static(
        &self,
        tenant_id: TenantId,
        mac: MacAddr,
        port: PortId,
        remote: u8,
    ) -> Result<Result<(), String>, DataplaneError> {
        let mut outcome = Ok(());
        for worker in 0..self.workers.len() {
            let result = self.ask(worker, |done| WorkerCommand::FdbAddStatic {
                tenant_id,
                mac,
                port,
                remote,
                done,
            })?;
            if result.is_err() {
                outcome = result;
            }
        }
        self.invalidate_flows();
        Ok(outcome)
    }

    pub fn fdb_remove(&self, tenant_id: TenantId, mac: MacAddr) -> Result<bool, DataplaneError> {
        let mut removed = false;
        for worker in 0..self.workers.len() {
            removed |= self.ask(worker, |done| WorkerCommand::FdbRemove {
                tenant_id,
                mac,
                done,
            })?;
        }
        self.invalidate_flows();
        Ok(removed)
    }

    /// The union of every worker's table; where they differ, the most
    /// recently seen entry wins.
    pub fn fdb_dump(&self) -> Result<Vec<FdbEntry>, DataplaneError> {
        let mut merged: std::collections::BTreeMap<(TenantId, MacAddr), FdbEntry> =
            Default::default();
        for worker in 0..self.workers.len() {
            for entry in self.ask(worker, |reply| WorkerCommand::FdbDump { reply })? {
                let key = (entry.tenant_id, entry.mac);
                match merged.get(&key) {
                    Some(existing) if existing.last_seen_ns >= entry.last_seen_ns => {}
                    _ => {
                        merged.insert(key, entry);
                    }
                }
            }
        }
        Ok(merged.into_values().collect())
    }

    /// What `worker` would do with `frame` entering on `ingress`, by its own
    /// MAC table and storm buckets, changing neither (see `dataplane::trace`).
    pub fn trace(
        &self,
        worker: usize,
        ingress: PortId,
        frame: Vec<u8>,
    ) -> Result<trace::TraceRun, DataplaneError> {
        self.ask(worker, |reply| WorkerCommand::Trace {
            ingress,
            frame,
            reply,
        })
        .map(|run| *run)
    }

    pub fn set_mac_limits(
        &self,
        per_port: Option<u32>,
        per_tenant: Option<u32>,
    ) -> Result<(), DataplaneError> {
        for worker in 0..self.workers.len() {
            self.command(
                worker,
                WorkerCommand::SetMacLimits {
                    per_port,
                    per_tenant,
                },
            )?;
        }
        Ok(())
    }

    pub fn set_polling(
        &self,
        batch_size: usize,
        mode: worker::PollMode,
        poll_budget: u32,
    ) -> Result<(), DataplaneError> {
        for worker in 0..self.workers.len() {
            self.command(
                worker,
                WorkerCommand::SetPolling {
                    batch_size,
                    mode,
                    poll_budget,
                },
            )?;
        }
        Ok(())
    }

    pub fn set_aging(&self, aging_ns: u64) -> Result<(), DataplaneError> {
        for worker in 0..self.workers.len() {
            self.command(worker, WorkerCommand::SetAging { aging_ns })?;
        }
        // Entries carry their destination's age limit under the old aging.
        self.invalidate_flows();
        Ok(())
    }

    /// A port's counters: the workers', the keeper's (entries removed), and
    /// what the live flow entries switched so far.
    pub fn port_totals(&self, port: PortId) -> PortTotals {
        self.ports_totals(&[port]).pop().unwrap_or_default()
    }

    /// [`Self::port_totals`] for several ports, reading the flow table once.
    pub fn ports_totals(&self, ports: &[PortId]) -> Vec<PortTotals> {
        let mut all: Vec<PortTotals> = ports
            .iter()
            .map(|&port| {
                let mut totals = PortTotals::default();
                for c in self
                    .workers
                    .iter()
                    .filter_map(|w| w.stats.port(port))
                    .chain(self.keeper.stats.port(port))
                {
                    totals.add(c);
                }
                totals
            })
            .collect();
        // Port id -> place in `ports`, so the table is read once, not per port.
        let places: std::collections::HashMap<PortId, usize> =
            ports.iter().enumerate().map(|(i, &p)| (p, i)).collect();
        let index = |port: PortId| places.get(&port).copied();
        for (key, entry) in self.fast_shared.table.read_all() {
            if let Some(i) = index(key.port) {
                let t = &mut all[i];
                t.rx_frames += entry.packets;
                t.rx_bytes += entry.bytes;
                t.fast_rx_frames += entry.packets;
                match fastpath::dropped_for(&entry) {
                    Some(reason) => t.drops[reason.index()] += entry.packets,
                    None => t.switched += entry.packets,
                }
            }
            if let Some(i) = index(entry.egress_port).filter(|_| entry.action != FLOW_DROP) {
                let t = &mut all[i];
                t.tx_frames += entry.packets;
                t.tx_bytes += entry.bytes;
                t.fast_tx_frames += entry.packets;
            }
        }
        all
    }

    pub fn worker_summaries(&self) -> Vec<WorkerSummary> {
        use std::sync::atomic::Ordering::Relaxed;
        self.workers
            .iter()
            .enumerate()
            .map(|(id, w)| WorkerSummary {
                id,
                core: w.core,
                frames: w.stats.frames.load(Relaxed),
                batches: w.stats.batches.load(Relaxed),
                sleeps: w.stats.sleeps.load(Relaxed),
                umem_frames_free: w.stats.frames_free.load(Relaxed),
                frame_violations: w.stats.frame_violations.load(Relaxed),
                umem_frames_held: w.stats.frames_held.load(Relaxed),
                umem_frames_stranded: w.stats.frames_stranded.load(Relaxed),
            })
            .collect()
    }

    /// Each worker's loop turns so far; a worker whose count stops moving
    /// is stuck (an idle worker still turns at least every poll timeout).
    pub fn heartbeats(&self) -> Vec<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        self.workers
            .iter()
            .map(|w| w.stats.turns.load(Relaxed))
            .collect()
    }

    /// A worker whose thread ended (it should not): the control plane
    /// reports it, and a watchdog can act on it.
    pub fn dead_workers(&self) -> Vec<usize> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.thread.as_ref().is_none_or(|t| t.is_finished()))
            .map(|(id, _)| id)
            .collect()
    }

    pub fn stop(&mut self) {
        drop(self.keeper_thread.take());
        for worker in 0..self.workers.len() {
            let _ = self.command(worker, WorkerCommand::Stop);
        }
        for w in &mut self.workers {
            if let Some(thread) = w.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.stop();
    }
}
