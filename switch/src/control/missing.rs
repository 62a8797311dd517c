//! Ports whose interface does not exist (yet): a VM not started, or stopped.
//! The config keeps them, `port list` shows them as `missing`, and they are
//! attached when the interface appears (the link monitor calls
//! [`Switch::follow_interfaces`] on every rtnetlink link notification). A
//! port whose interface disappears while running goes back to missing and
//! is re-attached when it comes back, as libvirt re-plugs a restarted VM.
//!
//! Only the config file (startup, reload) and a vanished interface make a
//! port missing: `xswctl port add` of an interface that does not exist is
//! still refused, since it is most likely a typing error.

use serde_json::{json, Value};

use super::switch::{ControlError, Outcome, Switch};
use super::tenants::DEFAULT_TENANT;
use crate::config::{PortSpec, StaticFdbSpec};
use crate::port::iface;

/// A configured port without its interface, and the static MACs that wait
/// for it.
pub(super) struct MissingPort {
    pub spec: PortSpec,
    pub static_macs: Vec<StaticFdbSpec>,
}

impl Switch {
    /// Adds a port of the config file: attached when its interface exists
    /// (or xsw creates it, a tap), kept as missing otherwise.
    pub(super) fn port_restore(&mut self, spec: PortSpec) -> Outcome<()> {
        // A tunnel has no interface to wait for.
        if spec.create_tap || spec.tunnel.is_some() || iface::exists(&spec.name) {
            return self.port_add(spec).map(drop);
        }
        if self.ports.contains_key(&spec.name) || self.missing.contains_key(&spec.name) {
            return Err(ControlError::invalid(format!(
                "port {} already exists",
                spec.name
            )));
        }
        // The same rules as an attached port, so a fixed file is not needed
        // the day the interface appears.
        self.policy_for(&spec)?;
        tracing::warn!(port = %spec.name, "interface does not exist: the port is kept as missing and attached when it appears");
        self.missing.insert(
            spec.name.clone(),
            MissingPort {
                spec,
                static_macs: Vec::new(),
            },
        );
        Ok(())
    }

    /// Adds a static MAC of the config file; one on a missing port waits
    /// with it.
    pub(super) fn static_mac_restore(&mut self, entry: &StaticFdbSpec) -> Outcome<()> {
        if let Some(missing) = self.missing.get_mut(&entry.port) {
            if !missing.static_macs.contains(entry) {
                missing.static_macs.push(entry.clone());
            }
            return Ok(());
        }
        self.fdb_add(
            &entry.mac.to_string(),
            &entry.port,
            entry.tenant.as_deref(),
            entry.remote,
        )
        .map(drop)
    }

    /// Forgets a missing port (`port del`, or a reload without it).
    pub(super) fn missing_port_del(&mut self, name: &str) -> Option<Value> {
        self.missing.remove(name)?;
        tracing::info!(port = name, "missing port removed");
        Some(json!({ "removed": name }))
    }

    /// Whether a missing port is in tenant `name` (directly or on a trunk).
    pub(super) fn missing_port_in_tenant(&self, name: &str) -> Option<&str> {
        self.missing.values().find_map(|m| {
            let spec = &m.spec;
            let member = spec.tenant.as_deref().unwrap_or(DEFAULT_TENANT) == name && !spec.trunk
                || spec.vlans.iter().any(|v| v.tenant == name);
            member.then_some(spec.name.as_str())
        })
    }

    /// `port list` rows of the missing ports.
    pub(super) fn missing_rows(&self) -> Vec<Value> {
        self.missing
            .values()
            .map(|m| {
                let spec = &m.spec;
                json!({
                    "name": spec.name,
                    "kind": null,
                    "link": "missing",
                    "hook": null,
                    "fast_path": null,
                    "xdp_mode": null,
                    "zero_copy": false,
                    "queues": [],
                    "tenant": (!spec.trunk).then(|| spec.tenant.as_deref().unwrap_or(DEFAULT_TENANT)),
                    "trunk": spec.trunk,
                    "vlans": spec.vlans,
                    "antispoof": spec.antispoof,
                })
            })
            .collect()
    }

    /// Detaches ports whose interface vanished (they become missing) and
    /// attaches missing ports whose interface appeared.
    pub(super) fn follow_interfaces(&mut self) {
        let vanished: Vec<String> = self
            .ports
            .iter()
            // A tunnel port has no interface: nothing can vanish.
            .filter(|(name, record)| {
                record.spec.tunnel.is_none() && iface::ifindex(name).ok() != Some(record.ifindex)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in vanished {
            self.park_vanished(&name);
        }
        let appeared: Vec<String> = self
            .missing
            .keys()
            .filter(|name| iface::exists(name))
            .cloned()
            .collect();
        for name in appeared {
            let Some(missing) = self.missing.remove(&name) else {
                continue;
            };
            let restoring = std::mem::replace(&mut self.restoring, true);
            let added = self.port_add(missing.spec.clone());
            self.restoring = restoring;
            match added {
                Ok(_) => {
                    tracing::info!(port = %name, "interface appeared: port attached");
                    for entry in &missing.static_macs {
                        if let Err(e) = self.static_mac_restore(entry) {
                            tracing::error!(port = %name, mac = %entry.mac, "cannot restore a static MAC: {e}");
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(port = %name, "interface appeared but the port cannot be attached: {e}");
                    self.missing.insert(name, missing);
                }
            }
        }
    }

    /// Takes a port whose interface is gone out of the data plane and keeps
    /// it, with its static MACs, as missing.
    fn park_vanished(&mut self, name: &str) {
        let static_macs: Vec<StaticFdbSpec> = self
            .static_macs
            .iter()
            .filter(|(_, port)| port.as_str() == name)
            .map(|((tenant_id, mac), port)| StaticFdbSpec {
                mac: *mac,
                port: port.clone(),
                tenant: self
                    .tenant_name(*tenant_id)
                    .filter(|t| *t != DEFAULT_TENANT)
                    .map(str::to_string),
                remote: self.static_remotes.get(&(*tenant_id, *mac)).copied(),
            })
            .collect();
        let Some(spec) = self.detach_port(name) else {
            return;
        };
        tracing::warn!(
            port = name,
            "interface disappeared: the port is kept as missing"
        );
        self.missing
            .insert(name.to_string(), MissingPort { spec, static_macs });
    }
}
