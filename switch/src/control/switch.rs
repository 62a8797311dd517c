//! The switch as the control plane sees it: ports, static MACs, and the
//! data plane they are pushed to. Every operation checks everything it can
//! before changing anything, and undoes its own steps when the kernel
//! refuses one, so a failed request leaves the running switch as it was.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Value};

use super::protocol::{ErrorCode, Reply, Request};
use crate::config::{Config, PortSpec};
use crate::dataplane::snapshot::{PortView, Snapshot};
use crate::dataplane::stats::{PortTotals, MAX_PORTS};
use crate::dataplane::worker::PollMode;
use crate::dataplane::Dataplane;
use crate::packet::MacAddr;
use crate::pipeline::{DomainId, DropReason, PortId};
use crate::port::afxdp::{self, KernelSocketStats};
use crate::port::iface::{self, IfaceKind};
use crate::port::tap;
use crate::xdp::{SteeringProgram, XdpMode};

/// Every port is in the default domain until tenants arrive.
const DEFAULT_DOMAIN: DomainId = 0;

#[derive(Debug)]
pub struct ControlError {
    pub code: ErrorCode,
    pub message: String,
}

impl ControlError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ControlError {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

type Outcome<T = Value> = Result<T, ControlError>;

fn system(e: impl std::fmt::Display) -> ControlError {
    ControlError::new(ErrorCode::System, e.to_string())
}

struct PortRecord {
    id: PortId,
    spec: PortSpec,
    kind: IfaceKind,
    // Dropped last: detaching the program after the sockets are closed.
    program: SteeringProgram,
    /// (queue id, worker) for every socket of the port.
    queues: Vec<(u32, usize)>,
    /// The sockets' descriptors, owned by the workers. Read for kernel
    /// counters only under the switch lock, which port removal (the only
    /// thing that closes them) also holds, so they stay open while read.
    socket_fds: Vec<std::os::fd::RawFd>,
    zero_copy: bool,
    link_up: bool,
    /// Counter values when the port was added; ids are reused.
    base: PortTotals,
}

pub struct Switch {
    dataplane: Dataplane,
    ports: BTreeMap<String, PortRecord>,
    static_macs: BTreeMap<MacAddr, String>,
    mode: PollMode,
    started: Instant,
}

#[derive(Serialize)]
struct PortRow<'a> {
    name: &'a str,
    kind: IfaceKind,
    link: &'static str,
    xdp_mode: XdpMode,
    zero_copy: bool,
    queues: Vec<QueueRow>,
}

#[derive(Serialize)]
struct QueueRow {
    queue: u32,
    worker: usize,
}

impl Switch {
    pub fn new(dataplane: Dataplane, mode: PollMode) -> Self {
        Switch {
            dataplane,
            ports: BTreeMap::new(),
            static_macs: BTreeMap::new(),
            mode,
            started: Instant::now(),
        }
    }

    /// Applies the ports and static MACs of a config file at startup.
    pub fn apply_config(&mut self, config: &Config) -> Result<(), String> {
        for spec in &config.ports {
            self.port_add(spec.clone())
                .map_err(|e| format!("port {:?}: {e}", spec.name))?;
        }
        for entry in &config.fdb {
            self.fdb_add(&entry.mac.to_string(), &entry.port)
                .map_err(|e| format!("static MAC {}: {e}", entry.mac))?;
        }
        Ok(())
    }

    pub fn handle(&mut self, request: Request) -> Reply {
        let outcome = match request {
            Request::PortAdd(spec) => self.port_add(spec),
            Request::PortDel { name } => self.port_del(&name),
            Request::PortList {} => Ok(self.port_list()),
            Request::FdbShow {} => self.fdb_show(),
            Request::FdbAdd { mac, port } => self.fdb_add(&mac, &port),
            Request::FdbDel { mac } => self.fdb_del(&mac),
            Request::Stats {} => Ok(self.stats()),
            Request::Status {} => self.status(),
        };
        match outcome {
            Ok(data) => Reply::success(data),
            Err(e) => Reply::failure(e.code, e.message),
        }
    }

    fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot {
            ports: vec![None; MAX_PORTS],
            domains: vec![Vec::new()],
        };
        for record in self.ports.values() {
            let tx_worker = record.queues.first().map_or(0, |&(_, worker)| worker);
            snapshot.ports[usize::from(record.id)] = Some(PortView {
                domain: DEFAULT_DOMAIN,
                link_up: record.link_up,
                tx_worker,
            });
            snapshot.domains[usize::from(DEFAULT_DOMAIN)].push(record.id);
        }
        snapshot
    }

    fn publish(&self) {
        self.dataplane.publish(self.snapshot());
    }

    fn free_port_id(&self) -> Option<PortId> {
        (0..MAX_PORTS as PortId).find(|id| !self.ports.values().any(|p| p.id == *id))
    }

    fn port_add(&mut self, spec: PortSpec) -> Outcome {
        let name = spec.name.clone();
        iface::validate_name(&name)
            .map_err(|e| ControlError::new(ErrorCode::InvalidArgument, e.to_string()))?;
        if self.ports.contains_key(&name) {
            return Err(ControlError::new(
                ErrorCode::AlreadyExists,
                format!("port {name} already exists"),
            ));
        }
        if let Some(mac) = spec.host_mac {
            if mac.is_multicast() || mac.is_zero() {
                return Err(ControlError::new(
                    ErrorCode::InvalidArgument,
                    format!("host MAC {mac} is not a unicast MAC"),
                ));
            }
        }
        if spec.tap_owner.is_some() && !spec.create_tap {
            return Err(ControlError::new(
                ErrorCode::InvalidArgument,
                "--tap-owner only goes with --create-tap",
            ));
        }
        let id = self.free_port_id().ok_or_else(|| {
            ControlError::new(
                ErrorCode::InvalidArgument,
                format!("this switch holds at most {MAX_PORTS} ports"),
            )
        })?;
        if spec.create_tap {
            if iface::exists(&name) {
                return Err(ControlError::new(
                    ErrorCode::AlreadyExists,
                    format!("interface {name} already exists; to attach to it, add the port without --create-tap"),
                ));
            }
            tap::create(&name, spec.tap_owner).map_err(system)?;
        }
        match self.attach_port(id, &spec) {
            Ok(record) => {
                self.ports.insert(name.clone(), record);
                self.publish();
                tracing::info!(port = %name, id, "port added");
                Ok(self
                    .port_row(&name)
                    .map(|r| json!(r))
                    .unwrap_or(Value::Null))
            }
            Err(e) => {
                if spec.create_tap {
                    if let Err(undo) = tap::remove(&name) {
                        tracing::warn!(port = %name, error = %undo, "could not remove the tap created for a failed port add");
                    }
                }
                Err(e)
            }
        }
    }

    /// Attaches XDP and opens a socket per queue; on failure everything done
    /// so far is undone before returning.
    fn attach_port(&mut self, id: PortId, spec: &PortSpec) -> Outcome<PortRecord> {
        let name = spec.name.as_str();
        let ifindex = iface::ifindex(name)
            .map_err(|e| ControlError::new(ErrorCode::NotFound, e.to_string()))?;
        let queue_count = iface::rx_queue_count(name).map_err(system)?;
        let mut program =
            SteeringProgram::attach(name, ifindex, spec.xdp_mode, spec.force).map_err(system)?;
        if let Some(mac) = spec.host_mac {
            program.add_host_mac(mac).map_err(system)?;
        }
        for ip in &spec.host_ipv4 {
            program.add_host_ipv4(*ip).map_err(system)?;
        }
        let workers = self.dataplane.worker_count();
        let queues: Vec<(u32, usize)> = (0..queue_count)
            .map(|q| (q, (usize::from(id) + q as usize) % workers))
            .collect();
        let mut record = PortRecord {
            id,
            spec: spec.clone(),
            kind: iface::kind(name),
            program,
            queues: Vec::new(),
            socket_fds: Vec::new(),
            zero_copy: false,
            link_up: iface::link_up(name),
            base: self.dataplane.port_totals(id),
        };
        // Publish the port first so workers know its domain and link by the
        // time its first frame arrives.
        let mut preview = self.snapshot();
        let tx_worker = queues.first().map_or(0, |&(_, w)| w);
        preview.ports[usize::from(id)] = Some(PortView {
            domain: DEFAULT_DOMAIN,
            link_up: record.link_up,
            tx_worker,
        });
        preview.domains[usize::from(DEFAULT_DOMAIN)].push(id);
        self.dataplane.publish(preview);

        let result = (|| -> Outcome<()> {
            for &(queue, worker) in &queues {
                let xsk = self
                    .dataplane
                    .open_queue(worker, name, queue)
                    .map_err(system)?;
                let fd = xsk.fd();
                record.zero_copy |= xsk.zero_copy;
                self.dataplane
                    .add_queue(worker, id, queue, xsk)
                    .map_err(system)?;
                record.queues.push((queue, worker));
                record.socket_fds.push(fd);
                // Only now do frames leave the kernel's path for xsw's.
                record
                    .program
                    .set_socket(queue, &BorrowedRawFd(fd))
                    .map_err(system)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            if let Err(undo) = self.dataplane.remove_port(id) {
                tracing::error!(port = name, error = %undo, "could not undo a failed port add");
            }
            self.publish();
            return Err(e);
        }
        Ok(record)
    }

    fn port_del(&mut self, name: &str) -> Outcome {
        let Some(record) = self.ports.remove(name) else {
            return Err(ControlError::new(
                ErrorCode::NotFound,
                format!("no port named {name}"),
            ));
        };
        // Stop forwarding to it first, then close its sockets, then let the
        // kernel have the interface back.
        self.publish();
        if let Err(e) = self.dataplane.remove_port(record.id) {
            tracing::error!(port = name, error = %e, "workers did not release the port");
        }
        self.static_macs.retain(|_, port| port != name);
        let created_tap = record.spec.create_tap;
        drop(record);
        if created_tap {
            tap::remove(name).map_err(system)?;
        }
        tracing::info!(port = name, "port removed");
        Ok(json!({ "removed": name }))
    }

    fn port_row(&self, name: &str) -> Option<PortRow<'_>> {
        let (name, record) = self.ports.get_key_value(name)?;
        Some(PortRow {
            name,
            kind: record.kind,
            link: if record.link_up { "up" } else { "down" },
            xdp_mode: record.program.mode(),
            zero_copy: record.zero_copy,
            queues: record
                .queues
                .iter()
                .map(|&(queue, worker)| QueueRow { queue, worker })
                .collect(),
        })
    }

    fn port_list(&self) -> Value {
        json!(self
            .ports
            .keys()
            .filter_map(|name| self.port_row(name))
            .collect::<Vec<_>>())
    }

    /// Re-reads every port's link state; republishes when one changed.
    pub fn refresh_links(&mut self) {
        let mut changed = false;
        for (name, record) in self.ports.iter_mut() {
            let up = iface::link_up(name);
            if up != record.link_up {
                tracing::info!(port = %name, link = if up { "up" } else { "down" }, "link changed");
                record.link_up = up;
                changed = true;
            }
        }
        if changed {
            self.publish();
        }
    }

    fn port_name(&self, id: PortId) -> Option<&str> {
        self.ports
            .iter()
            .find(|(_, r)| r.id == id)
            .map(|(n, _)| n.as_str())
    }

    fn parse_mac(text: &str) -> Outcome<MacAddr> {
        let mac: MacAddr = text.parse().map_err(|e: crate::packet::MacParseError| {
            ControlError::new(ErrorCode::InvalidArgument, e.to_string())
        })?;
        if mac.is_multicast() || mac.is_zero() {
            return Err(ControlError::new(
                ErrorCode::InvalidArgument,
                format!("{mac} is not a unicast MAC: static entries are for unicast addresses"),
            ));
        }
        Ok(mac)
    }

    fn fdb_add(&mut self, mac: &str, port: &str) -> Outcome {
        let mac = Self::parse_mac(mac)?;
        let id = self.ports.get(port).map(|r| r.id).ok_or_else(|| {
            ControlError::new(ErrorCode::NotFound, format!("no port named {port}"))
        })?;
        match self
            .dataplane
            .fdb_add_static(DEFAULT_DOMAIN, mac, id)
            .map_err(system)?
        {
            Ok(()) => {
                self.static_macs.insert(mac, port.to_string());
                Ok(json!({ "mac": mac, "port": port, "static": true }))
            }
            Err(reason) => Err(ControlError::new(ErrorCode::System, reason)),
        }
    }

    fn fdb_del(&mut self, mac: &str) -> Outcome {
        let mac: MacAddr = mac.parse().map_err(|e: crate::packet::MacParseError| {
            ControlError::new(ErrorCode::InvalidArgument, e.to_string())
        })?;
        if !self
            .dataplane
            .fdb_remove(DEFAULT_DOMAIN, mac)
            .map_err(system)?
        {
            return Err(ControlError::new(
                ErrorCode::NotFound,
                format!("{mac} is not in the MAC table"),
            ));
        }
        self.static_macs.remove(&mac);
        Ok(json!({ "removed": mac }))
    }

    fn fdb_show(&self) -> Outcome {
        let now_ns = self.dataplane.epoch().elapsed().as_nanos() as u64;
        let rows: Vec<Value> = self
            .dataplane
            .fdb_dump()
            .map_err(system)?
            .into_iter()
            .filter_map(|e| {
                let port = self.port_name(e.port)?;
                Some(json!({
                    "mac": e.mac,
                    "port": port,
                    "static": e.is_static,
                    "age_secs": if e.is_static { 0 } else { now_ns.saturating_sub(e.last_seen_ns) / 1_000_000_000 },
                }))
            })
            .collect();
        Ok(json!(rows))
    }

    fn stats(&self) -> Value {
        let ports: Vec<Value> = self
            .ports
            .iter()
            .map(|(name, record)| {
                let t = self.dataplane.port_totals(record.id).since(&record.base);
                let drops: serde_json::Map<String, Value> = DropReason::ALL
                    .iter()
                    .map(|r| (r.as_str().to_string(), json!(t.drops[r.index()])))
                    .collect();
                let mut kernel = KernelSocketStats::default();
                for fd in &record.socket_fds {
                    if let Some(k) = afxdp::kernel_stats(*fd) {
                        kernel.add(&k);
                    }
                }
                json!({
                    "name": name,
                    "kernel": kernel,
                    "rx_frames": t.rx_frames,
                    "rx_bytes": t.rx_bytes,
                    "tx_frames": t.tx_frames,
                    "tx_bytes": t.tx_bytes,
                    "drops": drops,
                })
            })
            .collect();
        json!({ "ports": ports, "workers": self.dataplane.worker_summaries() })
    }

    fn status(&self) -> Outcome {
        let fdb_entries = self.dataplane.fdb_dump().map_err(system)?.len();
        Ok(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": self.started.elapsed().as_secs(),
            "workers": self.dataplane.worker_count(),
            "dead_workers": self.dataplane.dead_workers(),
            "mode": self.mode,
            "ports": self.ports.len(),
            "fdb_entries": fdb_entries,
        }))
    }

    /// Closes every port (sockets, then XDP programs) before exit.
    pub fn shutdown(&mut self) {
        let names: Vec<String> = self.ports.keys().cloned().collect();
        for name in names {
            if let Some(record) = self.ports.remove(&name) {
                self.publish();
                let _ = self.dataplane.remove_port(record.id);
            }
        }
        self.dataplane.stop();
    }
}

/// A descriptor the worker keeps open; lent to the XSKMAP update only.
struct BorrowedRawFd(std::os::fd::RawFd);

impl std::os::fd::AsRawFd for BorrowedRawFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}
