//! `xswctl trace`: what the running switch would do with a frame entering a
//! port, stage by stage, without sending it. The frame goes to the worker
//! that receives the port's frames, which runs its own pipeline code on a
//! copy of its MAC table (`dataplane::trace`); this file only names what
//! that run decided, in the pipeline's order, for operators.

use serde_json::{json, Value};

use super::switch::{system, ControlError, Outcome, Switch};
use super::trace_frame::{self, TraceArgs};
use crate::dataplane::trace::{FastPathVerdict, TraceRun};
use crate::packet::{FrameInfo, L3Info, TagEdit};
use crate::pipeline::acl::rule::proto_name;
use crate::pipeline::fdb::Learned;
use crate::pipeline::stages::{AclMatch, PortPolicy};
use crate::pipeline::tenant::PortMode;
use crate::pipeline::{Decision, DropReason};

/// The ingress stages, in the pipeline's order (`pipeline/stages.rs`).
const STAGES: [&str; 8] = [
    "parse",
    "tenant",
    "antispoof",
    "ra_dhcp_guard",
    "acl_ingress",
    "mac_lookup",
    "acl_egress",
    "storm_control",
];

impl Switch {
    pub(super) fn trace(&self, args: &TraceArgs) -> Outcome {
        let record = self.port(&args.port).map_err(|_| {
            let missing = if self.missing.contains_key(&args.port) {
                " (it is configured, but its interface does not exist)"
            } else {
                ""
            };
            ControlError::not_found(format!("no attached port named {}{missing}", args.port))
        })?;
        // A frame built from fields is the kind the port takes; a raw one
        // (`--hex`) may be anything, to see how the switch refuses it.
        if args.hex.is_none() {
            match (&record.policy.mode, args.vlan) {
                (PortMode::Access(_), Some(_)) => {
                    return Err(ControlError::invalid(format!(
                        "--vlan: {} is an access port, which takes untagged frames (give --hex to trace a tagged frame anyway)",
                        args.port
                    )))
                }
                (PortMode::Trunk(_), None) => {
                    return Err(ControlError::invalid(format!(
                        "{} is a trunk: say which VLAN the frame carries with --vlan",
                        args.port
                    )))
                }
                _ => {}
            }
        }
        let frame = trace_frame::build(args).map_err(|e| ControlError::invalid(e.to_string()))?;
        // The worker of the port's first socket: for an XDP port the one that
        // receives its queue 0; for a tc port (whose frames reach the workers
        // through the shared slow-path device, on any of them) the one that
        // transmits on it. Workers pass on what they learn, so their tables
        // agree but for news in flight; storm buckets are each worker's own.
        let worker = record.queues.first().map_or(0, |&(_, worker)| worker);
        let frame_len = frame.len();
        let run = self
            .dataplane
            .trace(worker, record.id, frame)
            .map_err(system)?;
        if !run.decided {
            return Err(ControlError::not_found(format!(
                "port {} is being removed",
                args.port
            )));
        }
        Ok(self.trace_report(&args.port, &record.policy, frame_len, &run))
    }

    fn trace_report(
        &self,
        port: &str,
        policy: &PortPolicy,
        frame_len: usize,
        run: &TraceRun,
    ) -> Value {
        let verdict = &run.verdict;
        let info = verdict.info.as_ref();
        let dropped_at = match verdict.decision {
            Decision::Drop(reason) => {
                Some(drop_stage(reason, info.is_some(), verdict.acl[1].is_some()))
            }
            _ => None,
        };
        let tenant = self
            .tenant_name(verdict.tenant_id)
            .unwrap_or("?")
            .to_string();
        let mut stages = Vec::new();
        for (index, name) in STAGES.iter().enumerate() {
            let result = match dropped_at {
                Some(at) if index == at => "drop",
                Some(at) if index > at => "not_reached",
                _ => "pass",
            };
            let detail = if result == "not_reached" {
                String::new()
            } else {
                self.stage_detail(index, policy, &tenant, run)
            };
            let mut stage = json!({ "stage": name, "result": result, "detail": detail });
            if let (Some(object), "drop", Decision::Drop(reason)) =
                (stage.as_object_mut(), result, verdict.decision)
            {
                object.insert("reason".into(), reason.as_str().into());
            }
            if let Some(object) = stage.as_object_mut() {
                let acl = match index {
                    4 => verdict.acl[0],
                    6 => verdict.acl[1],
                    _ => None,
                };
                match acl {
                    Some(AclMatch::Rule(i)) => {
                        object.insert("rule".into(), json!(i + 1));
                    }
                    Some(AclMatch::Default) => {
                        object.insert("rule".into(), "default".into());
                    }
                    None => {}
                }
            }
            stages.push(stage);
        }
        let egress: Vec<Value> = run
            .offers
            .iter()
            .map(|(id, outcome)| {
                let name = self.port_name(*id).unwrap_or("?");
                match outcome {
                    Ok(edit) => {
                        json!({ "port": name, "result": "deliver", "tag": tag_edit(*edit) })
                    }
                    Err(reason) => {
                        json!({ "port": name, "result": "refuse", "reason": reason.as_str() })
                    }
                }
            })
            .collect();
        let taken: Vec<&str> = run
            .offers
            .iter()
            .filter(|(_, outcome)| outcome.is_ok())
            .filter_map(|(id, _)| self.port_name(*id))
            .collect();
        let (result, reason) = match verdict.decision {
            Decision::Drop(reason) => ("drop", Some(reason)),
            _ if taken.is_empty() => ("drop", Some(DropReason::NoEgress)),
            Decision::Forward(_) => ("forward", None),
            Decision::Flood => ("flood", None),
        };
        let fast_path = match run.fast_path {
            FastPathVerdict::Off => {
                json!({ "taken": false, "detail": "the fast path is off for this port" })
            }
            FastPathVerdict::NotEligible => json!({
                "taken": false,
                "detail": "stays in the workers: only a forward to one known port or a drop by the port's guard or ingress ACL becomes a flow entry"
            }),
            FastPathVerdict::Entry { width, drop } => json!({
                "taken": true,
                "key_width": width,
                "action": if drop { "drop" } else { "forward" },
            }),
        };
        json!({
            "port": port,
            "worker": run.worker,
            "frame_bytes": frame_len,
            "tenant": tenant,
            "stages": stages,
            "egress": egress,
            "result": result,
            "reason": reason.map(DropReason::as_str),
            "delivered_to": taken,
            "fast_path": fast_path,
            "changed": "nothing: the frame was not sent and the MAC table, storm buckets and counters are as they were",
        })
    }

    /// What stage `index` found, in words.
    fn stage_detail(
        &self,
        index: usize,
        policy: &PortPolicy,
        tenant: &str,
        run: &TraceRun,
    ) -> String {
        let verdict = &run.verdict;
        let Some(info) = verdict.info.as_ref() else {
            return "the frame cannot be read as Ethernet".into();
        };
        let reason = match verdict.decision {
            Decision::Drop(reason) => Some(reason),
            _ => None,
        };
        match index {
            0 => describe_frame(info),
            1 => match (&policy.mode, info.vlan, reason) {
                (PortMode::Access(_), Some(vid), Some(DropReason::CrossTenant)) => {
                    format!("an access port takes no tagged frames (VID {vid})")
                }
                (PortMode::Access(_), _, _) => format!("access port of tenant {tenant}"),
                (PortMode::Trunk(_), None, Some(DropReason::VlanUnknown)) => {
                    "a trunk takes only tagged frames".into()
                }
                (PortMode::Trunk(_), Some(vid), Some(DropReason::VlanUnknown)) => {
                    format!("the trunk does not carry VID {vid}")
                }
                (PortMode::Trunk(_), _, Some(DropReason::CrossTenant)) => {
                    "a second tag could hop tenants".into()
                }
                (PortMode::Trunk(_), vid, _) => {
                    format!("trunk: VID {} is tenant {tenant}", vid.unwrap_or(0))
                }
            },
            2 => match (&policy.guard, reason) {
                (None, _) => "no anti-spoofing guard on this port".into(),
                (Some(guard), Some(reason @ (DropReason::SpoofedMac | DropReason::ArpSpoof | DropReason::NdSpoof | DropReason::SpoofedIp))) => {
                    format!(
                        "{}: the port may send from MACs [{}] and IPs [{}]",
                        spoof_rule(reason),
                        join(&guard.macs),
                        guard_ips(guard)
                    )
                }
                (Some(guard), _) => format!(
                    "source MAC and IP allowed (MACs [{}], IPs [{}])",
                    join(&guard.macs),
                    guard_ips(guard)
                ),
            },
            3 => {
                let yes = |b: bool| if b { "trusted" } else { "not trusted" };
                let trust = format!(
                    "router advertisements {}, DHCP server messages {}",
                    yes(policy.trust.ra),
                    yes(policy.trust.dhcp)
                );
                match reason {
                    Some(DropReason::RaGuard) => format!("a router advertisement or redirect: {trust}"),
                    Some(DropReason::DhcpGuard) => format!("a DHCP server message: {trust}"),
                    Some(DropReason::DhcpSpoof) => {
                        "a DHCP client message whose chaddr is not one of the port's MACs".into()
                    }
                    _ => trust,
                }
            }
            4 => acl_detail(verdict.acl[0], reason, info),
            5 => self.mac_detail(run, info),
            6 => acl_detail(verdict.acl[1], reason, info),
            _ => match (verdict.decision, reason) {
                (_, Some(r @ (DropReason::StormBroadcast | DropReason::StormMulticast | DropReason::StormUnknownUnicast))) => {
                    format!("{r}: worker {}'s bucket for this port is empty", run.worker)
                }
                (Decision::Flood, _) => format!(
                    "admitted (limits per second: broadcast {}, multicast {}, unknown unicast {}; 0 = none)",
                    policy.storm.broadcast, policy.storm.multicast, policy.storm.unknown_unicast
                ),
                _ => "not flooded: storm control does not apply".into(),
            },
        }
    }

    fn mac_detail(&self, run: &TraceRun, info: &FrameInfo) -> String {
        let verdict = &run.verdict;
        let learning = match verdict.learned {
            Learned::Nothing => "source not learned".to_string(),
            Learned::New | Learned::Evicted { .. } => format!("would learn {} here", info.src_mac),
            Learned::Refreshed => format!("{} already learned here", info.src_mac),
            Learned::Moved { from } => format!(
                "{} would move here from {}",
                info.src_mac,
                self.port_name(from).unwrap_or("?")
            ),
            Learned::StaticKept => format!("{} has a static entry", info.src_mac),
            Learned::TableFull => "the MAC table is full: source not learned".into(),
            Learned::LimitReached => "MAC limit reached: source not learned".into(),
        };
        let lookup = match verdict.decision {
            Decision::Drop(DropReason::InvalidSourceMac) => {
                format!("{} is not a unicast source", info.src_mac)
            }
            Decision::Drop(DropReason::SameSegment) => {
                format!("{} is on the ingress port itself", info.dst_mac)
            }
            _ if info.dst_mac.is_multicast() => format!(
                "{} is broadcast/multicast: flood to {}",
                info.dst_mac,
                self.flood_set(run)
            ),
            Decision::Flood => {
                format!("{} unknown: flood to {}", info.dst_mac, self.flood_set(run))
            }
            _ => match run.destination {
                Some(entry) => format!(
                    "{} {} on {}",
                    info.dst_mac,
                    if entry.is_static { "static" } else { "learned" },
                    self.port_name(entry.port).unwrap_or("?")
                ),
                None => format!("{} unknown: flood", info.dst_mac),
            },
        };
        format!("{learning}; {lookup}")
    }

    fn flood_set(&self, run: &TraceRun) -> String {
        let names: Vec<&str> = run
            .offers
            .iter()
            .filter_map(|(id, _)| self.port_name(*id))
            .collect();
        if names.is_empty() {
            "no other port with its link up".into()
        } else {
            names.join(", ")
        }
    }
}

/// The stage (an index into [`STAGES`]) that drops a frame for `reason`.
fn drop_stage(reason: DropReason, parsed: bool, egress_acl_ran: bool) -> usize {
    match reason {
        // A frame whose IP or ARP header cannot be read is dropped where a tenant filters.
        DropReason::Malformed if parsed => 4,
        DropReason::Malformed => 0,
        DropReason::VlanUnknown | DropReason::CrossTenant => 1,
        DropReason::SpoofedMac
        | DropReason::SpoofedIp
        | DropReason::ArpSpoof
        | DropReason::NdSpoof => 2,
        DropReason::RaGuard | DropReason::DhcpGuard | DropReason::DhcpSpoof => 3,
        DropReason::AclDeny if egress_acl_ran => 6,
        DropReason::AclDeny => 4,
        DropReason::StormBroadcast
        | DropReason::StormMulticast
        | DropReason::StormUnknownUnicast => 7,
        _ => 5,
    }
}

fn spoof_rule(reason: DropReason) -> &'static str {
    match reason {
        DropReason::SpoofedMac => "spoofed_mac: the source MAC is not the port's",
        DropReason::SpoofedIp => "spoofed_ip: the source IP is not the port's",
        DropReason::ArpSpoof => "arp_spoof: the ARP sender is not the port's",
        _ => "nd_spoof: the neighbour advertisement claims an address not the port's",
    }
}

fn acl_detail(matched: Option<AclMatch>, reason: Option<DropReason>, info: &FrameInfo) -> String {
    let action = if reason == Some(DropReason::AclDeny) {
        "deny"
    } else {
        "allow"
    };
    match matched {
        Some(AclMatch::Rule(i)) => format!("rule {} ({action})", i + 1),
        Some(AclMatch::Default) => format!("no rule matched: default policy ({action})"),
        None if matches!(info.l3, L3Info::Malformed) => {
            "an unreadable IP or ARP header in a tenant that filters".into()
        }
        None => "not filtered (non-IP, neighbour discovery, or not reached)".into(),
    }
}

fn tag_edit(edit: TagEdit) -> String {
    match edit {
        TagEdit::Keep => "unchanged".into(),
        TagEdit::Insert(vid) => format!("push VID {vid}"),
        TagEdit::Remove => "pop".into(),
        TagEdit::Rewrite(vid) => format!("rewrite to VID {vid}"),
    }
}

fn describe_frame(info: &FrameInfo) -> String {
    let tag = info.vlan.map_or(String::new(), |vid| format!(" VID {vid}"));
    let l3 = match &info.l3 {
        L3Info::Ipv4(ip) | L3Info::Ipv6(ip) => {
            let family = if matches!(info.l3, L3Info::Ipv4(_)) {
                "IPv4"
            } else {
                "IPv6"
            };
            let ports = match ip.icmp_type {
                Some(t) => format!(" type {t}"),
                None if ip.sport != 0 || ip.dport != 0 => format!(" {} → {}", ip.sport, ip.dport),
                None => String::new(),
            };
            format!(
                "{family} {} {} → {}{ports}",
                proto_name(ip.proto),
                ip.src,
                ip.dst
            )
        }
        L3Info::Arp(arp) => format!("ARP {} → {}", arp.spa, arp.tpa),
        L3Info::None => format!("EtherType {:#06x}", info.ethertype),
        L3Info::Malformed => format!("EtherType {:#06x}, header unreadable", info.ethertype),
    };
    format!("{} → {}{tag}, {l3}", info.src_mac, info.dst_mac)
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn guard_ips(guard: &crate::pipeline::PortGuard) -> String {
    let mut ips: Vec<String> = guard.ipv4.iter().map(ToString::to_string).collect();
    ips.extend(guard.ipv6.iter().map(ToString::to_string));
    ips.join(", ")
}
