//! One pass over a frame, producing the small `Copy` summary every pipeline stage reads:
//! tenant classification (VLAN tags), anti-spoofing (addresses, ARP, neighbour discovery)
//! and ACLs (the IP 5-tuple, ICMP type, TCP flags).
//!
//! # What is an error, and what is not
//!
//! Only a frame that ends inside its link-layer header (14 bytes, plus 4 for each VLAN tag
//! it announces) is an error, [`WireError::Truncated`]: such a frame has no destination a
//! switch could act on.
//!
//! Everything above the link layer is the hosts' business, and a frame whose upper layers
//! are damaged still switches. But a switch that checks addresses must not mistake "could
//! not read it" for "nothing to check": a host may still accept what xsw failed to parse.
//! So the summary says which case it is:
//!
//! - [`L3Info::None`]: an EtherType that announces neither ARP nor IP (LLDP, 802.3 length
//!   fields, a third VLAN tag, …). Nothing claims an address, nothing is checked beyond L2.
//! - [`L3Info::Malformed`]: the EtherType announces ARP, IPv4 or IPv6 but the header cannot
//!   be read: too short, wrong version, impossible lengths, an ARP packet not for
//!   Ethernet/IPv4, or an IPv6 extension-header chain that is cut short or longer than
//!   [`super::ipv6::MAX_EXTENSION_HEADERS`]. Anti-spoofing refuses these (it cannot prove
//!   the source); a port without anti-spoofing switches them like any other frame, and
//!   the ACL stage decides for itself.
//! - [`L3Info::Ipv4`] / [`L3Info::Ipv6`] with [`IpInfo::l4`] = [`L4Status::Missing`]: the
//!   IP header is sound, so source and destination are known, but the TCP/UDP/SCTP/ICMP
//!   header is not in this packet (a non-first fragment) or is cut short. Ports, flags
//!   and ICMP type are then 0/`None` and must not be read as "port 0".
//!
//! Parsing allocates nothing, takes no lock and cannot panic: every view checks its length
//! once in `new_checked`, and the walk between them uses `get`.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::arp::{self, ArpPacket};
use super::ethernet::{EthernetFrame, WireError, HEADER_LEN as ETHERNET_HEADER_LEN};
use super::ipv4::{self, Fragment, Ipv4Packet};
use super::ipv6::{self, Ipv6Packet};
use super::l4::{
    icmpv6_type, protocol, IcmpHeader, NdKind, NdMessage, SctpHeader, TcpHeader, UdpHeader,
};
use super::mac::MacAddr;
use super::vlan::{self, VlanTag};

pub use super::dhcp::{CLIENT_PORT as DHCP_CLIENT_PORT, SERVER_PORT as DHCP_SERVER_PORT};

/// What the pipeline knows about one frame after [`parse`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    pub dst_mac: MacAddr,
    pub src_mac: MacAddr,
    /// VID of the outer tag, if any.
    pub vlan: Option<u16>,
    /// A second tag follows the first (double tagging). Further tags are not looked at:
    /// their TPID is then [`FrameInfo::ethertype`].
    pub inner_tagged: bool,
    /// 14, 18 or 22: where the L3 header starts.
    pub l2_len: usize,
    /// The EtherType after the tags.
    pub ethertype: u16,
    pub l3: L3Info,
}

/// The network layer, as far as the switch reads it. See the module docs for `Malformed`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum L3Info {
    /// Neither ARP nor IP.
    None,
    Arp(ArpInfo),
    Ipv4(IpInfo),
    Ipv6(IpInfo),
    /// ARP, IPv4 or IPv6 by EtherType ([`FrameInfo::ethertype`] says which), but the
    /// header cannot be read.
    Malformed,
}

/// An Ethernet/IPv4 ARP packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ArpInfo {
    /// [`arp::OPER_REQUEST`], [`arp::OPER_REPLY`] or another value (which hosts ignore).
    pub oper: u16,
    pub sha: MacAddr,
    pub spa: Ipv4Addr,
    pub tha: MacAddr,
    pub tpa: Ipv4Addr,
}

/// An IPv4 or IPv6 packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct IpInfo {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The upper-layer protocol: for IPv6, after the extension headers (see
    /// [`super::ipv6::Ipv6Packet::upper_layer`]). For IPv4 it is the header's protocol
    /// field, so an IPv4 packet with an Authentication Header reads as protocol 51.
    pub proto: u8,
    /// TCP, UDP or SCTP source port when [`IpInfo::l4`] is `Read`, else 0.
    pub sport: u16,
    /// TCP, UDP or SCTP destination port when [`IpInfo::l4`] is `Read`, else 0.
    pub dport: u16,
    /// ICMP type for IPv4 protocol 1 and ICMPv6 type for IPv6 protocol 58, when read.
    pub icmp_type: Option<u8>,
    /// See [`super::l4::tcp_flags`]; 0 unless a TCP header was read.
    pub tcp_flags: u8,
    /// For an ICMPv6 neighbour solicitation or advertisement: what it claims. `None` as
    /// well for one whose target or link-layer option cannot be read unambiguously, so
    /// `icmp_type` 135/136 with `nd: None` is a message nobody may vouch for.
    pub nd: Option<NdInfo>,
    pub fragment: Fragment,
    pub l4: L4Status,
}

/// Whether the upper-layer fields of an [`IpInfo`] come from the packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum L4Status {
    /// A TCP, UDP, SCTP, ICMP or ICMPv6 header was read: ports, flags and type are the
    /// packet's.
    Read,
    /// Another protocol (ESP, GRE, no next header, …): it has no fields the switch reads.
    Opaque,
    /// The header is not here: a non-first fragment, or a header cut short (including a
    /// first fragment too small to hold it).
    Missing,
}

/// What an IPv6 neighbour solicitation or advertisement claims.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NdInfo {
    pub kind: NdKind,
    /// The address asked about (solicitation) or advertised (advertisement).
    pub target: Ipv6Addr,
    /// The source link-layer option of a solicitation, the target link-layer option of an
    /// advertisement: the MAC receivers will put in their neighbour cache.
    pub link_addr: Option<MacAddr>,
}

impl FrameInfo {
    /// The IP summary of an IPv4 or IPv6 frame.
    pub fn ip(&self) -> Option<&IpInfo> {
        match &self.l3 {
            L3Info::Ipv4(ip) | L3Info::Ipv6(ip) => Some(ip),
            _ => None,
        }
    }

    /// An IPv4 UDP datagram from the DHCP client port to the server port: what a guest
    /// sends, from 0.0.0.0, before it has an address.
    pub fn is_dhcp_client(&self) -> bool {
        match &self.l3 {
            L3Info::Ipv4(ip) => {
                ip.proto == protocol::UDP
                    && ip.l4 == L4Status::Read
                    && ip.sport == DHCP_CLIENT_PORT
                    && ip.dport == DHCP_SERVER_PORT
            }
            _ => false,
        }
    }
}

impl IpInfo {
    /// Whether `sport` and `dport` are real ports: a TCP, UDP or SCTP header was read.
    /// A rule on ports cannot be decided for a packet where this is false.
    pub fn has_ports(&self) -> bool {
        self.l4 == L4Status::Read
            && matches!(self.proto, protocol::TCP | protocol::UDP | protocol::SCTP)
    }

    /// ICMPv6 router solicitation/advertisement, neighbour solicitation/advertisement or
    /// redirect (types 133..=137): address resolution, which must keep working whatever
    /// the ACLs say.
    pub fn is_neighbor_discovery(&self) -> bool {
        self.proto == protocol::ICMPV6
            && self
                .icmp_type
                .is_some_and(|t| (icmpv6_type::ROUTER_SOLICIT..=icmpv6_type::REDIRECT).contains(&t))
    }
}

/// Reads a frame once. Fails only when the frame ends inside its Ethernet header or a VLAN
/// tag it announces; see the module docs for how damaged upper layers are reported.
#[inline]
pub fn parse(frame: &[u8]) -> Result<FrameInfo, WireError> {
    match parse_common(frame) {
        Some(info) => Ok(info),
        None => parse_any(frame),
    }
}

/// [`parse`] without the reason it failed, into `summary`: written where the caller keeps
/// it. Returning it instead, the summary (104 bytes) was assembled on the stack where the
/// two ways of parsing join, then copied field by field, 80 instructions per frame
/// (callgrind, `benches/pipeline.rs`).
#[inline]
pub fn parse_into(frame: &[u8], summary: &mut Option<FrameInfo>) {
    *summary = parse_common(frame);
    if summary.is_none() {
        *summary = parse_any(frame).ok();
    }
}

/// [`parse`] for what most traffic is, a whole TCP or UDP segment in an IPv4 packet without
/// options, untagged or with one tag; None for anything else, which [`parse_any`] reads.
/// Same answer as `parse_any` wherever it answers (tested on random and mutated frames):
/// it only skips the general walk through the layers and the moves of the summary between
/// them. Measured with `benches/pipeline.rs`: 89 instead of 189 instructions per frame.
#[inline]
fn parse_common(frame: &[u8]) -> Option<FrameInfo> {
    // The longest header read here: Ethernet, one tag, IPv4, TCP.
    const ETHERNET: usize = ETHERNET_HEADER_LEN;
    let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let (vlan, l2_len) = if vlan::is_tpid(ethertype) {
        let tag = frame.get(ETHERNET..ETHERNET + vlan::HEADER_LEN)?;
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        let vid = u16::from_be_bytes([tag[0], tag[1]]) & vlan::VID_MASK;
        (Some(vid), ETHERNET + vlan::TAG_LEN)
    } else {
        (None, ETHERNET)
    };
    if ethertype != ipv4::ETHERTYPE {
        return None;
    }
    let ip: &[u8; ipv4::MIN_HEADER_LEN] = frame.get(l2_len..)?.first_chunk()?;
    // Version 4, no options, not a fragment.
    if ip[0] != 0x45 || u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return None;
    }
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let upper = frame.get(l2_len + ipv4::MIN_HEADER_LEN..l2_len + total_len)?;
    let proto = ip[9];
    // TCP and UDP alike, with no branch on which it is: traffic mixes them at random, and
    // a branch on the protocol is mispredicted for many frames (62 instead of 59 ns a
    // frame in `benches/pipeline.rs` at 1,000 MACs and rules). Both headers start with the
    // ports; UDP's is 8 bytes, TCP's as long as its data offset says, at least 20. The
    // protocol is checked with a bit test: two compares, the compiler turned back into a
    // branch.
    const TCP_OR_UDP: u64 = 1 << protocol::TCP | 1 << protocol::UDP;
    if (TCP_OR_UDP >> u32::from(proto).min(63)) & 1 == 0 {
        return None;
    }
    let tcp = usize::from(proto == protocol::TCP);
    let offset = usize::from(upper.get(12).copied().unwrap_or(0) >> 4) * 4;
    // UDP: 8, whatever byte 12 holds; TCP: the data offset.
    let header_len = offset.wrapping_sub(8).wrapping_mul(tcp).wrapping_add(8);
    let shortest = 8 + tcp * 12;
    if (header_len < shortest) | (header_len > upper.len()) {
        return None;
    }
    let ports = upper.first_chunk::<4>()?;
    let tcp_flags = upper.get(13).copied().unwrap_or(0) & 0u8.wrapping_sub(tcp as u8);
    let mac = |at: usize| -> Option<MacAddr> { Some(MacAddr(*frame.get(at..)?.first_chunk()?)) };
    let address = |at: usize| IpAddr::V4(Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]));
    Some(FrameInfo {
        dst_mac: mac(0)?,
        src_mac: mac(6)?,
        vlan,
        inner_tagged: false,
        l2_len,
        ethertype,
        l3: L3Info::Ipv4(IpInfo {
            src: address(12),
            dst: address(16),
            proto,
            sport: u16::from_be_bytes([ports[0], ports[1]]),
            dport: u16::from_be_bytes([ports[2], ports[3]]),
            icmp_type: None,
            tcp_flags,
            nd: None,
            fragment: Fragment::Whole,
            l4: L4Status::Read,
        }),
    })
}

/// [`parse`] for any frame.
#[inline(never)]
fn parse_any(frame: &[u8]) -> Result<FrameInfo, WireError> {
    let ethernet = EthernetFrame::new_checked(frame)?;
    let mut ethertype = ethernet.ethertype();
    let mut l2_len = ETHERNET_HEADER_LEN;
    let mut vlan = None;
    let mut inner_tagged = false;
    if vlan::is_tpid(ethertype) {
        let outer = VlanTag::new_checked(ethernet.payload())?;
        vlan = Some(outer.vid());
        ethertype = outer.ethertype();
        l2_len += vlan::TAG_LEN;
        if vlan::is_tpid(ethertype) {
            let inner = VlanTag::new_checked(outer.payload())?;
            inner_tagged = true;
            ethertype = inner.ethertype();
            l2_len += vlan::TAG_LEN;
        }
    }
    let l3_bytes = frame.get(l2_len..).unwrap_or(&[]);
    Ok(FrameInfo {
        dst_mac: ethernet.dst_addr(),
        src_mac: ethernet.src_addr(),
        vlan,
        inner_tagged,
        l2_len,
        ethertype,
        l3: parse_l3(ethertype, l3_bytes),
    })
}

fn parse_l3(ethertype: u16, bytes: &[u8]) -> L3Info {
    let parsed = match ethertype {
        arp::ETHERTYPE => parse_arp(bytes).map(L3Info::Arp),
        ipv4::ETHERTYPE => parse_ipv4(bytes).map(L3Info::Ipv4),
        ipv6::ETHERTYPE => parse_ipv6(bytes).map(L3Info::Ipv6),
        _ => return L3Info::None,
    };
    parsed.unwrap_or(L3Info::Malformed)
}

fn parse_arp(bytes: &[u8]) -> Result<ArpInfo, WireError> {
    let arp = ArpPacket::new_checked(bytes)?;
    Ok(ArpInfo {
        oper: arp.oper(),
        sha: arp.sender_hardware_addr(),
        spa: arp.sender_protocol_addr(),
        tha: arp.target_hardware_addr(),
        tpa: arp.target_protocol_addr(),
    })
}

fn parse_ipv4(bytes: &[u8]) -> Result<IpInfo, WireError> {
    let packet = Ipv4Packet::new_checked(bytes)?;
    let fragment = packet.fragment();
    let upper = read_upper_layer(packet.protocol(), fragment, packet.payload(), false);
    Ok(IpInfo {
        src: IpAddr::V4(packet.src_addr()),
        dst: IpAddr::V4(packet.dst_addr()),
        proto: packet.protocol(),
        sport: upper.sport,
        dport: upper.dport,
        icmp_type: upper.icmp_type,
        tcp_flags: upper.tcp_flags,
        nd: upper.nd,
        fragment,
        l4: upper.status,
    })
}

fn parse_ipv6(bytes: &[u8]) -> Result<IpInfo, WireError> {
    let packet = Ipv6Packet::new_checked(bytes)?;
    let layer = packet.upper_layer()?;
    let upper_bytes = packet.payload().get(layer.offset..).unwrap_or(&[]);
    let upper = read_upper_layer(layer.protocol, layer.fragment, upper_bytes, true);
    Ok(IpInfo {
        src: IpAddr::V6(packet.src_addr()),
        dst: IpAddr::V6(packet.dst_addr()),
        proto: layer.protocol,
        sport: upper.sport,
        dport: upper.dport,
        icmp_type: upper.icmp_type,
        tcp_flags: upper.tcp_flags,
        nd: upper.nd,
        fragment: layer.fragment,
        l4: upper.status,
    })
}

/// The upper-layer fields of an [`IpInfo`].
struct UpperLayerFields {
    sport: u16,
    dport: u16,
    icmp_type: Option<u8>,
    tcp_flags: u8,
    nd: Option<NdInfo>,
    status: L4Status,
}

impl UpperLayerFields {
    const fn empty(status: L4Status) -> Self {
        UpperLayerFields {
            sport: 0,
            dport: 0,
            icmp_type: None,
            tcp_flags: 0,
            nd: None,
            status,
        }
    }

    const fn ports(sport: u16, dport: u16) -> Self {
        UpperLayerFields {
            sport,
            dport,
            ..Self::empty(L4Status::Read)
        }
    }
}

fn read_upper_layer(proto: u8, fragment: Fragment, bytes: &[u8], ipv6: bool) -> UpperLayerFields {
    if !fragment.carries_upper_header() {
        return UpperLayerFields::empty(L4Status::Missing);
    }
    let missing = |_: WireError| UpperLayerFields::empty(L4Status::Missing);
    match proto {
        protocol::TCP => {
            TcpHeader::new_checked(bytes).map_or_else(missing, |tcp| UpperLayerFields {
                tcp_flags: tcp.flags(),
                ..UpperLayerFields::ports(tcp.src_port(), tcp.dst_port())
            })
        }
        protocol::UDP => UdpHeader::new_checked(bytes).map_or_else(missing, |udp| {
            UpperLayerFields::ports(udp.src_port(), udp.dst_port())
        }),
        protocol::SCTP => SctpHeader::new_checked(bytes).map_or_else(missing, |sctp| {
            UpperLayerFields::ports(sctp.src_port(), sctp.dst_port())
        }),
        // ICMP in IPv6, or ICMPv6 in IPv4, is nothing a host's stack takes as ICMP.
        protocol::ICMP if !ipv6 => read_icmp(bytes, false),
        protocol::ICMPV6 if ipv6 => read_icmp(bytes, true),
        _ => UpperLayerFields::empty(L4Status::Opaque),
    }
}

fn read_icmp(bytes: &[u8], ipv6: bool) -> UpperLayerFields {
    let Ok(icmp) = IcmpHeader::new_checked(bytes) else {
        return UpperLayerFields::empty(L4Status::Missing);
    };
    let nd = if ipv6 && NdKind::from_icmpv6_type(icmp.msg_type()).is_some() {
        read_nd(bytes)
    } else {
        None
    };
    UpperLayerFields {
        icmp_type: Some(icmp.msg_type()),
        nd,
        ..UpperLayerFields::empty(L4Status::Read)
    }
}

fn read_nd(bytes: &[u8]) -> Option<NdInfo> {
    let message = NdMessage::new_checked(bytes).ok()?;
    let link_addr = message.link_addr().ok()?;
    Some(NdInfo {
        kind: message.kind(),
        target: message.target(),
        link_addr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::arp::tests::arp_bytes;
    use crate::packet::ipv6::tests::fragment_header;
    use crate::packet::l4::tcp_flags;
    use crate::packet::l4::tests::nd_bytes;
    use etherparse::{
        EtherType, Ethernet2Header, IpFragOffset, IpHeaders, IpNumber, Ipv4Header, Ipv6Extensions,
        Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader, NetSlice, PacketBuilder,
        PacketBuilderStep, SlicedPacket, TransportSlice, VlanId, VlanSlice,
    };
    use proptest::prelude::*;

    const SRC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const DST: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
    const V6_SRC: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const V6_DST: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

    fn build<B>(write: impl FnOnce(&mut Vec<u8>) -> B) -> Vec<u8> {
        let mut bytes = Vec::new();
        write(&mut bytes);
        bytes
    }

    fn ethernet_with(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut bytes = Ethernet2Header {
            source: SRC.0,
            destination: DST.0,
            ether_type: EtherType(ethertype),
        }
        .to_bytes()
        .to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    fn ipv6_step(extensions: Ipv6Extensions) -> PacketBuilderStep<IpHeaders> {
        let header = Ipv6Header {
            hop_limit: 255,
            source: V6_SRC,
            destination: V6_DST,
            ..Default::default()
        };
        PacketBuilder::ethernet2(SRC.0, DST.0).ip(IpHeaders::Ipv6(header, extensions))
    }

    fn ip_of(info: &FrameInfo) -> IpInfo {
        *info.ip().expect("an IP frame")
    }

    #[test]
    fn common_frames_take_the_short_cut() {
        let udp = build(|out| {
            PacketBuilder::ethernet2(SRC.0, DST.0)
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .udp(1000, 53)
                .write(out, b"hello")
        });
        let tcp = build(|out| {
            PacketBuilder::ethernet2(SRC.0, DST.0)
                .single_vlan(VlanId::try_new(100).unwrap())
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .tcp(40000, 443, 1, 1000)
                .ack(7)
                .write(out, b"hello")
        });
        for frame in [udp, tcp] {
            let info = parse_common(&frame).expect("a common frame");
            assert_eq!(Ok(info), parse_any(&frame));
        }
    }

    #[test]
    fn reads_untagged_udp() {
        let frame = build(|out| {
            PacketBuilder::ethernet2(SRC.0, DST.0)
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .udp(DHCP_CLIENT_PORT, DHCP_SERVER_PORT)
                .write(out, b"hello")
        });
        let info = parse(&frame).unwrap();
        assert_eq!((info.src_mac, info.dst_mac), (SRC, DST));
        assert_eq!(
            (info.vlan, info.inner_tagged, info.l2_len),
            (None, false, 14)
        );
        assert_eq!(info.ethertype, ipv4::ETHERTYPE);
        let ip = ip_of(&info);
        assert_eq!(ip.src, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(ip.dst, IpAddr::from([10, 0, 0, 2]));
        assert_eq!((ip.proto, ip.sport, ip.dport), (17, 68, 67));
        assert_eq!((ip.icmp_type, ip.tcp_flags, ip.nd), (None, 0, None));
        assert_eq!((ip.fragment, ip.l4), (Fragment::Whole, L4Status::Read));
        assert!(info.is_dhcp_client() && ip.has_ports());
    }

    #[test]
    fn reads_tags_and_where_l3_starts() {
        let single = build(|out| {
            PacketBuilder::ethernet2(SRC.0, DST.0)
                .single_vlan(VlanId::try_new(100).unwrap())
                .ipv6(V6_SRC, V6_DST, 64)
                .tcp(40000, 22, 1, 1000)
                .syn()
                .write(out, &[])
        });
        let info = parse(&single).unwrap();
        assert_eq!(
            (info.vlan, info.inner_tagged, info.l2_len),
            (Some(100), false, 18)
        );
        assert_eq!(info.ethertype, ipv6::ETHERTYPE);
        let ip = ip_of(&info);
        assert_eq!(
            (ip.proto, ip.sport, ip.dport, ip.tcp_flags),
            (6, 40000, 22, tcp_flags::SYN)
        );
        assert!(!info.is_dhcp_client());

        let double = build(|out| {
            PacketBuilder::ethernet2(SRC.0, DST.0)
                .double_vlan(VlanId::try_new(10).unwrap(), VlanId::try_new(20).unwrap())
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .icmpv4_echo_request(1, 1)
                .write(out, &[])
        });
        let info = parse(&double).unwrap();
        assert_eq!(
            (info.vlan, info.inner_tagged, info.l2_len),
            (Some(10), true, 22)
        );
        assert_eq!(ip_of(&info).icmp_type, Some(8));
    }

    #[test]
    fn truncated_link_layer_is_the_only_error() {
        let frame = build(|out| {
            PacketBuilder::ethernet2(SRC.0, DST.0)
                .double_vlan(VlanId::try_new(10).unwrap(), VlanId::try_new(20).unwrap())
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .udp(1, 2)
                .write(out, &[])
        });
        for len in 0..22 {
            assert_eq!(
                parse(&frame[..len]),
                Err(WireError::Truncated),
                "length {len}"
            );
        }
        // From there on the frame parses, with a damaged IPv4 header reported as such.
        for len in 22..frame.len() {
            let info = parse(&frame[..len]).unwrap();
            assert_eq!(info.l3, L3Info::Malformed, "length {len}");
        }
        assert!(matches!(parse(&frame).unwrap().l3, L3Info::Ipv4(_)));
    }

    #[test]
    fn other_ethertypes_have_no_l3() {
        let lldp = ethernet_with(0x88cc, &[0; 46]);
        assert_eq!(parse(&lldp).unwrap().l3, L3Info::None);
        let ieee_802_3 = ethernet_with(46, &[0; 46]);
        assert_eq!(parse(&ieee_802_3).unwrap().l3, L3Info::None);
        let mut triple = ethernet_with(vlan::TPID_STAG, &[0, 1, 0x81, 0, 0, 2, 0x81, 0, 0, 3]);
        triple.extend_from_slice(&[0x08, 0x00]);
        let info = parse(&triple).unwrap();
        assert_eq!((info.ethertype, info.l3), (vlan::TPID_CTAG, L3Info::None));
    }

    #[test]
    fn reads_arp() {
        let spa = Ipv4Addr::new(10, 0, 0, 1);
        let tpa = Ipv4Addr::new(10, 0, 0, 2);
        let frame = ethernet_with(
            arp::ETHERTYPE,
            &arp_bytes(arp::OPER_REQUEST, SRC, spa, MacAddr::ZERO, tpa),
        );
        let expected = ArpInfo {
            oper: arp::OPER_REQUEST,
            sha: SRC,
            spa,
            tha: MacAddr::ZERO,
            tpa,
        };
        assert_eq!(parse(&frame).unwrap().l3, L3Info::Arp(expected));
        let short = &frame[..frame.len() - 1];
        assert_eq!(parse(short).unwrap().l3, L3Info::Malformed);
    }

    #[test]
    fn reads_neighbor_advertisement() {
        let target = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
        let body = nd_bytes(NdKind::Advert, target, &[(2, SRC)]);
        let frame = build(|out| ipv6_step(Ipv6Extensions::default()).write(out, 58.into(), &body));
        let ip = ip_of(&parse(&frame).unwrap());
        assert_eq!(
            (ip.proto, ip.icmp_type, ip.l4),
            (58, Some(136), L4Status::Read)
        );
        let expected = NdInfo {
            kind: NdKind::Advert,
            target,
            link_addr: Some(SRC),
        };
        assert_eq!(ip.nd, Some(expected));
        assert!(ip.is_neighbor_discovery() && !ip.has_ports());

        // Two different target link-layer options: the message claims nothing we can vouch for.
        let body = nd_bytes(NdKind::Advert, target, &[(2, SRC), (2, DST)]);
        let frame = build(|out| ipv6_step(Ipv6Extensions::default()).write(out, 58.into(), &body));
        let ip = ip_of(&parse(&frame).unwrap());
        assert_eq!((ip.icmp_type, ip.nd), (Some(136), None));
    }

    #[test]
    fn finds_icmpv6_behind_extension_headers() {
        let target = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
        let body = nd_bytes(NdKind::Solicit, target, &[(1, SRC)]);
        let options = Ipv6RawExtHeader::new_raw(IpNumber(0), &[0; 6]).unwrap();
        let extensions = Ipv6Extensions {
            hop_by_hop_options: Some(options.clone()),
            destination_options: Some(options),
            ..Default::default()
        };
        let frame = build(|out| ipv6_step(extensions).write(out, 58.into(), &body));
        let ip = ip_of(&parse(&frame).unwrap());
        assert_eq!(ip.proto, 58);
        assert_eq!(
            ip.nd.map(|nd| (nd.kind, nd.link_addr)),
            Some((NdKind::Solicit, Some(SRC)))
        );
    }

    #[test]
    fn overlong_extension_chain_is_malformed() {
        let mut payload = Vec::new();
        for _ in 0..=ipv6::MAX_EXTENSION_HEADERS {
            payload.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]);
        }
        let frame =
            build(|out| ipv6_step(Ipv6Extensions::default()).write(out, 60.into(), &payload));
        assert_eq!(parse(&frame).unwrap().l3, L3Info::Malformed);
    }

    #[test]
    fn later_fragments_have_no_l4_and_first_fragments_do() {
        let mut header =
            Ipv4Header::new(0, 64, IpNumber::UDP, [10, 0, 0, 1], [10, 0, 0, 2]).unwrap();
        header.more_fragments = true;
        let first = build(|out| {
            PacketBuilder::ethernet2(SRC.0, DST.0)
                .ip(IpHeaders::Ipv4(header.clone(), Default::default()))
                .udp(68, 67)
                .write(out, &[0; 16])
        });
        let ip4 = ip_of(&parse(&first).unwrap());
        assert_eq!(
            (ip4.fragment, ip4.l4, ip4.dport),
            (Fragment::First, L4Status::Read, 67)
        );

        header.fragment_offset = IpFragOffset::try_new(3).unwrap();
        let later = build(|out| {
            PacketBuilder::ethernet2(SRC.0, DST.0)
                .ip(IpHeaders::Ipv4(header, Default::default()))
                .write(out, IpNumber::UDP, &[0; 16])
        });
        let info = parse(&later).unwrap();
        let ip4 = ip_of(&info);
        assert_eq!(
            (ip4.fragment, ip4.l4, ip4.proto),
            (Fragment::Later, L4Status::Missing, 17)
        );
        assert_eq!((ip4.sport, ip4.dport), (0, 0));
        assert!(!info.is_dhcp_client() && !ip4.has_ports());

        let mut payload = fragment_header(6, 3, true).to_vec();
        payload.extend_from_slice(&[0; 16]);
        let later6 =
            build(|out| ipv6_step(Ipv6Extensions::default()).write(out, IpNumber(44), &payload));
        let ip6 = ip_of(&parse(&later6).unwrap());
        assert_eq!(
            (ip6.fragment, ip6.l4, ip6.proto),
            (Fragment::Later, L4Status::Missing, 6)
        );
    }

    #[test]
    fn short_transport_header_is_missing_and_opaque_protocols_are_opaque() {
        let tcp_cut = build(|out| {
            PacketBuilder::ethernet2(SRC.0, DST.0)
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .write(out, IpNumber::TCP, &[0; 12])
        });
        let ip4 = ip_of(&parse(&tcp_cut).unwrap());
        assert_eq!((ip4.proto, ip4.l4, ip4.sport), (6, L4Status::Missing, 0));

        let esp = build(|out| {
            PacketBuilder::ethernet2(SRC.0, DST.0)
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .write(out, IpNumber(50), &[0; 12])
        });
        assert_eq!(ip_of(&parse(&esp).unwrap()).l4, L4Status::Opaque);
    }

    #[test]
    fn ethernet_padding_is_not_read_as_upper_layer() {
        // A TCP header cut to 8 bytes, padded by Ethernet to 60 bytes: the padding would
        // complete the header if the IPv4 total length were ignored.
        let mut frame = build(|out| {
            PacketBuilder::ethernet2(SRC.0, DST.0)
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .write(out, IpNumber::TCP, &[0; 8])
        });
        frame.resize(60, 0x50);
        assert_eq!(ip_of(&parse(&frame).unwrap()).l4, L4Status::Missing);
    }

    // --- Agreement with etherparse on valid frames, and robustness on any bytes. ---

    #[derive(Debug, Clone)]
    enum Tags {
        None,
        Single(u16),
        Double(u16, u16),
    }

    #[derive(Debug, Clone)]
    enum Net {
        V4 {
            src: [u8; 4],
            dst: [u8; 4],
            options_words: usize,
        },
        V6 {
            src: [u8; 16],
            dst: [u8; 16],
            hop_by_hop: bool,
            destination_options: bool,
            atomic_fragment: bool,
        },
    }

    #[derive(Debug, Clone)]
    enum Transport {
        Udp(u16, u16),
        Tcp(u16, u16, u8),
        Icmp(u8, u8),
    }

    fn tags() -> impl Strategy<Value = Tags> {
        prop_oneof![
            Just(Tags::None),
            (0u16..4096).prop_map(Tags::Single),
            (0u16..4096, 0u16..4096).prop_map(|(outer, inner)| Tags::Double(outer, inner)),
        ]
    }

    fn net() -> impl Strategy<Value = Net> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<[u8; 4]>(), 0usize..=10).prop_map(
                |(src, dst, options_words)| {
                    Net::V4 {
                        src,
                        dst,
                        options_words,
                    }
                }
            ),
            (
                any::<[u8; 16]>(),
                any::<[u8; 16]>(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>()
            )
                .prop_map(
                    |(src, dst, hop_by_hop, destination_options, atomic_fragment)| Net::V6 {
                        src,
                        dst,
                        hop_by_hop,
                        destination_options,
                        atomic_fragment,
                    }
                ),
        ]
    }

    fn transport() -> impl Strategy<Value = Transport> {
        prop_oneof![
            (any::<u16>(), any::<u16>()).prop_map(|(s, d)| Transport::Udp(s, d)),
            (any::<u16>(), any::<u16>(), any::<u8>()).prop_map(|(s, d, f)| Transport::Tcp(s, d, f)),
            // etherparse refuses an ICMPv4 timestamp (13/14, code 0) shorter than 20 bytes.
            (any::<u8>(), any::<u8>())
                .prop_filter("short ICMP timestamp", |(t, c)| !matches!(
                    (t, c),
                    (13 | 14, 0)
                ))
                .prop_map(|(t, c)| Transport::Icmp(t, c)),
        ]
    }

    fn random_frame(
        src: [u8; 6],
        dst: [u8; 6],
        tags: &Tags,
        net: &Net,
        transport: &Transport,
        payload: &[u8],
    ) -> Vec<u8> {
        let ip = match net {
            Net::V4 {
                src,
                dst,
                options_words,
            } => {
                let mut header = Ipv4Header::new(0, 64, IpNumber::UDP, *src, *dst).unwrap();
                // Option 1 is no-operation, valid any number of times.
                header.options = vec![1u8; options_words * 4][..].try_into().unwrap();
                IpHeaders::Ipv4(header, Default::default())
            }
            Net::V6 {
                src,
                dst,
                hop_by_hop,
                destination_options,
                atomic_fragment,
            } => {
                let options = Ipv6RawExtHeader::new_raw(IpNumber(0), &[1, 4, 0, 0, 0, 0]).unwrap();
                let extensions = Ipv6Extensions {
                    hop_by_hop_options: hop_by_hop.then(|| options.clone()),
                    destination_options: destination_options.then_some(options),
                    fragment: atomic_fragment.then(|| {
                        Ipv6FragmentHeader::new(IpNumber(0), IpFragOffset::ZERO, false, 1)
                    }),
                    ..Default::default()
                };
                let header = Ipv6Header {
                    hop_limit: 64,
                    source: *src,
                    destination: *dst,
                    ..Default::default()
                };
                IpHeaders::Ipv6(header, extensions)
            }
        };
        let is_v6 = matches!(net, Net::V6 { .. });
        let ethernet = PacketBuilder::ethernet2(src, dst);
        let step = match tags {
            Tags::None => ethernet.ip(ip),
            Tags::Single(vid) => ethernet.single_vlan(VlanId::try_new(*vid).unwrap()).ip(ip),
            Tags::Double(outer, inner) => ethernet
                .double_vlan(
                    VlanId::try_new(*outer).unwrap(),
                    VlanId::try_new(*inner).unwrap(),
                )
                .ip(ip),
        };
        let mut bytes = Vec::new();
        match *transport {
            Transport::Udp(s, d) => step.udp(s, d).write(&mut bytes, payload).unwrap(),
            Transport::Tcp(s, d, flags) => {
                let mut tcp = etherparse::TcpHeader::new(s, d, 1, 1000);
                tcp.fin = flags & tcp_flags::FIN != 0;
                tcp.syn = flags & tcp_flags::SYN != 0;
                tcp.rst = flags & tcp_flags::RST != 0;
                tcp.psh = flags & tcp_flags::PSH != 0;
                tcp.ack = flags & tcp_flags::ACK != 0;
                tcp.urg = flags & tcp_flags::URG != 0;
                tcp.ece = flags & tcp_flags::ECE != 0;
                tcp.cwr = flags & tcp_flags::CWR != 0;
                step.tcp_header(tcp).write(&mut bytes, payload).unwrap()
            }
            Transport::Icmp(icmp_type, code) if is_v6 => step
                .icmpv6(etherparse::Icmpv6Type::Unknown {
                    type_u8: icmp_type,
                    code_u8: code,
                    bytes5to8: [0; 4],
                })
                .write(&mut bytes, payload)
                .unwrap(),
            Transport::Icmp(icmp_type, code) => step
                .icmpv4(etherparse::Icmpv4Type::Unknown {
                    type_u8: icmp_type,
                    code_u8: code,
                    bytes5to8: [0; 4],
                })
                .write(&mut bytes, payload)
                .unwrap(),
        }
        bytes
    }

    /// Compares what both parsers read, where both read it.
    fn assert_agrees(info: &FrameInfo, reference: &SlicedPacket) -> Result<(), TestCaseError> {
        if let Some(etherparse::LinkSlice::Ethernet2(ethernet)) = &reference.link {
            prop_assert_eq!(info.src_mac.0, ethernet.source());
            prop_assert_eq!(info.dst_mac.0, ethernet.destination());
        }
        match &reference.vlan {
            None => prop_assert_eq!(
                (info.vlan, info.inner_tagged, info.l2_len),
                (None, false, 14)
            ),
            Some(VlanSlice::SingleVlan(tag)) => {
                prop_assert_eq!(info.vlan, Some(tag.vlan_identifier().value()));
                prop_assert_eq!((info.inner_tagged, info.l2_len), (false, 18));
                prop_assert_eq!(info.ethertype, u16::from(tag.ether_type()));
            }
            Some(VlanSlice::DoubleVlan(tags)) => {
                prop_assert_eq!(info.vlan, Some(tags.outer().vlan_identifier().value()));
                prop_assert_eq!((info.inner_tagged, info.l2_len), (true, 22));
                prop_assert_eq!(info.ethertype, u16::from(tags.inner().ether_type()));
            }
        }
        let ip = info.ip();
        match (&reference.net, ip) {
            (Some(NetSlice::Ipv4(packet)), Some(ip)) => {
                prop_assert_eq!(ip.src, IpAddr::V4(packet.header().source_addr()));
                prop_assert_eq!(ip.dst, IpAddr::V4(packet.header().destination_addr()));
                prop_assert_eq!(ip.proto, packet.payload().ip_number.0);
            }
            (Some(NetSlice::Ipv6(packet)), Some(ip)) => {
                prop_assert_eq!(ip.src, IpAddr::V6(packet.header().source_addr()));
                prop_assert_eq!(ip.dst, IpAddr::V6(packet.header().destination_addr()));
                prop_assert_eq!(ip.proto, packet.payload().ip_number.0);
            }
            (None, None) => {}
            (net, ip) => prop_assert!(false, "etherparse read {:?}, xsw {:?}", net, ip),
        }
        let Some(ip) = ip else { return Ok(()) };
        match &reference.transport {
            Some(TransportSlice::Udp(udp)) => {
                prop_assert_eq!(
                    (ip.sport, ip.dport),
                    (udp.source_port(), udp.destination_port())
                );
            }
            Some(TransportSlice::Tcp(tcp)) => {
                prop_assert_eq!(
                    (ip.sport, ip.dport),
                    (tcp.source_port(), tcp.destination_port())
                );
                let flags = u8::from(tcp.fin())
                    | u8::from(tcp.syn()) << 1
                    | u8::from(tcp.rst()) << 2
                    | u8::from(tcp.psh()) << 3
                    | u8::from(tcp.ack()) << 4
                    | u8::from(tcp.urg()) << 5
                    | u8::from(tcp.ece()) << 6
                    | u8::from(tcp.cwr()) << 7;
                prop_assert_eq!(ip.tcp_flags, flags);
            }
            Some(TransportSlice::Icmpv4(icmp)) => {
                prop_assert_eq!(ip.icmp_type, Some(icmp.type_u8()));
            }
            Some(TransportSlice::Icmpv6(icmp)) => {
                prop_assert_eq!(ip.icmp_type, Some(icmp.type_u8()));
            }
            None => {}
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn agrees_with_etherparse_on_valid_frames(
            src in any::<[u8; 6]>(),
            dst in any::<[u8; 6]>(),
            tags in tags(),
            net in net(),
            transport in transport(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let frame = random_frame(src, dst, &tags, &net, &transport, &payload);
            let reference = SlicedPacket::from_ethernet(&frame).unwrap();
            let info = parse(&frame).unwrap();
            prop_assert!(reference.transport.is_some());
            prop_assert_eq!(info.ip().map(|ip| ip.l4), Some(L4Status::Read));
            assert_agrees(&info, &reference)?;
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(frame in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = parse(&frame);
        }

        #[test]
        fn never_panics_on_damaged_frames_and_agrees_where_etherparse_reads_them(
            tags in tags(),
            net in net(),
            transport in transport(),
            payload in proptest::collection::vec(any::<u8>(), 0..32),
            damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let mut frame = random_frame(SRC.0, DST.0, &tags, &net, &transport, &payload);
            for (position, value) in damage {
                let at = position.index(frame.len());
                frame[at] = value;
            }
            if let Some(cut) = cut {
                frame.truncate(cut.index(frame.len() + 1));
            }
            let Ok(info) = parse(&frame) else {
                prop_assert!(frame.len() < 22);
                return Ok(());
            };
            // Where etherparse is deliberately more lenient, its reading is not ours to match:
            // the pre-standard 0x9100 TPID, IPv6 payload length 0 as "rest of the frame",
            // extension headers beyond the usual ones.
            let Ok(reference) = SlicedPacket::from_ethernet(&frame) else { return Ok(()) };
            let lenient_tag = match &reference.vlan {
                Some(VlanSlice::SingleVlan(_)) => !vlan::is_tpid(u16::from_be_bytes([frame[12], frame[13]])),
                Some(VlanSlice::DoubleVlan(_)) => {
                    !vlan::is_tpid(u16::from_be_bytes([frame[12], frame[13]]))
                        || !vlan::is_tpid(u16::from_be_bytes([frame[16], frame[17]]))
                }
                None => false,
            };
            let lenient_ipv6 = match &reference.net {
                Some(NetSlice::Ipv6(packet)) => {
                    packet.header().payload_length() == 0 || packet.payload().ip_number.0 != info.ip().map_or(0, |ip| ip.proto)
                }
                Some(NetSlice::Ipv4(_)) | None => false,
            };
            if lenient_tag || lenient_ipv6 {
                return Ok(());
            }
            if info.ip().is_some_and(|ip| ip.l4 != L4Status::Read) {
                let reference = SlicedPacket { transport: None, ..reference };
                assert_agrees(&info, &reference)?;
            } else {
                assert_agrees(&info, &reference)?;
            }
        }

        /// The short cut reads what the general walk reads, wherever it takes a frame.
        #[test]
        fn common_case_parse_agrees_with_the_general_one(
            tags in tags(),
            net in net(),
            transport in transport(),
            payload in proptest::collection::vec(any::<u8>(), 0..32),
            damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let mut frame = random_frame(SRC.0, DST.0, &tags, &net, &transport, &payload);
            for (position, value) in damage {
                let at = position.index(frame.len());
                frame[at] = value;
            }
            if let Some(cut) = cut {
                frame.truncate(cut.index(frame.len() + 1));
            }
            if let Some(info) = parse_common(&frame) {
                prop_assert_eq!(Ok(info), parse_any(&frame));
            }
            prop_assert_eq!(parse(&frame), parse_any(&frame));
        }
    }
}
