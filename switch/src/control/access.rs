//! Who may do what on the control socket.
//!
//! Root (uid 0) may do everything. Root can grant a tenant to an
//! unprivileged user or group (`xswctl tenant grant T --uid U | --gid G`),
//! who may then manage that tenant only: add and remove taps they own in it,
//! edit its ACLs, read its ports, counters and MAC table. Everything else,
//! such as other tenants, NICs, trunks, VLANs, anti-spoofing (root's even on
//! the delegate's own ports), tenants themselves and tuning, is refused with
//! `permission denied: ...` and logged. A peer with no grant at all is refused
//! everything, `status` included.
//!
//! Every client is identified by the kernel (SO_PEERCRED, read by the
//! server when it accepts the connection), never by what it claims. The
//! decision is a pure function ([`authorize`]) of the peer, the grants, the
//! request and a [`View`] of the switch, so it is tested without a switch.
//! Replies to a delegate are narrowed by filtering the JSON the switch
//! returns, or the request is rewritten first (`fdb show` is pinned to the
//! delegate's tenant); the switch itself knows nothing of delegation.
//!
//! The match in [`authorize`] lists what a delegate may do. Any other
//! request, including every command added later, falls to its last arm and
//! is refused, until someone decides a delegate may use it and lists it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::protocol::{ErrorCode, Reply, Request};
use super::switch::{ControlError, Outcome, Switch};
use super::tenants::DEFAULT_TENANT;
use crate::config::{PortSpec, TenantSpec};
use crate::pipeline::tenant::PortMode;
use crate::port::iface::{self, IfaceKind};

/// The credentials the kernel reports for a control client (SO_PEERCRED at
/// connect time), plus the supplementary groups of its process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    /// Effective uid when the client connected.
    pub uid: u32,
    /// Effective gid when the client connected.
    pub gid: u32,
    /// Supplementary groups when the client connected (SO_PEERGROUPS, else
    /// /proc/<pid>/status; empty if they could not be read reliably).
    pub groups: Vec<u32>,
}

impl Peer {
    pub const ROOT: Peer = Peer {
        pid: 0,
        uid: 0,
        gid: 0,
        groups: Vec::new(),
    };

    /// A peer as SO_PEERCRED reported it, with the supplementary groups
    /// SO_PEERGROUPS reported (`kernel_groups`). Without those, they come
    /// from /proc/<pid>/status, and only if that process still has the uid
    /// and gid the kernel reported (a pid reused by another process is not
    /// believed); failing that, only the primary gid counts.
    pub fn from_kernel(pid: i32, uid: u32, gid: u32, kernel_groups: Option<Vec<u32>>) -> Peer {
        let groups = if uid == 0 {
            Vec::new()
        } else if let Some(groups) = kernel_groups {
            groups
        } else if pid > 0 {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|status| groups_from_status(&status, uid, gid))
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Peer {
            pid,
            uid,
            gid,
            groups,
        }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether the peer has `gid` as its primary or a supplementary group.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// The `Groups:` of a /proc/<pid>/status text, if its effective uid and gid
/// (second field of `Uid:` and `Gid:`) are `uid` and `gid`.
fn groups_from_status(status: &str, uid: u32, gid: u32) -> Option<Vec<u32>> {
    let field = |key: &str| status.lines().find_map(|l| l.strip_prefix(key));
    let effective =
        |key: &str| -> Option<u32> { field(key)?.split_whitespace().nth(1)?.parse().ok() };
    if effective("Uid:")? != uid || effective("Gid:")? != gid {
        return None;
    }
    field("Groups:")?
        .split_whitespace()
        .map(|g| g.parse().ok())
        .collect()
}

/// The users and groups each tenant is delegated to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    pub by_tenant: BTreeMap<String, TenantGrant>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantGrant {
    pub uids: BTreeSet<u32>,
    pub gids: BTreeSet<u32>,
}

impl TenantGrant {
    pub fn is_empty(&self) -> bool {
        self.uids.is_empty() && self.gids.is_empty()
    }

    pub fn covers(&self, peer: &Peer) -> bool {
        self.uids.contains(&peer.uid) || self.gids.iter().any(|g| peer.in_group(*g))
    }

    fn to_json(&self) -> Value {
        json!({ "uids": self.uids, "gids": self.gids })
    }
}

impl Grants {
    /// The tenants `peer` may manage (none for root, who needs no grant).
    pub fn tenants_of(&self, peer: &Peer) -> BTreeSet<String> {
        self.by_tenant
            .iter()
            .filter(|(_, g)| g.covers(peer))
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Whether `peer` may talk to xsw at all: root, or holder of a grant.
    pub fn admits(&self, peer: &Peer) -> bool {
        peer.is_root() || self.by_tenant.values().any(|g| g.covers(peer))
    }

    pub fn get(&self, tenant: &str) -> Option<&TenantGrant> {
        self.by_tenant.get(tenant)
    }

    /// Adds `uid` and/or `gid` to `tenant`'s grant. Checks nothing: see
    /// `Switch::tenant_grant` for what is refused.
    pub fn grant(&mut self, tenant: &str, uid: Option<u32>, gid: Option<u32>) {
        let grant = self.by_tenant.entry(tenant.to_string()).or_default();
        grant.uids.extend(uid);
        grant.gids.extend(gid);
    }

    /// Removes `uid` and/or `gid` from `tenant`'s grant; changes nothing and
    /// says what is missing if either of them is not granted.
    pub fn revoke(
        &mut self,
        tenant: &str,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<(), String> {
        let empty = TenantGrant::default();
        let grant = self.by_tenant.get(tenant).unwrap_or(&empty);
        if let Some(uid) = uid.filter(|u| !grant.uids.contains(u)) {
            return Err(format!("uid {uid} holds no grant on tenant {tenant}"));
        }
        if let Some(gid) = gid.filter(|g| !grant.gids.contains(g)) {
            return Err(format!("gid {gid} holds no grant on tenant {tenant}"));
        }
        if let Some(grant) = self.by_tenant.get_mut(tenant) {
            if let Some(uid) = uid {
                grant.uids.remove(&uid);
            }
            if let Some(gid) = gid {
                grant.gids.remove(&gid);
            }
            if grant.is_empty() {
                self.by_tenant.remove(tenant);
            }
        }
        Ok(())
    }

    /// Forgets every grant on `tenant` (it was deleted).
    pub fn remove_tenant(&mut self, tenant: &str) {
        self.by_tenant.remove(tenant);
    }

    /// Takes the grants of a config file's `[[tenant]]` (`grant_uids`,
    /// `grant_gids`), refusing what `xswctl tenant grant` refuses.
    pub fn apply_spec(&mut self, spec: &TenantSpec) -> Result<(), String> {
        if spec.grant_uids.is_empty() && spec.grant_gids.is_empty() {
            return Ok(());
        }
        check_grantable(&spec.name, spec.grant_uids.iter().copied())?;
        for uid in &spec.grant_uids {
            self.grant(&spec.name, Some(*uid), None);
        }
        for gid in &spec.grant_gids {
            self.grant(&spec.name, None, Some(*gid));
        }
        Ok(())
    }

    /// Writes `spec.name`'s grants into `spec` (for saving the config).
    pub fn fill_spec(&self, spec: &mut TenantSpec) {
        let grant = self.get(&spec.name);
        spec.grant_uids = grant
            .map(|g| g.uids.iter().copied().collect())
            .unwrap_or_default();
        spec.grant_gids = grant
            .map(|g| g.gids.iter().copied().collect())
            .unwrap_or_default();
    }
}

use crate::config::rules::grantable as check_grantable;

impl Switch {
    pub(super) fn tenant_grant(
        &mut self,
        name: &str,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Outcome {
        if uid.is_none() && gid.is_none() {
            return Err(ControlError::invalid(
                "say whom to grant the tenant to: --uid UID or --gid GID",
            ));
        }
        check_grantable(name, uid).map_err(ControlError::invalid)?;
        self.tenant(name)?;
        self.grants.grant(name, uid, gid);
        tracing::info!(tenant = name, ?uid, ?gid, "tenant granted");
        Ok(self.grants_json(name))
    }

    pub(super) fn tenant_revoke(
        &mut self,
        name: &str,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Outcome {
        if uid.is_none() && gid.is_none() {
            return Err(ControlError::invalid(
                "say whose grant to revoke: --uid UID or --gid GID",
            ));
        }
        self.tenant(name)?;
        self.grants
            .revoke(name, uid, gid)
            .map_err(ControlError::not_found)?;
        tracing::info!(tenant = name, ?uid, ?gid, "tenant grant revoked");
        Ok(self.grants_json(name))
    }

    fn grants_json(&self, tenant: &str) -> Value {
        let grant = self.grants.get(tenant).cloned().unwrap_or_default();
        json!({ "tenant": tenant, "uids": grant.uids, "gids": grant.gids })
    }
}

// ------------------------------------------------------------ authorization

/// What authorization needs to know about a port of the switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortFacts {
    /// The tenant of an access port; None for a trunk.
    pub tenant: Option<String>,
    /// The port sits on a tap (not a NIC or veth).
    pub tap: bool,
}

/// An interface in xswd's network namespace, as far as ownership goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interface {
    Missing,
    /// A NIC, veth or any interface that is not a tap.
    NotTap,
    /// A tap; `owner` is the uid it was given (TUNSETOWNER), if any.
    Tap {
        owner: Option<u32>,
    },
}

/// The switch (and its namespace) as authorization sees it.
pub trait View {
    fn port(&self, name: &str) -> Option<PortFacts>;
    fn port_names(&self) -> Vec<String>;
    fn interface(&self, name: &str) -> Interface;
}

/// How a delegate's reply is cut down to its tenants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Narrow {
    Nothing,
    TenantList,
    PortList,
    Fdb,
    Stats,
    Status,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Run the request (or `rewrite`, when given) and narrow the reply.
    Allow {
        rewrite: Option<Box<Request>>,
        narrow: Narrow,
    },
    /// Refused; the reason says what and why, without the
    /// "permission denied: " prefix.
    Deny(String),
}

fn allow(narrow: Narrow) -> Verdict {
    Verdict::Allow {
        rewrite: None,
        narrow,
    }
}

/// The request's command as a user types it: `port_add` → `port add`.
pub fn command_name(request: &Request) -> String {
    serde_json::to_value(request)
        .ok()
        .and_then(|v| v.get("cmd").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "?".into())
        .replace('_', " ")
}

/// Why a command that is not delegated is refused. Any command not named
/// here (a new one, for instance) gets the general reason.
fn root_only_reason(command: &str) -> &'static str {
    match command {
        "port set" => "moving ports between tenants is root's",
        "vlan add" | "vlan del" => "trunks and their VLANs are root's",
        "antispoof set" | "antispoof clear" => {
            "anti-spoofing is set by root, also on the ports of a delegated tenant"
        }
        "tenant create" | "tenant delete" => "creating and deleting tenants is root's",
        "tenant grant" | "tenant revoke" => "granting tenants is root's",
        "port trust" | "storm set" => {
            "RA/DHCP trust and storm control are set by root, also on a delegated tenant's ports"
        }
        _ => "only root may do this; a delegated tenant's user manages its taps, ACLs and MAC entries",
    }
}

fn list(tenants: &BTreeSet<String>) -> String {
    tenants.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Decides whether `peer` may make `request`. Root may do everything; a peer
/// holding grants may manage its tenants within the limits this module's
/// documentation gives; anybody else nothing.
pub fn authorize(peer: &Peer, grants: &Grants, request: &Request, view: &dyn View) -> Verdict {
    if peer.is_root() {
        return allow(Narrow::Nothing);
    }
    let command = command_name(request);
    let mine = grants.tenants_of(peer);
    if mine.is_empty() {
        return Verdict::Deny(format!(
            "{command}: uid {} may not use xsw: only root may, and no tenant is delegated to this \
             user or its groups (root grants one with `xswctl tenant grant TENANT --uid {}`)",
            peer.uid, peer.uid
        ));
    }
    match delegated(peer, &mine, request, view) {
        Ok(verdict) => verdict,
        Err(why) => Verdict::Deny(format!("{command}: {why}")),
    }
}

/// The commands a delegate may use, with their limits. The last arm refuses
/// everything not listed, including commands added after this was written.
fn delegated(
    peer: &Peer,
    mine: &BTreeSet<String>,
    request: &Request,
    view: &dyn View,
) -> Result<Verdict, String> {
    let own = |tenant: &str| -> Result<(), String> {
        if mine.contains(tenant) {
            Ok(())
        } else {
            Err(format!(
                "tenant {tenant} is not delegated to you (uid {}); yours: {}",
                peer.uid,
                list(mine)
            ))
        }
    };
    // The same answer for a port elsewhere and no port at all: a delegate
    // learns nothing about other tenants' ports.
    let own_port = |name: &str| -> Result<PortFacts, String> {
        match view.port(name) {
            Some(p) if p.tenant.as_ref().is_some_and(|t| mine.contains(t)) => Ok(p),
            _ => Err(format!("no port {name} in your tenants ({})", list(mine))),
        }
    };
    let only = || mine.iter().next().filter(|_| mine.len() == 1).cloned();
    match request {
        Request::TenantList {} => Ok(allow(Narrow::TenantList)),
        Request::TenantShow { name } => own(name).map(|()| allow(Narrow::Nothing)),
        Request::PortList {} => Ok(allow(Narrow::PortList)),
        Request::PortAdd(spec) => port_add(peer, mine, spec, view).map(|()| allow(Narrow::Nothing)),
        Request::PortDel { name } => {
            if own_port(name)?.tap {
                Ok(allow(Narrow::Nothing))
            } else {
                Err(format!(
                    "{name} is not a tap: only root removes NIC and veth ports"
                ))
            }
        }
        Request::AclAdd(args) => own(&args.tenant).map(|()| allow(Narrow::Nothing)),
        Request::AclDel { tenant, .. }
        | Request::AclMove { tenant, .. }
        | Request::AclPolicy { tenant, .. }
        | Request::AclList { tenant } => own(tenant).map(|()| allow(Narrow::Nothing)),
        Request::FdbShow { tenant: Some(t) } => own(t).map(|()| allow(Narrow::Fdb)),
        Request::FdbShow { tenant: None } => Ok(Verdict::Allow {
            rewrite: only().map(|t| Box::new(Request::FdbShow { tenant: Some(t) })),
            narrow: Narrow::Fdb,
        }),
        Request::FdbAdd { port, tenant, .. } => {
            own_port(port)?;
            tenant.as_deref().map_or(Ok(()), own)?;
            Ok(allow(Narrow::Nothing))
        }
        Request::FdbDel {
            tenant: Some(t), ..
        } => own(t).map(|()| allow(Narrow::Nothing)),
        Request::FdbDel { mac, tenant: None } => match only() {
            Some(t) => Ok(Verdict::Allow {
                rewrite: Some(Box::new(Request::FdbDel {
                    mac: mac.clone(),
                    tenant: Some(t),
                })),
                narrow: Narrow::Nothing,
            }),
            None => Err(format!(
                "say which of your tenants with --tenant ({})",
                list(mine)
            )),
        },
        // Only frames entering a port of one's own tenants: everything the
        // trace names (tenant, MACs, flood set) is then that tenant's.
        Request::Trace(args) => own_port(&args.port).map(|_| allow(Narrow::Nothing)),
        Request::Stats {} => Ok(allow(Narrow::Stats)),
        Request::Status {} => Ok(allow(Narrow::Status)),
        other => Err(root_only_reason(&command_name(other)).to_string()),
    }
}

/// A delegate may add a tap it owns (or have xsw create one owned by it) as
/// an access port of one of its tenants, and set nothing root decides.
fn port_add(
    peer: &Peer,
    mine: &BTreeSet<String>,
    spec: &PortSpec,
    view: &dyn View,
) -> Result<(), String> {
    let name = &spec.name;
    if spec.trunk || !spec.vlans.is_empty() {
        return Err("trunks and their VLANs are root's".into());
    }
    let Some(tenant) = spec.tenant.as_deref() else {
        return Err(format!(
            "say which of your tenants with --tenant ({}); the {DEFAULT_TENANT} tenant is root's",
            list(mine)
        ));
    };
    if !mine.contains(tenant) {
        return Err(format!(
            "tenant {tenant} is not delegated to you (uid {}); yours: {}",
            peer.uid,
            list(mine)
        ));
    }
    let mut root_only = Vec::new();
    if spec.force {
        root_only.push("--force");
    }
    if spec.host_mac.is_some() {
        root_only.push("--host-mac");
    }
    if !spec.host_ipv4.is_empty() {
        root_only.push("--host-ipv4");
    }
    if spec.antispoof.is_some() {
        root_only.push("anti-spoofing");
    }
    if !spec.trust.is_empty() {
        root_only.push("--trust");
    }
    if !spec.storm_control.is_empty() {
        root_only.push("storm control");
    }
    if spec.tunnel.is_some() {
        root_only.push("tunnels");
    }
    if !root_only.is_empty() {
        return Err(format!(
            "{} {} root's",
            root_only.join(", "),
            if root_only.len() == 1 { "is" } else { "are" }
        ));
    }
    if spec.create_tap {
        return match spec.tap_owner {
            Some(owner) if owner == peer.uid => Ok(()),
            Some(owner) => Err(format!(
                "a tap you create must be yours: --tap-owner {} (not {owner})",
                peer.uid
            )),
            None => Err(format!(
                "a tap you create must be yours: add --tap-owner {}",
                peer.uid
            )),
        };
    }
    match view.interface(name) {
        Interface::Tap { owner: Some(owner) } if owner == peer.uid => Ok(()),
        Interface::Tap { owner: Some(owner) } => Err(format!(
            "tap {name} belongs to uid {owner}, not to you (uid {}): you may add only taps you own",
            peer.uid
        )),
        Interface::Tap { owner: None } => Err(format!(
            "tap {name} has no owner: you may add only taps you own (`ip tuntap add mode tap user {}`)",
            peer.uid
        )),
        Interface::NotTap => Err(format!(
            "{name} is not a tap: NICs and veths are root's; you may add only taps you own"
        )),
        Interface::Missing => Err(format!("there is no tap {name} owned by uid {}", peer.uid)),
    }
}

/// Cuts a successful reply down to what a delegate of `mine` may see.
pub fn narrow(reply: Reply, how: Narrow, mine: &BTreeSet<String>, view: &dyn View) -> Reply {
    let Some(mut data) = reply.data else {
        return reply;
    };
    let Reply {
        version, ok, error, ..
    } = reply;
    let in_mine = |v: &Value| v.as_str().is_some_and(|t| mine.contains(t));
    let port_in_mine = |name: &str| {
        view.port(name)
            .and_then(|p| p.tenant)
            .is_some_and(|t| mine.contains(&t))
    };
    let keep = |v: &mut Value, f: &dyn Fn(&Value) -> bool| {
        if let Some(rows) = v.as_array_mut() {
            rows.retain(|row| f(row));
        }
    };
    match how {
        Narrow::Nothing => {}
        Narrow::TenantList => keep(&mut data, &|row| in_mine(&row["name"])),
        Narrow::PortList | Narrow::Fdb => keep(&mut data, &|row| in_mine(&row["tenant"])),
        Narrow::Stats => {
            keep(&mut data["ports"], &|row| {
                row["name"].as_str().is_some_and(port_in_mine)
            });
            if let Some(object) = data.as_object_mut() {
                object.insert("workers".into(), json!([]));
            }
        }
        Narrow::Status => {
            let ports = view.port_names().iter().filter(|n| port_in_mine(n)).count();
            if let Some(object) = data.as_object_mut() {
                object.insert("ports".into(), json!(ports));
                object.insert("tenants".into(), json!(mine.len()));
                object.remove("fdb_entries");
            }
        }
    }
    Reply {
        version,
        ok,
        data: Some(data),
        error,
    }
}

/// The switch as authorization sees it: its ports, and the interfaces of
/// xswd's network namespace in sysfs.
struct LiveView<'a>(&'a Switch);

impl View for LiveView<'_> {
    fn port(&self, name: &str) -> Option<PortFacts> {
        let record = self.0.ports.get(name)?;
        let tenant = match &record.policy.mode {
            PortMode::Access(tenant_id) => self.0.tenant_name(*tenant_id).map(str::to_string),
            PortMode::Trunk(_) => None,
        };
        Some(PortFacts {
            tenant,
            tap: record.kind == IfaceKind::Tap,
        })
    }

    fn port_names(&self) -> Vec<String> {
        self.0.ports.keys().cloned().collect()
    }

    fn interface(&self, name: &str) -> Interface {
        // The name comes from the client: never let it walk out of sysfs.
        if iface::validate_name(name).is_err() {
            return Interface::Missing;
        }
        let dir = std::path::Path::new("/sys/class/net").join(name);
        if !dir.exists() {
            return Interface::Missing;
        }
        let read = |file: &str| std::fs::read_to_string(dir.join(file)).ok();
        let Some(flags) = read("tun_flags") else {
            return Interface::NotTap;
        };
        let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(0);
        if flags & (libc::IFF_TUN | libc::IFF_TAP) as u32 != libc::IFF_TAP as u32 {
            return Interface::NotTap;
        }
        // -1 (or anything unreadable) means no owner was set.
        let owner = read("owner").and_then(|o| o.trim().parse::<u32>().ok());
        Interface::Tap { owner }
    }
}

/// Handles `request` on behalf of `peer`: everything for root; for others
/// only what a grant allows, with replies narrowed to their tenants.
/// Refusals are logged with the peer's uid and pid and the command.
pub fn handle_as(switch: &mut Switch, peer: &Peer, request: Request) -> Reply {
    let verdict = authorize(peer, &switch.grants, &request, &LiveView(switch));
    let (rewrite, how) = match verdict {
        Verdict::Deny(why) => {
            if let Some(suppressed) = super::refusals::admit(peer.uid) {
                tracing::warn!(
                    uid = peer.uid,
                    gid = peer.gid,
                    pid = peer.pid,
                    command = %command_name(&request),
                    request = %super::refusals::bounded(&format!("{request:?}")),
                    reason = %super::refusals::bounded(&why),
                    suppressed,
                    "control request refused: permission denied"
                );
            }
            return Reply::failure(
                ErrorCode::PermissionDenied,
                format!("permission denied: {}", super::refusals::bounded(&why)),
            );
        }
        Verdict::Allow { rewrite, narrow } => (rewrite, narrow),
    };
    let request = rewrite.map_or(request, |boxed| *boxed);
    if peer.is_root() {
        let shown = match &request {
            Request::TenantShow { name } => Some(name.clone()),
            _ => None,
        };
        let mut reply = switch.handle(request);
        if let (Some(name), Some(Value::Object(data))) = (shown, reply.data.as_mut()) {
            let grant = switch.grants.get(&name).cloned().unwrap_or_default();
            data.insert("grants".into(), grant.to_json());
        }
        return reply;
    }
    let command = command_name(&request);
    let reply = switch.handle(request);
    if reply.ok && how == Narrow::Nothing {
        tracing::info!(uid = peer.uid, pid = peer.pid, %command, "delegated request done");
    }
    let mine = switch.grants.tenants_of(peer);
    narrow(reply, how, &mine, &LiveView(switch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::AclAddArgs;
    use crate::pipeline::antispoof::PortGuard;

    const ALICE: u32 = 1000;
    const BOB: u32 = 1001;
    const STAFF: u32 = 500;

    fn alice() -> Peer {
        Peer {
            pid: 4242,
            uid: ALICE,
            gid: ALICE,
            groups: vec![ALICE, 27],
        }
    }

    struct Fake {
        ports: BTreeMap<String, PortFacts>,
        interfaces: BTreeMap<String, Interface>,
    }

    impl View for Fake {
        fn port(&self, name: &str) -> Option<PortFacts> {
            self.ports.get(name).cloned()
        }
        fn port_names(&self) -> Vec<String> {
            self.ports.keys().cloned().collect()
        }
        fn interface(&self, name: &str) -> Interface {
            self.interfaces
                .get(name)
                .copied()
                .unwrap_or(Interface::Missing)
        }
    }

    /// Tenant t (alice's): tap port tapA (alice's), veth port vethT.
    /// Tenant u: tap port tapU. A trunk. Free interfaces: alice's tap newA,
    /// bob's tap newB, an ownerless tap newX, a veth newV.
    fn world() -> Fake {
        let port = |tenant: Option<&str>, tap| PortFacts {
            tenant: tenant.map(str::to_string),
            tap,
        };
        Fake {
            ports: [
                ("tapA", port(Some("t"), true)),
                ("vethT", port(Some("t"), false)),
                ("tapU", port(Some("u"), true)),
                ("trunk0", port(None, false)),
            ]
            .into_iter()
            .map(|(n, p)| (n.to_string(), p))
            .collect(),
            interfaces: [
                ("tapA", Interface::Tap { owner: Some(ALICE) }),
                ("tapU", Interface::Tap { owner: Some(ALICE) }),
                ("newA", Interface::Tap { owner: Some(ALICE) }),
                ("newB", Interface::Tap { owner: Some(BOB) }),
                ("newX", Interface::Tap { owner: None }),
                ("newV", Interface::NotTap),
                ("vethT", Interface::NotTap),
            ]
            .into_iter()
            .map(|(n, i)| (n.to_string(), i))
            .collect(),
        }
    }

    fn grants_uid(tenant: &str, uid: u32) -> Grants {
        let mut g = Grants::default();
        g.grant(tenant, Some(uid), None);
        g
    }

    fn verdict(peer: &Peer, grants: &Grants, request: Request) -> Verdict {
        authorize(peer, grants, &request, &world())
    }

    fn allowed(peer: &Peer, grants: &Grants, request: Request) -> bool {
        matches!(verdict(peer, grants, request), Verdict::Allow { .. })
    }

    fn denial(peer: &Peer, grants: &Grants, request: Request) -> String {
        match verdict(peer, grants, request.clone()) {
            Verdict::Deny(why) => why,
            other => panic!("{request:?} should be refused, got {other:?}"),
        }
    }

    fn add(name: &str, tenant: Option<&str>) -> PortSpec {
        PortSpec {
            name: name.into(),
            tenant: tenant.map(str::to_string),
            ..PortSpec::default()
        }
    }

    fn acl_add(tenant: &str) -> Request {
        Request::AclAdd(AclAddArgs {
            tenant: tenant.into(),
            direction: "ingress".into(),
            action: "deny".into(),
            ..AclAddArgs::default()
        })
    }

    /// One request of every command, aimed at alice's tenant where it names one.
    fn every_command() -> Vec<Request> {
        vec![
            Request::PortAdd(add("newA", Some("t"))),
            Request::PortDel {
                name: "tapA".into(),
            },
            Request::PortList {},
            Request::PortSet {
                name: "tapA".into(),
                tenant: "t".into(),
            },
            Request::VlanAdd {
                port: "trunk0".into(),
                vlan: 10,
                tenant: "t".into(),
            },
            Request::VlanDel {
                port: "trunk0".into(),
                vlan: 10,
            },
            Request::AntispoofSet {
                port: "tapA".into(),
                macs: vec!["02:00:00:00:00:01".into()],
                ips: vec![],
                restrict_to_port: false,
            },
            Request::AntispoofClear {
                port: "tapA".into(),
            },
            Request::TenantCreate { name: "v".into() },
            Request::TenantDelete { name: "t".into() },
            Request::TenantList {},
            Request::TenantShow { name: "t".into() },
            Request::TenantGrant {
                name: "t".into(),
                uid: Some(BOB),
                gid: None,
            },
            Request::TenantRevoke {
                name: "t".into(),
                uid: Some(ALICE),
                gid: None,
            },
            acl_add("t"),
            Request::AclDel {
                tenant: "t".into(),
                direction: "ingress".into(),
                position: 1,
            },
            Request::AclMove {
                tenant: "t".into(),
                direction: "ingress".into(),
                from: 1,
                to: 2,
            },
            Request::AclPolicy {
                tenant: "t".into(),
                direction: "egress".into(),
                action: "deny".into(),
            },
            Request::AclList { tenant: "t".into() },
            Request::FdbShow { tenant: None },
            Request::FdbAdd {
                mac: "02:00:00:00:00:01".into(),
                port: "tapA".into(),
                tenant: None,
                remote: None,
            },
            Request::FdbDel {
                mac: "02:00:00:00:00:01".into(),
                tenant: Some("t".into()),
            },
            Request::Stats {},
            Request::Status {},
            Request::ConfigShow {},
            Request::ConfigReload {},
        ]
    }

    /// What a delegate may use: every other command is root's.
    const DELEGATED: &[&str] = &[
        "tenant list",
        "tenant show",
        "port list",
        "port add",
        "port del",
        "acl add",
        "acl del",
        "acl move",
        "acl policy",
        "acl list",
        "fdb show",
        "fdb add",
        "fdb del",
        "stats",
        "status",
    ];

    #[test]
    fn root_may_do_everything_unnarrowed() {
        for request in every_command() {
            assert_eq!(
                verdict(&Peer::ROOT, &Grants::default(), request),
                allow(Narrow::Nothing)
            );
        }
    }

    #[test]
    fn a_peer_without_a_grant_is_refused_everything_status_included() {
        // Grants exist, just not for alice.
        let grants = grants_uid("t", BOB);
        for request in every_command() {
            let why = denial(&alice(), &grants, request.clone());
            assert!(why.starts_with(&command_name(&request)), "{why}");
            assert!(why.contains("uid 1000 may not use xsw"), "{why}");
        }
        assert!(!grants.admits(&alice()));
        assert!(grants.admits(&Peer::ROOT));
    }

    #[test]
    fn a_delegate_may_use_exactly_the_delegated_commands_on_its_tenant() {
        let grants = grants_uid("t", ALICE);
        for request in every_command() {
            let name = command_name(&request);
            let v = verdict(&alice(), &grants, request);
            if DELEGATED.contains(&name.as_str()) {
                assert!(matches!(v, Verdict::Allow { .. }), "{name}: {v:?}");
            } else {
                assert!(
                    matches!(v, Verdict::Deny(_)),
                    "{name} should be root's: {v:?}"
                );
            }
        }
    }

    #[test]
    fn root_only_commands_say_why_even_on_the_delegates_own_ports() {
        let grants = grants_uid("t", ALICE);
        let why = denial(
            &alice(),
            &grants,
            Request::AntispoofClear {
                port: "tapA".into(),
            },
        );
        assert_eq!(
            why,
            "antispoof clear: anti-spoofing is set by root, also on the ports of a delegated tenant"
        );
        let why = denial(
            &alice(),
            &grants,
            Request::VlanDel {
                port: "trunk0".into(),
                vlan: 1,
            },
        );
        assert!(why.contains("trunks"), "{why}");
        let why = denial(
            &alice(),
            &grants,
            Request::TenantCreate { name: "x".into() },
        );
        assert!(why.contains("tenants is root's"), "{why}");
        let why = denial(
            &alice(),
            &grants,
            Request::TenantGrant {
                name: "t".into(),
                uid: Some(ALICE),
                gid: None,
            },
        );
        assert!(why.contains("granting tenants is root's"), "{why}");
    }

    #[test]
    fn a_new_command_is_refused_by_default() {
        // The last arm of `delegated` takes every request it does not list,
        // and the reason for a command nobody named is the general one.
        assert_eq!(
            root_only_reason("tune workers"),
            root_only_reason("some future command")
        );
        assert!(root_only_reason("tune workers").starts_with("only root may do this"));
        // PortSet stands for any unlisted variant: it reaches the last arm.
        let grants = grants_uid("t", ALICE);
        let why = denial(
            &alice(),
            &grants,
            Request::PortSet {
                name: "tapA".into(),
                tenant: "t".into(),
            },
        );
        assert_eq!(why, "port set: moving ports between tenants is root's");
    }

    #[test]
    fn other_tenants_are_out_of_reach() {
        let grants = grants_uid("t", ALICE);
        let p = alice();
        for request in [
            Request::TenantShow { name: "u".into() },
            acl_add("u"),
            Request::AclList { tenant: "u".into() },
            Request::AclPolicy {
                tenant: "u".into(),
                direction: "egress".into(),
                action: "deny".into(),
            },
            Request::AclDel {
                tenant: "default".into(),
                direction: "egress".into(),
                position: 1,
            },
            Request::FdbShow {
                tenant: Some("u".into()),
            },
            Request::FdbDel {
                mac: "02:00:00:00:00:01".into(),
                tenant: Some("u".into()),
            },
            Request::FdbAdd {
                mac: "02:00:00:00:00:01".into(),
                port: "tapU".into(),
                tenant: None,
                remote: None,
            },
            Request::FdbAdd {
                mac: "02:00:00:00:00:01".into(),
                port: "trunk0".into(),
                tenant: Some("t".into()),
                remote: None,
            },
            Request::PortDel {
                name: "tapU".into(),
            },
            Request::PortDel {
                name: "trunk0".into(),
            },
            Request::PortAdd(add("newA", Some("u"))),
        ] {
            let why = denial(&p, &grants, request);
            assert!(!why.contains("tapU belongs"), "{why}");
        }
        // A foreign port and a missing one get the same answer.
        let foreign = denial(
            &p,
            &grants,
            Request::PortDel {
                name: "tapU".into(),
            },
        );
        let missing = denial(
            &p,
            &grants,
            Request::PortDel {
                name: "nope".into(),
            },
        );
        assert_eq!(foreign.replace("tapU", "X"), missing.replace("nope", "X"));
    }

    #[test]
    fn a_delegate_adds_only_taps_it_owns_with_nothing_root_decides() {
        let grants = grants_uid("t", ALICE);
        let p = alice();
        assert!(allowed(
            &p,
            &grants,
            Request::PortAdd(add("newA", Some("t")))
        ));
        let created = PortSpec {
            create_tap: true,
            tap_owner: Some(ALICE),
            ..add("vm9", Some("t"))
        };
        assert!(allowed(&p, &grants, Request::PortAdd(created.clone())));

        let refused = |spec: PortSpec, needle: &str| {
            let why = denial(&p, &grants, Request::PortAdd(spec));
            assert!(why.starts_with("port add: "), "{why}");
            assert!(why.contains(needle), "{needle:?} not in {why:?}");
        };
        refused(add("newB", Some("t")), "belongs to uid 1001");
        refused(add("newX", Some("t")), "has no owner");
        refused(add("newV", Some("t")), "is not a tap");
        refused(add("missing", Some("t")), "there is no tap missing");
        refused(add("newA", None), "say which of your tenants");
        refused(
            add("newA", Some("default")),
            "tenant default is not delegated",
        );
        refused(
            PortSpec {
                trunk: true,
                ..add("newA", None)
            },
            "trunks",
        );
        refused(
            PortSpec {
                force: true,
                ..add("newA", Some("t"))
            },
            "--force is root's",
        );
        refused(
            PortSpec {
                host_mac: Some("02:00:00:00:00:09".parse().unwrap()),
                host_ipv4: vec!["192.0.2.1".parse().unwrap()],
                ..add("newA", Some("t"))
            },
            "--host-mac, --host-ipv4 are root's",
        );
        refused(
            PortSpec {
                antispoof: Some(PortGuard::default()),
                ..add("newA", Some("t"))
            },
            "anti-spoofing is root's",
        );
        refused(
            PortSpec {
                tap_owner: Some(BOB),
                ..created.clone()
            },
            "--tap-owner 1000 (not 1001)",
        );
        refused(
            PortSpec {
                tap_owner: None,
                ..created
            },
            "add --tap-owner 1000",
        );
    }

    #[test]
    fn a_delegate_removes_only_its_tenants_taps() {
        let grants = grants_uid("t", ALICE);
        assert!(allowed(
            &alice(),
            &grants,
            Request::PortDel {
                name: "tapA".into()
            }
        ));
        let why = denial(
            &alice(),
            &grants,
            Request::PortDel {
                name: "vethT".into(),
            },
        );
        assert!(why.contains("vethT is not a tap"), "{why}");
    }

    #[test]
    fn a_delegate_traces_frames_entering_its_own_tenants_ports_only() {
        let grants = grants_uid("t", ALICE);
        let trace = |port: &str| {
            Request::Trace(crate::control::trace_frame::TraceArgs {
                port: port.into(),
                ..Default::default()
            })
        };
        assert!(allowed(&alice(), &grants, trace("tapA")));
        assert!(allowed(&alice(), &grants, trace("vethT")));
        for port in ["tapU", "trunk0", "nosuch"] {
            let why = denial(&alice(), &grants, trace(port));
            assert!(
                why.contains(&format!("no port {port} in your tenants")),
                "{why}"
            );
        }
    }

    #[test]
    fn fdb_requests_are_pinned_to_the_delegates_tenant() {
        let grants = grants_uid("t", ALICE);
        assert_eq!(
            verdict(&alice(), &grants, Request::FdbShow { tenant: None }),
            Verdict::Allow {
                rewrite: Some(Box::new(Request::FdbShow {
                    tenant: Some("t".into())
                })),
                narrow: Narrow::Fdb
            }
        );
        let mac = "02:00:00:00:00:01".to_string();
        assert_eq!(
            verdict(
                &alice(),
                &grants,
                Request::FdbDel {
                    mac: mac.clone(),
                    tenant: None
                }
            ),
            Verdict::Allow {
                rewrite: Some(Box::new(Request::FdbDel {
                    mac: mac.clone(),
                    tenant: Some("t".into())
                })),
                narrow: Narrow::Nothing
            }
        );
        // With two tenants, fdb show filters and fdb del must name one.
        let mut two = grants.clone();
        two.grant("u", Some(ALICE), None);
        assert_eq!(
            verdict(&alice(), &two, Request::FdbShow { tenant: None }),
            allow(Narrow::Fdb)
        );
        let why = denial(&alice(), &two, Request::FdbDel { mac, tenant: None });
        assert!(why.contains("say which of your tenants"), "{why}");
    }

    #[test]
    fn group_grants_cover_primary_and_supplementary_groups() {
        let mut grants = Grants::default();
        grants.grant("t", None, Some(STAFF));
        let mut p = alice();
        assert!(!allowed(&p, &grants, Request::Status {}));
        p.groups.push(STAFF);
        assert!(allowed(
            &p,
            &grants,
            Request::AclList { tenant: "t".into() }
        ));
        let primary = Peer {
            gid: STAFF,
            groups: vec![],
            ..alice()
        };
        assert!(allowed(&primary, &grants, Request::Status {}));
        assert_eq!(
            grants.tenants_of(&primary),
            BTreeSet::from(["t".to_string()])
        );
    }

    #[test]
    fn supplementary_groups_are_believed_only_for_the_reported_identity() {
        let status = "Name:\txswctl\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n\
                      Groups:\t27 500 1000 \n";
        assert_eq!(
            groups_from_status(status, 1000, 1000),
            Some(vec![27, 500, 1000])
        );
        // Another process now has that pid.
        assert_eq!(groups_from_status(status, 1001, 1000), None);
        assert_eq!(groups_from_status(status, 1000, 1001), None);
        let none = "Uid:\t7\t7\t7\t7\nGid:\t7\t7\t7\t7\nGroups:\t\n";
        assert_eq!(groups_from_status(none, 7, 7), Some(vec![]));
        assert_eq!(groups_from_status("garbage", 7, 7), None);
    }

    #[test]
    fn replies_are_narrowed_to_the_delegates_tenants() {
        let mine = BTreeSet::from(["t".to_string()]);
        let view = world();
        let ok = |data: Value| Reply::success(data);
        let data = |r: Reply| r.data.unwrap_or_default();

        let tenants = json!([{"name": "default"}, {"name": "t"}, {"name": "u"}]);
        assert_eq!(
            data(narrow(ok(tenants), Narrow::TenantList, &mine, &view)),
            json!([{"name": "t"}])
        );
        let ports = json!([
            {"name": "tapA", "tenant": "t"}, {"name": "tapU", "tenant": "u"},
            {"name": "trunk0", "tenant": null}
        ]);
        assert_eq!(
            data(narrow(ok(ports), Narrow::PortList, &mine, &view)),
            json!([{"name": "tapA", "tenant": "t"}])
        );
        let fdb = json!([{"mac": "a", "tenant": "u"}, {"mac": "b", "tenant": "t"}]);
        assert_eq!(
            data(narrow(ok(fdb), Narrow::Fdb, &mine, &view)),
            json!([{"mac": "b", "tenant": "t"}])
        );
        let stats = json!({
            "ports": [{"name": "tapA"}, {"name": "vethT"}, {"name": "tapU"}, {"name": "trunk0"}],
            "workers": [{"id": 0}]
        });
        assert_eq!(
            data(narrow(ok(stats), Narrow::Stats, &mine, &view)),
            json!({"ports": [{"name": "tapA"}, {"name": "vethT"}], "workers": []})
        );
        let status = json!({"version": "1", "ports": 4, "tenants": 3, "fdb_entries": 9});
        assert_eq!(
            data(narrow(ok(status), Narrow::Status, &mine, &view)),
            json!({"version": "1", "ports": 2, "tenants": 1})
        );
        // Errors pass unchanged.
        let err = Reply::failure(ErrorCode::NotFound, "x");
        assert_eq!(narrow(err.clone(), Narrow::PortList, &mine, &view), err);
    }

    #[test]
    fn grants_revoke_atomically_and_round_trip_through_the_config() {
        let mut g = Grants::default();
        g.grant("t", Some(ALICE), Some(STAFF));
        assert!(g.revoke("t", Some(ALICE), Some(999)).is_err());
        assert_eq!(
            g.get("t").map(|t| t.uids.len()),
            Some(1),
            "a failed revoke changed nothing"
        );
        assert!(g.revoke("t", Some(ALICE), None).is_ok());
        assert!(g.revoke("t", None, Some(STAFF)).is_ok());
        assert_eq!(g, Grants::default(), "an empty grant is dropped");
        assert!(g.revoke("t", Some(ALICE), None).is_err());

        let spec = TenantSpec {
            name: "t".into(),
            grant_uids: vec![ALICE, BOB],
            grant_gids: vec![STAFF],
            ..TenantSpec::default()
        };
        g.apply_spec(&spec).unwrap();
        let mut saved = TenantSpec {
            name: "t".into(),
            ..TenantSpec::default()
        };
        g.fill_spec(&mut saved);
        assert_eq!(
            (saved.grant_uids, saved.grant_gids),
            (vec![ALICE, BOB], vec![STAFF])
        );
        let default = TenantSpec {
            name: DEFAULT_TENANT.into(),
            grant_uids: vec![ALICE],
            ..TenantSpec::default()
        };
        assert!(g.apply_spec(&default).is_err());
        let root = TenantSpec {
            name: "t".into(),
            grant_uids: vec![0],
            ..TenantSpec::default()
        };
        assert!(g.apply_spec(&root).is_err());
    }
}
