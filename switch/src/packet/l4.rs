//! Upper-layer headers, read only as far as the switch needs them: ports of TCP, UDP and
//! SCTP, TCP flags, ICMP and ICMPv6 type and code, and the addresses carried by IPv6
//! neighbour solicitations and advertisements.
//!
//! Checksums are not verified (see the note in [`super::ipv4`]).

use core::net::Ipv6Addr;
use core::ops::Range;

use super::ethernet::WireError;
use super::mac::MacAddr;

/// IP protocol numbers of the upper layers read here.
pub mod protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
}

/// Bits of [`TcpHeader::flags`] (the 13th byte of the header).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// ICMPv6 types the switch looks at.
pub mod icmpv6_type {
    pub const MLD_REPORT: u8 = 131;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const REDIRECT: u8 = 137;
    pub const MLD2_REPORT: u8 = 143;
}

/// Byte ranges of every header in this module; each header's own constants are grouped
/// by protocol.
pub(super) mod field {
    use core::ops::Range;

    /// TCP, UDP and SCTP all start with the two ports.
    pub const SOURCE_PORT: Range<usize> = 0..2;
    pub const DESTINATION_PORT: Range<usize> = 2..4;

    pub const UDP_LENGTH: Range<usize> = 4..6;
    pub const UDP_CHECKSUM: Range<usize> = 6..8;
    pub const UDP_HEADER_LEN: usize = 8;

    pub const TCP_SEQUENCE: Range<usize> = 4..8;
    pub const TCP_ACKNOWLEDGMENT: Range<usize> = 8..12;
    /// High nibble: header length in 32-bit words.
    pub const TCP_DATA_OFFSET: usize = 12;
    pub const TCP_FLAGS: usize = 13;
    pub const TCP_CHECKSUM: Range<usize> = 16..18;
    pub const TCP_MIN_HEADER_LEN: usize = 20;

    pub const SCTP_VERIFICATION_TAG: Range<usize> = 4..8;
    pub const SCTP_HEADER_LEN: usize = 12;

    pub const ICMP_TYPE: usize = 0;
    pub const ICMP_CODE: usize = 1;
    pub const ICMP_CHECKSUM: Range<usize> = 2..4;
    pub const ICMP_HEADER_LEN: usize = 4;

    /// Neighbour solicitation and advertisement (RFC 4861 §4.3, §4.4), from the ICMPv6 type.
    pub const ND_FLAGS: usize = 4;
    pub const ND_TARGET: Range<usize> = 8..24;
    pub const ND_OPTIONS: usize = 24;
    /// An option: type, length in units of 8 bytes (type and length included), data.
    pub const OPTION_TYPE: usize = 0;
    pub const OPTION_LENGTH: usize = 1;
    pub const OPTION_LINK_ADDR: Range<usize> = 2..8;
}

fn u16_at(bytes: &[u8], range: Range<usize>) -> u16 {
    let mut value = [0u8; 2];
    value.copy_from_slice(&bytes[range]);
    u16::from_be_bytes(value)
}

fn u32_at(bytes: &[u8], range: Range<usize>) -> u32 {
    let mut value = [0u8; 4];
    value.copy_from_slice(&bytes[range]);
    u32::from_be_bytes(value)
}

/// A UDP header over a buffer of at least 8 bytes.
///
/// The length field is not checked against the buffer: the switch reads ports only, and a
/// datagram whose length is wrong is dropped by its receiver.
#[derive(Debug, Clone)]
pub struct UdpHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpHeader<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < field::UDP_HEADER_LEN {
            return Err(WireError::TruncatedHeader);
        }
        Ok(UdpHeader { buffer })
    }

    pub fn src_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::SOURCE_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::DESTINATION_PORT)
    }

    /// Header plus data, as the sender claims.
    pub fn length(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::UDP_LENGTH)
    }

    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::UDP_CHECKSUM)
    }
}

/// A TCP header whose data offset has been checked: at least 20 bytes, options in the buffer.
#[derive(Debug, Clone)]
pub struct TcpHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpHeader<T> {
    /// A data offset below 5 words is [`WireError::Malformed`]; one past the buffer is
    /// [`WireError::TruncatedHeader`].
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < field::TCP_MIN_HEADER_LEN {
            return Err(WireError::TruncatedHeader);
        }
        let header = TcpHeader { buffer };
        if header.header_len() < field::TCP_MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if header.header_len() > header.buffer.as_ref().len() {
            return Err(WireError::TruncatedHeader);
        }
        Ok(header)
    }

    pub fn src_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::SOURCE_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::DESTINATION_PORT)
    }

    pub fn sequence_number(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::TCP_SEQUENCE)
    }

    pub fn acknowledgment_number(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::TCP_ACKNOWLEDGMENT)
    }

    /// Header length in bytes, options included: 20..=60.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::TCP_DATA_OFFSET] >> 4) * 4
    }

    /// CWR..FIN, see [`tcp_flags`]. (The experimental NS bit, in the byte before, is left out.)
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::TCP_FLAGS]
    }
}

/// An SCTP common header (RFC 9260) over a buffer of at least 12 bytes.
#[derive(Debug, Clone)]
pub struct SctpHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SctpHeader<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < field::SCTP_HEADER_LEN {
            return Err(WireError::TruncatedHeader);
        }
        Ok(SctpHeader { buffer })
    }

    pub fn src_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::SOURCE_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::DESTINATION_PORT)
    }

    pub fn verification_tag(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::SCTP_VERIFICATION_TAG)
    }
}

/// The start of an ICMP or ICMPv6 message: type, code, checksum. Both versions share it.
#[derive(Debug, Clone)]
pub struct IcmpHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpHeader<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < field::ICMP_HEADER_LEN {
            return Err(WireError::TruncatedHeader);
        }
        Ok(IcmpHeader { buffer })
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::ICMP_TYPE]
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::ICMP_CODE]
    }

    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::ICMP_CHECKSUM)
    }
}

/// Which neighbour discovery message.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum NdKind {
    /// Neighbour solicitation (ICMPv6 135): "who has target?" Its link-layer option is the
    /// sender's (source link-layer address).
    Solicit,
    /// Neighbour advertisement (ICMPv6 136): "target is at ..." Its link-layer option is the
    /// target's (target link-layer address).
    Advert,
}

impl NdKind {
    pub const fn from_icmpv6_type(icmp_type: u8) -> Option<NdKind> {
        match icmp_type {
            icmpv6_type::NEIGHBOR_SOLICIT => Some(NdKind::Solicit),
            icmpv6_type::NEIGHBOR_ADVERT => Some(NdKind::Advert),
            _ => None,
        }
    }

    /// The option type a host takes the link-layer address from, for this message.
    const fn link_addr_option(self) -> u8 {
        match self {
            NdKind::Solicit => 1, // source link-layer address
            NdKind::Advert => 2,  // target link-layer address
        }
    }
}

/// An ICMPv6 neighbour solicitation or advertisement, from its ICMPv6 type on.
#[derive(Debug, Clone)]
pub struct NdMessage<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NdMessage<T> {
    /// Accepts ICMPv6 types 135 and 136 ([`WireError::Malformed`] otherwise) long enough
    /// for the target address.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let bytes = buffer.as_ref();
        if bytes.len() < field::ND_OPTIONS {
            return Err(WireError::TruncatedHeader);
        }
        if NdKind::from_icmpv6_type(bytes[field::ICMP_TYPE]).is_none() {
            return Err(WireError::Malformed);
        }
        Ok(NdMessage { buffer })
    }

    pub fn kind(&self) -> NdKind {
        // new_checked accepted only the two types; a solicitation is the conservative
        // reading should that ever change, since it claims no address.
        NdKind::from_icmpv6_type(self.buffer.as_ref()[field::ICMP_TYPE]).unwrap_or(NdKind::Solicit)
    }

    /// The advertisement's router, solicited and override flags (R, S, O in the top bits);
    /// reserved and zero in a solicitation.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::ND_FLAGS]
    }

    /// The address asked about (solicitation) or advertised (advertisement).
    pub fn target(&self) -> Ipv6Addr {
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&self.buffer.as_ref()[field::ND_TARGET]);
        Ipv6Addr::from(addr)
    }

    /// The link-layer address hosts will take from this message: the source link-layer
    /// option of a solicitation, the target link-layer option of an advertisement.
    ///
    /// Fails with [`WireError::Malformed`] where hosts disagree on what the message
    /// says, so that a check cannot pass one reading while a host uses another: an option
    /// of length 0 (hosts drop the message), a link-layer option not sized for Ethernet
    /// (Linux drops it), or two such options with different addresses (hosts differ on
    /// which one counts). An option running past the buffer is
    /// [`WireError::TruncatedHeader`].
    pub fn link_addr(&self) -> Result<Option<MacAddr>, WireError> {
        let wanted = self.kind().link_addr_option();
        let mut found: Option<MacAddr> = None;
        let mut rest = self.buffer.as_ref().get(field::ND_OPTIONS..).unwrap_or(&[]);
        // Each turn consumes at least 8 bytes, so the loop ends within the buffer's length / 8.
        while !rest.is_empty() {
            let (Some(&option_type), Some(&length_units)) =
                (rest.get(field::OPTION_TYPE), rest.get(field::OPTION_LENGTH))
            else {
                return Err(WireError::TruncatedHeader);
            };
            if length_units == 0 {
                return Err(WireError::Malformed);
            }
            let option_len = usize::from(length_units) * 8;
            let option = rest.get(..option_len).ok_or(WireError::TruncatedHeader)?;
            if option_type == wanted {
                if length_units != 1 {
                    return Err(WireError::Malformed);
                }
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&option[field::OPTION_LINK_ADDR]);
                let mac = MacAddr(mac);
                if found.is_some_and(|earlier| earlier != mac) {
                    return Err(WireError::Malformed);
                }
                found = Some(mac);
            }
            rest = rest.get(option_len..).unwrap_or(&[]);
        }
        Ok(found)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use etherparse::{Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type, TcpHeaderSlice};
    use proptest::prelude::*;

    /// The ICMPv6 body of a neighbour solicitation or advertisement: type, code, checksum
    /// (left zero), flags and reserved, target, then the given options, each written as
    /// (type, MAC) with length 1.
    pub(crate) fn nd_bytes(kind: NdKind, target: Ipv6Addr, options: &[(u8, MacAddr)]) -> Vec<u8> {
        let icmp_type = match kind {
            NdKind::Solicit => icmpv6_type::NEIGHBOR_SOLICIT,
            NdKind::Advert => icmpv6_type::NEIGHBOR_ADVERT,
        };
        let mut bytes = vec![icmp_type, 0, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&target.octets());
        for (option_type, mac) in options {
            bytes.extend_from_slice(&[*option_type, 1]);
            bytes.extend_from_slice(&mac.0);
        }
        bytes
    }

    const TARGET: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    const MAC_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
    const MAC_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);

    #[test]
    fn reads_tcp_like_etherparse() {
        let mut header = etherparse::TcpHeader::new(1234, 80, 7, 4096);
        header.syn = true;
        header.ack = true;
        header.ece = true;
        header.acknowledgment_number = 99;
        header
            .set_options(&[const { etherparse::TcpOptionElement::Noop }; 4])
            .unwrap();
        let bytes = header.to_bytes();
        let reference = TcpHeaderSlice::from_slice(&bytes).unwrap();
        let tcp = TcpHeader::new_checked(&bytes[..]).unwrap();
        assert_eq!(tcp.src_port(), reference.source_port());
        assert_eq!(tcp.dst_port(), reference.destination_port());
        assert_eq!(tcp.sequence_number(), 7);
        assert_eq!(tcp.acknowledgment_number(), 99);
        assert_eq!(tcp.header_len(), 24);
        assert_eq!(
            tcp.flags(),
            tcp_flags::SYN | tcp_flags::ACK | tcp_flags::ECE
        );
    }

    #[test]
    fn tcp_data_offset_is_checked() {
        let bytes = etherparse::TcpHeader::new(1, 2, 3, 4).to_bytes();
        let mut short_offset = bytes.to_vec();
        short_offset[field::TCP_DATA_OFFSET] = 4 << 4;
        assert_eq!(
            TcpHeader::new_checked(&short_offset[..]).unwrap_err(),
            WireError::Malformed
        );
        let mut long_offset = bytes.to_vec();
        long_offset[field::TCP_DATA_OFFSET] = 6 << 4;
        assert_eq!(
            TcpHeader::new_checked(&long_offset[..]).unwrap_err(),
            WireError::TruncatedHeader
        );
        assert_eq!(
            TcpHeader::new_checked(&bytes[..19]).unwrap_err(),
            WireError::TruncatedHeader
        );
    }

    #[test]
    fn reads_udp_and_sctp_ports() {
        let udp = etherparse::UdpHeader {
            source_port: 68,
            destination_port: 67,
            length: 8,
            checksum: 0xbeef,
        }
        .to_bytes();
        let header = UdpHeader::new_checked(&udp[..]).unwrap();
        assert_eq!((header.src_port(), header.dst_port()), (68, 67));
        assert_eq!((header.length(), header.checksum()), (8, 0xbeef));
        assert!(UdpHeader::new_checked(&udp[..7]).is_err());

        let sctp = [0x0b, 0xb8, 0x00, 0x50, 1, 2, 3, 4, 0, 0, 0, 0];
        let header = SctpHeader::new_checked(&sctp[..]).unwrap();
        assert_eq!((header.src_port(), header.dst_port()), (3000, 80));
        assert_eq!(header.verification_tag(), 0x0102_0304);
        assert!(SctpHeader::new_checked(&sctp[..11]).is_err());
    }

    #[test]
    fn reads_icmp_type_and_code_of_both_versions() {
        let v4 = Icmpv4Header::new(Icmpv4Type::TimeExceeded(
            etherparse::icmpv4::TimeExceededCode::FragmentReassemblyTimeExceeded,
        ))
        .to_bytes();
        let header = IcmpHeader::new_checked(&v4[..]).unwrap();
        assert_eq!((header.msg_type(), header.code()), (11, 1));

        let v6 = Icmpv6Header::new(Icmpv6Type::EchoRequest(etherparse::IcmpEchoHeader {
            id: 1,
            seq: 2,
        }))
        .to_bytes();
        let header = IcmpHeader::new_checked(&v6[..]).unwrap();
        assert_eq!((header.msg_type(), header.code()), (128, 0));
        assert!(IcmpHeader::new_checked(&v6[..3]).is_err());
    }

    #[test]
    fn reads_nd_target_and_the_right_link_layer_option() {
        // A solicitation carries the sender's address in option 1; an option 2 is not its.
        let solicit = nd_bytes(NdKind::Solicit, TARGET, &[(2, MAC_B), (1, MAC_A)]);
        let message = NdMessage::new_checked(&solicit[..]).unwrap();
        assert_eq!(message.kind(), NdKind::Solicit);
        assert_eq!(message.target(), TARGET);
        assert_eq!(message.link_addr(), Ok(Some(MAC_A)));

        let advert = nd_bytes(NdKind::Advert, TARGET, &[(1, MAC_A), (2, MAC_B)]);
        let message = NdMessage::new_checked(&advert[..]).unwrap();
        assert_eq!(message.kind(), NdKind::Advert);
        assert_eq!(message.link_addr(), Ok(Some(MAC_B)));

        let bare = nd_bytes(NdKind::Advert, TARGET, &[]);
        assert_eq!(
            NdMessage::new_checked(&bare[..]).unwrap().link_addr(),
            Ok(None)
        );
    }

    #[test]
    fn refuses_options_hosts_would_read_differently() {
        let conflicting = nd_bytes(NdKind::Advert, TARGET, &[(2, MAC_A), (2, MAC_B)]);
        let message = NdMessage::new_checked(&conflicting[..]).unwrap();
        assert_eq!(message.link_addr(), Err(WireError::Malformed));

        let repeated = nd_bytes(NdKind::Advert, TARGET, &[(2, MAC_A), (2, MAC_A)]);
        let message = NdMessage::new_checked(&repeated[..]).unwrap();
        assert_eq!(message.link_addr(), Ok(Some(MAC_A)));

        let mut zero_length = nd_bytes(NdKind::Advert, TARGET, &[(2, MAC_A)]);
        zero_length[field::ND_OPTIONS + 1] = 0;
        let message = NdMessage::new_checked(&zero_length[..]).unwrap();
        assert_eq!(message.link_addr(), Err(WireError::Malformed));

        let mut long_link_option = nd_bytes(NdKind::Advert, TARGET, &[(2, MAC_A), (9, MAC_B)]);
        long_link_option[field::ND_OPTIONS + 1] = 2;
        let message = NdMessage::new_checked(&long_link_option[..]).unwrap();
        assert_eq!(message.link_addr(), Err(WireError::Malformed));

        let cut = nd_bytes(NdKind::Advert, TARGET, &[(2, MAC_A)]);
        let message = NdMessage::new_checked(&cut[..cut.len() - 1]).unwrap();
        assert_eq!(message.link_addr(), Err(WireError::TruncatedHeader));
        let message = NdMessage::new_checked(&cut[..field::ND_OPTIONS + 1]).unwrap();
        assert_eq!(message.link_addr(), Err(WireError::TruncatedHeader));
    }

    #[test]
    fn nd_view_takes_only_solicitations_and_advertisements() {
        let mut bytes = nd_bytes(NdKind::Solicit, TARGET, &[]);
        assert_eq!(
            NdMessage::new_checked(&bytes[..field::ND_OPTIONS - 1]).unwrap_err(),
            WireError::TruncatedHeader
        );
        bytes[0] = icmpv6_type::ROUTER_ADVERT;
        assert_eq!(
            NdMessage::new_checked(&bytes[..]).unwrap_err(),
            WireError::Malformed
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(tcp) = TcpHeader::new_checked(&bytes[..]) {
                let _ = (tcp.src_port(), tcp.dst_port(), tcp.flags(), tcp.header_len());
            }
            if let Ok(udp) = UdpHeader::new_checked(&bytes[..]) {
                let _ = (udp.src_port(), udp.dst_port(), udp.length());
            }
            if let Ok(icmp) = IcmpHeader::new_checked(&bytes[..]) {
                let _ = (icmp.msg_type(), icmp.code());
            }
            let mut nd = bytes.clone();
            if let Some(first) = nd.first_mut() {
                *first = if *first & 1 == 0 { 135 } else { 136 };
            }
            if let Ok(message) = NdMessage::new_checked(&nd[..]) {
                let _ = (message.kind(), message.target(), message.link_addr());
            }
        }
    }
}
