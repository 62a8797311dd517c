//! Per-port anti-spoofing, set by root: a port may only send from the addresses it was
//! given, and (with `restrict_to_port`) nobody sees traffic that is not theirs.
//!
//! A [`PortGuard`] lists the MACs, IPv4 prefixes and IPv6 prefixes a port owns. Prefixes
//! are sets of addresses: `10.0.0.5/32` is one address, `10.0.0.0/24` is all 256 (for a
//! guest that routes a subnet). A prefix with host bits set, such as `10.0.0.5/24`, is
//! refused by [`PortGuard::validate`], because it would silently grant the whole /24.
//!
//! # From the port ([`PortGuard::check_from_port`])
//!
//! - Source MAC not listed → [`DropReason::SpoofedMac`], whatever the frame carries.
//! - IPv4 source not within `ipv4` → [`DropReason::SpoofedIp`]; except 0.0.0.0 for DHCP
//!   client traffic (UDP 68 → 67), so a guest can get its address.
//! - IPv6 source not within `ipv6` and not the EUI-64 link-local of a listed MAC
//!   ([`link_local_of`]) → [`DropReason::SpoofedIp`]; except `::` for the messages a host
//!   sends before it has an address, all claiming none: duplicate address detection
//!   (a neighbour solicitation, for one of the port's own addresses), router solicitation,
//!   and MLD reports (Linux sends those from `::` while its link-local is tentative).
//! - ARP whose sender MAC is not listed, or whose sender IPv4 is not within `ipv4`, →
//!   [`DropReason::ArpSpoof`], requests and replies alike. A sender of 0.0.0.0 (an ARP
//!   probe, RFC 5227) is allowed only for one of the port's own addresses: probing
//!   another host's address would make that host give it up.
//! - A neighbour advertisement whose target is not the port's, or a neighbour
//!   solicitation or advertisement whose link-layer option names a MAC not listed, →
//!   [`DropReason::NdSpoof`]. So is a fragmented one (RFC 6980 forbids them; the option
//!   could hide in a fragment xsw does not see) and one whose options cannot be read one
//!   way only (see [`crate::packet::NdMessage::link_addr`]).
//! - An ARP, IPv4 or IPv6 EtherType whose header cannot be parsed, including an IPv6
//!   extension-header chain too long to walk: the source cannot be proved, so
//!   [`DropReason::ArpSpoof`] for ARP and [`DropReason::SpoofedIp`] for IP.
//! - Other EtherTypes pass once the source MAC is checked.
//!
//! Empty `ipv4` means no IPv4 at all (beyond DHCP discovery), likewise `ipv6` (beyond the
//! link-local of the MACs). Guests that form their link-local address from a stable
//! secret (RFC 7217, NetworkManager's default) rather than from the MAC need it listed in
//! `ipv6` as a /128.
//!
//! # Towards the port ([`PortGuard::check_to_port`], only with `restrict_to_port`)
//!
//! - Destination MAC unicast and not listed → [`DropReason::NotForPort`]: a flooded
//!   unknown unicast is not theirs either.
//! - IPv4 destination: within `ipv4` (which includes the broadcast address of a listed
//!   prefix), 255.255.255.255 or multicast (224.0.0.0/4).
//! - IPv6 destination: within `ipv6`, a listed MAC's link-local, or multicast (ff00::/8).
//! - ARP, requests and replies: target IPv4 within `ipv4`.
//! - ARP/IP that cannot be parsed: refused. Other EtherTypes pass.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use super::decision::DropReason;
use crate::packet::arp;
use crate::packet::l4::{icmpv6_type, protocol};
use crate::packet::{ArpInfo, Fragment, FrameInfo, IpInfo, L3Info, L4Status, MacAddr, NdKind};

/// Most entries per list of a guard. Checks scan the lists for every frame, so this bounds
/// the work a configuration can put on the data path; a guest needing more addresses
/// than this should be given prefixes.
pub const MAX_GUARD_ENTRIES: usize = 256;

/// The addresses a port owns. No guard on a port means no anti-spoofing at all; the
/// control plane decides when a port has one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PortGuard {
    /// MACs the port may send from (and, with `restrict_to_port`, receive for).
    pub macs: Vec<MacAddr>,
    /// IPv4 addresses the port may use, as prefixes (a /32 per single address).
    pub ipv4: Vec<Ipv4Net>,
    /// IPv6 addresses the port may use, as prefixes (a /128 per single address), besides
    /// the link-local addresses derived from `macs`.
    pub ipv6: Vec<Ipv6Net>,
    /// Deliver to the port only what is addressed to it (or broadcast/multicast).
    pub restrict_to_port: bool,
}

/// A short guard's MACs and IPv4 prefixes as integers, ready to compare: built once per
/// batch ([`PortGuard::words`]), then [`GuardWords::check_from_port`] answers as
/// [`PortGuard::check_from_port`] does, for IPv4 frames with a handful of compares and no
/// loop. Through the lists, the check cost a frame 89 instructions with 4 MACs and one
/// prefix (callgrind, `benches/pipeline.rs`), 25 this way.
#[derive(Copy, Clone, Debug)]
pub struct GuardWords {
    /// [`MacAddr::to_u64`] of each MAC; unused entries have bits above the 48 of a MAC.
    macs: [u64; GuardWords::MACS],
    /// (mask, network) of each prefix; unused entries (0, 1) match no address.
    ipv4: [(u32, u32); GuardWords::PREFIXES],
}

impl GuardWords {
    const MACS: usize = 4;
    const PREFIXES: usize = 2;

    /// The guard's answer for a frame the port sent; `guard` is the one these words were
    /// made from, asked for frames other than IPv4.
    #[inline(always)]
    pub fn check_from_port(&self, guard: &PortGuard, info: &FrameInfo) -> Result<(), DropReason> {
        // Minimum of differences, not `a == mac || b == mac ...`: the compiler turned
        // those compares into a branch each, and which of a guest's MACs a frame comes
        // from is random enough that they were mispredicted (measured: 77 instead of 68 ns
        // a frame, `benches/pipeline.rs` at 1,000 MACs and rules).
        let mac = info.src_mac.to_u64();
        let [a, b, c, d] = self.macs;
        if (a ^ mac).min(b ^ mac).min(c ^ mac).min(d ^ mac) != 0 {
            return Err(DropReason::SpoofedMac);
        }
        let L3Info::Ipv4(ip) = &info.l3 else {
            return guard.check_from_port(info);
        };
        let IpAddr::V4(src) = ip.src else {
            return Err(DropReason::SpoofedIp);
        };
        let src = u32::from(src);
        let [(mask_a, net_a), (mask_b, net_b)] = self.ipv4;
        let owned = ((src & mask_a) ^ net_a).min((src & mask_b) ^ net_b) == 0;
        if owned || (src == 0 && info.is_dhcp_client()) {
            Ok(())
        } else {
            Err(DropReason::SpoofedIp)
        }
    }
}

/// The modified EUI-64 link-local address (fe80::/64, RFC 4291 appendix A) a host forms
/// from `mac`: the universal/local bit flipped and ff:fe inserted in the middle.
pub const fn link_local_of(mac: MacAddr) -> Ipv6Addr {
    let [a, b, c, d, e, f] = mac.0;
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([a ^ 0x02, b]),
        u16::from_be_bytes([c, 0xff]),
        u16::from_be_bytes([0xfe, d]),
        u16::from_be_bytes([e, f]),
    )
}

impl PortGuard {
    /// Checks what the data path relies on: at least one MAC, every MAC one a station can
    /// send from, prefixes without host bits, lists of bounded length.
    pub fn validate(&self) -> Result<(), String> {
        if self.macs.is_empty() {
            return Err("an anti-spoofing guard needs at least one MAC address".to_string());
        }
        for (name, len) in [
            ("MAC addresses", self.macs.len()),
            ("IPv4 prefixes", self.ipv4.len()),
            ("IPv6 prefixes", self.ipv6.len()),
        ] {
            if len > MAX_GUARD_ENTRIES {
                return Err(format!(
                    "{len} {name} in one guard: at most {MAX_GUARD_ENTRIES}; use wider prefixes"
                ));
            }
        }
        if let Some(mac) = self.macs.iter().find(|mac| !mac.is_unicast()) {
            return Err(format!(
                "{mac} cannot be a port's address: it is multicast, broadcast or all-zero"
            ));
        }
        let with_host_bits = self
            .ipv4
            .iter()
            .filter(|net| net.addr() != net.network())
            .map(|net| {
                (
                    net.to_string(),
                    net.addr().to_string(),
                    net.trunc().to_string(),
                )
            })
            .chain(
                self.ipv6
                    .iter()
                    .filter(|net| net.addr() != net.network())
                    .map(|net| {
                        (
                            net.to_string(),
                            net.addr().to_string(),
                            net.trunc().to_string(),
                        )
                    }),
            )
            .next();
        if let Some((prefix, addr, network)) = with_host_bits {
            let single = if addr.contains(':') { 128 } else { 32 };
            return Err(format!(
                "{prefix} has host bits set: write {addr}/{single} for the address alone, \
                 or {network} for the whole prefix"
            ));
        }
        Ok(())
    }

    /// The guard as [`GuardWords`], if its lists are short enough (most guards: a guest
    /// has a MAC or two and a prefix or two).
    pub fn words(&self) -> Option<GuardWords> {
        if self.macs.len() > GuardWords::MACS || self.ipv4.len() > GuardWords::PREFIXES {
            return None;
        }
        let mut words = GuardWords {
            macs: [u64::MAX; GuardWords::MACS],
            ipv4: [(0, 1); GuardWords::PREFIXES],
        };
        for (word, mac) in words.macs.iter_mut().zip(&self.macs) {
            *word = mac.to_u64();
        }
        for (word, net) in words.ipv4.iter_mut().zip(&self.ipv4) {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(net.prefix_len()))
                .unwrap_or(0);
            *word = (mask, u32::from(net.addr()) & mask);
        }
        Some(words)
    }

    /// Whether a frame the port sent may enter the switch. See the module docs for the rules.
    #[inline]
    pub fn check_from_port(&self, info: &FrameInfo) -> Result<(), DropReason> {
        if !self.owns_mac(info.src_mac) {
            return Err(DropReason::SpoofedMac);
        }
        match &info.l3 {
            L3Info::Ipv4(ip) => self.check_ipv4_from(info, ip),
            _ => self.check_other_from(info),
        }
    }

    /// [`PortGuard::check_from_port`] past the MAC, for all but IPv4: out of line, so
    /// that the common case needs few registers (and no saving of them).
    #[inline(never)]
    fn check_other_from(&self, info: &FrameInfo) -> Result<(), DropReason> {
        match &info.l3 {
            L3Info::None => Ok(()),
            L3Info::Arp(arp) => self.check_arp_from(arp),
            L3Info::Ipv4(ip) => self.check_ipv4_from(info, ip),
            L3Info::Ipv6(ip) => self.check_ipv6_from(ip),
            L3Info::Malformed if info.ethertype == arp::ETHERTYPE => Err(DropReason::ArpSpoof),
            L3Info::Malformed => Err(DropReason::SpoofedIp),
        }
    }

    /// Whether a frame may be delivered to the port. Everything passes unless
    /// `restrict_to_port`; see the module docs for the rules.
    pub fn check_to_port(&self, info: &FrameInfo) -> Result<(), DropReason> {
        if !self.restrict_to_port {
            return Ok(());
        }
        if !info.dst_mac.is_multicast() && !self.owns_mac(info.dst_mac) {
            return Err(DropReason::NotForPort);
        }
        let for_port = match &info.l3 {
            L3Info::None => true,
            L3Info::Malformed => false,
            L3Info::Arp(arp) => self.owns_ipv4(arp.tpa),
            L3Info::Ipv4(ip) | L3Info::Ipv6(ip) => match ip.dst {
                IpAddr::V4(dst) => {
                    // A listed prefix contains its own broadcast address, so "the subnet
                    // broadcast of an allowed prefix" needs no rule of its own.
                    self.owns_ipv4(dst) || dst.is_broadcast() || dst.is_multicast()
                }
                IpAddr::V6(dst) => self.owns_ipv6(dst) || dst.is_multicast(),
            },
        };
        if for_port {
            Ok(())
        } else {
            Err(DropReason::NotForPort)
        }
    }

    // These run for every frame of a guarded port, over lists of up to
    // `MAX_GUARD_ENTRIES`. As integer compares they cost a few instructions per entry;
    // through `[u8; 6]` equality and `ipnet`'s `contains` (which rebuilds the network and
    // broadcast addresses) the check of a frame took 100 instructions with one MAC and one
    // prefix (callgrind, `benches/pipeline.rs`), 80 now.

    #[inline]
    pub fn owns_mac(&self, mac: MacAddr) -> bool {
        // Every entry compared, without stopping at the first match: which of a guest's
        // MACs a frame comes from is as good as random, and stopping there cost a
        // mispredicted branch on most frames (measured with 4 MACs: 72 ns a frame before,
        // 62 after, `benches/pipeline.rs` at 1,000 MACs and rules).
        self.macs
            .iter()
            .fold(false, |found, owned| found | (owned.0 == mac.0))
    }

    /// Within one of `ipv4`, host bits of a prefix (which `validate` refuses) ignored, as
    /// `Ipv4Net::contains` ignores them.
    #[inline]
    pub fn owns_ipv4(&self, addr: Ipv4Addr) -> bool {
        let addr = u32::from(addr);
        self.ipv4.iter().fold(false, |found, net| {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(net.prefix_len()))
                .unwrap_or(0);
            found | ((addr ^ u32::from(net.addr())) & mask == 0)
        })
    }

    /// Within `ipv6`, or the link-local address of one of the port's MACs.
    pub fn owns_ipv6(&self, addr: Ipv6Addr) -> bool {
        let bits = u128::from(addr);
        let within = |net: &Ipv6Net| {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(net.prefix_len()))
                .unwrap_or(0);
            (bits ^ u128::from(net.addr())) & mask == 0
        };
        self.ipv6.iter().any(within) || self.macs.iter().any(|&mac| link_local_of(mac) == addr)
    }

    fn check_arp_from(&self, arp: &ArpInfo) -> Result<(), DropReason> {
        if !self.owns_mac(arp.sha) {
            return Err(DropReason::ArpSpoof);
        }
        let probe_for_own_address = arp.spa.is_unspecified() && self.owns_ipv4(arp.tpa);
        if self.owns_ipv4(arp.spa) || probe_for_own_address {
            Ok(())
        } else {
            Err(DropReason::ArpSpoof)
        }
    }

    #[inline]
    fn check_ipv4_from(&self, info: &FrameInfo, ip: &IpInfo) -> Result<(), DropReason> {
        let IpAddr::V4(src) = ip.src else {
            return Err(DropReason::SpoofedIp);
        };
        if self.owns_ipv4(src) || (src.is_unspecified() && info.is_dhcp_client()) {
            Ok(())
        } else {
            Err(DropReason::SpoofedIp)
        }
    }

    fn check_ipv6_from(&self, ip: &IpInfo) -> Result<(), DropReason> {
        let IpAddr::V6(src) = ip.src else {
            return Err(DropReason::SpoofedIp);
        };
        let unspecified = src.is_unspecified();
        let source_allowed =
            self.owns_ipv6(src) || (unspecified && sent_before_having_an_address(ip));
        if !source_allowed {
            return Err(DropReason::SpoofedIp);
        }
        self.check_nd_from(ip, unspecified)
    }

    /// Neighbour solicitations and advertisements: what they claim must be the port's.
    fn check_nd_from(&self, ip: &IpInfo, from_unspecified: bool) -> Result<(), DropReason> {
        if ip.proto != protocol::ICMPV6 {
            return Ok(());
        }
        let Some(kind) = ip.icmp_type.and_then(NdKind::from_icmpv6_type) else {
            return Ok(());
        };
        if ip.fragment != Fragment::Whole {
            return Err(DropReason::NdSpoof);
        }
        let Some(nd) = ip.nd else {
            return Err(DropReason::NdSpoof);
        };
        if nd.link_addr.is_some_and(|mac| !self.owns_mac(mac)) {
            return Err(DropReason::NdSpoof);
        }
        let target_must_be_ours = match kind {
            NdKind::Advert => true,
            // Duplicate address detection: only for an address the port may take.
            NdKind::Solicit => from_unspecified,
        };
        if target_must_be_ours && !self.owns_ipv6(nd.target) {
            return Err(DropReason::NdSpoof);
        }
        Ok(())
    }
}

/// The ICMPv6 messages a host sends from `::` because it has no address yet: duplicate
/// address detection (neighbour solicitation), router solicitation, MLD reports.
fn sent_before_having_an_address(ip: &IpInfo) -> bool {
    ip.proto == protocol::ICMPV6
        && ip.l4 == L4Status::Read
        && ip.icmp_type.is_some_and(|t| {
            matches!(
                t,
                icmpv6_type::NEIGHBOR_SOLICIT
                    | icmpv6_type::ROUTER_SOLICIT
                    | icmpv6_type::MLD_REPORT
                    | icmpv6_type::MLD2_REPORT
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::arp::tests::arp_bytes;
    use crate::packet::ipv6::tests::fragment_header;
    use crate::packet::l4::tests::nd_bytes;
    use crate::packet::parse_frame;
    use etherparse::{
        EtherType, Ethernet2Header, IpFragOffset, IpHeaders, IpNumber, PacketBuilder,
    };

    const GUEST_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    const OTHER_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
    const GUEST_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
    const OTHER_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
    const GUEST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
    const OTHER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11);
    const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    /// Source and target link-layer address option types.
    const SLLA: u8 = 1;
    const TLLA: u8 = 2;

    fn guard() -> PortGuard {
        PortGuard {
            macs: vec![GUEST_MAC],
            ipv4: vec![Ipv4Net::new(GUEST_V4, 32).unwrap()],
            ipv6: vec![Ipv6Net::new(GUEST_V6, 128).unwrap()],
            restrict_to_port: false,
        }
    }

    fn restricted() -> PortGuard {
        PortGuard {
            restrict_to_port: true,
            ..guard()
        }
    }

    fn info(frame: &[u8]) -> FrameInfo {
        parse_frame(frame).expect("test frames have a whole Ethernet header")
    }

    fn udp4(
        src_mac: MacAddr,
        dst_mac: MacAddr,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ports: (u16, u16),
    ) -> FrameInfo {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
            .ipv4(src.octets(), dst.octets(), 64)
            .udp(ports.0, ports.1)
            .write(&mut frame, b"payload")
            .unwrap();
        info(&frame)
    }

    fn udp6(src_mac: MacAddr, dst_mac: MacAddr, src: Ipv6Addr, dst: Ipv6Addr) -> FrameInfo {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
            .ipv6(src.octets(), dst.octets(), 64)
            .udp(5353, 5353)
            .write(&mut frame, b"payload")
            .unwrap();
        info(&frame)
    }

    /// An ICMPv6 message with the given body (type, code, checksum and the rest).
    fn icmp6(src_mac: MacAddr, src: Ipv6Addr, dst: Ipv6Addr, body: &[u8]) -> FrameInfo {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(src_mac.0, MacAddr::BROADCAST.0)
            .ipv6(src.octets(), dst.octets(), 255)
            .write(&mut frame, IpNumber::IPV6_ICMP, body)
            .unwrap();
        info(&frame)
    }

    fn advert(src: Ipv6Addr, target: Ipv6Addr, options: &[(u8, MacAddr)]) -> FrameInfo {
        icmp6(
            GUEST_MAC,
            src,
            ALL_NODES,
            &nd_bytes(NdKind::Advert, target, options),
        )
    }

    fn solicit(src: Ipv6Addr, target: Ipv6Addr, options: &[(u8, MacAddr)]) -> FrameInfo {
        icmp6(
            GUEST_MAC,
            src,
            ALL_NODES,
            &nd_bytes(NdKind::Solicit, target, options),
        )
    }

    fn ethernet(src_mac: MacAddr, dst_mac: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = Ethernet2Header {
            source: src_mac.0,
            destination: dst_mac.0,
            ether_type: EtherType(ethertype),
        }
        .to_bytes()
        .to_vec();
        frame.extend_from_slice(payload);
        frame
    }

    fn arp(eth_dst: MacAddr, oper: u16, sha: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> FrameInfo {
        let tha = if oper == arp::OPER_REPLY {
            OTHER_MAC
        } else {
            MacAddr::ZERO
        };
        let body = arp_bytes(oper, sha, spa, tha, tpa);
        info(&ethernet(GUEST_MAC, eth_dst, arp::ETHERTYPE, &body))
    }

    // --- From the port: MAC and IP sources. ---

    #[test]
    fn own_addresses_pass() {
        let guard = guard();
        let v4 = udp4(GUEST_MAC, OTHER_MAC, GUEST_V4, OTHER_V4, (1000, 53));
        assert_eq!(guard.check_from_port(&v4), Ok(()));
        let v6 = udp6(GUEST_MAC, OTHER_MAC, GUEST_V6, OTHER_V6);
        assert_eq!(guard.check_from_port(&v6), Ok(()));
        let lldp = info(&ethernet(
            GUEST_MAC,
            MacAddr([0x01, 0x80, 0xc2, 0, 0, 0x0e]),
            0x88cc,
            &[0; 46],
        ));
        assert_eq!(guard.check_from_port(&lldp), Ok(()));
    }

    #[test]
    fn forged_source_mac_is_refused_whatever_the_frame() {
        let guard = guard();
        let v4 = udp4(OTHER_MAC, GUEST_MAC, GUEST_V4, OTHER_V4, (1000, 53));
        assert_eq!(guard.check_from_port(&v4), Err(DropReason::SpoofedMac));
        let lldp = info(&ethernet(OTHER_MAC, MacAddr::BROADCAST, 0x88cc, &[0; 46]));
        assert_eq!(guard.check_from_port(&lldp), Err(DropReason::SpoofedMac));
    }

    #[test]
    fn forged_source_ip_is_refused() {
        let guard = guard();
        let v4 = udp4(GUEST_MAC, OTHER_MAC, OTHER_V4, GUEST_V4, (1000, 53));
        assert_eq!(guard.check_from_port(&v4), Err(DropReason::SpoofedIp));
        let v6 = udp6(GUEST_MAC, OTHER_MAC, OTHER_V6, GUEST_V6);
        assert_eq!(guard.check_from_port(&v6), Err(DropReason::SpoofedIp));
    }

    #[test]
    fn prefixes_grant_every_address_within() {
        let guard = PortGuard {
            ipv4: vec!["192.168.7.0/24".parse().unwrap()],
            ipv6: vec!["2001:db8:7::/48".parse().unwrap()],
            ..guard()
        };
        let inside = udp4(
            GUEST_MAC,
            OTHER_MAC,
            Ipv4Addr::new(192, 168, 7, 200),
            OTHER_V4,
            (1, 2),
        );
        assert_eq!(guard.check_from_port(&inside), Ok(()));
        let outside = udp4(
            GUEST_MAC,
            OTHER_MAC,
            Ipv4Addr::new(192, 168, 8, 1),
            OTHER_V4,
            (1, 2),
        );
        assert_eq!(guard.check_from_port(&outside), Err(DropReason::SpoofedIp));
        let inside6 = udp6(
            GUEST_MAC,
            OTHER_MAC,
            "2001:db8:7:1::99".parse().unwrap(),
            OTHER_V6,
        );
        assert_eq!(guard.check_from_port(&inside6), Ok(()));
    }

    #[test]
    fn empty_lists_allow_no_address_of_that_family() {
        let guard = PortGuard {
            macs: vec![GUEST_MAC],
            ..PortGuard::default()
        };
        let v4 = udp4(GUEST_MAC, OTHER_MAC, GUEST_V4, OTHER_V4, (1000, 53));
        assert_eq!(guard.check_from_port(&v4), Err(DropReason::SpoofedIp));
        let v6 = udp6(GUEST_MAC, OTHER_MAC, GUEST_V6, OTHER_V6);
        assert_eq!(guard.check_from_port(&v6), Err(DropReason::SpoofedIp));
        // The MAC's own link-local stays usable.
        let local = udp6(GUEST_MAC, OTHER_MAC, link_local_of(GUEST_MAC), ALL_NODES);
        assert_eq!(guard.check_from_port(&local), Ok(()));
    }

    #[test]
    fn dhcp_discover_from_unspecified_passes_and_nothing_else_does() {
        let guard = guard();
        let discover = udp4(
            GUEST_MAC,
            MacAddr::BROADCAST,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            (68, 67),
        );
        assert_eq!(guard.check_from_port(&discover), Ok(()));
        let dns = udp4(
            GUEST_MAC,
            MacAddr::BROADCAST,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            (68, 53),
        );
        assert_eq!(guard.check_from_port(&dns), Err(DropReason::SpoofedIp));
        let server = udp4(
            GUEST_MAC,
            MacAddr::BROADCAST,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            (67, 68),
        );
        assert_eq!(guard.check_from_port(&server), Err(DropReason::SpoofedIp));

        // A later fragment has no UDP header to show it is DHCP.
        let mut header =
            etherparse::Ipv4Header::new(0, 64, IpNumber::UDP, [0; 4], [255; 4]).unwrap();
        header.fragment_offset = IpFragOffset::try_new(1).unwrap();
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(GUEST_MAC.0, MacAddr::BROADCAST.0)
            .ip(IpHeaders::Ipv4(header, Default::default()))
            .write(&mut frame, IpNumber::UDP, &[0, 68, 0, 67, 0, 8, 0, 0])
            .unwrap();
        assert_eq!(
            guard.check_from_port(&info(&frame)),
            Err(DropReason::SpoofedIp)
        );
    }

    #[test]
    fn unparsable_ip_header_is_refused_as_spoofed() {
        let guard = guard();
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(GUEST_MAC.0, OTHER_MAC.0)
            .ipv4(GUEST_V4.octets(), OTHER_V4.octets(), 64)
            .udp(1, 2)
            .write(&mut frame, b"")
            .unwrap();
        frame[14] = 0x46; // IHL 6: the header would swallow the UDP header's first 4 bytes...
        frame[16..18].copy_from_slice(&22u16.to_be_bytes()); // ...and exceed the total length
        let broken = info(&frame);
        assert_eq!(broken.l3, L3Info::Malformed);
        assert_eq!(guard.check_from_port(&broken), Err(DropReason::SpoofedIp));

        let truncated_v6 = info(&ethernet(GUEST_MAC, OTHER_MAC, 0x86dd, &[0x60, 0, 0]));
        assert_eq!(
            guard.check_from_port(&truncated_v6),
            Err(DropReason::SpoofedIp)
        );
    }

    // --- From the port: ARP. ---

    #[test]
    fn gratuitous_arp_for_own_address_passes() {
        let guard = guard();
        let request = arp(
            MacAddr::BROADCAST,
            arp::OPER_REQUEST,
            GUEST_MAC,
            GUEST_V4,
            GUEST_V4,
        );
        assert_eq!(guard.check_from_port(&request), Ok(()));
        let reply = arp(
            MacAddr::BROADCAST,
            arp::OPER_REPLY,
            GUEST_MAC,
            GUEST_V4,
            GUEST_V4,
        );
        assert_eq!(guard.check_from_port(&reply), Ok(()));
        let asking_for_another = arp(
            MacAddr::BROADCAST,
            arp::OPER_REQUEST,
            GUEST_MAC,
            GUEST_V4,
            OTHER_V4,
        );
        assert_eq!(guard.check_from_port(&asking_for_another), Ok(()));
    }

    #[test]
    fn forged_arp_reply_claiming_another_hosts_ip_is_refused() {
        let guard = guard();
        let reply = arp(OTHER_MAC, arp::OPER_REPLY, GUEST_MAC, OTHER_V4, OTHER_V4);
        assert_eq!(guard.check_from_port(&reply), Err(DropReason::ArpSpoof));
        let request = arp(
            MacAddr::BROADCAST,
            arp::OPER_REQUEST,
            GUEST_MAC,
            OTHER_V4,
            GUEST_V4,
        );
        assert_eq!(guard.check_from_port(&request), Err(DropReason::ArpSpoof));
    }

    #[test]
    fn arp_naming_another_mac_is_refused_even_from_the_right_ethernet_source() {
        let guard = guard();
        let reply = arp(OTHER_MAC, arp::OPER_REPLY, OTHER_MAC, GUEST_V4, OTHER_V4);
        assert_eq!(guard.check_from_port(&reply), Err(DropReason::ArpSpoof));
    }

    #[test]
    fn arp_probe_passes_only_for_own_address() {
        let guard = guard();
        let probe = arp(
            MacAddr::BROADCAST,
            arp::OPER_REQUEST,
            GUEST_MAC,
            Ipv4Addr::UNSPECIFIED,
            GUEST_V4,
        );
        assert_eq!(guard.check_from_port(&probe), Ok(()));
        let foreign = arp(
            MacAddr::BROADCAST,
            arp::OPER_REQUEST,
            GUEST_MAC,
            Ipv4Addr::UNSPECIFIED,
            OTHER_V4,
        );
        assert_eq!(guard.check_from_port(&foreign), Err(DropReason::ArpSpoof));
    }

    #[test]
    fn unreadable_arp_is_refused() {
        let guard = guard();
        let mut body = arp_bytes(arp::OPER_REPLY, GUEST_MAC, GUEST_V4, OTHER_MAC, OTHER_V4);
        body[1] = 6; // IEEE 802 hardware: Linux still accepts it on Ethernet
        let frame = info(&ethernet(GUEST_MAC, OTHER_MAC, arp::ETHERTYPE, &body));
        assert_eq!(frame.l3, L3Info::Malformed);
        assert_eq!(guard.check_from_port(&frame), Err(DropReason::ArpSpoof));
    }

    // --- From the port: IPv6 link-local, unspecified source, neighbour discovery. ---

    #[test]
    fn link_local_from_own_mac_passes_and_from_another_mac_does_not() {
        let guard = guard();
        let own = udp6(GUEST_MAC, OTHER_MAC, link_local_of(GUEST_MAC), ALL_NODES);
        assert_eq!(guard.check_from_port(&own), Ok(()));
        let other = udp6(GUEST_MAC, OTHER_MAC, link_local_of(OTHER_MAC), ALL_NODES);
        assert_eq!(guard.check_from_port(&other), Err(DropReason::SpoofedIp));
    }

    #[test]
    fn link_local_is_modified_eui64() {
        let expected: Ipv6Addr = "fe80::5054:ff:fe12:3456".parse().unwrap();
        assert_eq!(link_local_of(GUEST_MAC), expected);
        let locally_administered = MacAddr([0x02, 0, 0, 0, 0, 1]);
        assert_eq!(
            link_local_of(locally_administered),
            "fe80::ff:fe00:1".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn advertisement_for_own_address_passes() {
        let guard = guard();
        let with_option = advert(GUEST_V6, GUEST_V6, &[(TLLA, GUEST_MAC)]);
        assert_eq!(guard.check_from_port(&with_option), Ok(()));
        let bare = advert(GUEST_V6, GUEST_V6, &[]);
        assert_eq!(guard.check_from_port(&bare), Ok(()));
        let link_local = advert(
            link_local_of(GUEST_MAC),
            link_local_of(GUEST_MAC),
            &[(TLLA, GUEST_MAC)],
        );
        assert_eq!(guard.check_from_port(&link_local), Ok(()));
    }

    #[test]
    fn advertisement_for_someone_elses_address_is_refused() {
        let guard = guard();
        let foreign_target = advert(GUEST_V6, OTHER_V6, &[(TLLA, GUEST_MAC)]);
        assert_eq!(
            guard.check_from_port(&foreign_target),
            Err(DropReason::NdSpoof)
        );
        let foreign_link_local = advert(GUEST_V6, link_local_of(OTHER_MAC), &[]);
        assert_eq!(
            guard.check_from_port(&foreign_link_local),
            Err(DropReason::NdSpoof)
        );
    }

    #[test]
    fn advertisement_naming_another_mac_is_refused() {
        let guard = guard();
        let foreign_mac = advert(GUEST_V6, GUEST_V6, &[(TLLA, OTHER_MAC)]);
        assert_eq!(
            guard.check_from_port(&foreign_mac),
            Err(DropReason::NdSpoof)
        );
        // Two target options that disagree: hosts differ on which one they use.
        let ambiguous = advert(GUEST_V6, GUEST_V6, &[(TLLA, GUEST_MAC), (TLLA, OTHER_MAC)]);
        assert_eq!(guard.check_from_port(&ambiguous), Err(DropReason::NdSpoof));
    }

    #[test]
    fn solicitation_naming_another_mac_is_refused() {
        let guard = guard();
        let normal = solicit(GUEST_V6, OTHER_V6, &[(SLLA, GUEST_MAC)]);
        assert_eq!(guard.check_from_port(&normal), Ok(()));
        let poisoning = solicit(GUEST_V6, OTHER_V6, &[(SLLA, OTHER_MAC)]);
        assert_eq!(guard.check_from_port(&poisoning), Err(DropReason::NdSpoof));
    }

    #[test]
    fn duplicate_address_detection_from_unspecified_passes_for_own_address_only() {
        let guard = guard();
        let dad = solicit(Ipv6Addr::UNSPECIFIED, GUEST_V6, &[]);
        assert_eq!(guard.check_from_port(&dad), Ok(()));
        let dad_link_local = solicit(Ipv6Addr::UNSPECIFIED, link_local_of(GUEST_MAC), &[]);
        assert_eq!(guard.check_from_port(&dad_link_local), Ok(()));
        let dad_for_another = solicit(Ipv6Addr::UNSPECIFIED, OTHER_V6, &[]);
        assert_eq!(
            guard.check_from_port(&dad_for_another),
            Err(DropReason::NdSpoof)
        );
    }

    #[test]
    fn unspecified_source_is_for_address_configuration_only() {
        let guard = guard();
        let mld2_report = [icmpv6_type::MLD2_REPORT, 0, 0, 0, 0, 0, 0, 0];
        let report = icmp6(
            GUEST_MAC,
            Ipv6Addr::UNSPECIFIED,
            "ff02::16".parse().unwrap(),
            &mld2_report,
        );
        assert_eq!(guard.check_from_port(&report), Ok(()));
        let router_solicit = [icmpv6_type::ROUTER_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
        let rs = icmp6(
            GUEST_MAC,
            Ipv6Addr::UNSPECIFIED,
            "ff02::2".parse().unwrap(),
            &router_solicit,
        );
        assert_eq!(guard.check_from_port(&rs), Ok(()));
        let echo = [128, 0, 0, 0, 0, 1, 0, 1];
        let ping = icmp6(GUEST_MAC, Ipv6Addr::UNSPECIFIED, OTHER_V6, &echo);
        assert_eq!(guard.check_from_port(&ping), Err(DropReason::SpoofedIp));
        let udp = udp6(GUEST_MAC, OTHER_MAC, Ipv6Addr::UNSPECIFIED, OTHER_V6);
        assert_eq!(guard.check_from_port(&udp), Err(DropReason::SpoofedIp));
        // An advertisement from :: is no address configuration.
        let na = advert(Ipv6Addr::UNSPECIFIED, GUEST_V6, &[]);
        assert_eq!(guard.check_from_port(&na), Err(DropReason::SpoofedIp));
    }

    #[test]
    fn fragmented_neighbour_discovery_is_refused() {
        let guard = guard();
        let mut payload = fragment_header(58, 0, true).to_vec();
        payload.extend_from_slice(&nd_bytes(NdKind::Advert, GUEST_V6, &[]));
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(GUEST_MAC.0, MacAddr::BROADCAST.0)
            .ipv6(GUEST_V6.octets(), ALL_NODES.octets(), 255)
            .write(&mut frame, IpNumber(44), &payload)
            .unwrap();
        let first_fragment = info(&frame);
        assert_eq!(
            first_fragment.ip().map(|ip| ip.fragment),
            Some(Fragment::First)
        );
        assert_eq!(
            guard.check_from_port(&first_fragment),
            Err(DropReason::NdSpoof)
        );
    }

    #[test]
    fn advertisement_hidden_behind_too_many_extension_headers_is_refused() {
        let guard = guard();
        let mut payload = Vec::new();
        for index in 0..=crate::packet::ipv6::MAX_EXTENSION_HEADERS {
            let next = if index == crate::packet::ipv6::MAX_EXTENSION_HEADERS {
                58
            } else {
                60
            };
            payload.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]);
        }
        payload.extend_from_slice(&nd_bytes(NdKind::Advert, OTHER_V6, &[(TLLA, GUEST_MAC)]));
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(GUEST_MAC.0, MacAddr::BROADCAST.0)
            .ipv6(GUEST_V6.octets(), ALL_NODES.octets(), 255)
            .write(&mut frame, IpNumber(60), &payload)
            .unwrap();
        assert_eq!(
            guard.check_from_port(&info(&frame)),
            Err(DropReason::SpoofedIp)
        );
    }

    // --- Towards the port. ---

    #[test]
    fn unrestricted_port_receives_everything() {
        let guard = guard();
        let foreign = udp4(OTHER_MAC, OTHER_MAC, OTHER_V4, OTHER_V4, (1, 2));
        assert_eq!(guard.check_to_port(&foreign), Ok(()));
    }

    #[test]
    fn restricted_port_refuses_unicast_to_another_ip() {
        let guard = restricted();
        let to_other = udp4(OTHER_MAC, GUEST_MAC, OTHER_V4, OTHER_V4, (1, 2));
        assert_eq!(guard.check_to_port(&to_other), Err(DropReason::NotForPort));
        let to_guest = udp4(OTHER_MAC, GUEST_MAC, OTHER_V4, GUEST_V4, (1, 2));
        assert_eq!(guard.check_to_port(&to_guest), Ok(()));
        let to_other6 = udp6(OTHER_MAC, GUEST_MAC, OTHER_V6, OTHER_V6);
        assert_eq!(guard.check_to_port(&to_other6), Err(DropReason::NotForPort));
        let to_guest6 = udp6(OTHER_MAC, GUEST_MAC, OTHER_V6, GUEST_V6);
        assert_eq!(guard.check_to_port(&to_guest6), Ok(()));
        let to_link_local = udp6(OTHER_MAC, GUEST_MAC, OTHER_V6, link_local_of(GUEST_MAC));
        assert_eq!(guard.check_to_port(&to_link_local), Ok(()));
    }

    #[test]
    fn restricted_port_refuses_frames_for_another_mac() {
        let guard = restricted();
        let flooded = udp4(OTHER_MAC, OTHER_MAC, OTHER_V4, GUEST_V4, (1, 2));
        assert_eq!(guard.check_to_port(&flooded), Err(DropReason::NotForPort));
        let lldp_to_other = info(&ethernet(OTHER_MAC, OTHER_MAC, 0x88cc, &[0; 46]));
        assert_eq!(
            guard.check_to_port(&lldp_to_other),
            Err(DropReason::NotForPort)
        );
        let lldp_to_guest = info(&ethernet(OTHER_MAC, GUEST_MAC, 0x88cc, &[0; 46]));
        assert_eq!(guard.check_to_port(&lldp_to_guest), Ok(()));
    }

    #[test]
    fn restricted_port_receives_broadcast_and_multicast() {
        let guard = PortGuard {
            ipv4: vec!["10.0.0.0/24".parse().unwrap()],
            ..restricted()
        };
        for dst in [
            Ipv4Addr::BROADCAST,
            Ipv4Addr::new(10, 0, 0, 255),
            Ipv4Addr::new(224, 0, 0, 251),
        ] {
            let frame = udp4(OTHER_MAC, MacAddr::BROADCAST, OTHER_V4, dst, (1, 2));
            assert_eq!(guard.check_to_port(&frame), Ok(()), "{dst}");
        }
        let foreign_broadcast = udp4(
            OTHER_MAC,
            MacAddr::BROADCAST,
            OTHER_V4,
            Ipv4Addr::new(10, 0, 1, 255),
            (1, 2),
        );
        assert_eq!(
            guard.check_to_port(&foreign_broadcast),
            Err(DropReason::NotForPort)
        );
        let multicast6 = udp6(
            OTHER_MAC,
            MacAddr([0x33, 0x33, 0, 0, 0, 1]),
            OTHER_V6,
            ALL_NODES,
        );
        assert_eq!(guard.check_to_port(&multicast6), Ok(()));
    }

    #[test]
    fn restricted_port_receives_arp_for_its_own_ip_only() {
        let guard = restricted();
        let request = arp(
            MacAddr::BROADCAST,
            arp::OPER_REQUEST,
            OTHER_MAC,
            OTHER_V4,
            GUEST_V4,
        );
        assert_eq!(guard.check_to_port(&request), Ok(()));
        let for_another = arp(
            MacAddr::BROADCAST,
            arp::OPER_REQUEST,
            OTHER_MAC,
            OTHER_V4,
            Ipv4Addr::new(10, 0, 0, 12),
        );
        assert_eq!(
            guard.check_to_port(&for_another),
            Err(DropReason::NotForPort)
        );
        let reply = arp(GUEST_MAC, arp::OPER_REPLY, OTHER_MAC, OTHER_V4, GUEST_V4);
        assert_eq!(guard.check_to_port(&reply), Ok(()));
        let reply_to_another = arp(
            MacAddr::BROADCAST,
            arp::OPER_REPLY,
            OTHER_MAC,
            OTHER_V4,
            OTHER_V4,
        );
        assert_eq!(
            guard.check_to_port(&reply_to_another),
            Err(DropReason::NotForPort)
        );
    }

    #[test]
    fn restricted_port_refuses_unparsable_ip() {
        let guard = restricted();
        let truncated = info(&ethernet(OTHER_MAC, GUEST_MAC, 0x0800, &[0x45, 0, 0]));
        assert_eq!(guard.check_to_port(&truncated), Err(DropReason::NotForPort));
    }

    // --- Configuration. ---

    #[test]
    fn validate_requires_station_macs() {
        assert_eq!(guard().validate(), Ok(()));
        let no_mac = PortGuard {
            macs: vec![],
            ..guard()
        };
        assert!(no_mac.validate().unwrap_err().contains("at least one MAC"));
        for bad in [
            MacAddr::ZERO,
            MacAddr::BROADCAST,
            MacAddr([0x01, 0, 0x5e, 0, 0, 1]),
        ] {
            let guard = PortGuard {
                macs: vec![GUEST_MAC, bad],
                ..guard()
            };
            let error = guard.validate().unwrap_err();
            assert!(error.contains(&bad.to_string()), "{error}");
        }
    }

    #[test]
    fn validate_refuses_host_bits_and_oversized_lists() {
        let host_bits = PortGuard {
            ipv4: vec!["10.0.0.5/24".parse().unwrap()],
            ..guard()
        };
        let error = host_bits.validate().unwrap_err();
        assert!(
            error.contains("10.0.0.5/32") && error.contains("10.0.0.0/24"),
            "{error}"
        );
        let host_bits6 = PortGuard {
            ipv6: vec!["2001:db8::5/64".parse().unwrap()],
            ..guard()
        };
        let error = host_bits6.validate().unwrap_err();
        assert!(
            error.contains("2001:db8::5/128") && error.contains("2001:db8::/64"),
            "{error}"
        );
        let too_many = PortGuard {
            ipv4: vec!["10.0.0.1/32".parse().unwrap(); MAX_GUARD_ENTRIES + 1],
            ..guard()
        };
        assert!(too_many.validate().unwrap_err().contains("at most"));
    }

    #[test]
    fn serde_round_trips_and_refuses_unknown_fields() {
        let json = serde_json::to_string(&restricted()).unwrap();
        assert_eq!(
            json,
            r#"{"macs":["52:54:00:12:34:56"],"ipv4":["10.0.0.10/32"],"ipv6":["2001:db8::10/128"],"restrict_to_port":true}"#
        );
        assert_eq!(
            serde_json::from_str::<PortGuard>(&json).unwrap(),
            restricted()
        );
        let minimal: PortGuard = serde_json::from_str(r#"{"macs":["52:54:00:12:34:56"]}"#).unwrap();
        assert_eq!(minimal.ipv4, vec![]);
        assert!(!minimal.restrict_to_port);
        assert!(serde_json::from_str::<PortGuard>(r#"{"mac":["52:54:00:12:34:56"]}"#).is_err());
    }

    /// The expected link-local address of `mac`, written out as RFC 4291
    /// appendix A spells it (fe80:: + MAC with the U/L bit flipped and ff:fe
    /// in the middle) and parsed: independent of `link_local_of`, which the
    /// oracle below must not trust.
    fn eui64_link_local(mac: MacAddr) -> Ipv6Addr {
        let m = mac.0;
        format!(
            "fe80::{:02x}{:02x}:{:02x}ff:fe{:02x}:{:02x}{:02x}",
            m[0] ^ 0x02,
            m[1],
            m[2],
            m[3],
            m[4],
            m[5]
        )
        .parse()
        .expect("a valid IPv6 address")
    }

    #[test]
    fn the_link_local_oracle_matches_a_known_address() {
        // 52:54:00:12:34:56 is QEMU's default guest MAC; its link-local address
        // as a Linux guest configures it.
        let qemu = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(
            eui64_link_local(qemu),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
    }

    proptest::proptest! {
        /// The integer prefix checks answer as `ipnet`'s `contains`, host bits and all,
        /// and a guard's MACs' link-local addresses are its own.
        #[test]
        fn prefix_checks_agree_with_ipnet(
            net4 in proptest::prelude::any::<(u32, u8)>(),
            addr4 in proptest::prelude::any::<u32>(),
            net6 in proptest::prelude::any::<(u128, u8)>(),
            addr6 in proptest::prelude::any::<u128>(),
            near in proptest::prelude::any::<bool>(),
            mac in proptest::prelude::any::<[u8; 6]>(),
            link_local_case in 0..4u8,
        ) {
            let net4 = Ipv4Net::new(Ipv4Addr::from(net4.0), net4.1 % 33).unwrap();
            let net6 = Ipv6Net::new(Ipv6Addr::from(net6.0), net6.1 % 129).unwrap();
            // Half the addresses share the prefix's leading bits, so both answers come up.
            let shift = |len: u8| u32::from(len.max(1));
            let addr4 = Ipv4Addr::from(if near {
                u32::from(net4.addr()) ^ addr4.checked_shr(shift(net4.prefix_len())).unwrap_or(0)
            } else {
                addr4
            });
            let addr6 = Ipv6Addr::from(if near {
                u128::from(net6.addr()) ^ addr6.checked_shr(shift(net6.prefix_len())).unwrap_or(0)
            } else {
                addr6
            });
            // A MAC with the group bit clear, as a port's MACs are.
            let mac = MacAddr([mac[0] & !1, mac[1], mac[2], mac[3], mac[4], mac[5]]);
            let guard = PortGuard { ipv4: vec![net4], ipv6: vec![net6], macs: vec![GUEST_MAC, mac], ..guard() };
            // A quarter of the cases ask about the link-local address of one of the
            // guard's MACs, a quarter about that of a MAC one bit away.
            let addr6 = match link_local_case {
                0 => eui64_link_local(mac),
                1 => {
                    let [a, b, c, d, e, f] = mac.0;
                    eui64_link_local(MacAddr([a, b, c, d, e, f ^ 1]))
                }
                _ => addr6,
            };
            proptest::prop_assert_eq!(guard.owns_ipv4(addr4), net4.contains(&addr4));
            let link_local = [GUEST_MAC, mac].iter().any(|&m| eui64_link_local(m) == addr6);
            proptest::prop_assert_eq!(guard.owns_ipv6(addr6), net6.contains(&addr6) || link_local);
        }
    }

    proptest::proptest! {
        /// The words of a short guard answer as the guard: random guards of up to 4 MACs
        /// and 2 prefixes, frames from MACs and addresses in and around them.
        #[test]
        fn guard_words_answer_as_the_guard(
            macs in proptest::collection::vec(0..6u8, 1..5),
            prefixes in proptest::collection::vec((0..4u8, 0..33u8), 0..3),
            (mac, src, kind) in (0..6u8, 0..6u8, 0..5u8),
            ports in proptest::prelude::any::<(u16, u16)>(),
        ) {
            let pool_mac = |n: u8| MacAddr([0x02, 0, 0, 0, 0, n]);
            let pool_v4 = |n: u8| Ipv4Addr::new(10, 0, n / 2, n);
            let guard = PortGuard {
                macs: macs.iter().map(|&n| pool_mac(n)).collect(),
                ipv4: prefixes
                    .iter()
                    .map(|&(n, len)| Ipv4Net::new(pool_v4(n), len).unwrap().trunc())
                    .collect(),
                ipv6: Vec::new(),
                restrict_to_port: false,
            };
            let words = guard.words().expect("a short guard");
            let src_ip = if src == 5 { Ipv4Addr::UNSPECIFIED } else { pool_v4(src) };
            let info = match kind {
                0 => udp4(pool_mac(mac), OTHER_MAC, src_ip, OTHER_V4, ports),
                1 => udp4(pool_mac(mac), MacAddr::BROADCAST, src_ip, Ipv4Addr::BROADCAST, (68, 67)),
                2 => udp6(pool_mac(mac), OTHER_MAC, GUEST_V6, OTHER_V6),
                3 => arp(MacAddr::BROADCAST, arp::OPER_REQUEST, GUEST_MAC, src_ip, OTHER_V4),
                _ => info(&ethernet(pool_mac(mac), OTHER_MAC, 0x88b5, &[0; 46])),
            };
            proptest::prop_assert_eq!(
                words.check_from_port(&guard, &info),
                guard.check_from_port(&info)
            );
        }
    }

    #[test]
    fn long_guards_have_no_words() {
        let many_macs = PortGuard {
            macs: (0..5).map(|n| MacAddr([2, 0, 0, 0, 0, n])).collect(),
            ..guard()
        };
        assert!(many_macs.words().is_none());
        let many_prefixes = PortGuard {
            ipv4: vec![Ipv4Net::new(GUEST_V4, 32).unwrap(); 3],
            ..guard()
        };
        assert!(many_prefixes.words().is_none());
        assert!(guard().words().is_some());
    }
}
