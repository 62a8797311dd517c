//! The MAC table as operators see it: one table per tenant, learned and
//! static entries.

use std::net::IpAddr;

use serde_json::{json, Value};

use super::switch::{system, ControlError, Outcome, Switch};
use super::tenants::DEFAULT_TENANT;
use crate::packet::{MacAddr, MacParseError};
use crate::pipeline::tenant::PortMode;
use crate::pipeline::TenantId;

fn parse_mac(text: &str) -> Outcome<MacAddr> {
    text.parse()
        .map_err(|e: MacParseError| ControlError::invalid(e.to_string()))
}

impl Switch {
    /// The tenant a static entry on `port` belongs to: the access port's, or
    /// for a trunk the one named (which the trunk must carry).
    fn fdb_tenant(&self, port: &str, tenant: Option<&str>) -> Outcome<TenantId> {
        let record = self.port(port)?;
        match (&record.policy.mode, tenant) {
            (PortMode::Access(tenant_id), None) => Ok(*tenant_id),
            (PortMode::Access(tenant_id), Some(name)) => {
                let id = self.tenant(name)?.id;
                if id == *tenant_id {
                    Ok(id)
                } else {
                    Err(ControlError::invalid(format!(
                        "port {port} is not in tenant {name}"
                    )))
                }
            }
            (PortMode::Trunk(_), None) => Err(ControlError::invalid(format!(
                "{port} is a trunk: say which of its tenants with --tenant"
            ))),
            (PortMode::Trunk(map), Some(name)) => {
                let id = self.tenant(name)?.id;
                map.vid(id).map(|_| id).ok_or_else(|| {
                    ControlError::invalid(format!("trunk {port} does not carry tenant {name}"))
                })
            }
        }
    }

    /// A static entry; on a tunnel port, `remote` says which remote endpoint the MAC is
    /// behind (required there, refused elsewhere).
    pub(super) fn fdb_add(
        &mut self,
        mac: &str,
        port: &str,
        tenant: Option<&str>,
        remote: Option<IpAddr>,
    ) -> Outcome {
        let mac = parse_mac(mac)?;
        crate::config::rules::static_mac_address(mac).map_err(ControlError::invalid)?;
        let tenant_id = self.fdb_tenant(port, tenant)?;
        let id = self.port(port)?.id;
        let remote_index = self.static_remote(port, remote)?;
        match self
            .dataplane
            .fdb_add_static(tenant_id, mac, id, remote_index)
            .map_err(system)?
        {
            Ok(()) => {
                self.static_macs.insert((tenant_id, mac), port.to_string());
                match remote {
                    Some(ip) => self.static_remotes.insert((tenant_id, mac), ip),
                    None => self.static_remotes.remove(&(tenant_id, mac)),
                };
                let tenant = self.tenant_name(tenant_id).unwrap_or(DEFAULT_TENANT);
                Ok(
                    json!({ "mac": mac, "port": port, "tenant": tenant, "static": true, "remote": remote }),
                )
            }
            Err(reason) => Err(ControlError::new(
                super::protocol::ErrorCode::System,
                reason,
            )),
        }
    }

    pub(super) fn fdb_del(&mut self, mac: &str, tenant: Option<&str>) -> Outcome {
        let mac = parse_mac(mac)?;
        let tenant_id = self.tenant(tenant.unwrap_or(DEFAULT_TENANT))?.id;
        if !self.dataplane.fdb_remove(tenant_id, mac).map_err(system)? {
            return Err(ControlError::not_found(format!(
                "{mac} is not in the MAC table"
            )));
        }
        self.static_macs.remove(&(tenant_id, mac));
        self.static_remotes.remove(&(tenant_id, mac));
        Ok(json!({ "removed": mac }))
    }

    pub(super) fn fdb_show(&self, tenant: Option<&str>) -> Outcome {
        let only = tenant
            .map(|name| self.tenant(name).map(|t| t.id))
            .transpose()?;
        let now_ns = self.dataplane.epoch().elapsed().as_nanos() as u64;
        let rows: Vec<Value> = self
            .dataplane
            .fdb_dump()
            .map_err(system)?
            .into_iter()
            .filter(|e| only.is_none_or(|d| d == e.tenant_id))
            .filter_map(|e| {
                let port = self.port_name(e.port)?;
                Some(json!({
                    "mac": e.mac,
                    "port": port,
                    "tenant": self.tenant_name(e.tenant_id)?,
                    "static": e.is_static,
                    "remote": self.remote_address(e.port, e.remote),
                    "age_secs": if e.is_static { 0 } else { now_ns.saturating_sub(e.last_seen_ns) / 1_000_000_000 },
                }))
            })
            .collect();
        Ok(json!(rows))
    }
}
