//! IPv4 header view (RFC 791).
//!
//! [`Ipv4Packet::new_checked`] validates the version, the header length (IHL) and the total
//! length against each other and against the buffer once. The buffer may run past the
//! total length (Ethernet pads short frames to 60 bytes); [`Ipv4Packet::payload`] stops at
//! the total length, so padding is never read as upper-layer data.
//!
//! The header checksum is not verified: receivers drop a packet whose checksum is wrong,
//! so a switch that forwards it unchecked lets nothing through that matters.

use core::net::Ipv4Addr;
use core::ops::Range;

use super::ethernet::WireError;

/// EtherType of IPv4.
pub const ETHERTYPE: u16 = 0x0800;

/// Byte ranges of the fixed part of the header.
mod field {
    use core::ops::Range;

    pub const VERSION_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const IDENTIFICATION: Range<usize> = 4..6;
    pub const FLAGS_FRAGMENT_OFFSET: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SOURCE: Range<usize> = 12..16;
    pub const DESTINATION: Range<usize> = 16..20;
}

/// Length of the header without options (IHL 5).
pub const MIN_HEADER_LEN: usize = field::DESTINATION.end;

const DONT_FRAGMENT: u16 = 0x4000;
const MORE_FRAGMENTS: u16 = 0x2000;
const FRAGMENT_OFFSET_MASK: u16 = 0x1fff;

/// Where a packet stands in fragmentation, for IPv4 and IPv6 alike.
///
/// Only the first fragment carries the upper-layer header, so ports, TCP flags and ICMP
/// types can be read from [`Fragment::Whole`] and [`Fragment::First`] packets only.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Fragment {
    /// Not fragmented (an IPv6 atomic fragment, offset 0 without "more", counts as whole).
    Whole,
    /// Offset 0 with more fragments to follow.
    First,
    /// A non-zero offset: the upper-layer header travelled in the first fragment.
    Later,
}

impl Fragment {
    /// Classifies an offset (in any unit) and a "more fragments" flag.
    pub const fn from_offset(offset: u16, more_fragments: bool) -> Fragment {
        match (offset, more_fragments) {
            (0, false) => Fragment::Whole,
            (0, true) => Fragment::First,
            _ => Fragment::Later,
        }
    }

    /// Whether the upper-layer header is to be found in this packet.
    pub const fn carries_upper_header(self) -> bool {
        !matches!(self, Fragment::Later)
    }
}

/// An IPv4 packet whose header lengths have been validated.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Accepts a buffer holding a version-4 header with IHL ≥ 5 and a total length that
    /// covers the header and fits in the buffer.
    ///
    /// A total length beyond the buffer is [`WireError::TruncatedHeader`]: the packet lost
    /// its tail on the way, and receivers drop it.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let bytes = buffer.as_ref();
        if bytes.len() < MIN_HEADER_LEN {
            return Err(WireError::TruncatedHeader);
        }
        let packet = Ipv4Packet { buffer };
        if packet.version() != 4 || packet.header_len() < MIN_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        let total_len = usize::from(packet.total_len());
        if total_len < packet.header_len() {
            return Err(WireError::Malformed);
        }
        // header_len ≤ total_len, so this also proves the options are in the buffer.
        if total_len > packet.buffer.as_ref().len() {
            return Err(WireError::TruncatedHeader);
        }
        Ok(packet)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4), options included: 20..=60.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VERSION_IHL] & 0x0f) * 4
    }

    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Header plus payload, in bytes.
    pub fn total_len(&self) -> u16 {
        self.u16_at(field::TOTAL_LEN)
    }

    pub fn identification(&self) -> u16 {
        self.u16_at(field::IDENTIFICATION)
    }

    pub fn dont_fragment(&self) -> bool {
        self.u16_at(field::FLAGS_FRAGMENT_OFFSET) & DONT_FRAGMENT != 0
    }

    pub fn more_fragments(&self) -> bool {
        self.u16_at(field::FLAGS_FRAGMENT_OFFSET) & MORE_FRAGMENTS != 0
    }

    /// Fragment offset in units of 8 bytes, as on the wire.
    pub fn fragment_offset(&self) -> u16 {
        self.u16_at(field::FLAGS_FRAGMENT_OFFSET) & FRAGMENT_OFFSET_MASK
    }

    pub fn fragment(&self) -> Fragment {
        Fragment::from_offset(self.fragment_offset(), self.more_fragments())
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The IP protocol number of the payload (see [`crate::packet::l4::protocol`]).
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        self.addr_at(field::SOURCE)
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        self.addr_at(field::DESTINATION)
    }

    /// The options, possibly empty.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }

    /// The payload up to the total length: Ethernet padding after it is left out.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    fn u16_at(&self, range: Range<usize>) -> u16 {
        let mut bytes = [0u8; 2];
        bytes.copy_from_slice(&self.buffer.as_ref()[range]);
        u16::from_be_bytes(bytes)
    }

    fn addr_at(&self, range: Range<usize>) -> Ipv4Addr {
        let mut addr = [0u8; 4];
        addr.copy_from_slice(&self.buffer.as_ref()[range]);
        Ipv4Addr::from(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpFragOffset, Ipv4Header, Ipv4Options, Ipv4Slice};
    use proptest::prelude::*;

    fn header_bytes(header: &Ipv4Header, payload: &[u8]) -> Vec<u8> {
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    fn udp_header(payload_len: u16) -> Ipv4Header {
        Ipv4Header::new(
            payload_len,
            64,
            etherparse::IpNumber::UDP,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
        )
        .unwrap()
    }

    #[test]
    fn reads_fields_like_etherparse() {
        let mut header = udp_header(4);
        header.identification = 0x1234;
        header.dont_fragment = true;
        header.options = Ipv4Options::try_from(&[1u8, 1, 1, 1][..]).unwrap();
        header.total_len = (header.header_len() + 4) as u16;
        header.header_checksum = header.calc_header_checksum();
        let bytes = header_bytes(&header, &[9, 8, 7, 6]);

        let reference = Ipv4Slice::from_slice(&bytes).unwrap();
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 24);
        assert_eq!(packet.total_len(), reference.header().total_len());
        assert_eq!(packet.identification(), 0x1234);
        assert!(packet.dont_fragment() && !packet.more_fragments());
        assert_eq!(packet.fragment(), Fragment::Whole);
        assert_eq!(packet.ttl(), 64);
        assert_eq!(packet.protocol(), 17);
        assert_eq!(packet.checksum(), header.header_checksum);
        assert_eq!(packet.src_addr(), reference.header().source_addr());
        assert_eq!(packet.dst_addr(), reference.header().destination_addr());
        assert_eq!(packet.options(), &[1, 1, 1, 1]);
        assert_eq!(packet.payload(), reference.payload().payload);
    }

    #[test]
    fn payload_stops_at_total_length() {
        let mut bytes = header_bytes(&udp_header(2), &[1, 2]);
        bytes.resize(46, 0xee); // Ethernet padding
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.payload(), &[1, 2]);
    }

    #[test]
    fn classifies_fragments() {
        let mut header = udp_header(8);
        header.more_fragments = true;
        let first = header_bytes(&header, &[0; 8]);
        assert_eq!(
            Ipv4Packet::new_checked(&first[..]).unwrap().fragment(),
            Fragment::First
        );

        header.fragment_offset = IpFragOffset::try_new(185).unwrap();
        let middle = header_bytes(&header, &[0; 8]);
        let packet = Ipv4Packet::new_checked(&middle[..]).unwrap();
        assert_eq!(
            (packet.fragment_offset(), packet.fragment()),
            (185, Fragment::Later)
        );

        header.more_fragments = false;
        let last = header_bytes(&header, &[0; 8]);
        assert_eq!(
            Ipv4Packet::new_checked(&last[..]).unwrap().fragment(),
            Fragment::Later
        );
        assert!(!Fragment::Later.carries_upper_header());
        assert!(Fragment::First.carries_upper_header());
    }

    #[test]
    fn rejects_inconsistent_lengths_and_versions() {
        let good = header_bytes(&udp_header(4), &[0; 4]);
        for len in 0..good.len() {
            assert_eq!(
                Ipv4Packet::new_checked(&good[..len]).unwrap_err(),
                WireError::TruncatedHeader,
                "length {len}"
            );
        }
        let mut version_6 = good.clone();
        version_6[0] = 0x65;
        let mut ihl_4 = good.clone();
        ihl_4[0] = 0x44;
        let mut total_below_header = good.clone();
        total_below_header[2..4].copy_from_slice(&19u16.to_be_bytes());
        for bad in [version_6, ihl_4, total_below_header] {
            assert_eq!(
                Ipv4Packet::new_checked(&bad[..]).unwrap_err(),
                WireError::Malformed
            );
        }
        let mut options_past_end = good[..20].to_vec();
        options_past_end[0] = 0x4f; // IHL 15: 60 bytes of header in a 20-byte buffer
        options_past_end[2..4].copy_from_slice(&60u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&options_past_end[..]).unwrap_err(),
            WireError::TruncatedHeader
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(packet) = Ipv4Packet::new_checked(&bytes[..]) {
                let _ = (packet.src_addr(), packet.dst_addr(), packet.fragment());
                let _ = (packet.options().len(), packet.payload().len());
            }
        }

        #[test]
        fn agrees_with_etherparse_when_it_accepts(bytes in proptest::collection::vec(any::<u8>(), 20..80)) {
            let mut bytes = bytes;
            bytes[0] = 0x40 | (bytes[0] & 0x0f); // version 4, so some inputs get through
            if let (Ok(reference), Ok(packet)) =
                (Ipv4Slice::from_slice(&bytes), Ipv4Packet::new_checked(&bytes[..]))
            {
                prop_assert_eq!(packet.src_addr(), reference.header().source_addr());
                prop_assert_eq!(packet.header_len(), reference.header().slice().len());
                prop_assert_eq!(packet.fragment_offset(), reference.header().fragments_offset().value());
            }
        }
    }
}
