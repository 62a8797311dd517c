//! IPv6 header view (RFC 8200) and the walk over its extension headers.
//!
//! The fixed header says what follows it, but that may be an extension header rather than
//! TCP, UDP or ICMPv6. [`Ipv6Packet::upper_layer`] follows the chain through the usual
//! extension headers to the upper-layer protocol. The walk is bounded by
//! [`MAX_EXTENSION_HEADERS`]: an attacker can chain headers freely, and a switch that gave
//! up silently would let the packet past every check that looks at the upper layer (an
//! ICMPv6 neighbour advertisement behind nine destination-options headers is still an
//! advertisement to the host). So a chain that is too long, or that is cut short, is an
//! error, and callers treat the packet as unreadable.

use core::net::Ipv6Addr;
use core::ops::Range;

use super::ethernet::WireError;
use super::ipv4::Fragment;

/// EtherType of IPv6.
pub const ETHERTYPE: u16 = 0x86dd;

/// Next-header values the walk knows: the extension headers it walks through in search of
/// the upper-layer protocol, and no-next-header. Any other value ends the walk as the
/// upper-layer protocol.
pub mod next_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    /// Authentication Header (RFC 4302). ESP (50) is opaque and ends the walk.
    pub const AUTHENTICATION: u8 = 51;
    /// Nothing follows; the walk ends here with this as the protocol.
    pub const NO_NEXT_HEADER: u8 = 59;
    pub const DESTINATION_OPTIONS: u8 = 60;
}

/// Most extension headers walked before giving up. Real traffic uses up to three or four
/// (hop-by-hop, destination options, routing, fragment); RFC 8200 allows each once, and
/// destination options twice.
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// Byte ranges of the fixed header, and within an extension header.
mod field {
    use core::ops::Range;

    pub const VERSION_CLASS_FLOW: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SOURCE: Range<usize> = 8..24;
    pub const DESTINATION: Range<usize> = 24..40;

    /// Every extension header walked starts with its next header (byte 0) and a length
    /// (byte 1), and is at least 8 bytes long.
    pub mod ext {
        /// Hop-by-hop, routing, destination options: in 8-byte units, not counting the
        /// first 8. Authentication: in 4-byte units, minus 2.
        pub const LENGTH: usize = 1;
        /// The fragment header has no length byte: it is always 8 bytes. Its bytes 2..4
        /// hold the offset (13 bits, in 8-byte units), 2 reserved bits and the "more
        /// fragments" flag.
        pub const FRAGMENT_HEADER_LEN: usize = 8;
    }
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::DESTINATION.end;

/// Where the walk over the extension headers ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct UpperLayer {
    /// The upper-layer protocol number; for a non-first fragment, the fragment header's
    /// "next header", which is all the packet tells.
    pub protocol: u8,
    /// Offset of the upper-layer header within [`Ipv6Packet::payload`]; it may equal the
    /// payload's length when the header is missing.
    pub offset: usize,
    pub fragment: Fragment,
}

/// An IPv6 packet whose fixed header and payload length have been validated.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Accepts a buffer holding a version-6 header whose payload length fits in the buffer.
    ///
    /// A payload length of 0 is taken at its word (an empty payload). Jumbograms, which
    /// announce their real length in a hop-by-hop option, cannot cross Ethernet.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::TruncatedHeader);
        }
        let packet = Ipv6Packet { buffer };
        if packet.version() != 6 {
            return Err(WireError::Malformed);
        }
        if HEADER_LEN + usize::from(packet.payload_len()) > packet.buffer.as_ref().len() {
            return Err(WireError::TruncatedHeader);
        }
        Ok(packet)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION_CLASS_FLOW.start] >> 4
    }

    pub fn traffic_class(&self) -> u8 {
        // The class straddles the first two bytes, after the 4-bit version.
        ((self.version_class_flow() >> 20) & 0xff) as u8
    }

    pub fn flow_label(&self) -> u32 {
        self.version_class_flow() & 0x000f_ffff
    }

    /// Length of everything after the fixed header, extension headers included.
    pub fn payload_len(&self) -> u16 {
        let mut bytes = [0u8; 2];
        bytes.copy_from_slice(&self.buffer.as_ref()[field::PAYLOAD_LEN]);
        u16::from_be_bytes(bytes)
    }

    /// The header right after the fixed one: an extension header or the upper layer.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        self.addr_at(field::SOURCE)
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        self.addr_at(field::DESTINATION)
    }

    /// Extension headers and upper layer, up to the payload length (Ethernet padding left out).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Walks hop-by-hop, routing, fragment, destination-options and authentication headers
    /// to the upper-layer protocol.
    ///
    /// Stops early at a non-first fragment: what follows its fragment header is the middle
    /// of the original packet. Fails with [`WireError::TruncatedHeader`] when an extension
    /// header runs past the payload, and with [`WireError::Malformed`] when the chain is
    /// longer than [`MAX_EXTENSION_HEADERS`].
    pub fn upper_layer(&self) -> Result<UpperLayer, WireError> {
        walk_extension_headers(self.next_header(), self.payload())
    }

    fn version_class_flow(&self) -> u32 {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(&self.buffer.as_ref()[field::VERSION_CLASS_FLOW]);
        u32::from_be_bytes(bytes)
    }

    fn addr_at(&self, range: Range<usize>) -> Ipv6Addr {
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&self.buffer.as_ref()[range]);
        Ipv6Addr::from(addr)
    }
}

/// The walk behind [`Ipv6Packet::upper_layer`], over the payload that follows the fixed
/// header whose "next header" is `first`.
fn walk_extension_headers(first: u8, payload: &[u8]) -> Result<UpperLayer, WireError> {
    let mut protocol = first;
    let mut offset = 0usize;
    let mut fragment = Fragment::Whole;
    // One more turn than the bound, so that a chain of exactly the bound still reaches
    // its upper-layer protocol.
    for _ in 0..=MAX_EXTENSION_HEADERS {
        let rest = payload.get(offset..).ok_or(WireError::TruncatedHeader)?;
        let header_len = match protocol {
            next_header::HOP_BY_HOP | next_header::ROUTING | next_header::DESTINATION_OPTIONS => {
                let length = rest
                    .get(field::ext::LENGTH)
                    .ok_or(WireError::TruncatedHeader)?;
                (usize::from(*length) + 1) * 8
            }
            next_header::AUTHENTICATION => {
                let length = rest
                    .get(field::ext::LENGTH)
                    .ok_or(WireError::TruncatedHeader)?;
                (usize::from(*length) + 2) * 4
            }
            next_header::FRAGMENT => field::ext::FRAGMENT_HEADER_LEN,
            _ => {
                return Ok(UpperLayer {
                    protocol,
                    offset,
                    fragment,
                })
            }
        };
        let header = rest.get(..header_len).ok_or(WireError::TruncatedHeader)?;
        // Every header walked is at least 8 bytes long, so the pattern always matches; the
        // fragment header's offset and flags are bytes 2..4.
        let [next, _, offset_flags_high, offset_flags_low, ..] = *header else {
            return Err(WireError::TruncatedHeader);
        };
        let walked = protocol;
        protocol = next;
        offset += header_len;
        if walked == next_header::FRAGMENT {
            let offset_flags = u16::from_be_bytes([offset_flags_high, offset_flags_low]);
            match Fragment::from_offset(offset_flags >> 3, offset_flags & 1 != 0) {
                Fragment::Later => {
                    return Ok(UpperLayer {
                        protocol,
                        offset,
                        fragment: Fragment::Later,
                    })
                }
                Fragment::First => fragment = Fragment::First,
                Fragment::Whole => {}
            }
        }
    }
    Err(WireError::Malformed)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use etherparse::{
        IpAuthHeader, IpFragOffset, IpNumber, Ipv6Extensions, Ipv6FragmentHeader, Ipv6Header,
        Ipv6RawExtHeader, Ipv6RoutingExtensions, Ipv6Slice,
    };
    use proptest::prelude::*;

    const SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    fn packet(extensions: &Ipv6Extensions, upper: IpNumber, upper_bytes: &[u8]) -> Vec<u8> {
        let mut extensions = extensions.clone();
        let first = extensions.set_next_headers(upper);
        let mut header = Ipv6Header {
            traffic_class: 0xa5,
            flow_label: 0x12345.try_into().unwrap(),
            payload_length: 0,
            next_header: first,
            hop_limit: 255,
            source: SRC,
            destination: DST,
        };
        header
            .set_payload_length(extensions.header_len() + upper_bytes.len())
            .unwrap();
        let mut bytes = header.to_bytes().to_vec();
        extensions.write(&mut bytes, first).unwrap();
        bytes.extend_from_slice(upper_bytes);
        bytes
    }

    fn raw(len_units: usize) -> Ipv6RawExtHeader {
        Ipv6RawExtHeader::new_raw(IpNumber(0), &vec![0u8; 6 + 8 * len_units]).unwrap()
    }

    #[test]
    fn reads_fixed_header_like_etherparse() {
        let bytes = packet(&Ipv6Extensions::default(), IpNumber::UDP, &[0; 8]);
        let reference = Ipv6Slice::from_slice(&bytes).unwrap();
        let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.version(), 6);
        assert_eq!(packet.traffic_class(), 0xa5);
        assert_eq!(packet.flow_label(), 0x12345);
        assert_eq!(packet.payload_len(), 8);
        assert_eq!(packet.next_header(), 17);
        assert_eq!(packet.hop_limit(), 255);
        assert_eq!(packet.src_addr(), reference.header().source_addr());
        assert_eq!(packet.dst_addr(), reference.header().destination_addr());
        assert_eq!(packet.payload(), reference.payload().payload);
        let upper = packet.upper_layer().unwrap();
        assert_eq!(
            upper,
            UpperLayer {
                protocol: 17,
                offset: 0,
                fragment: Fragment::Whole
            }
        );
    }

    #[test]
    fn walks_every_usual_extension_header() {
        let extensions = Ipv6Extensions {
            hop_by_hop_options: Some(raw(0)),
            destination_options: Some(raw(1)),
            routing: Some(Ipv6RoutingExtensions {
                routing: raw(2),
                final_destination_options: Some(raw(0)),
            }),
            fragment: Some(Ipv6FragmentHeader::new(
                IpNumber(0),
                IpFragOffset::ZERO,
                false,
                7,
            )),
            auth: Some(IpAuthHeader::new(IpNumber(0), 1, 2, &[0; 4]).unwrap()),
        };
        let bytes = packet(&extensions, IpNumber::TCP, &[0; 20]);
        let reference = Ipv6Slice::from_slice(&bytes).unwrap();
        let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let upper = packet.upper_layer().unwrap();
        assert_eq!(upper.protocol, 6);
        assert_eq!(
            upper.fragment,
            Fragment::Whole,
            "an atomic fragment is whole"
        );
        assert_eq!(upper.offset, extensions.header_len());
        assert_eq!(
            &packet.payload()[upper.offset..],
            reference.payload().payload
        );
    }

    /// An RFC 8200 fragment header. Built by hand: etherparse 0.16 writes the M flag and
    /// the low offset bits in the IPv4 layout (fixed in later releases), so its fragment
    /// headers with M set or a non-zero offset are not what hosts send.
    pub(crate) fn fragment_header(next: u8, offset_units: u16, more: bool) -> [u8; 8] {
        let [high, low] = (offset_units << 3 | u16::from(more)).to_be_bytes();
        [next, 0, high, low, 0, 0, 0, 9]
    }

    #[test]
    fn first_fragment_walks_on_and_later_fragment_stops() {
        // fragment header, destination options, UDP
        let mut payload = fragment_header(60, 0, true).to_vec();
        payload.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 0]);
        payload.extend_from_slice(&[0; 8]);
        let mut first = packet(&Ipv6Extensions::default(), IpNumber(44), &payload);
        first[field::NEXT_HEADER] = 44;
        let upper = Ipv6Packet::new_checked(&first[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!(
            (upper.protocol, upper.offset, upper.fragment),
            (17, 16, Fragment::First)
        );

        // destination options, fragment header (offset 100, last), then the middle of a packet
        let mut payload = vec![44, 0, 0, 0, 0, 0, 0, 0];
        payload.extend_from_slice(&fragment_header(17, 100, false));
        payload.extend_from_slice(&[0xff; 8]);
        let mut later = packet(&Ipv6Extensions::default(), IpNumber(60), &payload);
        later[field::NEXT_HEADER] = 60;
        let upper = Ipv6Packet::new_checked(&later[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!(
            (upper.protocol, upper.offset, upper.fragment),
            (17, 16, Fragment::Later)
        );
    }

    #[test]
    fn chain_of_exactly_the_bound_is_walked_and_one_more_is_refused() {
        // Hand-built: destination-options headers of 8 bytes, each naming the next.
        let chain = |count: usize| {
            let mut payload = Vec::new();
            for index in 0..count {
                let next = if index + 1 == count { 17 } else { 60 };
                payload.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]);
            }
            payload.extend_from_slice(&[0; 8]);
            let mut bytes = packet(&Ipv6Extensions::default(), IpNumber(60), &payload);
            bytes[field::NEXT_HEADER] = 60;
            bytes
        };
        let bytes = chain(MAX_EXTENSION_HEADERS);
        let upper = Ipv6Packet::new_checked(&bytes[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!(
            (upper.protocol, upper.offset),
            (17, 8 * MAX_EXTENSION_HEADERS)
        );
        let bytes = chain(MAX_EXTENSION_HEADERS + 1);
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap().upper_layer(),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn extension_header_past_the_payload_is_truncated() {
        let extensions = Ipv6Extensions {
            destination_options: Some(raw(3)),
            ..Default::default()
        };
        let mut bytes = packet(&extensions, IpNumber::UDP, &[]);
        // Shrink the payload length so the header's own length points past it.
        bytes[field::PAYLOAD_LEN].copy_from_slice(&16u16.to_be_bytes());
        let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.upper_layer(), Err(WireError::TruncatedHeader));
        // An empty payload announcing an extension header cannot hold even its length byte.
        let mut empty = packet.into_inner()[..HEADER_LEN].to_vec();
        empty[field::PAYLOAD_LEN].copy_from_slice(&0u16.to_be_bytes());
        let packet = Ipv6Packet::new_checked(&empty[..]).unwrap();
        assert_eq!(packet.upper_layer(), Err(WireError::TruncatedHeader));
    }

    #[test]
    fn rejects_short_buffers_wrong_versions_and_long_payload_lengths() {
        let good = packet(&Ipv6Extensions::default(), IpNumber::UDP, &[0; 8]);
        for len in 0..good.len() {
            assert_eq!(
                Ipv6Packet::new_checked(&good[..len]).unwrap_err(),
                WireError::TruncatedHeader,
                "length {len}"
            );
        }
        let mut version_4 = good.clone();
        version_4[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&version_4[..]).unwrap_err(),
            WireError::Malformed
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = bytes;
            if let Some(first) = bytes.first_mut() {
                *first = 0x60 | (*first & 0x0f);
            }
            if let Ok(packet) = Ipv6Packet::new_checked(&bytes[..]) {
                let _ = (packet.src_addr(), packet.dst_addr(), packet.payload().len());
                if let Ok(upper) = packet.upper_layer() {
                    prop_assert!(upper.offset <= packet.payload().len());
                }
            }
        }

        #[test]
        fn walk_never_panics(first in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = walk_extension_headers(first, &payload);
        }
    }
}
