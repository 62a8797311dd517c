//! Ethernet II frame view, in the style of smoltcp's `wire` module: a typed window over a
//! borrowed or owned buffer, validated once so that every accessor is infallible.

use core::ops::Range;

use super::mac::MacAddr;

/// Byte ranges of the Ethernet II header; the only place offsets are spelled out.
mod field {
    use core::ops::{Range, RangeFrom};

    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: RangeFrom<usize> = 14..;
}

/// Length of the Ethernet II header (no 802.1Q tag, no FCS: NICs strip the FCS before AF_XDP).
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// Why a buffer cannot be read as a frame or as one of the headers it carries.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame ends inside its link-layer header: the Ethernet header or a VLAN tag it announces.
    #[error(
        "frame truncated: shorter than the {HEADER_LEN}-byte Ethernet header plus the VLAN tags it announces"
    )]
    Truncated,
    /// A header above the link layer (ARP, IP, an IPv6 extension header, TCP/UDP/ICMP) is
    /// cut short, or a length field points past the end of the buffer.
    #[error("header truncated: the buffer ends before the header, or before the length it claims")]
    TruncatedHeader,
    /// A header's fields contradict each other or what it must be: wrong IP version, a
    /// header length below the minimum, an ARP packet not for Ethernet/IPv4, a chain of
    /// IPv6 extension headers longer than xsw walks.
    #[error("malformed header")]
    Malformed,
}

/// An Ethernet II frame over a buffer known to hold at least [`HEADER_LEN`] bytes.
///
/// There is deliberately no unchecked constructor: [`EthernetFrame::new_checked`] is the one
/// place the length is validated, which is what makes the fixed-range accessors panic-free.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(EthernetFrame { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst_addr(&self) -> MacAddr {
        self.mac_at(field::DESTINATION)
    }

    pub fn src_addr(&self) -> MacAddr {
        self.mac_at(field::SOURCE)
    }

    /// The outer EtherType/TPID as on the wire: 0x8100 for a VLAN-tagged frame, not the inner type.
    pub fn ethertype(&self) -> u16 {
        let mut ethertype = [0u8; 2];
        ethertype.copy_from_slice(&self.buffer.as_ref()[field::ETHERTYPE]);
        u16::from_be_bytes(ethertype)
    }

    /// Everything after the header, possibly empty.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }

    /// The whole frame, header included.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn mac_at(&self, range: Range<usize>) -> MacAddr {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[range]);
        MacAddr(mac)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst_addr(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&mac.0);
    }

    pub fn set_src_addr(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&mac.0);
    }

    pub fn set_ethertype(&mut self, ethertype: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{EtherType, Ethernet2Header, PacketBuilder};

    const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

    fn udp_frame(payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2(SRC, DST)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1000, 2000);
        let mut frame = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut frame, payload).unwrap();
        frame
    }

    #[test]
    fn reads_fields_like_etherparse() {
        let bytes = udp_frame(b"hello");
        let (reference, rest) = Ethernet2Header::from_slice(&bytes).unwrap();
        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(frame.dst_addr(), MacAddr(reference.destination));
        assert_eq!(frame.src_addr(), MacAddr(reference.source));
        assert_eq!(frame.ethertype(), u16::from(reference.ether_type));
        assert_eq!(frame.ethertype(), 0x0800);
        assert_eq!(frame.payload(), rest);
    }

    #[test]
    fn reports_outer_ethertype_of_vlan_frame() {
        let header = Ethernet2Header {
            source: SRC,
            destination: DST,
            ether_type: EtherType::VLAN_TAGGED_FRAME,
        };
        let frame_bytes = header.to_bytes();
        let frame = EthernetFrame::new_checked(&frame_bytes[..]).unwrap();
        assert_eq!(frame.ethertype(), 0x8100);
        assert!(frame.payload().is_empty());
    }

    #[test]
    fn rejects_every_length_below_header() {
        let bytes = udp_frame(b"");
        for len in 0..HEADER_LEN {
            assert_eq!(
                EthernetFrame::new_checked(&bytes[..len]).unwrap_err(),
                WireError::Truncated,
                "length {len}"
            );
        }
        assert!(EthernetFrame::new_checked(&bytes[..HEADER_LEN]).is_ok());
    }

    #[test]
    fn setters_rewrite_header_in_place() {
        let mut bytes = udp_frame(b"payload");
        let mut frame = EthernetFrame::new_checked(&mut bytes[..]).unwrap();
        let new_src = MacAddr([0x02, 0xaa, 0, 0, 0, 0x03]);
        frame.set_dst_addr(MacAddr::BROADCAST);
        frame.set_src_addr(new_src);
        frame.set_ethertype(0x0806);
        frame.payload_mut()[0] = 0x99;

        let (reference, rest) = Ethernet2Header::from_slice(&bytes).unwrap();
        assert_eq!(reference.destination, [0xff; 6]);
        assert_eq!(reference.source, new_src.0);
        assert_eq!(reference.ether_type, EtherType::ARP);
        assert_eq!(rest[0], 0x99);
    }

    #[test]
    fn into_inner_returns_the_buffer() {
        let bytes = udp_frame(b"x");
        let frame = EthernetFrame::new_checked(bytes.clone()).unwrap();
        assert_eq!(frame.into_inner(), bytes);
    }

    #[test]
    fn truncated_error_names_the_header_length() {
        assert!(WireError::Truncated.to_string().contains("14-byte"));
    }
}
