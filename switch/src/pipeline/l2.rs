//! Layer-2 learning bridge: the forwarding decision for one frame.
//!
//! Pure: no I/O and no clock reads (time comes in as `now_ns`), so it is tested and
//! benchmarked without devices, and replayed deterministically.

use super::decision::{Decision, DropReason, PortId, TenantId};
use super::fdb::{Fdb, Learned};
use crate::packet::MacAddr;

/// The port a frame arrived on and the broadcast domain that port belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct IngressPort {
    pub id: PortId,
    pub tenant_id: TenantId,
}

/// Learns the frame's source on the ingress port, then chooses where the frame goes,
/// from the frame's addresses (the caller parsed them; `stages` runs this after the
/// tenant, anti-spoofing and ACL stages).
///
/// `Flood` means every other port of the ingress tenant; turning it into ports, and
/// counting `NoEgress` when there are none, is the caller's job.
///
/// The decision never depends on whether learning succeeded: a source refused with
/// [`Learned::TableFull`] or [`Learned::LimitReached`] (the port or the tenant holds as many
/// addresses as it may) is still switched, and traffic towards it floods until it is
/// learned. Counting refusals is the caller's job too.
#[inline(always)]
pub(crate) fn decide_addresses(
    fdb: &mut Fdb,
    ingress: IngressPort,
    source: MacAddr,
    destination: MacAddr,
    now_ns: u64,
) -> (Decision, Learned) {
    if !source.is_unicast() {
        // Learning a group or zero address would bind traffic for many hosts to one port.
        return (
            Decision::Drop(DropReason::InvalidSourceMac),
            Learned::Nothing,
        );
    }
    let learned = fdb.learn(ingress.tenant_id, source, ingress.id, now_ns);

    if destination.is_multicast() {
        return (Decision::Flood, learned);
    }
    let decision = match fdb.lookup(ingress.tenant_id, destination, now_ns) {
        Some(port) if port == ingress.id => Decision::Drop(DropReason::SameSegment),
        Some(port) => Decision::Forward(port),
        None => Decision::Flood,
    };
    (decision, learned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{EthernetFrame, MacAddr, HEADER_LEN};
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    const AGING: u64 = 1_000_000;
    const HOST_A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
    const HOST_B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
    const PORT_1: IngressPort = IngressPort {
        id: 1,
        tenant_id: 0,
    };
    const PORT_2: IngressPort = IngressPort {
        id: 2,
        tenant_id: 0,
    };

    /// [`decide_addresses`] for a whole frame, as `stages` reads its addresses.
    fn decide(
        fdb: &mut Fdb,
        ingress: IngressPort,
        frame: &[u8],
        now_ns: u64,
    ) -> (Decision, Learned) {
        let Ok(frame) = EthernetFrame::new_checked(frame) else {
            return (Decision::Drop(DropReason::Malformed), Learned::Nothing);
        };
        decide_addresses(fdb, ingress, frame.src_addr(), frame.dst_addr(), now_ns)
    }

    fn frame(src: MacAddr, dst: MacAddr) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2(src.0, dst.0)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1000, 2000);
        let payload = [0u8; 18];
        let mut bytes = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut bytes, &payload).unwrap();
        bytes
    }

    #[test]
    fn broadcast_is_flooded_and_source_learned() {
        let mut fdb = Fdb::new(16, AGING);
        let result = decide(&mut fdb, PORT_1, &frame(HOST_A, MacAddr::BROADCAST), 0);
        assert_eq!(result, (Decision::Flood, Learned::New));
        assert_eq!(fdb.lookup(0, HOST_A, 0), Some(PORT_1.id));
    }

    #[test]
    fn multicast_is_flooded_even_if_learned_somewhere() {
        let mut fdb = Fdb::new(16, AGING);
        let group = MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]);
        fdb.insert_static(0, group, 2).unwrap();
        let (decision, _) = decide(&mut fdb, PORT_1, &frame(HOST_A, group), 0);
        assert_eq!(decision, Decision::Flood);
    }

    #[test]
    fn unknown_unicast_is_flooded() {
        let mut fdb = Fdb::new(16, AGING);
        let (decision, _) = decide(&mut fdb, PORT_1, &frame(HOST_A, HOST_B), 0);
        assert_eq!(decision, Decision::Flood);
    }

    #[test]
    fn known_unicast_is_forwarded_to_its_port() {
        let mut fdb = Fdb::new(16, AGING);
        decide(&mut fdb, PORT_2, &frame(HOST_B, MacAddr::BROADCAST), 0);
        let result = decide(&mut fdb, PORT_1, &frame(HOST_A, HOST_B), 1);
        assert_eq!(result, (Decision::Forward(PORT_2.id), Learned::New));
        let reply = decide(&mut fdb, PORT_2, &frame(HOST_B, HOST_A), 2);
        assert_eq!(reply, (Decision::Forward(PORT_1.id), Learned::Refreshed));
    }

    #[test]
    fn destination_on_ingress_port_is_dropped() {
        let mut fdb = Fdb::new(16, AGING);
        decide(&mut fdb, PORT_1, &frame(HOST_B, MacAddr::BROADCAST), 0);
        let (decision, _) = decide(&mut fdb, PORT_1, &frame(HOST_A, HOST_B), 1);
        assert_eq!(decision, Decision::Drop(DropReason::SameSegment));
    }

    #[test]
    fn moved_host_is_followed_to_its_new_port() {
        let mut fdb = Fdb::new(16, AGING);
        decide(&mut fdb, PORT_1, &frame(HOST_B, MacAddr::BROADCAST), 0);
        let (_, learned) = decide(&mut fdb, PORT_2, &frame(HOST_B, MacAddr::BROADCAST), 1);
        assert_eq!(learned, Learned::Moved { from: PORT_1.id });
        let (decision, _) = decide(&mut fdb, PORT_1, &frame(HOST_A, HOST_B), 2);
        assert_eq!(decision, Decision::Forward(PORT_2.id));
    }

    #[test]
    fn aged_out_destination_is_flooded_again() {
        let mut fdb = Fdb::new(16, AGING);
        decide(&mut fdb, PORT_2, &frame(HOST_B, MacAddr::BROADCAST), 0);
        let (decision, _) = decide(&mut fdb, PORT_1, &frame(HOST_A, HOST_B), AGING);
        assert_eq!(decision, Decision::Flood);
    }

    #[test]
    fn frames_shorter_than_a_header_are_malformed_and_not_learned() {
        let mut fdb = Fdb::new(16, AGING);
        let bytes = frame(HOST_A, HOST_B);
        for len in 0..HEADER_LEN {
            let result = decide(&mut fdb, PORT_1, &bytes[..len], 0);
            assert_eq!(
                result,
                (Decision::Drop(DropReason::Malformed), Learned::Nothing),
                "length {len}"
            );
        }
        assert!(fdb.is_empty());
        let (_, learned) = decide(&mut fdb, PORT_1, &bytes[..HEADER_LEN], 0);
        assert_eq!(learned, Learned::New);
    }

    #[test]
    fn group_or_zero_source_is_dropped_without_learning() {
        let mut fdb = Fdb::new(16, AGING);
        for source in [
            MacAddr::BROADCAST,
            MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]),
            MacAddr([0x33, 0x33, 0, 0, 0, 1]),
            MacAddr::ZERO,
        ] {
            let result = decide(&mut fdb, PORT_1, &frame(source, HOST_B), 0);
            assert_eq!(
                result,
                (
                    Decision::Drop(DropReason::InvalidSourceMac),
                    Learned::Nothing
                ),
                "source {source}"
            );
        }
        assert!(fdb.is_empty());
    }

    #[test]
    fn tenants_do_not_share_learned_addresses() {
        let mut fdb = Fdb::new(16, AGING);
        let tenant_port = IngressPort {
            id: 3,
            tenant_id: 1,
        };
        decide(&mut fdb, PORT_2, &frame(HOST_B, MacAddr::BROADCAST), 0);
        let (decision, _) = decide(&mut fdb, tenant_port, &frame(HOST_A, HOST_B), 1);
        assert_eq!(decision, Decision::Flood);
        assert_eq!(fdb.lookup(1, HOST_A, 1), Some(3));
        assert_eq!(fdb.lookup(0, HOST_A, 1), None);
    }

    #[test]
    fn full_table_makes_room_and_still_forwards_known_destinations() {
        const HOST_C: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0c]);
        let mut fdb = Fdb::new(2, AGING);
        decide(&mut fdb, PORT_2, &frame(HOST_B, MacAddr::BROADCAST), 0);
        decide(&mut fdb, PORT_2, &frame(HOST_C, MacAddr::BROADCAST), 0);
        // The source takes the place of one of port 2's two entries (learning
        // comes before the lookup): B is forwarded to unless it was that one.
        let (decision, learned) = decide(&mut fdb, PORT_1, &frame(HOST_A, HOST_B), 1);
        assert!(
            matches!(learned, Learned::Evicted { from, .. } if from == PORT_2.id),
            "{learned:?}"
        );
        let expected = if fdb.lookup(PORT_2.tenant_id, HOST_B, 1).is_some() {
            Decision::Forward(PORT_2.id)
        } else {
            Decision::Flood
        };
        assert_eq!(decision, expected);
        assert_eq!(fdb.lookup(PORT_1.tenant_id, HOST_A, 1), Some(PORT_1.id));
    }

    #[test]
    fn source_over_the_port_limit_is_not_learned_but_still_switched() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.set_limits(Some(1), None);
        decide(&mut fdb, PORT_2, &frame(HOST_B, MacAddr::BROADCAST), 0);
        decide(&mut fdb, PORT_1, &frame(HOST_A, MacAddr::BROADCAST), 0);
        let spoofed = MacAddr([0x02, 0, 0, 0, 0, 0x5c]);
        let result = decide(&mut fdb, PORT_1, &frame(spoofed, HOST_B), 1);
        assert_eq!(
            result,
            (Decision::Forward(PORT_2.id), Learned::LimitReached)
        );
        let result = decide(&mut fdb, PORT_1, &frame(spoofed, MacAddr::BROADCAST), 1);
        assert_eq!(result, (Decision::Flood, Learned::LimitReached));
        assert_eq!(fdb.lookup(0, spoofed, 1), None);
        // Replies to the refused source flood; the known source is still refreshed.
        let reply = decide(&mut fdb, PORT_2, &frame(HOST_B, spoofed), 2);
        assert_eq!(reply, (Decision::Flood, Learned::Refreshed));
        assert_eq!(fdb.port_entries(PORT_1.id), 1);
    }

    #[test]
    fn host_moving_onto_a_full_port_keeps_its_old_port() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.set_limits(Some(1), None);
        decide(&mut fdb, PORT_1, &frame(HOST_A, MacAddr::BROADCAST), 0);
        decide(&mut fdb, PORT_2, &frame(HOST_B, MacAddr::BROADCAST), 0);
        let (_, learned) = decide(&mut fdb, PORT_2, &frame(HOST_A, MacAddr::BROADCAST), 1);
        assert_eq!(learned, Learned::LimitReached);
        let (decision, _) = decide(&mut fdb, PORT_2, &frame(HOST_B, HOST_A), 2);
        assert_eq!(decision, Decision::Forward(PORT_1.id));
    }

    #[test]
    fn tenant_limit_refuses_sources_across_its_ports() {
        let mut fdb = Fdb::new(16, AGING);
        fdb.set_limits(None, Some(1));
        let tenant_port = IngressPort {
            id: 3,
            tenant_id: 1,
        };
        decide(&mut fdb, PORT_1, &frame(HOST_A, MacAddr::BROADCAST), 0);
        let (decision, learned) = decide(&mut fdb, PORT_2, &frame(HOST_B, HOST_A), 1);
        assert_eq!(
            (decision, learned),
            (Decision::Forward(PORT_1.id), Learned::LimitReached)
        );
        let (_, learned) = decide(&mut fdb, tenant_port, &frame(HOST_B, HOST_A), 1);
        assert_eq!(learned, Learned::New);
    }

    proptest! {
        #[test]
        fn decide_never_panics_on_arbitrary_bytes(
            frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 1..16),
            ports in prop::collection::vec((any::<PortId>(), 0..3u16, any::<u64>()), 1..16),
            capacity in 0..4usize,
            limits in (prop::option::of(0..3u32), prop::option::of(0..3u32)),
        ) {
            let mut fdb = Fdb::new(capacity, AGING);
            fdb.set_limits(limits.0, limits.1);
            for (bytes, (id, tenant_id, now_ns)) in frames.iter().zip(ports.iter().cycle()) {
                let ingress = IngressPort { id: *id, tenant_id: *tenant_id };
                let (decision, learned) = decide(&mut fdb, ingress, bytes, *now_ns);
                if bytes.len() < HEADER_LEN {
                    prop_assert_eq!(decision, Decision::Drop(DropReason::Malformed));
                }
                if matches!(decision, Decision::Drop(DropReason::Malformed | DropReason::InvalidSourceMac)) {
                    prop_assert_eq!(learned, Learned::Nothing);
                }
                prop_assert_ne!(decision, Decision::Forward(*id));
                prop_assert!(fdb.len() <= capacity);
                if let Some(limit) = limits.0 {
                    prop_assert!(fdb.port_entries(*id) <= limit);
                }
                if let Some(limit) = limits.1 {
                    prop_assert!(fdb.tenant_entries(*tenant_id) <= limit);
                }
            }
        }
    }
}
