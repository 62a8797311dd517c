//! Port operations: add, remove, list, move between tenants, trunk VLANs,
//! anti-spoofing, link state.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use super::protocol::ErrorCode;
use super::switch::{system, Attachment, ControlError, Outcome, PortRecord, Switch};
use super::tenants::DEFAULT_TENANT;
use crate::config::{rules, HookRequest, PortSpec, VlanSpec};
use crate::dataplane::snapshot::PortView;
use crate::dataplane::worker::QueueKind;
use crate::packet::MacAddr;
use crate::pipeline::acl::parse_prefix;
use crate::pipeline::antispoof::PortGuard;
use crate::pipeline::decision::MAX_PORTS;
use crate::pipeline::guard::{Trust, Trusted};
use crate::pipeline::stages::PortPolicy;
use crate::pipeline::storm::StormLimits;
use crate::pipeline::tenant::{PortMode, TrunkMap};
use crate::pipeline::{PortId, TenantId};
use crate::port::iface::{self, IfaceKind};
use crate::port::tap;
use crate::xdp::fast::{KeyWidth, PortConf, PortHook, MAX_PORT_ID};
use crate::xdp::{SteeringProgram, XdpMode};

impl PortRecord {
    /// The tenants whose broadcast domain this port is in.
    pub(super) fn tenant_ids(&self) -> Vec<TenantId> {
        match &self.policy.mode {
            PortMode::Access(tenant_id) => vec![*tenant_id],
            PortMode::Trunk(map) => map.tenant_ids().collect(),
        }
    }
}

#[derive(Serialize)]
struct PortRow<'a> {
    name: &'a str,
    kind: IfaceKind,
    link: &'static str,
    hook: &'static str,
    /// The flow keys' width when the fast path serves this port's frames.
    fast_path: Option<KeyWidth>,
    xdp_mode: Option<XdpMode>,
    zero_copy: bool,
    queues: Vec<QueueRow>,
    tenant: Option<&'a str>,
    trunk: bool,
    vlans: &'a [VlanSpec],
    antispoof: Option<&'a PortGuard>,
    /// What the port may send past the RA and DHCP guards.
    trust: &'a [Trusted],
    /// The storm-control limits in force (its own, or the default).
    storm_control: StormLimits,
    /// Set when the port's MTU allows frames longer than the workers
    /// receive: what happens to them.
    #[serde(skip_serializing_if = "Option::is_none")]
    size_limit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tunnel: Option<&'a crate::port::tunnel::TunnelSpec>,
}

#[derive(Serialize)]
struct QueueRow {
    queue: u32,
    worker: usize,
}

/// A descriptor the worker keeps open; lent to the XSKMAP update only.
struct BorrowedRawFd(std::os::fd::RawFd);

impl std::os::fd::AsRawFd for BorrowedRawFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

fn validate_vlan(vlan: u16) -> Outcome<()> {
    rules::vlan_id(vlan).map_err(ControlError::invalid)
}

/// Hands memory freed by a removed port (its program, maps and buffers:
/// megabytes) back to the system. The allocator keeps freed memory for
/// reuse, fragmented among what stays; under port churn that kept RSS far
/// above its idle figure. Port removal is rare, and a trim costs a walk of
/// the heap (about a millisecond).
fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator's own
    // arenas; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Switch {
    /// What workers apply to a port with `spec`; fails on an unknown tenant
    /// or a bad guard, before anything changes.
    pub(super) fn policy_for(&self, spec: &PortSpec) -> Outcome<PortPolicy> {
        // The rules a config file's ports follow, with this switch's tenants.
        let tenant_exists = |name: &str| self.tenants.contains_key(name);
        let context = rules::PortContext {
            tenant_exists: &tenant_exists,
            workers: self.dataplane.worker_count(),
        };
        rules::port(spec, &context).map_err(|e| ControlError::invalid(e.message))?;
        let mode = if spec.trunk {
            let mut pairs = Vec::with_capacity(spec.vlans.len());
            for v in &spec.vlans {
                pairs.push((v.vlan, self.tenant(&v.tenant)?.id));
            }
            PortMode::Trunk(TrunkMap::new(&pairs))
        } else {
            PortMode::Access(
                self.tenant(spec.tenant.as_deref().unwrap_or(DEFAULT_TENANT))?
                    .id,
            )
        };
        Ok(PortPolicy {
            mode,
            guard: spec.antispoof.clone(),
            trust: Trust::of(&spec.trust),
            storm: self.storm_default.overridden_by(&spec.storm_control),
        })
    }

    fn free_port_id(&self) -> Option<PortId> {
        (0..MAX_PORTS as PortId).find(|id| !self.ports.values().any(|p| p.id == *id))
    }

    pub(super) fn port_add(&mut self, spec: PortSpec) -> Outcome {
        let name = spec.name.clone();
        iface::validate_name(&name).map_err(|e| ControlError::invalid(e.to_string()))?;
        if self.ports.contains_key(&name) || self.missing.contains_key(&name) {
            return Err(ControlError::new(
                ErrorCode::AlreadyExists,
                format!("port {name} already exists"),
            ));
        }
        let policy = Arc::new(self.policy_for(&spec)?);
        self.check_tunnel(&spec)?;
        let id = self.free_port_id().ok_or_else(|| {
            ControlError::invalid(format!("this switch holds at most {MAX_PORTS} ports"))
        })?;
        // After a restart, the persistent tap xsw made earlier is still there
        // (a VM may hold it): take it back rather than refuse.
        let adopting = spec.create_tap
            && self.restoring
            && iface::exists(&name)
            && iface::kind(&name) == IfaceKind::Tap;
        if spec.create_tap && !adopting {
            if iface::exists(&name) {
                return Err(ControlError::new(
                    ErrorCode::AlreadyExists,
                    format!("interface {name} already exists; to attach to it, add the port without --create-tap"),
                ));
            }
            tap::create(&name, spec.tap_owner).map_err(system)?;
        }
        match self.attach_port(id, &spec, policy) {
            Ok(record) => {
                self.ports.insert(name.clone(), record);
                self.publish();
                tracing::info!(port = %name, id, "port added");
                if let Some(limit) = self
                    .ports
                    .get(&name)
                    .and_then(|r| self.size_limit(&name, r))
                {
                    tracing::warn!(port = %name, "{limit}");
                }
                Ok(self
                    .port_row(&name)
                    .map(|r| json!(r))
                    .unwrap_or(Value::Null))
            }
            Err(e) => {
                if spec.create_tap && !adopting {
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
    fn attach_port(
        &mut self,
        id: PortId,
        spec: &PortSpec,
        policy: Arc<PortPolicy>,
    ) -> Outcome<PortRecord> {
        if let Some(tunnel) = &spec.tunnel {
            return self.attach_tunnel(id, spec, tunnel, policy);
        }
        let name = spec.name.as_str();
        let ifindex = iface::ifindex(name).map_err(|e| ControlError::not_found(e.to_string()))?;
        let kind = iface::kind(name);
        let tc = match spec.hook {
            HookRequest::Tc => true,
            HookRequest::Xdp => false,
            HookRequest::Auto => matches!(kind, IfaceKind::Veth | IfaceKind::Tap),
        };
        if tc && usize::from(id) > usize::from(MAX_PORT_ID) {
            return Err(ControlError::invalid(format!(
                "a tc-hooked port needs an id up to {MAX_PORT_ID}; add it with --hook xdp"
            )));
        }
        let attachment = if tc {
            let hook = self
                .dataplane
                .with_fast_path(|fast| -> Result<PortHook, crate::xdp::XdpError> {
                    let hook = fast.attach_port(name, ifindex, spec.force)?;
                    if let Some(mac) = spec.host_mac {
                        fast.add_host_mac(ifindex, mac)?;
                    }
                    for ip in &spec.host_ipv4 {
                        fast.add_host_ipv4(ifindex, *ip)?;
                    }
                    Ok(hook)
                })
                .map_err(|e| system(crate::error::chain(&e)))?;
            Attachment::Tc(hook)
        } else {
            let mut program = SteeringProgram::attach(name, ifindex, spec.xdp_mode, spec.force)
                .map_err(system)?;
            program
                .set_longest_frame(self.dataplane.longest_worker_frame())
                .map_err(system)?;
            if let Some(mac) = spec.host_mac {
                program.add_host_mac(mac).map_err(system)?;
            }
            for ip in &spec.host_ipv4 {
                program.add_host_ipv4(*ip).map_err(system)?;
            }
            Attachment::Xdp(program)
        };
        // A tc-hooked port's frames come in on the slow-path device; it needs
        // one socket, to send on.
        let queue_count = if tc {
            1
        } else {
            iface::rx_queue_count(name).map_err(system)?
        };
        let queue_kind = if tc {
            QueueKind::TxOnly
        } else {
            QueueKind::Port
        };
        let workers = self.dataplane.worker_count();
        let queues: Vec<(u32, usize)> = (0..queue_count)
            .map(|q| {
                let worker = match spec.queue_workers.as_slice() {
                    [] => (usize::from(id) + q as usize) % workers,
                    chosen => chosen[q as usize % chosen.len()],
                };
                (q, worker)
            })
            .collect();
        let mut record = PortRecord {
            id,
            spec: spec.clone(),
            kind,
            ifindex,
            attachment,
            queues: Vec::new(),
            socket_fds: Vec::new(),
            zero_copy: false,
            link_up: iface::link_up(name),
            peer_elsewhere: iface::peer_elsewhere(kind, ifindex),
            base: self.dataplane.port_totals(id),
            policy,
        };
        // Publish the port first so workers know its tenant and link by the
        // time its first frame arrives.
        let mut preview = self.snapshot();
        let tx_worker = queues.first().map_or(0, |&(_, w)| w);
        preview.ports[usize::from(id)] = Some(PortView {
            policy: record.policy.clone(),
            link_up: record.link_up,
            tx_worker,
            ifindex,
            // No flow entries until the port is fully in.
            fast: None,
            into_peer: record.peer_elsewhere,
            tunnel: None,
        });
        for tenant_id in record.tenant_ids() {
            if let Some(members) = preview.tenant_members.get_mut(usize::from(tenant_id)) {
                members.push(id);
            }
        }
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
                    .add_queue(worker, id, queue, queue_kind, xsk)
                    .map_err(system)?;
                record.queues.push((queue, worker));
                record.socket_fds.push(fd);
                // Only now do frames leave the kernel's path for xsw's.
                match &mut record.attachment {
                    Attachment::Xdp(program) => program
                        .set_socket(queue, &BorrowedRawFd(fd))
                        .map_err(system)?,
                    Attachment::Tc(_) => {
                        let conf = PortConf {
                            port: id,
                            flags: 0,
                            pad: 0,
                        };
                        self.dataplane
                            .with_fast_path(|fast| fast.set_port(ifindex, conf))
                            .map_err(|e| system(crate::error::chain(&e)))?;
                    }
                    // Attached by `attach_tunnel`, which opens no queues.
                    Attachment::Tunnel(_) => {}
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.forget_tc_port(&record);
            if let Err(undo) = self.dataplane.remove_port(id) {
                tracing::error!(port = name, error = %undo, "could not undo a failed port add");
            }
            self.publish();
            return Err(e);
        }
        Ok(record)
    }

    /// Takes a tc-hooked port out of the fast path's tables: its frames go
    /// to the kernel's stack again (until the hook itself is dropped).
    fn forget_tc_port(&self, record: &PortRecord) {
        if let Attachment::Tc(_) = record.attachment {
            if let Err(e) = self
                .dataplane
                .with_fast_path(|fast| fast.remove_port(record.ifindex))
            {
                tracing::warn!(port = record.id, error = %crate::error::chain(&e), "could not remove the port from the fast path's tables");
            }
        }
    }

    pub(super) fn port_del(&mut self, name: &str) -> Outcome {
        if let Some(reply) = self.missing_port_del(name) {
            return Ok(reply);
        }
        let Some(spec) = self.detach_port(name) else {
            return Err(ControlError::not_found(format!("no port named {name}")));
        };
        if spec.create_tap {
            tap::remove(name).map_err(system)?;
        }
        tracing::info!(port = name, "port removed");
        Ok(json!({ "removed": name }))
    }

    /// Takes a port out of the switch (its static MACs too) and gives the
    /// interface back to the kernel; a tap xsw created stays. Returns the
    /// port's spec, or None if there is no such port.
    pub(super) fn detach_port(&mut self, name: &str) -> Option<PortSpec> {
        let record = self.ports.remove(name)?;
        // Stop forwarding to it first, then close its sockets, then let the
        // kernel have the interface back.
        self.forget_tc_port(&record);
        self.publish();
        if let Err(e) = self.dataplane.remove_port(record.id) {
            tracing::error!(port = name, error = %e, "workers did not release the port");
        }
        self.static_macs.retain(|_, port| port != name);
        let spec = record.spec.clone();
        drop(record);
        return_freed_memory();
        Some(spec)
    }

    fn port_row(&self, name: &str) -> Option<PortRow<'_>> {
        let (name, record) = self.ports.get_key_value(name)?;
        Some(PortRow {
            name,
            kind: record.kind,
            link: if record.link_up { "up" } else { "down" },
            hook: record.attachment.hook_name(),
            fast_path: self.fast_width(record),
            xdp_mode: match &record.attachment {
                Attachment::Xdp(program) => Some(program.mode()),
                Attachment::Tc(_) | Attachment::Tunnel(_) => None,
            },
            zero_copy: record.zero_copy,
            queues: record
                .queues
                .iter()
                .map(|&(queue, worker)| QueueRow { queue, worker })
                .collect(),
            tenant: match record.policy.mode {
                PortMode::Access(_) => {
                    Some(record.spec.tenant.as_deref().unwrap_or(DEFAULT_TENANT))
                }
                PortMode::Trunk(_) => None,
            },
            trunk: record.spec.trunk,
            vlans: &record.spec.vlans,
            antispoof: record.spec.antispoof.as_ref(),
            trust: &record.spec.trust,
            storm_control: record.policy.storm,
            tunnel: record.spec.tunnel.as_ref(),
            size_limit: self.size_limit(name, record),
        })
    }

    /// What the switch does with this port's longest frames when its MTU
    /// (plus the Ethernet header, and a tag on a trunk) exceeds what the
    /// workers receive; None when every frame fits.
    fn size_limit(&self, name: &str, record: &PortRecord) -> Option<String> {
        let mtu = iface::mtu(name)?;
        let tag = if record.spec.trunk { 4 } else { 0 };
        let longest = mtu + 14 + tag;
        let worker = self.dataplane.longest_worker_frame();
        // A tc port's frames reach the workers through the slow-path device.
        let carried = match record.attachment {
            Attachment::Tc(_) => worker.min(crate::port::slow_path::MTU + 14),
            Attachment::Xdp(_) => worker,
            // No interface, no MTU of its own: the underlay's is counted as tunnel_too_big.
            Attachment::Tunnel(_) => return None,
        };
        if longest <= carried {
            return None;
        }
        Some(match record.attachment {
            Attachment::Tc(_) => format!(
                "MTU {mtu}: frames over {carried} bytes cross only the fast path; one that \
                 goes to the workers (a flood, the first of a flow, fast path off) is dropped \
                 and counted as slow_path_drops too_big"
            ),
            Attachment::Xdp(_) | Attachment::Tunnel(_) => format!(
                "MTU {mtu}: the workers receive at most {carried} bytes; longer frames are \
                 dropped and counted as slow_path_drops too_big"
            ),
        })
    }

    pub(super) fn port_list(&self) -> Value {
        let mut rows: Vec<Value> = self
            .ports
            .keys()
            .filter_map(|name| self.port_row(name))
            .map(|row| json!(row))
            .chain(self.missing_rows())
            .collect();
        rows.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        json!(rows)
    }

    /// Replaces a port's spec (tenant, VLANs, guard) after validating it;
    /// `forget_macs` drops what was learned on the port (its tenants changed).
    pub(super) fn update_port(&mut self, name: &str, spec: PortSpec, forget_macs: bool) -> Outcome {
        let policy = Arc::new(self.policy_for(&spec)?);
        let id = self.port(name)?.id;
        if let Some(record) = self.ports.get_mut(name) {
            record.spec = spec;
            record.policy = policy;
        }
        self.publish();
        if forget_macs {
            self.dataplane.flush_port_macs(id).map_err(system)?;
            self.static_macs.retain(|_, port| port != name);
        }
        Ok(self.port_row(name).map(|r| json!(r)).unwrap_or(Value::Null))
    }

    /// Swaps a port's tenant, VLANs and guard for those of `spec` (a reload).
    pub(super) fn replace_port_policy(&mut self, name: &str, spec: PortSpec) -> Outcome {
        let old = &self.port(name)?.spec;
        let tenants_changed = old.tenant != spec.tenant || old.vlans != spec.vlans;
        self.update_port(name, spec, tenants_changed)
    }

    /// Closes a port's sockets and XDP program and attaches it again with
    /// `spec` (a tap xsw created is kept and adopted).
    pub(super) fn reattach_port(&mut self, name: &str, spec: PortSpec) -> Outcome {
        // A spec the port rules refuse would leave the port removed and not added back.
        self.policy_for(&spec)?;
        let Some(record) = self.ports.remove(name) else {
            return Err(ControlError::not_found(format!("no port named {name}")));
        };
        self.publish();
        if let Err(e) = self.dataplane.remove_port(record.id) {
            tracing::error!(port = name, error = %e, "workers did not release the port");
        }
        drop(record);
        let restoring = std::mem::replace(&mut self.restoring, true);
        let result = self.port_add(spec);
        self.restoring = restoring;
        result
    }

    pub(super) fn port_set_queue_workers(
        &mut self,
        name: &str,
        queue_workers: Vec<usize>,
    ) -> Outcome {
        let mut spec = self.port(name)?.spec.clone();
        rules::queue_workers(&queue_workers, self.dataplane.worker_count())
            .map_err(ControlError::invalid)?;
        spec.queue_workers = queue_workers;
        self.reattach_port(name, spec)
    }

    pub(super) fn port_set_tenant(&mut self, name: &str, tenant: &str) -> Outcome {
        let record = self.port(name)?;
        if record.spec.trunk {
            return Err(ControlError::invalid(format!(
                "{name} is a trunk: map tenants to it with `xswctl vlan add {name} VID TENANT`"
            )));
        }
        let mut spec = record.spec.clone();
        spec.tenant = (tenant != DEFAULT_TENANT).then(|| tenant.to_string());
        self.tenant(tenant)?;
        self.update_port(name, spec, true)
    }

    /// Lets the fast path switch frames entering `name`, or sends them all
    /// through the workers (flow entries of the port go at once).
    pub(super) fn port_fast_path(&mut self, name: &str, enabled: bool) -> Outcome {
        let mut spec = self.port(name)?.spec.clone();
        spec.fast_path = enabled;
        self.update_port(name, spec, false)
    }

    /// The fast path's flow entries and its table's fill.
    pub(super) fn flow_list(&self) -> Value {
        let names: std::collections::HashMap<_, _> = self
            .ports
            .values()
            .map(|r| (r.id, r.spec.name.as_str()))
            .collect();
        let flows: Vec<Value> = self
            .dataplane
            .flows()
            .into_iter()
            .map(|row| {
                let mut value = json!(row);
                value["in"] = json!(names.get(&row.in_port));
                value["out"] = json!(names.get(&row.out_port));
                value
            })
            .collect();
        json!({
            "flows": flows,
            "table": self.dataplane.flow_table_summary(),
        })
    }

    pub(super) fn vlan_add(&mut self, port: &str, vlan: u16, tenant: &str) -> Outcome {
        validate_vlan(vlan)?;
        let record = self.port(port)?;
        if !record.spec.trunk {
            return Err(ControlError::invalid(format!(
                "{port} is not a trunk (add it with --trunk to carry VLANs)"
            )));
        }
        if let Some(existing) = record.spec.vlans.iter().find(|v| v.vlan == vlan) {
            return Err(ControlError::new(
                ErrorCode::AlreadyExists,
                format!(
                    "VLAN {vlan} on {port} already carries tenant {}",
                    existing.tenant
                ),
            ));
        }
        if let Some(existing) = record.spec.vlans.iter().find(|v| v.tenant == tenant) {
            return Err(ControlError::new(
                ErrorCode::AlreadyExists,
                format!(
                    "tenant {tenant} already travels on {port} as VLAN {}",
                    existing.vlan
                ),
            ));
        }
        let mut spec = record.spec.clone();
        spec.vlans.push(VlanSpec {
            vlan,
            tenant: tenant.to_string(),
        });
        self.update_port(port, spec, false)
    }

    pub(super) fn vlan_del(&mut self, port: &str, vlan: u16) -> Outcome {
        validate_vlan(vlan)?;
        let record = self.port(port)?;
        if !record.spec.vlans.iter().any(|v| v.vlan == vlan) {
            return Err(ControlError::not_found(format!(
                "{port} has no VLAN {vlan}"
            )));
        }
        let mut spec = record.spec.clone();
        spec.vlans.retain(|v| v.vlan != vlan);
        // MACs learned on the trunk in that tenant must not outlive the map.
        self.update_port(port, spec, true)
    }

    pub(super) fn antispoof_set(
        &mut self,
        port: &str,
        macs: &[String],
        ips: &[String],
        restrict_to_port: bool,
    ) -> Outcome {
        let mut guard = PortGuard {
            restrict_to_port,
            ..PortGuard::default()
        };
        for mac in macs {
            guard.macs.push(
                mac.parse::<MacAddr>()
                    .map_err(|e| ControlError::invalid(e.to_string()))?,
            );
        }
        for ip in ips {
            match parse_prefix(ip).map_err(|e| ControlError::invalid(e.to_string()))? {
                ipnet::IpNet::V4(net) => guard.ipv4.push(net),
                ipnet::IpNet::V6(net) => guard.ipv6.push(net),
            }
        }
        let mut spec = self.port(port)?.spec.clone();
        spec.antispoof = Some(guard);
        self.update_port(port, spec, false)
    }

    pub(super) fn antispoof_clear(&mut self, port: &str) -> Outcome {
        let mut spec = self.port(port)?.spec.clone();
        spec.antispoof = None;
        self.update_port(port, spec, false)
    }

    /// Re-reads every port's link state, and where a veth's peer is (moving
    /// the peer takes the link down); republishes when one changed.
    /// Ports whose interface vanished or appeared are detached or attached
    /// first (see `missing`).
    pub fn refresh_links(&mut self) {
        self.follow_interfaces();
        let mut changed = false;
        for (name, record) in self.ports.iter_mut() {
            if record.kind == IfaceKind::Tunnel {
                // No interface: a tunnel's link is its underlay's, which the host routes.
                continue;
            }
            let up = iface::link_up(name);
            if up != record.link_up {
                tracing::info!(port = %name, link = if up { "up" } else { "down" }, "link changed");
                record.link_up = up;
                changed = true;
            }
            let elsewhere = iface::peer_elsewhere(record.kind, record.ifindex);
            if elsewhere != record.peer_elsewhere {
                record.peer_elsewhere = elsewhere;
                changed = true;
            }
        }
        if changed {
            self.publish();
        }
    }
}
