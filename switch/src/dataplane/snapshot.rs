//! The immutable view of the configuration that workers switch by.
//!
//! The control plane builds a new `Snapshot` for every change and publishes
//! it with one atomic pointer swap; a worker loads it once per batch, so a
//! batch is switched entirely by one version of the config.

use crate::xdp::fast::KeyWidth;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::stats::bump;
use super::tunnel::{TunnelEndpoint, TunnelView};
use crate::pipeline::stages::{AclMatch, PortPolicy, TenantPolicy};
use crate::pipeline::{PortId, TenantId};

#[derive(Clone, Debug)]
pub struct PortView {
    pub policy: Arc<PortPolicy>,
    pub link_up: bool,
    pub ifindex: u32,
    /// Frames entering here may be switched by a flow entry, keyed this wide;
    /// None: the port has no fast path (off, or not tc-hooked).
    pub fast: Option<KeyWidth>,
    /// A veth whose peer is in another namespace: flow entries to this port
    /// hand frames straight to the peer's receive (bpf_redirect_peer).
    pub into_peer: bool,
    /// A VXLAN tunnel port: frames sent to it are encapsulated (`dataplane::tunnel`).
    pub tunnel: Option<Arc<TunnelView>>,

    /// The worker whose socket transmits on this port; other workers hand
    /// frames for it over (copying them into that worker's UMEM).
    pub tx_worker: usize,
}

/// ACL hit counters of one tenant: one row per worker (each written by its
/// worker only), one slot per rule plus one for the default, per direction.
#[derive(Debug)]
pub struct AclHits {
    ingress_slots: usize,
    rows: Box<[Box<[AtomicU64]>]>,
}

impl AclHits {
    pub fn new(workers: usize, ingress_rules: usize, egress_rules: usize) -> Self {
        let slots = ingress_rules + 1 + egress_rules + 1;
        AclHits {
            ingress_slots: ingress_rules + 1,
            rows: (0..workers)
                .map(|_| (0..slots).map(|_| AtomicU64::new(0)).collect())
                .collect(),
        }
    }

    fn slot(&self, direction: usize, matched: AclMatch) -> usize {
        let (base, len) = if direction == 0 {
            (0, self.ingress_slots)
        } else {
            (
                self.ingress_slots,
                self.rows.first().map_or(0, |r| r.len()) - self.ingress_slots,
            )
        };
        match matched {
            AclMatch::Rule(i) if i + 1 < len => base + i,
            _ => base + len.saturating_sub(1),
        }
    }

    /// Adds `n` hits at once: the flow keeper's row, for frames the fast path
    /// switched (see `dataplane::fastpath`).
    pub fn count_many(&self, row: usize, direction: usize, matched: AclMatch, n: u64) {
        let slot = self.slot(direction, matched);
        if let Some(counter) = self.rows.get(row).and_then(|r| r.get(slot)) {
            bump(counter, n);
        }
    }

    #[inline]
    pub fn count(&self, worker: usize, direction: usize, matched: AclMatch) {
        let slot = self.slot(direction, matched);
        if let Some(counter) = self.rows.get(worker).and_then(|row| row.get(slot)) {
            bump(counter, 1);
        }
    }

    /// Hits summed over workers: (per rule, default), for a direction.
    pub fn totals(&self, direction: usize) -> (Vec<u64>, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let len = self.rows.first().map_or(0, |r| r.len());
        let (base, slots) = if direction == 0 {
            (0, self.ingress_slots)
        } else {
            (self.ingress_slots, len - self.ingress_slots)
        };
        let mut sums = vec![0u64; slots];
        for row in self.rows.iter() {
            for (sum, counter) in sums.iter_mut().zip(&row[base..base + slots]) {
                *sum += counter.load(Relaxed);
            }
        }
        let default = sums.pop().unwrap_or(0);
        (sums, default)
    }
}

#[derive(Clone, Debug)]
pub struct TenantView {
    pub policy: Arc<TenantPolicy>,
    pub hits: Arc<AclHits>,
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Indexed by PortId; None for ids not in use.
    pub ports: Vec<Option<PortView>>,
    /// Flood members of each tenant, indexed by TenantId: its
    /// access ports and the trunks that carry it.
    pub tenant_members: Vec<Vec<PortId>>,
    /// Indexed by TenantId.
    pub tenants: Vec<Option<TenantView>>,
    /// The tunnel ports' receive sockets, each with the worker that reads it.
    pub tunnel_endpoints: Vec<Arc<TunnelEndpoint>>,
}

impl Snapshot {
    #[inline]
    pub fn port(&self, id: PortId) -> Option<&PortView> {
        self.ports.get(usize::from(id)).and_then(Option::as_ref)
    }

    #[inline]
    pub fn flood_members(&self, tenant_id: TenantId) -> &[PortId] {
        self.tenant_members
            .get(usize::from(tenant_id))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    #[inline]
    pub fn tenant(&self, tenant_id: TenantId) -> Option<&TenantView> {
        self.tenants
            .get(usize::from(tenant_id))
            .and_then(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_land_in_their_direction_rule_and_worker_row() {
        let hits = AclHits::new(2, 3, 1);
        hits.count(0, 0, AclMatch::Rule(1));
        hits.count(1, 0, AclMatch::Rule(1));
        hits.count(1, 0, AclMatch::Default);
        hits.count(0, 1, AclMatch::Rule(0));
        hits.count(0, 1, AclMatch::Rule(7)); // out of range: the default's slot
        assert_eq!(hits.totals(0), (vec![0, 2, 0], 1));
        assert_eq!(hits.totals(1), (vec![1], 1));
    }
}
