//! The verdict of the forwarding pipeline for one frame.

use core::fmt;

/// Index into the running configuration's port table.
pub type PortId = u16;

/// How many ports a switch holds: every per-port table (the MAC table's per-port
/// counts, storm buckets, the data plane's counters) is sized by it, and a
/// `PortId` is always below it.
pub const MAX_PORTS: usize = 1024;

/// A broadcast domain, i.e. a tenant: frames and learned MACs never cross tenants.
/// Every port is in tenant 0 until tenants are configured.
pub type TenantId = u16;

/// What to do with one received frame.
///
/// This is the one type the future XDP fast path's flow table will be filled from: a
/// `Forward` for a known unicast flow is what gets cached there, so it must stay small
/// (4 bytes) and `Copy`. Put richer data (rewrites, counters) beside it, not in it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send out of exactly this port.
    Forward(PortId),
    /// Send out of every other port of the ingress port's tenant.
    Flood,
    /// Discard, counting the reason.
    Drop(DropReason),
}

/// Declares `DropReason` from one line per reason, so the enum, its count, its table and its
/// metric names cannot drift apart. Discriminants follow declaration order from 0, which is
/// what makes `index()` a valid index into per-reason counter arrays.
macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)+) => {
        /// Why a frame was discarded; one counter per reason.
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[$doc])* $variant,)+
        }

        impl DropReason {
            pub const COUNT: usize = [$(DropReason::$variant),+].len();

            /// Every reason, in `index()` order.
            pub const ALL: [DropReason; DropReason::COUNT] = [$(DropReason::$variant),+];

            /// Stable snake_case name used in stats output and metrics.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)+
                }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than an Ethernet header.
    Malformed => "malformed",
    /// Source MAC is multicast, broadcast or all-zero: no station can own it.
    InvalidSourceMac => "invalid_source_mac",
    /// Destination was learned on the ingress port: the frame has already reached it.
    SameSegment => "same_segment",
    /// No port took the frame: its tenant has no other member with its link up, or
    /// every port it was offered to refused it (each refusal is counted on that port, per
    /// copy). Counted once per frame, on the ingress port.
    NoEgress => "no_egress",
    /// Egress TX ring full (counted by the worker, per copy, on the egress port).
    TxRingFull => "tx_ring_full",
    /// Egress port link down (counted by the worker, per copy, on the egress port).
    LinkDown => "link_down",
    /// No free UMEM frame for a flood copy or a frame handed over by another worker
    /// (per copy, on the egress port).
    NoBuffer => "no_buffer",
    /// Source MAC not among the port's allowed MACs (anti-spoofing).
    SpoofedMac => "spoofed_mac",
    /// Source IP not among the port's allowed addresses (anti-spoofing).
    SpoofedIp => "spoofed_ip",
    /// ARP claiming a MAC or IPv4 address the port does not own.
    ArpSpoof => "arp_spoof",
    /// IPv6 neighbour advertisement for an address the port does not own.
    NdSpoof => "nd_spoof",
    /// Denied by a tenant ACL rule or its default policy.
    AclDeny => "acl_deny",
    /// Tagged with a VLAN the trunk does not map, or untagged on a trunk.
    VlanUnknown => "vlan_unknown",
    /// An attempt to reach another tenant: a tagged frame on an access port,
    /// or a double-tagged frame on a trunk.
    CrossTenant => "cross_tenant",
    /// Towards a port that only receives traffic for its own addresses.
    NotForPort => "not_for_port",
    /// Storm control: over the ingress port's broadcast limit.
    StormBroadcast => "storm_broadcast",
    /// Storm control: over the ingress port's multicast limit.
    StormMulticast => "storm_multicast",
    /// Storm control: over the ingress port's unknown-unicast limit.
    StormUnknownUnicast => "storm_unknown_unicast",
    /// An IPv6 router advertisement or redirect from a port not trusted for `ra`.
    RaGuard => "ra_guard",
    /// A DHCP or DHCPv6 server message from a port not trusted for `dhcp`.
    DhcpGuard => "dhcp_guard",
    /// A DHCP client message from a guarded port for a MAC the port was not given.
    DhcpSpoof => "dhcp_spoof",
    /// A datagram on a tunnel endpoint that is not plain VXLAN: shorter than its header,
    /// flags other than I, reserved bits set.
    TunnelMalformed => "tunnel_malformed",
    /// A VXLAN datagram whose VNI no tunnel port on that endpoint carries.
    TunnelUnknownVni => "tunnel_unknown_vni",
    /// A VXLAN datagram from an address that is not one of the tunnel's remotes.
    TunnelUnknownRemote => "tunnel_unknown_remote",
    /// Encapsulated, the frame would exceed the underlay's MTU (don't-fragment is set), or
    /// a received one does not fit a UMEM frame.
    TunnelTooBig => "tunnel_too_big",
    /// The host's stack refused to send to the remote (no route, neighbour unreachable).
    TunnelUnreachable => "tunnel_unreachable",
}

impl DropReason {
    /// Position in [`DropReason::ALL`] and in per-reason counter arrays; always `< COUNT`.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_stays_small_enough_for_a_flow_table() {
        assert!(core::mem::size_of::<Decision>() <= 4);
        assert_eq!(core::mem::size_of::<DropReason>(), 1);
    }

    #[test]
    fn all_is_in_index_order() {
        for (position, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), position);
        }
        assert_eq!(DropReason::ALL.len(), DropReason::COUNT);
    }

    #[test]
    fn names_match_the_stats_contract() {
        let names: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        // A prefix: reasons added later append and must not rename these.
        assert_eq!(
            names[..6],
            [
                "malformed",
                "invalid_source_mac",
                "same_segment",
                "no_egress",
                "tx_ring_full",
                "link_down"
            ]
        );
        assert_eq!(DropReason::TxRingFull.to_string(), "tx_ring_full");
    }

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        for name in &names {
            assert!(
                !name.is_empty() && name.bytes().all(|c| c.is_ascii_lowercase() || c == b'_'),
                "{name:?} is not snake_case"
            );
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }
}
