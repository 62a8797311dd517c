//! ARP (RFC 826) view, for Ethernet hardware addresses and IPv4 protocol addresses only.
//!
//! ARP can in principle carry any pair of address kinds; on an Ethernet switch only
//! Ethernet/IPv4 means anything to the hosts, so [`ArpPacket::new_checked`] refuses the
//! rest as [`WireError::Malformed`]. Refusing is what anti-spoofing needs: a packet xsw
//! cannot read is a packet whose claims it cannot check.

use core::net::Ipv4Addr;
use core::ops::Range;

use super::ethernet::WireError;
use super::mac::MacAddr;

/// EtherType of ARP.
pub const ETHERTYPE: u16 = 0x0806;
/// Hardware type of Ethernet.
pub const HARDWARE_ETHERNET: u16 = 1;
/// Protocol type of IPv4 (its EtherType).
pub const PROTOCOL_IPV4: u16 = 0x0800;
/// `oper` of a request ("who has tpa? tell spa").
pub const OPER_REQUEST: u16 = 1;
/// `oper` of a reply ("spa is at sha").
pub const OPER_REPLY: u16 = 2;

/// Byte ranges of an Ethernet/IPv4 ARP packet.
mod field {
    use core::ops::Range;

    pub const HARDWARE_TYPE: Range<usize> = 0..2;
    pub const PROTOCOL_TYPE: Range<usize> = 2..4;
    pub const HARDWARE_LEN: usize = 4;
    pub const PROTOCOL_LEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SENDER_HARDWARE_ADDR: Range<usize> = 8..14;
    pub const SENDER_PROTOCOL_ADDR: Range<usize> = 14..18;
    pub const TARGET_HARDWARE_ADDR: Range<usize> = 18..24;
    pub const TARGET_PROTOCOL_ADDR: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet. Anything after it is Ethernet padding.
pub const PACKET_LEN: usize = field::TARGET_PROTOCOL_ADDR.end;

/// An Ethernet/IPv4 ARP packet over a buffer of at least [`PACKET_LEN`] bytes.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Checks the length, then that the packet is Ethernet/IPv4 with 6- and 4-byte addresses.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let bytes = buffer.as_ref();
        if bytes.len() < PACKET_LEN {
            return Err(WireError::TruncatedHeader);
        }
        let packet = ArpPacket { buffer };
        let is_ethernet_ipv4 = packet.hardware_type() == HARDWARE_ETHERNET
            && packet.protocol_type() == PROTOCOL_IPV4
            && packet.hardware_len() == 6
            && packet.protocol_len() == 4;
        if !is_ethernet_ipv4 {
            return Err(WireError::Malformed);
        }
        Ok(packet)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn hardware_type(&self) -> u16 {
        self.u16_at(field::HARDWARE_TYPE)
    }

    pub fn protocol_type(&self) -> u16 {
        self.u16_at(field::PROTOCOL_TYPE)
    }

    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HARDWARE_LEN]
    }

    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL_LEN]
    }

    /// [`OPER_REQUEST`], [`OPER_REPLY`], or another value hosts ignore.
    pub fn oper(&self) -> u16 {
        self.u16_at(field::OPER)
    }

    pub fn sender_hardware_addr(&self) -> MacAddr {
        self.mac_at(field::SENDER_HARDWARE_ADDR)
    }

    pub fn sender_protocol_addr(&self) -> Ipv4Addr {
        self.ipv4_at(field::SENDER_PROTOCOL_ADDR)
    }

    pub fn target_hardware_addr(&self) -> MacAddr {
        self.mac_at(field::TARGET_HARDWARE_ADDR)
    }

    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        self.ipv4_at(field::TARGET_PROTOCOL_ADDR)
    }

    fn u16_at(&self, range: Range<usize>) -> u16 {
        let mut bytes = [0u8; 2];
        bytes.copy_from_slice(&self.buffer.as_ref()[range]);
        u16::from_be_bytes(bytes)
    }

    fn mac_at(&self, range: Range<usize>) -> MacAddr {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[range]);
        MacAddr(mac)
    }

    fn ipv4_at(&self, range: Range<usize>) -> Ipv4Addr {
        let mut addr = [0u8; 4];
        addr.copy_from_slice(&self.buffer.as_ref()[range]);
        Ipv4Addr::from(addr)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The bytes of an Ethernet/IPv4 ARP packet (etherparse 0.16 has no ARP support).
    pub(crate) fn arp_bytes(
        oper: u16,
        sha: MacAddr,
        spa: Ipv4Addr,
        tha: MacAddr,
        tpa: Ipv4Addr,
    ) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(PACKET_LEN);
        bytes.extend_from_slice(&HARDWARE_ETHERNET.to_be_bytes());
        bytes.extend_from_slice(&PROTOCOL_IPV4.to_be_bytes());
        bytes.extend_from_slice(&[6, 4]);
        bytes.extend_from_slice(&oper.to_be_bytes());
        bytes.extend_from_slice(&sha.0);
        bytes.extend_from_slice(&spa.octets());
        bytes.extend_from_slice(&tha.0);
        bytes.extend_from_slice(&tpa.octets());
        bytes
    }

    const SHA: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const SPA: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const THA: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const TPA: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    #[test]
    fn reads_every_field() {
        let mut bytes = arp_bytes(OPER_REPLY, SHA, SPA, THA, TPA);
        bytes.resize(46, 0); // Ethernet padding after the packet is not part of it.
        let arp = ArpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(arp.hardware_type(), HARDWARE_ETHERNET);
        assert_eq!(arp.protocol_type(), PROTOCOL_IPV4);
        assert_eq!((arp.hardware_len(), arp.protocol_len()), (6, 4));
        assert_eq!(arp.oper(), OPER_REPLY);
        assert_eq!(arp.sender_hardware_addr(), SHA);
        assert_eq!(arp.sender_protocol_addr(), SPA);
        assert_eq!(arp.target_hardware_addr(), THA);
        assert_eq!(arp.target_protocol_addr(), TPA);
    }

    #[test]
    fn rejects_every_length_below_packet() {
        let bytes = arp_bytes(OPER_REQUEST, SHA, SPA, THA, TPA);
        for len in 0..PACKET_LEN {
            assert_eq!(
                ArpPacket::new_checked(&bytes[..len]).unwrap_err(),
                WireError::TruncatedHeader
            );
        }
    }

    #[test]
    fn rejects_other_address_kinds() {
        let good = arp_bytes(OPER_REQUEST, SHA, SPA, THA, TPA);
        // IEEE 802 hardware, IPv6 protocol, and wrong address lengths.
        for (offset, value) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut bad = good.clone();
            bad[offset] = value;
            assert_eq!(
                ArpPacket::new_checked(&bad[..]).unwrap_err(),
                WireError::Malformed,
                "byte {offset} = {value}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            if let Ok(arp) = ArpPacket::new_checked(&bytes[..]) {
                let _ = (arp.oper(), arp.sender_hardware_addr(), arp.sender_protocol_addr());
                let _ = (arp.target_hardware_addr(), arp.target_protocol_addr());
            }
        }
    }
}
