//! What a worker decides for a batch and where each decided frame goes, as
//! pure functions over the config snapshot: the worker wraps them in I/O
//! (rings, copies, counters), and `benches/pipeline.rs` calls the very same
//! functions, so the benchmark measures what the worker runs.

use super::snapshot::Snapshot;
use crate::packet::TagEdit;
use crate::pipeline::stages::{self, Verdict};
use crate::pipeline::{Decision, DropReason, Fdb, PortId};

/// Decides a batch of frames that came in on `ingress` (see
/// [`stages::ingress_batch`]), by the port's policy and its tenants' filters
/// in `snapshot`. Returns how many verdicts were written: 0 when the port is
/// no longer in the snapshot (it is being removed; its frames go nowhere).
#[inline]
pub fn decide_batch(
    fdb: &mut Fdb,
    snapshot: &Snapshot,
    ingress: PortId,
    frames: &[&[u8]],
    now_ns: u64,
    verdicts: &mut [Verdict],
) -> usize {
    let Some(view) = snapshot.port(ingress) else {
        return 0;
    };
    stages::ingress_batch(
        fdb,
        ingress,
        &view.policy,
        |tenant_id| snapshot.tenant(tenant_id).map(|t| &*t.policy),
        frames,
        now_ns,
        verdicts,
    )
}

/// Offers a frame that came in on `ingress` with `verdict` to every port it
/// goes to, in order: the forwarding port, or each other member of the
/// tenant with its link up for a flood (a dropped frame goes nowhere). For
/// each, `offer(port, outcome)` gets the tag edit that port wants for the
/// frame, or why the port refuses it (a per-copy drop on that port).
///
/// Returns whether any port took the frame: if none did, the frame is a
/// `no_egress` drop on its ingress port (see ARCHITECTURE.md, "Frames received = switched + dropped").
#[inline]
pub fn offer_to_egress(
    snapshot: &Snapshot,
    ingress: PortId,
    verdict: &Verdict,
    mut offer: impl FnMut(PortId, Result<TagEdit, DropReason>),
) -> bool {
    let mut taken = false;
    let mut offer_one = |port: PortId| {
        let outcome = egress_edit(snapshot, port, verdict);
        taken |= outcome.is_ok();
        offer(port, outcome);
    };
    match verdict.decision {
        Decision::Forward(port) => offer_one(port),
        Decision::Flood => {
            for &port in snapshot.flood_members(verdict.tenant_id) {
                if port != ingress && snapshot.port(port).is_some_and(|view| view.link_up) {
                    offer_one(port);
                }
            }
        }
        Decision::Drop(_) => {}
    }
    taken
}

/// The egress checks of `port` for a frame with `verdict`, as the tag edit
/// the frame needs on its way out.
#[inline]
pub fn egress_edit(
    snapshot: &Snapshot,
    port: PortId,
    verdict: &Verdict,
) -> Result<TagEdit, DropReason> {
    let (Some(view), Some(info)) = (snapshot.port(port), verdict.info.as_ref()) else {
        return Err(DropReason::NoEgress);
    };
    let tag = stages::egress(&view.policy, verdict.tenant_id, info)?;
    Ok(TagEdit::between(info.vlan, tag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::snapshot::PortView;
    use crate::packet::parse_frame;
    use crate::pipeline::stages::PortPolicy;
    use crate::pipeline::tenant::{PortMode, TrunkMap};
    use crate::pipeline::Learned;
    use std::sync::Arc;

    fn port(mode: PortMode, link_up: bool) -> Option<PortView> {
        Some(PortView {
            policy: Arc::new(PortPolicy {
                mode,
                guard: None,
                trust: Default::default(),
                storm: crate::pipeline::storm::StormLimits::OFF,
            }),
            link_up,
            tx_worker: 0,
            ifindex: 0,
            fast: None,
            into_peer: false,
            tunnel: None,
        })
    }

    /// Ports 0..=3 of tenant 0: 0 and 1 access, 2 access with its link down,
    /// 3 a trunk carrying tenant 0 as VLAN 100; port 4 is of tenant 1.
    fn snapshot() -> Snapshot {
        Snapshot {
            ports: vec![
                port(PortMode::Access(0), true),
                port(PortMode::Access(0), true),
                port(PortMode::Access(0), false),
                port(PortMode::Trunk(TrunkMap::new(&[(100, 0)])), true),
                port(PortMode::Access(1), true),
            ],
            tenant_members: vec![vec![0, 1, 2, 3], vec![4]],
            tenants: vec![None, None],
            ..Snapshot::default()
        }
    }

    fn verdict(decision: Decision, tenant_id: u16) -> Verdict {
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x88, 0xb5]);
        frame.extend_from_slice(&[0; 46]);
        Verdict {
            decision,
            tenant_id,
            learned: Learned::Nothing,
            info: parse_frame(&frame).ok(),
            acl: [None, None],
        }
    }

    /// Each port offered the frame, with its tag edit or the reason it refused.
    type Offers = Vec<(PortId, Result<TagEdit, DropReason>)>;

    fn offers(snapshot: &Snapshot, ingress: PortId, verdict: &Verdict) -> (Offers, bool) {
        let mut seen = Vec::new();
        let taken = offer_to_egress(snapshot, ingress, verdict, |port, outcome| {
            seen.push((port, outcome))
        });
        (seen, taken)
    }

    #[test]
    fn a_flood_skips_the_ingress_port_and_ports_that_are_down() {
        let snapshot = snapshot();
        let (seen, taken) = offers(&snapshot, 0, &verdict(Decision::Flood, 0));
        assert!(taken);
        assert_eq!(
            seen,
            vec![
                (1, Ok(TagEdit::Keep)),
                (3, Ok(TagEdit::between(None, Some(100))))
            ]
        );
    }

    #[test]
    fn a_port_of_another_tenant_refuses_and_nothing_else_takes_it() {
        let snapshot = snapshot();
        let (seen, taken) = offers(&snapshot, 0, &verdict(Decision::Forward(4), 0));
        assert!(!taken);
        assert_eq!(seen, vec![(4, Err(DropReason::CrossTenant))]);
    }

    #[test]
    fn a_flood_with_no_other_member_and_a_drop_go_nowhere() {
        let snapshot = snapshot();
        assert_eq!(
            offers(&snapshot, 4, &verdict(Decision::Flood, 1)),
            (vec![], false)
        );
        let dropped = verdict(Decision::Drop(DropReason::AclDeny), 0);
        assert_eq!(offers(&snapshot, 0, &dropped), (vec![], false));
    }
}
