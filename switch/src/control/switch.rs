//! The switch as the control plane sees it: ports, tenants, static MACs, and
//! the data plane they are pushed to. Every operation checks everything it
//! can before changing anything, and undoes its own steps when the kernel
//! refuses one, so a failed request leaves the running switch as it was.
//!
//! The operations live beside this file by subject: `ports`, `tenants`
//! (with their ACLs), `fdb` and `report` (stats and status).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::protocol::{ErrorCode, Reply, Request};
use crate::config::{Config, DataplaneSection, UmemSection};
use crate::dataplane::snapshot::{PortView, Snapshot, TenantView};
use crate::dataplane::stats::PortTotals;
use crate::dataplane::Dataplane;
use crate::packet::MacAddr;
use crate::pipeline::decision::MAX_PORTS;
use crate::pipeline::stages::PortPolicy;
use crate::pipeline::storm::StormLimits;
use crate::pipeline::{PortId, TenantId};
use crate::port::iface::IfaceKind;
use crate::xdp::fast::{KeyWidth, PortConf, PortHook, PORT_FAST, PORT_L3};
use crate::xdp::SteeringProgram;

use super::tenants::TenantRecord;
pub use super::tenants::DEFAULT_TENANT;
use super::tuning::Tuning;

#[derive(Debug)]
pub struct ControlError {
    pub code: ErrorCode,
    pub message: String,
}

impl ControlError {
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ControlError {
            code,
            message: message.into(),
        }
    }

    pub(super) fn invalid(message: impl Into<String>) -> Self {
        ControlError::new(ErrorCode::InvalidArgument, message)
    }

    pub(super) fn not_found(message: impl Into<String>) -> Self {
        ControlError::new(ErrorCode::NotFound, message)
    }
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub(super) type Outcome<T = Value> = Result<T, ControlError>;

/// A config item the host refused at startup (after the file validated):
/// which item (`port[2]`) and why; everything applied before was undone.
#[derive(Debug)]
pub struct ApplyError {
    pub field: Vec<crate::config::rules::Step>,
    pub message: String,
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            crate::config::field_name(&self.field),
            self.message
        )
    }
}

pub(super) fn system(e: impl std::fmt::Display) -> ControlError {
    ControlError::new(ErrorCode::System, e.to_string())
}

pub(super) struct PortRecord {
    pub id: PortId,
    pub spec: crate::config::PortSpec,
    pub kind: IfaceKind,
    pub ifindex: u32,
    // Dropped after the sockets are closed: detaching the program last.
    pub attachment: Attachment,
    /// (queue id, worker) for every socket of the port.
    pub queues: Vec<(u32, usize)>,
    /// The sockets' descriptors, owned by the workers. Read for kernel
    /// counters only under the switch lock, which port removal (the only
    /// thing that closes them) also holds, so they stay open while read.
    pub socket_fds: Vec<std::os::fd::RawFd>,
    pub zero_copy: bool,
    pub link_up: bool,
    /// A veth whose peer is in another namespace (`iface::peer_elsewhere`),
    /// read with the link state.
    pub peer_elsewhere: bool,
    /// Counter values when the port was added; ids are reused.
    pub base: PortTotals,
    /// What workers apply to this port's frames; rebuilt when it changes.
    pub policy: Arc<PortPolicy>,
}

/// How xsw takes a port's frames.
pub(super) enum Attachment {
    /// The per-port XDP program steers them into the workers' sockets.
    Xdp(SteeringProgram),
    /// The fast path's tc program: switched in the kernel, or sent to the
    /// workers through the slow-path device. Held only to keep it attached.
    Tc(#[allow(dead_code)] PortHook),
    /// A tunnel port's underlay sockets (see `control::tunnels`).
    Tunnel(super::tunnels::TunnelSockets),
}

impl Attachment {
    pub(super) fn hook_name(&self) -> &'static str {
        match self {
            Attachment::Xdp(_) => "xdp",
            Attachment::Tc(_) => "tc",
            Attachment::Tunnel(_) => "vxlan",
        }
    }
}

pub struct Switch {
    pub(super) dataplane: Dataplane,
    pub(super) ports: BTreeMap<String, PortRecord>,
    pub(super) tenants: BTreeMap<String, TenantRecord>,
    /// (tenant id, MAC) → port name.
    pub(super) static_macs: BTreeMap<(TenantId, MacAddr), String>,
    /// Of those on tunnel ports: the remote endpoint each MAC is behind.
    pub(super) static_remotes: BTreeMap<(TenantId, MacAddr), std::net::IpAddr>,
    /// The [dataplane] settings in force (live tuning changes some).
    pub(super) settings: DataplaneSection,
    pub(super) umem: UmemSection,
    pub(super) started: Instant,
    /// Tenants delegated to unprivileged users and groups.
    pub(super) grants: super::access::Grants,
    /// Where changes are saved; None when xswd runs without a config file.
    pub(super) persistence: Option<super::persist::Persistence>,
    /// Configured ports whose interface does not exist (see `missing`).
    pub(super) missing: BTreeMap<String, super::missing::MissingPort>,
    /// True while the config file is applied at startup or on reload:
    /// taps created by an earlier xswd are adopted instead of refused.
    pub(super) restoring: bool,
    /// Storm-control limits of ports that do not set their own.
    pub(super) storm_default: StormLimits,
    /// The config's [metrics] section, kept so that saving preserves it.
    pub(super) metrics: crate::config::MetricsSection,
}

impl Switch {
    pub fn new(dataplane: Dataplane, settings: DataplaneSection, umem: UmemSection) -> Self {
        let mut switch = Switch {
            dataplane,
            ports: BTreeMap::new(),
            tenants: BTreeMap::new(),
            static_macs: BTreeMap::new(),
            static_remotes: BTreeMap::new(),
            settings,
            umem,
            started: Instant::now(),
            grants: Default::default(),
            persistence: None,
            missing: BTreeMap::new(),
            restoring: false,
            storm_default: StormLimits::default(),
            metrics: Default::default(),
        };
        let default = TenantRecord::new(0, switch.dataplane.acl_rows());
        switch.tenants.insert(DEFAULT_TENANT.to_string(), default);
        switch.publish();
        switch
    }

    /// Applies the tenants, ports and static MACs of a config file at
    /// startup (the file was validated as a whole before). If the host still
    /// refuses a step, everything done so far is undone, the taps created
    /// included, and the error names the item.
    pub fn apply_config(&mut self, config: &Config) -> Result<(), ApplyError> {
        self.restoring = true;
        let mut created_taps = Vec::new();
        let result = self.apply_config_inner(config, &mut created_taps);
        self.restoring = false;
        if result.is_err() {
            let names: Vec<String> = self.ports.keys().cloned().collect();
            for name in names {
                self.detach_port(&name);
            }
            self.missing.clear();
            for name in created_taps {
                if let Err(e) = crate::port::tap::remove(&name) {
                    tracing::warn!(port = %name, error = %e, "could not remove a tap created for a refused config");
                }
            }
        }
        result
    }

    fn apply_config_inner(
        &mut self,
        config: &Config,
        created_taps: &mut Vec<String>,
    ) -> Result<(), ApplyError> {
        use crate::config::rules::Step;
        self.storm_default = config.storm_control;
        self.metrics = config.metrics.clone();
        let refused =
            |section: &'static str, index: usize, what: String, e: ControlError| ApplyError {
                field: vec![Step::Key(section), Step::Index(index)],
                message: format!("{what}: {e}"),
            };
        for (i, spec) in config.tenants.iter().enumerate() {
            self.apply_tenant_spec(spec)
                .map_err(|e| refused("tenant", i, format!("tenant {:?}", spec.name), e))?;
        }
        for (i, spec) in config.ports.iter().enumerate() {
            let creates_tap = spec.create_tap && !crate::port::iface::exists(&spec.name);
            self.port_restore(spec.clone())
                .map_err(|e| refused("port", i, format!("port {:?}", spec.name), e))?;
            if creates_tap {
                created_taps.push(spec.name.clone());
            }
        }
        for (i, entry) in config.fdb.iter().enumerate() {
            self.static_mac_restore(entry)
                .map_err(|e| refused("fdb", i, format!("static MAC {}", entry.mac), e))?;
        }
        Ok(())
    }

    pub fn handle(&mut self, request: Request) -> Reply {
        // A change that could not be saved is not made: the room for the new file is
        // taken first, so a read-only or full config directory refuses the change here.
        let room = if request.changes_config() {
            match self.take_save_room() {
                Ok(room) => room,
                Err(reason) => return Reply::failure(ErrorCode::System, reason),
            }
        } else {
            None
        };
        let outcome = match request {
            Request::PortAdd(spec) => self.port_add(spec),
            Request::PortDel { name } => self.port_del(&name),
            Request::PortList {} => Ok(self.port_list()),
            Request::PortSet { name, tenant } => self.port_set_tenant(&name, &tenant),
            Request::PortQueues {
                name,
                queue_workers,
            } => self.port_set_queue_workers(&name, queue_workers),
            Request::VlanAdd { port, vlan, tenant } => self.vlan_add(&port, vlan, &tenant),
            Request::VlanDel { port, vlan } => self.vlan_del(&port, vlan),
            Request::AntispoofSet {
                port,
                macs,
                ips,
                restrict_to_port,
            } => self.antispoof_set(&port, &macs, &ips, restrict_to_port),
            Request::AntispoofClear { port } => self.antispoof_clear(&port),
            Request::PortTrust { name, trust } => self.port_trust(&name, trust),
            Request::StormSet {
                port,
                limits,
                inherit,
            } => self.storm_set(port.as_deref(), limits, inherit),
            Request::StormShow {} => Ok(self.storm_show()),
            Request::TenantCreate { name } => self.tenant_create(&name),
            Request::TenantDelete { name } => self.tenant_delete(&name),
            Request::TenantList {} => Ok(self.tenant_list()),
            Request::TenantShow { name } => self.tenant_show(&name),
            Request::TenantGrant { name, uid, gid } => self.tenant_grant(&name, uid, gid),
            Request::TenantRevoke { name, uid, gid } => self.tenant_revoke(&name, uid, gid),
            Request::AclAdd(args) => self.acl_add(&args),
            Request::AclDel {
                tenant,
                direction,
                position,
            } => self.acl_del(&tenant, &direction, position),
            Request::AclMove {
                tenant,
                direction,
                from,
                to,
            } => self.acl_move(&tenant, &direction, from, to),
            Request::AclPolicy {
                tenant,
                direction,
                action,
            } => self.acl_policy(&tenant, &direction, &action),
            Request::AclList { tenant } => self.acl_list(&tenant),
            Request::FdbShow { tenant } => self.fdb_show(tenant.as_deref()),
            Request::FdbAdd {
                mac,
                port,
                tenant,
                remote,
            } => self.fdb_add(&mac, &port, tenant.as_deref(), remote),
            Request::FdbDel { mac, tenant } => self.fdb_del(&mac, tenant.as_deref()),
            Request::Stats {} => Ok(self.stats()),
            Request::Status {} => self.status(),
            Request::Tune(args) => self.tune(Tuning::from_args(args, &self.umem)),
            Request::FlowList {} => Ok(self.flow_list()),
            Request::PortFastPath { name, enabled } => self.port_fast_path(&name, enabled),
            Request::Trace(args) => self.trace(&args),
            Request::ConfigShow {} => Ok(serde_json::json!({ "toml": self.running_config_toml() })),
            Request::ConfigReload {} => self
                .reload()
                .map(|report| serde_json::json!(report))
                .map_err(ControlError::invalid),
        };
        match outcome {
            Ok(mut data) => {
                if let Some(room) = room {
                    if let Err(warning) = self.save_into(room) {
                        if let Some(object) = data.as_object_mut() {
                            object.insert("warning".into(), warning.into());
                        }
                    }
                }
                Reply::success(data)
            }
            Err(e) => {
                if let Some(room) = room {
                    room.release();
                }
                Reply::failure(e.code, e.message)
            }
        }
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        let tenant_slots = self
            .tenants
            .values()
            .map(|t| usize::from(t.id) + 1)
            .max()
            .unwrap_or(1);
        let mut snapshot = Snapshot {
            ports: vec![None; MAX_PORTS],
            tenant_members: vec![Vec::new(); tenant_slots],
            tenants: vec![None; tenant_slots],
            tunnel_endpoints: self.tunnel_endpoints(),
        };
        for tenant in self.tenants.values() {
            snapshot.tenants[usize::from(tenant.id)] = Some(TenantView {
                policy: tenant.policy.clone(),
                hits: tenant.hits.clone(),
            });
        }
        for record in self.ports.values() {
            let tx_worker = record.queues.first().map_or(0, |&(_, worker)| worker);
            snapshot.ports[usize::from(record.id)] = Some(PortView {
                policy: record.policy.clone(),
                link_up: record.link_up,
                tx_worker,
                ifindex: record.ifindex,
                fast: self.fast_width(record),
                into_peer: record.peer_elsewhere,
                tunnel: self.tunnel_view(record),
            });
            for tenant_id in record.tenant_ids() {
                if let Some(members) = snapshot.tenant_members.get_mut(usize::from(tenant_id)) {
                    members.push(record.id);
                }
            }
        }
        snapshot
    }

    /// Whether frames entering `record` may be switched by flow entries, and
    /// how wide their keys must be: L2 unless a decision for them can read L3
    /// fields (an address guard on any port of its tenants, or tenant ACLs).
    pub(super) fn fast_width(&self, record: &PortRecord) -> Option<KeyWidth> {
        if !self.dataplane.fast_path_settings().enabled
            || !record.spec.fast_path
            || !matches!(record.attachment, Attachment::Tc(_))
        {
            return None;
        }
        let tenant_ids = record.tenant_ids();
        let acls = self.tenants.values().any(|t| {
            tenant_ids.contains(&t.id)
                && !(t.policy.ingress.allows_everything() && t.policy.egress.allows_everything())
        });
        let guards = self.ports.values().any(|p| {
            p.policy.guard.is_some() && p.tenant_ids().iter().any(|d| tenant_ids.contains(d))
        });
        Some(if acls || guards {
            KeyWidth::L3
        } else {
            KeyWidth::L2
        })
    }

    pub(super) fn publish(&self) {
        let snapshot = self.snapshot();
        // The program's view of each tc-hooked port: which keys to build.
        self.dataplane.with_fast_path(|fast| {
            for record in self.ports.values() {
                if !matches!(record.attachment, Attachment::Tc(_)) {
                    continue;
                }
                let width = snapshot.port(record.id).and_then(|v| v.fast);
                let flags = match width {
                    None => 0,
                    Some(KeyWidth::L2) => PORT_FAST,
                    Some(KeyWidth::L3) => PORT_FAST | PORT_L3,
                };
                let conf = PortConf {
                    port: record.id,
                    flags,
                    pad: 0,
                };
                if let Err(e) = fast.set_port(record.ifindex, conf) {
                    tracing::error!(port = record.id, error = %crate::error::chain(&e), "cannot update the fast path's port table");
                }
            }
        });
        self.dataplane.publish(snapshot);
    }

    pub(super) fn port(&self, name: &str) -> Outcome<&PortRecord> {
        self.ports
            .get(name)
            .ok_or_else(|| ControlError::not_found(format!("no port named {name}")))
    }

    pub(super) fn port_name(&self, id: PortId) -> Option<&str> {
        self.ports
            .iter()
            .find(|(_, r)| r.id == id)
            .map(|(n, _)| n.as_str())
    }

    pub(super) fn tenant(&self, name: &str) -> Outcome<&TenantRecord> {
        self.tenants.get(name).ok_or_else(|| {
            ControlError::not_found(format!("no tenant named {name} (see `xswctl tenant list`)"))
        })
    }

    pub(super) fn tenant_name(&self, id: TenantId) -> Option<&str> {
        self.tenants
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(n, _)| n.as_str())
    }

    /// True when every worker is alive and has turned its loop since the
    /// previous call (`last` keeps the counts between calls): what the
    /// systemd watchdog is fed on.
    pub fn workers_progressing(&self, last: &mut Vec<u64>) -> bool {
        let now = self.dataplane.heartbeats();
        let moving = last.len() != now.len() || now.iter().zip(last.iter()).all(|(n, l)| n > l);
        *last = now;
        moving && self.dataplane.dead_workers().is_empty()
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
