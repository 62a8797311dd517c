//! A frame traced through the pipeline without being sent: what a worker
//! would decide for it, by the very functions it switches frames with
//! (`delivery::decide_batch`, `delivery::offer_to_egress`,
//! `fastpath::flow_for`), run against a copy of its MAC table so that the
//! trace learns nothing, refreshes nothing and takes no storm-control
//! tokens. Counters are the worker's job around these calls, so a trace
//! changes none.

use super::delivery;
use super::fastpath::{flow_for, FlowContext, NO_PORT};
use super::snapshot::Snapshot;
use crate::packet::TagEdit;
use crate::pipeline::stages::Verdict;
use crate::pipeline::{Decision, DropReason, Fdb, FdbEntry, PortId};
use crate::xdp::fast::KeyWidth;

/// Whether the fast path would switch later frames like the traced one.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FastPathVerdict {
    /// The fast path is off, or this port's frames never take it (not tc-hooked).
    Off,
    /// The decision must stay in user space (see `fastpath::flow_for`).
    NotEligible,
    /// A flow entry keyed this wide would forward the flow, or drop it (`drop`).
    Entry { width: KeyWidth, drop: bool },
}

/// What the pipeline decided for a traced frame, stage by stage.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceRun {
    /// The worker whose MAC table and storm buckets the trace read.
    pub worker: usize,
    /// False when the ingress port is not in the snapshot (being removed).
    pub decided: bool,
    pub verdict: Verdict,
    /// The destination's MAC table entry the decision read, if any.
    pub destination: Option<FdbEntry>,
    /// The source's entry before the frame (what learning would change).
    pub source: Option<FdbEntry>,
    /// Each port the frame was offered to, with its tag edit or refusal.
    pub offers: Vec<(PortId, Result<TagEdit, DropReason>)>,
    pub fast_path: FastPathVerdict,
}

/// Runs `frame`, entering on `ingress`, through the pipeline as worker
/// `worker` would at `now_ns`, against a copy of `fdb`. `fast_path_on`:
/// whether the worker installs flow entries at all.
pub fn trace_frame(
    worker: usize,
    fdb: &Fdb,
    snapshot: &Snapshot,
    ingress: PortId,
    frame: &[u8],
    now_ns: u64,
    fast_path_on: bool,
) -> TraceRun {
    let mut copy = fdb.clone();
    let mut verdicts = [Verdict::default()];
    let decided = delivery::decide_batch(
        &mut copy,
        snapshot,
        ingress,
        &[frame],
        now_ns,
        &mut verdicts,
    ) == 1;
    let [verdict] = verdicts;
    let source = verdict
        .info
        .as_ref()
        .and_then(|info| fdb.get(verdict.tenant_id, info.src_mac));
    let destination = verdict
        .info
        .as_ref()
        .and_then(|info| copy.get(verdict.tenant_id, info.dst_mac));
    let mut offers = Vec::new();
    let mut last_taken = None;
    if decided {
        delivery::offer_to_egress(snapshot, ingress, &verdict, |port, outcome| {
            if let Ok(edit) = outcome {
                last_taken = Some((port, edit));
            }
            offers.push((port, outcome));
        });
    }
    // As the worker's `dispatch` and `consider_flow`: a drop is considered
    // for an entry with no egress, a forward with the port that took it.
    let considered = match verdict.decision {
        Decision::Drop(_) => Some((NO_PORT, TagEdit::Keep)),
        Decision::Forward(_) => last_taken,
        Decision::Flood => None,
    };
    let width = snapshot.port(ingress).and_then(|view| view.fast);
    let fast_path = match (fast_path_on && decided, width) {
        (true, Some(width)) => considered
            .and_then(|(egress, edit)| {
                let cx = FlowContext {
                    snapshot,
                    ingress,
                    egress,
                    destination,
                    aging_ns: copy.aging_ns(),
                    monotonic_at_epoch: 0,
                    generation: 0,
                    edit,
                };
                flow_for(&cx, &verdict, frame)
            })
            .map_or(FastPathVerdict::NotEligible, |(_, entry)| {
                FastPathVerdict::Entry {
                    width,
                    drop: entry.egress_port == NO_PORT,
                }
            }),
        _ => FastPathVerdict::Off,
    };
    TraceRun {
        worker,
        decided,
        verdict,
        destination,
        source,
        offers,
        fast_path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::snapshot::PortView;
    use crate::pipeline::stages::PortPolicy;
    use crate::pipeline::storm::StormLimits;
    use crate::pipeline::tenant::PortMode;
    use std::sync::Arc;

    fn access(tenant_id: u16) -> Option<PortView> {
        Some(PortView {
            policy: Arc::new(PortPolicy {
                mode: PortMode::Access(tenant_id),
                guard: None,
                trust: Default::default(),
                storm: StormLimits::OFF,
            }),
            link_up: true,
            tx_worker: 0,
            ifindex: 7,
            fast: Some(KeyWidth::L2),
            into_peer: false,
            tunnel: None,
        })
    }

    fn frame(src: [u8; 6], dst: [u8; 6]) -> Vec<u8> {
        let mut bytes = dst.to_vec();
        bytes.extend_from_slice(&src);
        bytes.extend_from_slice(&[0x88, 0xb5]);
        bytes.resize(60, 0);
        bytes
    }

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    #[test]
    fn a_trace_learns_nothing_and_agrees_with_a_real_decision() {
        let snapshot = Snapshot {
            ports: vec![access(0), access(0)],
            tenant_members: vec![vec![0, 1]],
            tenants: vec![None],
            ..Snapshot::default()
        };
        let mut fdb = Fdb::new(64, 1_000_000_000_000);
        let traced = trace_frame(0, &fdb, &snapshot, 0, &frame(A, B), 1, true);
        assert_eq!(traced.verdict.decision, Decision::Flood);
        assert_eq!(fdb.len(), 0, "the trace learned the source");
        assert_eq!(traced.fast_path, FastPathVerdict::NotEligible);
        assert_eq!(traced.offers, vec![(1, Ok(TagEdit::Keep))]);

        // B is learned on port 1: A's frame to B is forwarded there, and the
        // fast path would take it at the port's key width.
        fdb.learn(0, crate::packet::MacAddr(B), 1, 1);
        fdb.learn(0, crate::packet::MacAddr(A), 0, 1);
        let before = fdb.len();
        let traced = trace_frame(0, &fdb, &snapshot, 0, &frame(A, B), 2, true);
        let mut real = [Verdict::default()];
        delivery::decide_batch(&mut fdb, &snapshot, 0, &[&frame(A, B)], 2, &mut real);
        assert_eq!(traced.verdict, real[0]);
        assert_eq!(traced.verdict.decision, Decision::Forward(1));
        assert_eq!(
            traced.fast_path,
            FastPathVerdict::Entry {
                width: KeyWidth::L2,
                drop: false
            }
        );
        assert_eq!(fdb.len(), before);
        let off = trace_frame(0, &fdb, &snapshot, 0, &frame(A, B), 2, false);
        assert_eq!(off.fast_path, FastPathVerdict::Off);
    }
}
