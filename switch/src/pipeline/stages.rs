//! The pipeline a frame goes through, stage by stage, as one pure function
//! for the frame's ingress side and one for each egress port:
//!
//! ```text
//! parse ─► tenant (access/trunk, VLAN) ─► anti-spoof (from port)
//!       ─► ACL ingress ─► L2 (learn, forward/flood) ─► ACL egress
//! per egress port: anti-spoof (to port) ─► VLAN tag for that port
//! ```
//!
//! Each stage either passes the frame on or drops it with a reason. The
//! worker does the I/O (rings, copies, counters) around these calls.

use super::acl::{AclAction, AclKey, TenantAcl};
use super::antispoof::PortGuard;
use super::decision::{Decision, DomainId, DropReason, PortId};
use super::fdb::{Fdb, Learned};
use super::l2::{decide, IngressPort};
use super::tenant::{classify, egress_tag, PortMode};
use crate::packet::{parse_frame, FrameInfo, L3Info};

/// What root and the tenant configured for one port.
#[derive(Clone, Debug)]
pub struct PortPolicy {
    pub mode: PortMode,
    pub guard: Option<PortGuard>,
}

/// A tenant's filters, by direction: ingress = frames ports send into the
/// switch, egress = frames the switch delivers to ports.
#[derive(Clone, Debug)]
pub struct TenantPolicy {
    pub ingress: TenantAcl,
    pub egress: TenantAcl,
}

/// Which ACL entry decided: a rule's index, or the default policy.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AclMatch {
    Rule(usize),
    Default,
}

/// The outcome of the ingress side.
#[derive(Copy, Clone, Debug)]
pub struct Verdict {
    /// Drop(reason) when any stage dropped the frame.
    pub decision: Decision,
    pub domain: DomainId,
    pub learned: Learned,
    pub info: Option<FrameInfo>,
    /// The ACL entries that decided, for the hit counters: [ingress, egress].
    pub acl: [Option<AclMatch>; 2],
}

impl Verdict {
    fn dropped(reason: DropReason, domain: DomainId, info: Option<FrameInfo>) -> Self {
        Verdict {
            decision: Decision::Drop(reason),
            domain,
            learned: Learned::Nothing,
            info,
            acl: [None, None],
        }
    }
}

/// The ACL key of an IP frame; None for frames ACLs never drop: non-IP
/// (ARP, LLDP, ...) and IPv6 neighbour discovery, so address resolution
/// keeps working whatever the policy (anti-spoofing polices those).
pub fn acl_key(info: &FrameInfo) -> Option<AclKey> {
    let ip = match &info.l3 {
        L3Info::Ipv4(ip) | L3Info::Ipv6(ip) => ip,
        _ => return None,
    };
    if ip.proto == 58 && ip.icmp_type.is_some_and(|t| (133..=137).contains(&t)) {
        return None;
    }
    Some(AclKey {
        src: ip.src,
        dst: ip.dst,
        proto: ip.proto,
        sport: ip.sport,
        dport: ip.dport,
        icmp_type: ip.icmp_type,
        tcp_flags: ip.tcp_flags,
    })
}

fn filter(acl: &TenantAcl, key: Option<&AclKey>) -> (bool, Option<AclMatch>) {
    let Some(key) = key else { return (true, None) };
    let (action, rule) = acl.evaluate(key);
    let matched = rule.map_or(AclMatch::Default, AclMatch::Rule);
    (action == AclAction::Allow, Some(matched))
}

/// Runs every stage up to the forwarding decision for a frame that came in
/// on port `ingress` with `policy`; `tenant_of` gives a tenant's filters.
pub fn ingress<'a>(
    fdb: &mut Fdb,
    ingress: PortId,
    policy: &PortPolicy,
    tenant_of: impl Fn(DomainId) -> Option<&'a TenantPolicy>,
    frame: &[u8],
    now_ns: u64,
) -> Verdict {
    let default_domain = match policy.mode {
        PortMode::Access(d) => d,
        PortMode::Trunk(_) => 0,
    };
    let info = match parse_frame(frame) {
        Ok(info) => info,
        Err(_) => return Verdict::dropped(DropReason::Malformed, default_domain, None),
    };
    let domain = match classify(&policy.mode, &info) {
        Ok(domain) => domain,
        Err(reason) => return Verdict::dropped(reason, default_domain, Some(info)),
    };
    if let Some(guard) = &policy.guard {
        if let Err(reason) = guard.check_from_port(&info) {
            return Verdict::dropped(reason, domain, Some(info));
        }
    }
    let tenant = tenant_of(domain);
    if let (Some(tenant), L3Info::Malformed) = (tenant, &info.l3) {
        // An IP or ARP header that cannot be read cannot be judged by a rule:
        // where the tenant filters at all, it must not slip through.
        if !tenant.ingress.allows_everything() || !tenant.egress.allows_everything() {
            return Verdict::dropped(DropReason::Malformed, domain, Some(info));
        }
    }
    let key = acl_key(&info);
    let mut acl = [None, None];
    if let Some(tenant) = tenant {
        let (allowed, matched) = filter(&tenant.ingress, key.as_ref());
        acl[0] = matched;
        if !allowed {
            return Verdict {
                acl,
                ..Verdict::dropped(DropReason::AclDeny, domain, Some(info))
            };
        }
    }
    let (decision, learned) = decide(
        fdb,
        IngressPort {
            id: ingress,
            domain,
        },
        frame,
        now_ns,
    );
    if let (Some(tenant), Decision::Forward(_) | Decision::Flood) = (tenant, decision) {
        // Egress rules do not depend on the egress port, so one evaluation
        // serves every port a flood reaches.
        let (allowed, matched) = filter(&tenant.egress, key.as_ref());
        acl[1] = matched;
        if !allowed {
            return Verdict {
                decision: Decision::Drop(DropReason::AclDeny),
                domain,
                learned,
                info: Some(info),
                acl,
            };
        }
    }
    Verdict {
        decision,
        domain,
        learned,
        info: Some(info),
        acl,
    }
}

/// Whether a frame of tenant `domain` may leave through a port with
/// `policy`, and with which tag (None: untagged).
#[inline]
pub fn egress(
    policy: &PortPolicy,
    domain: DomainId,
    info: &FrameInfo,
) -> Result<Option<u16>, DropReason> {
    let tag = egress_tag(&policy.mode, domain).ok_or(DropReason::CrossTenant)?;
    if let Some(guard) = &policy.guard {
        guard.check_to_port(info)?;
    }
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::acl::{AclAction, AclRule};
    use crate::pipeline::tenant::TrunkMap;
    use etherparse::PacketBuilder;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn tcp(dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .tcp(40000, dport, 1, 1000)
            .write(&mut out, &[])
            .expect("build tcp");
        out
    }

    fn arp_request() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&A);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&A);
        f.extend_from_slice(&[198, 18, 0, 1]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&[198, 18, 0, 2]);
        f
    }

    fn tenant(ingress: Vec<AclRule>, ingress_default: AclAction) -> TenantPolicy {
        TenantPolicy {
            ingress: TenantAcl::new(ingress, ingress_default).expect("valid acl"),
            egress: TenantAcl::empty(AclAction::Allow),
        }
    }

    fn deny_dport(port: &str) -> AclRule {
        AclRule {
            src: None,
            dst: None,
            proto: Some(6),
            sport: None,
            dport: Some(port.parse().expect("port")),
            icmp_type: None,
            established: false,
            action: AclAction::Deny,
        }
    }

    fn run(policy: &PortPolicy, tenant: &TenantPolicy, frame: &[u8]) -> Verdict {
        let mut fdb = Fdb::new(16, u64::MAX);
        ingress(
            &mut fdb,
            1,
            policy,
            |d| (d == 0).then_some(tenant),
            frame,
            0,
        )
    }

    const ACCESS: PortPolicy = PortPolicy {
        mode: PortMode::Access(0),
        guard: None,
    };

    #[test]
    fn an_ingress_rule_drops_what_it_matches_and_names_itself() {
        let t = tenant(vec![deny_dport("25")], AclAction::Allow);
        let denied = run(&ACCESS, &t, &tcp(25));
        assert_eq!(denied.decision, Decision::Drop(DropReason::AclDeny));
        assert_eq!(denied.acl[0], Some(AclMatch::Rule(0)));
        let allowed = run(&ACCESS, &t, &tcp(22));
        assert_eq!(allowed.decision, Decision::Flood);
        assert_eq!(
            allowed.acl,
            [Some(AclMatch::Default), Some(AclMatch::Default)]
        );
    }

    #[test]
    fn arp_passes_a_deny_everything_policy() {
        let t = tenant(Vec::new(), AclAction::Deny);
        assert_eq!(
            run(&ACCESS, &t, &tcp(22)).decision,
            Decision::Drop(DropReason::AclDeny)
        );
        let arp = run(&ACCESS, &t, &arp_request());
        assert_eq!(arp.decision, Decision::Flood);
        assert_eq!(arp.acl, [None, None], "ARP must not count as an ACL hit");
    }

    #[test]
    fn unreadable_ip_is_dropped_only_where_the_tenant_filters() {
        let mut broken = tcp(22);
        broken[14] = 0x4f; // IHL 15: a 60-byte header the frame does not hold
        broken.truncate(40);
        let open = tenant(Vec::new(), AclAction::Allow);
        assert_eq!(run(&ACCESS, &open, &broken).decision, Decision::Flood);
        let filtering = tenant(vec![deny_dport("25")], AclAction::Allow);
        assert_eq!(
            run(&ACCESS, &filtering, &broken).decision,
            Decision::Drop(DropReason::Malformed)
        );
    }

    #[test]
    fn egress_tags_and_tenant_membership_follow_the_port() {
        let info = parse_frame(&tcp(22)).expect("frame");
        let trunk = PortPolicy {
            mode: PortMode::Trunk(TrunkMap::new(&[(100, 0), (200, 1)])),
            guard: None,
        };
        assert_eq!(egress(&trunk, 1, &info), Ok(Some(200)));
        assert_eq!(egress(&ACCESS, 0, &info), Ok(None));
        assert_eq!(egress(&ACCESS, 1, &info), Err(DropReason::CrossTenant));
    }
}
