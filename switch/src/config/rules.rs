//! The rules a port, a tenant or a static MAC must follow, item by item.
//! The config validator applies them to a whole file (with every item of
//! the file as context) and the live control operations apply them to the
//! one item a request changes (with the running switch as context), so a
//! file `xswctl config check` accepts is one xswd applies, and the reverse.
//!
//! Each rule says which field is wrong ([`Invalid::field`], relative to the
//! item) so the validator can point at the file's line.

use crate::config::{PortSpec, StaticFdbSpec, TenantSpec};
use crate::packet::MacAddr;
use crate::pipeline::acl::AclRule;
use crate::pipeline::tenant::VLAN_MAX;

/// The tenant every port without one joins; it cannot be deleted or delegated.
pub const DEFAULT_TENANT: &str = "default";
/// Tenant ids index per-tenant tables in every snapshot: keep them few.
pub const MAX_TENANTS: usize = 4096;

/// One step of the way to a field: a key or an index into an array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Key(&'static str),
    Index(usize),
}

/// A rule an item breaks: where (relative to the item) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: Vec<Step>,
    pub message: String,
}

impl Invalid {
    pub fn at(key: &'static str, message: impl Into<String>) -> Self {
        Invalid {
            field: vec![Step::Key(key)],
            message: message.into(),
        }
    }

    /// The same problem, seen from one level up (`steps` come first).
    pub fn under(mut self, steps: &[Step]) -> Self {
        self.field.splice(0..0, steps.iter().cloned());
        self
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a port's rules need to know about the rest of the switch.
pub struct PortContext<'a> {
    pub tenant_exists: &'a dyn Fn(&str) -> bool,
    /// Workers the data plane runs (queue placement names them).
    pub workers: usize,
}

pub fn vlan_id(vlan: u16) -> Result<(), String> {
    if (1..=VLAN_MAX).contains(&vlan) {
        Ok(())
    } else {
        Err(format!("VLAN ID {vlan} is out of range 1-{VLAN_MAX}"))
    }
}

pub fn tenant_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid tenant name: 1-32 characters from A-Z a-z 0-9 _ . -"
        ))
    }
}

/// What may not be granted: the default tenant (every port without
/// `--tenant` lands there), and uid 0 (root needs no grant).
pub fn grantable(tenant: &str, uids: impl IntoIterator<Item = u32>) -> Result<(), String> {
    if tenant == DEFAULT_TENANT {
        return Err(format!(
            "the {DEFAULT_TENANT} tenant cannot be delegated: every port added without --tenant \
             joins it; create a tenant for the user (`xswctl tenant create NAME`) and grant that"
        ));
    }
    if uids.into_iter().any(|u| u == 0) {
        return Err("uid 0 is root, which may already do everything".into());
    }
    Ok(())
}

/// A MAC that frames are addressed to as one station (host or static MAC).
pub fn station_mac(mac: MacAddr, what: &str) -> Result<(), String> {
    if mac.is_multicast() || mac.is_zero() {
        Err(format!("{what} {mac} is not a unicast MAC"))
    } else {
        Ok(())
    }
}

pub fn queue_workers(chosen: &[usize], workers: usize) -> Result<(), String> {
    match chosen.iter().find(|w| **w >= workers) {
        Some(bad) => Err(format!(
            "--queue-workers names worker {bad}, but there are {workers} (0-{})",
            workers.saturating_sub(1)
        )),
        None => Ok(()),
    }
}

/// Everything about one port that can be checked without the host.
pub fn port(spec: &PortSpec, context: &PortContext<'_>) -> Result<(), Invalid> {
    crate::port::iface::validate_name(&spec.name)
        .map_err(|e| Invalid::at("name", e.to_string()))?;
    if let Some(mac) = spec.host_mac {
        station_mac(mac, "host MAC").map_err(|m| Invalid::at("host_mac", m))?;
    }
    if spec.tap_owner.is_some() && !spec.create_tap {
        return Err(Invalid::at(
            "tap_owner",
            "a tap owner (--tap-owner) only goes with create_tap (--create-tap)",
        ));
    }
    if spec.trunk {
        if spec.tenant.is_some() {
            return Err(Invalid::at(
                "tenant",
                "a trunk carries tenants as VLANs (`xswctl vlan add`), not one --tenant",
            ));
        }
        for (i, v) in spec.vlans.iter().enumerate() {
            let at = |key| Invalid::at(key, "").under(&[Step::Key("vlans"), Step::Index(i)]);
            let with = |key, message: String| Invalid { message, ..at(key) };
            vlan_id(v.vlan).map_err(|m| with("vlan", m))?;
            if spec.vlans[..i].iter().any(|other| other.vlan == v.vlan) {
                return Err(with(
                    "vlan",
                    format!("VLAN {} is mapped twice on {}", v.vlan, spec.name),
                ));
            }
            if let Some(other) = spec.vlans[..i].iter().find(|o| o.tenant == v.tenant) {
                return Err(with(
                    "tenant",
                    format!(
                        "tenant {} already travels on {} as VLAN {}",
                        v.tenant, spec.name, other.vlan
                    ),
                ));
            }
            if !(context.tenant_exists)(&v.tenant) {
                return Err(with("tenant", unknown_tenant(&v.tenant)));
            }
        }
    } else {
        if !spec.vlans.is_empty() {
            return Err(Invalid::at(
                "vlans",
                "VLANs need a trunk port (trunk = true, or --trunk)",
            ));
        }
        let tenant = spec.tenant.as_deref().unwrap_or(DEFAULT_TENANT);
        if !(context.tenant_exists)(tenant) {
            return Err(Invalid::at("tenant", unknown_tenant(tenant)));
        }
    }
    queue_workers(&spec.queue_workers, context.workers)
        .map_err(|m| Invalid::at("queue_workers", m))?;
    if let Some(guard) = &spec.antispoof {
        guard.validate().map_err(|m| Invalid::at("antispoof", m))?;
    }
    if let Some(tunnel) = &spec.tunnel {
        tunnel_port(spec).map_err(|m| Invalid::at("tunnel", m))?;
        tunnel
            .validate()
            .map_err(|e| Invalid::at("tunnel", e.to_string()))?;
    }
    Ok(())
}

/// A tunnel port has no interface: the settings of one do not apply to it.
fn tunnel_port(spec: &PortSpec) -> Result<(), String> {
    let mut refused = Vec::new();
    if spec.trunk {
        refused.push("trunk");
    }
    if spec.create_tap {
        refused.push("create_tap");
    }
    if spec.host_mac.is_some() || !spec.host_ipv4.is_empty() {
        refused.push("host_mac/host_ipv4");
    }
    if spec.hook != crate::config::HookRequest::Auto
        || spec.xdp_mode != crate::xdp::XdpModeRequest::Auto
        || spec.force
    {
        refused.push("hook/xdp_mode/force");
    }
    if !spec.queue_workers.is_empty() {
        refused.push("queue_workers");
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "a tunnel port has no interface: {} do not apply",
            refused.join(", ")
        ))
    }
}

pub fn unknown_tenant(name: &str) -> String {
    format!("no tenant named {name} (see `xswctl tenant list`)")
}

/// A tenant's name, ACL rules and grants.
pub fn tenant(spec: &TenantSpec) -> Result<(), Invalid> {
    tenant_name(&spec.name).map_err(|m| Invalid::at("name", m))?;
    for (key, rules) in [("ingress", &spec.ingress), ("egress", &spec.egress)] {
        acl_rules(rules).map_err(|(i, m)| Invalid::at(key, m).under_index(i))?;
    }
    if !spec.grant_uids.is_empty() || !spec.grant_gids.is_empty() {
        let key = if spec.grant_uids.is_empty() {
            "grant_gids"
        } else {
            "grant_uids"
        };
        grantable(&spec.name, spec.grant_uids.iter().copied()).map_err(|m| Invalid::at(key, m))?;
    }
    Ok(())
}

/// The index and reason of the first rule that does not validate.
fn acl_rules(rules: &[AclRule]) -> Result<(), (usize, String)> {
    for (i, rule) in rules.iter().enumerate() {
        rule.validate().map_err(|e| (i, e.to_string()))?;
    }
    Ok(())
}

impl Invalid {
    /// Appends an array index to the field (the item inside a list).
    fn under_index(mut self, index: usize) -> Self {
        self.field.push(Step::Index(index));
        self
    }
}

/// A static MAC's own rules; the port it names is checked by the caller,
/// which knows the ports (the file's or the running switch's).
pub fn static_mac(entry: &StaticFdbSpec) -> Result<(), Invalid> {
    static_mac_address(entry.mac).map_err(|m| Invalid::at("mac", m))
}

pub fn static_mac_address(mac: MacAddr) -> Result<(), String> {
    station_mac(mac, "static MAC")
        .map_err(|m| format!("{m}: static entries are for unicast addresses"))
}

/// The tenant a static MAC on a port with `spec` belongs to: the access
/// port's, or for a trunk the one named (which the trunk must carry).
pub fn static_mac_tenant<'a>(
    spec: &'a PortSpec,
    tenant: Option<&'a str>,
) -> Result<&'a str, Invalid> {
    let port = &spec.name;
    if spec.trunk {
        let Some(name) = tenant else {
            return Err(Invalid::at(
                "tenant",
                format!("{port} is a trunk: say which of its tenants with --tenant"),
            ));
        };
        if spec.vlans.iter().any(|v| v.tenant == name) {
            Ok(name)
        } else {
            Err(Invalid::at(
                "tenant",
                format!("trunk {port} does not carry tenant {name}"),
            ))
        }
    } else {
        let own = spec.tenant.as_deref().unwrap_or(DEFAULT_TENANT);
        match tenant {
            Some(name) if name != own => Err(Invalid::at(
                "tenant",
                format!("port {port} is not in tenant {name}"),
            )),
            _ => Ok(own),
        }
    }
}
