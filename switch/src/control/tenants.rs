//! Tenants (isolated L2 domains) and their ACLs.
//!
//! A tenant's compiled filters and hit counters are rebuilt only when its
//! rules change. Hits survive the rebuild: the old counters are folded into
//! a per-rule base first (a worker still switching with the previous
//! snapshot may add a last few hits to the old counters; those are lost).

use std::sync::Arc;

use serde_json::{json, Value};

use super::protocol::{AclAddArgs, ErrorCode};
use super::switch::{ControlError, Outcome, Switch};
use crate::config::TenantSpec;
use crate::dataplane::snapshot::AclHits;
use crate::pipeline::acl::{parse_prefix, parse_proto, AclAction, AclRule, PortRange, TenantAcl};
use crate::pipeline::stages::TenantPolicy;
use crate::pipeline::tenant::PortMode;
use crate::pipeline::TenantId;

pub use crate::config::rules::DEFAULT_TENANT;
use crate::config::rules::{self, MAX_TENANTS};
const DIRECTIONS: [&str; 2] = ["ingress", "egress"];

#[derive(Clone)]
pub(super) struct DirectionAcl {
    rules: Vec<AclRule>,
    default: AclAction,
    /// Hits counted before the last rebuild, aligned with `rules`.
    base_hits: Vec<u64>,
    base_default_hits: u64,
}

impl DirectionAcl {
    fn new() -> Self {
        DirectionAcl {
            rules: Vec::new(),
            default: AclAction::Allow,
            base_hits: Vec::new(),
            base_default_hits: 0,
        }
    }
}

pub(super) struct TenantRecord {
    pub id: TenantId,
    acl: [DirectionAcl; 2],
    pub policy: Arc<TenantPolicy>,
    pub hits: Arc<AclHits>,
}

fn compile(acl: &DirectionAcl) -> Outcome<TenantAcl> {
    TenantAcl::new(acl.rules.clone(), acl.default).map_err(|e| ControlError::invalid(e.to_string()))
}

impl TenantRecord {
    /// `rows`: one hit-counter row per worker and one for the flow keeper.
    pub(super) fn new(id: TenantId, rows: usize) -> Self {
        let acl = [DirectionAcl::new(), DirectionAcl::new()];
        let policy = TenantPolicy {
            ingress: TenantAcl::empty(AclAction::Allow),
            egress: TenantAcl::empty(AclAction::Allow),
        };
        TenantRecord {
            id,
            acl,
            policy: Arc::new(policy),
            hits: Arc::new(AclHits::new(rows, 0, 0)),
        }
    }

    /// Replaces one direction's ACL with `next` if it compiles; counters of
    /// surviving rules follow them through `remap` (new index → old index).
    fn replace(
        &mut self,
        direction: usize,
        mut next: DirectionAcl,
        remap: impl Fn(usize) -> Option<usize>,
        rows: usize,
    ) -> Outcome<()> {
        let compiled = compile(&next)?;
        let (old_hits, old_default) = self.hits.totals(direction);
        let current = &self.acl[direction];
        next.base_hits = (0..next.rules.len())
            .map(|i| {
                remap(i).map_or(0, |old| {
                    current.base_hits.get(old).copied().unwrap_or(0)
                        + old_hits.get(old).copied().unwrap_or(0)
                })
            })
            .collect();
        next.base_default_hits = current.base_default_hits + old_default;
        // The other direction's counters restart in the new object too.
        let other = 1 - direction;
        let (other_hits, other_default) = self.hits.totals(other);
        let other_acl = &mut self.acl[other];
        for (base, hits) in other_acl.base_hits.iter_mut().zip(other_hits) {
            *base += hits;
        }
        other_acl.base_default_hits += other_default;

        self.acl[direction] = next;
        let mut policy = (*self.policy).clone();
        if direction == 0 {
            policy.ingress = compiled;
        } else {
            policy.egress = compiled;
        }
        self.policy = Arc::new(policy);
        self.hits = Arc::new(AclHits::new(
            rows,
            self.acl[0].rules.len(),
            self.acl[1].rules.len(),
        ));
        Ok(())
    }
}

impl TenantRecord {
    /// Gives the hit counters a row per worker (and the keeper) of a new data plane; the hits
    /// so far move into the per-rule bases.
    pub(super) fn rehome(&mut self, rows: usize) {
        for direction in 0..2 {
            let (hits, default_hits) = self.hits.totals(direction);
            let acl = &mut self.acl[direction];
            for (base, hits) in acl.base_hits.iter_mut().zip(hits) {
                *base += hits;
            }
            acl.base_default_hits += default_hits;
        }
        self.hits = Arc::new(AclHits::new(
            rows,
            self.acl[0].rules.len(),
            self.acl[1].rules.len(),
        ));
    }
}

fn validate_tenant_name(name: &str) -> Outcome<()> {
    rules::tenant_name(name).map_err(ControlError::invalid)
}

fn direction(text: &str) -> Outcome<usize> {
    DIRECTIONS.iter().position(|d| *d == text).ok_or_else(|| {
        ControlError::invalid(format!(
            "unknown direction {text:?}: use ingress (from ports) or egress (to ports)"
        ))
    })
}

fn action(text: &str) -> Outcome<AclAction> {
    text.parse::<AclAction>()
        .map_err(|_| ControlError::invalid(format!("unknown action {text:?}: use allow or deny")))
}

fn position(position: usize, len: usize, what: &str) -> Outcome<usize> {
    if position >= 1 && position <= len {
        Ok(position - 1)
    } else {
        Err(ControlError::not_found(format!(
            "no rule at {what} position {position} (the list has {len})"
        )))
    }
}

/// Builds a rule from the strings a client typed; every error names the field.
pub(super) fn rule_from_args(args: &AclAddArgs) -> Outcome<AclRule> {
    let invalid =
        |field: &str, e: &dyn std::fmt::Display| ControlError::invalid(format!("--{field}: {e}"));
    let range = |field: &str, text: &Option<String>| -> Outcome<Option<PortRange>> {
        text.as_deref()
            .map(|t| t.parse::<PortRange>().map_err(|e| invalid(field, &e)))
            .transpose()
    };
    let rule = AclRule {
        src: args
            .src
            .as_deref()
            .map(parse_prefix)
            .transpose()
            .map_err(|e| invalid("src", &e))?,
        dst: args
            .dst
            .as_deref()
            .map(parse_prefix)
            .transpose()
            .map_err(|e| invalid("dst", &e))?,
        proto: args
            .proto
            .as_deref()
            .map(parse_proto)
            .transpose()
            .map_err(|e| invalid("proto", &e))?,
        sport: range("sport", &args.sport)?,
        dport: range("dport", &args.dport)?,
        icmp_type: args.icmp_type,
        established: args.established,
        action: action(&args.action)?,
    };
    rule.validate()
        .map_err(|e| ControlError::invalid(e.to_string()))?;
    Ok(rule)
}

impl Switch {
    pub(super) fn tenant_create(&mut self, name: &str) -> Outcome {
        validate_tenant_name(name)?;
        if self.tenants.contains_key(name) {
            return Err(ControlError::new(
                ErrorCode::AlreadyExists,
                format!("tenant {name} already exists"),
            ));
        }
        let id = (1..MAX_TENANTS as TenantId)
            .find(|id| !self.tenants.values().any(|t| t.id == *id))
            .ok_or_else(|| {
                ControlError::invalid(format!("this switch holds at most {MAX_TENANTS} tenants"))
            })?;
        self.tenants.insert(
            name.to_string(),
            TenantRecord::new(id, self.dataplane.acl_rows()),
        );
        self.publish();
        tracing::info!(tenant = name, id, "tenant created");
        Ok(json!({ "name": name, "id": id }))
    }

    /// Ports (and trunk VLANs) that carry tenant `id`, for messages and lists.
    fn tenant_members(&self, id: TenantId) -> (Vec<&str>, Vec<Value>) {
        let mut ports = Vec::new();
        let mut vlans = Vec::new();
        for (name, record) in &self.ports {
            match &record.policy.mode {
                PortMode::Access(d) if *d == id => ports.push(name.as_str()),
                PortMode::Trunk(map) => {
                    if let Some(vid) = map.vid(id) {
                        vlans.push(json!({ "port": name, "vlan": vid }));
                    }
                }
                _ => {}
            }
        }
        (ports, vlans)
    }

    pub(super) fn tenant_delete(&mut self, name: &str) -> Outcome {
        if name == DEFAULT_TENANT {
            return Err(ControlError::invalid(
                "the default tenant cannot be deleted",
            ));
        }
        let id = self.tenant(name)?.id;
        if let Some(port) = self.missing_port_in_tenant(name) {
            return Err(ControlError::invalid(format!(
                "tenant {name} still has the missing port {port}; move or delete it first"
            )));
        }
        let (ports, vlans) = self.tenant_members(id);
        if !ports.is_empty() || !vlans.is_empty() {
            let mut users: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
            users.extend(vlans.iter().map(|v| {
                format!(
                    "VLAN {} on trunk {}",
                    v["vlan"],
                    v["port"].as_str().unwrap_or("?")
                )
            }));
            return Err(ControlError::invalid(format!(
                "tenant {name} still has ports: {}; move or delete them first",
                users.join(", ")
            )));
        }
        self.tenants.remove(name);
        self.grants.remove_tenant(name);
        self.static_macs
            .retain(|(tenant_id, _), _| *tenant_id != id);
        self.publish();
        tracing::info!(tenant = name, "tenant deleted");
        Ok(json!({ "removed": name }))
    }

    pub(super) fn tenant_list(&self) -> Value {
        json!(self
            .tenants
            .iter()
            .map(|(name, t)| {
                let (ports, vlans) = self.tenant_members(t.id);
                json!({ "name": name, "id": t.id, "ports": ports, "vlans": vlans })
            })
            .collect::<Vec<_>>())
    }

    pub(super) fn tenant_show(&self, name: &str) -> Outcome {
        let tenant = self.tenant(name)?;
        let (ports, vlans) = self.tenant_members(tenant.id);
        let acl = |d: usize| json!({ "default": tenant.acl[d].default, "rules": tenant.acl[d].rules.len() });
        Ok(json!({
            "name": name,
            "id": tenant.id,
            "ports": ports,
            "vlans": vlans,
            "acl": { "ingress": acl(0), "egress": acl(1) },
        }))
    }

    fn edit_acl(
        &mut self,
        tenant: &str,
        dir: usize,
        edit: impl FnOnce(&mut DirectionAcl) -> Outcome<()>,
        remap: impl Fn(usize) -> Option<usize>,
    ) -> Outcome {
        let rows = self.dataplane.acl_rows();
        // Flow entries carry hits of the rules as they are now: count them
        // into the current counters before those become the rules' bases.
        self.dataplane.retire_flows();
        let record = self.tenants.get_mut(tenant).ok_or_else(|| {
            ControlError::not_found(format!(
                "no tenant named {tenant} (see `xswctl tenant list`)"
            ))
        })?;
        let mut next = record.acl[dir].clone();
        edit(&mut next)?;
        record.replace(dir, next, remap, rows)?;
        self.publish();
        self.acl_list(tenant)
    }

    pub(super) fn acl_add(&mut self, args: &AclAddArgs) -> Outcome {
        let dir = direction(&args.direction)?;
        self.tenant(&args.tenant)?;
        let rule = rule_from_args(args)?;
        let len = self.tenant(&args.tenant)?.acl[dir].rules.len();
        let at = match args.at {
            None => len,
            Some(p) if p >= 1 && p <= len + 1 => p - 1,
            Some(p) => {
                return Err(ControlError::invalid(format!(
                    "--at {p}: positions run from 1 to {}",
                    len + 1
                )))
            }
        };
        self.edit_acl(
            &args.tenant,
            dir,
            |acl| {
                acl.rules.insert(at, rule);
                Ok(())
            },
            |i| match i.cmp(&at) {
                std::cmp::Ordering::Less => Some(i),
                std::cmp::Ordering::Equal => None,
                std::cmp::Ordering::Greater => Some(i - 1),
            },
        )
    }

    pub(super) fn acl_del(&mut self, tenant: &str, dir: &str, pos: usize) -> Outcome {
        let dir = direction(dir)?;
        let len = self.tenant(tenant)?.acl[dir].rules.len();
        let index = position(pos, len, DIRECTIONS[dir])?;
        self.edit_acl(
            tenant,
            dir,
            |acl| {
                acl.rules.remove(index);
                Ok(())
            },
            |i| Some(if i < index { i } else { i + 1 }),
        )
    }

    pub(super) fn acl_move(&mut self, tenant: &str, dir: &str, from: usize, to: usize) -> Outcome {
        let dir = direction(dir)?;
        let len = self.tenant(tenant)?.acl[dir].rules.len();
        let from = position(from, len, DIRECTIONS[dir])?;
        let to = position(to, len, DIRECTIONS[dir])?;
        // The order after the move, as old indices.
        let mut order: Vec<usize> = (0..len).collect();
        let moved = order.remove(from);
        order.insert(to, moved);
        let remap_order = order.clone();
        self.edit_acl(
            tenant,
            dir,
            |acl| {
                let old = std::mem::take(&mut acl.rules);
                acl.rules = order.iter().filter_map(|&i| old.get(i).cloned()).collect();
                Ok(())
            },
            move |i| remap_order.get(i).copied(),
        )
    }

    pub(super) fn acl_policy(&mut self, tenant: &str, dir: &str, action_text: &str) -> Outcome {
        let dir = direction(dir)?;
        let action = action(action_text)?;
        self.tenant(tenant)?;
        self.edit_acl(
            tenant,
            dir,
            |acl| {
                acl.default = action;
                Ok(())
            },
            Some,
        )
    }

    pub(super) fn acl_list(&self, tenant: &str) -> Outcome {
        let record = self.tenant(tenant)?;
        let list = |dir: usize| {
            let acl = &record.acl[dir];
            let (mut hits, mut default_hits) = record.hits.totals(dir);
            // What live flow entries matched so far (counted at removal).
            let (live, live_default) = self.dataplane.live_acl_hits(record.id, dir, hits.len());
            for (hit, more) in hits.iter_mut().zip(live) {
                *hit += more;
            }
            default_hits += live_default;
            let rules: Vec<Value> = acl
                .rules
                .iter()
                .enumerate()
                .map(|(i, rule)| {
                    let mut row = serde_json::to_value(rule).unwrap_or_else(|_| json!({}));
                    if let Some(object) = row.as_object_mut() {
                        object.insert("position".into(), json!(i + 1));
                        object.insert(
                            "hits".into(),
                            json!(acl.base_hits.get(i).unwrap_or(&0) + hits.get(i).unwrap_or(&0)),
                        );
                        object.insert("text".into(), json!(rule.to_string()));
                    }
                    row
                })
                .collect();
            json!({
                "default": acl.default,
                "default_hits": acl.base_default_hits + default_hits,
                "rules": rules,
            })
        };
        Ok(json!({ "tenant": tenant, "ingress": list(0), "egress": list(1) }))
    }

    /// A tenant as the config file describes it.
    pub(super) fn tenant_spec(&self, name: &str) -> Option<TenantSpec> {
        let record = self.tenants.get(name)?;
        let non_default =
            |acl: &DirectionAcl| (acl.default != AclAction::Allow).then_some(acl.default);
        let mut spec = TenantSpec {
            name: name.to_string(),
            ingress_default: non_default(&record.acl[0]),
            egress_default: non_default(&record.acl[1]),
            ingress: record.acl[0].rules.clone(),
            egress: record.acl[1].rules.clone(),
            ..TenantSpec::default()
        };
        self.grants.fill_spec(&mut spec);
        Some(spec)
    }

    /// Creates (or, for `default`, fills) a tenant from the config file.
    pub(super) fn apply_tenant_spec(&mut self, spec: &TenantSpec) -> Outcome<()> {
        if !self.tenants.contains_key(&spec.name) {
            self.tenant_create(&spec.name)?;
        }
        let rows = self.dataplane.acl_rows();
        let Some(record) = self.tenants.get_mut(&spec.name) else {
            return Ok(());
        };
        for (dir, rules, default) in [
            (0, &spec.ingress, spec.ingress_default),
            (1, &spec.egress, spec.egress_default),
        ] {
            let default = default.unwrap_or(AclAction::Allow);
            if record.acl[dir].rules == *rules && record.acl[dir].default == default {
                // Unchanged: keep its hit counters.
                continue;
            }
            let mut next = DirectionAcl::new();
            next.rules = rules.clone();
            next.default = default;
            record.replace(dir, next, |_| None, rows)?;
        }
        // The file's grants replace the tenant's: a reload can also revoke.
        let previous = self.grants.clone();
        self.grants.remove_tenant(&spec.name);
        if let Err(e) = self.grants.apply_spec(spec) {
            self.grants = previous;
            return Err(ControlError::invalid(e));
        }
        self.publish();
        Ok(())
    }
}
