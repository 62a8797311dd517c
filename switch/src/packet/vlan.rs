//! IEEE 802.1Q (C-tag) and 802.1ad (S-tag) VLAN tag view.
//!
//! On the wire a tag is the TPID (in the place of the EtherType) followed by two bytes of
//! TCI and the EtherType of what follows. The TPID is read by whoever found it (the
//! Ethernet header, or the tag before), so this view starts right after it: at the TCI.

use super::ethernet::WireError;

/// TPID of an 802.1Q customer tag.
pub const TPID_CTAG: u16 = 0x8100;
/// TPID of an 802.1ad service tag (the outer tag of Q-in-Q).
pub const TPID_STAG: u16 = 0x88a8;
/// Bytes a tag adds to a frame: TPID plus TCI.
pub const TAG_LEN: usize = 4;
/// The VID's 12 bits within the TCI.
pub const VID_MASK: u16 = 0x0fff;

/// Whether an EtherType announces a VLAN tag.
///
/// Only the two standard TPIDs: the pre-standard 0x9100 is not one, so a frame carrying it
/// is an ordinary frame of an unknown EtherType to xsw, as it is to Linux.
pub const fn is_tpid(ethertype: u16) -> bool {
    ethertype == TPID_CTAG || ethertype == TPID_STAG
}

/// Byte ranges of the tag, counted from the TCI.
mod field {
    use core::ops::{Range, RangeFrom};

    pub const TCI: Range<usize> = 0..2;
    pub const ETHERTYPE: Range<usize> = 2..4;
    pub const PAYLOAD: RangeFrom<usize> = 4..;
}

/// Length of the view's header: TCI plus inner EtherType (the TPID belongs to the header before).
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A VLAN tag over a buffer starting at its TCI and known to hold at least [`HEADER_LEN`] bytes.
#[derive(Debug, Clone)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// A frame that announces a tag it does not carry is a truncated frame, hence
    /// [`WireError::Truncated`] rather than an error of a higher layer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(VlanTag { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Tag control information: PCP (3 bits), DEI (1 bit), VID (12 bits).
    pub fn tci(&self) -> u16 {
        self.u16_at(field::TCI.start)
    }

    /// Priority code point, 0..=7.
    pub fn pcp(&self) -> u8 {
        // The shift leaves 3 bits, so the narrowing keeps every value.
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN ID, 0..=4095.
    pub fn vid(&self) -> u16 {
        self.tci() & VID_MASK
    }

    /// The EtherType after this tag: the payload's, or another TPID for a stacked tag.
    pub fn ethertype(&self) -> u16 {
        self.u16_at(field::ETHERTYPE.start)
    }

    /// Everything after the tag, possibly empty.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }

    fn u16_at(&self, offset: usize) -> u16 {
        let bytes = self.buffer.as_ref();
        u16::from_be_bytes([bytes[offset], bytes[offset + 1]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    /// Sets the VLAN ID; bits above the 12-bit field are ignored. PCP and DEI are kept.
    pub fn set_vid(&mut self, vid: u16) {
        let tci = (self.tci() & !VID_MASK) | (vid & VID_MASK);
        self.set_tci(tci);
    }

    /// Sets the priority code point; bits above the 3-bit field are ignored.
    pub fn set_pcp(&mut self, pcp: u8) {
        let tci = (self.tci() & 0x1fff) | (u16::from(pcp & 0x07) << 13);
        self.set_tci(tci);
    }

    pub fn set_ethertype(&mut self, ethertype: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
    }

    fn set_tci(&mut self, tci: u16) {
        self.buffer.as_mut()[field::TCI].copy_from_slice(&tci.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{EthernetFrame, HEADER_LEN as ETHERNET_HEADER_LEN};
    use etherparse::{EtherType, PacketBuilder, SingleVlanHeader, VlanId, VlanPcp};

    fn tagged_frame(outer: u16, inner: Option<u16>) -> Vec<u8> {
        let ethernet = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let outer = VlanId::try_new(outer).unwrap();
        let builder = match inner {
            None => ethernet.single_vlan(outer),
            Some(inner) => ethernet.double_vlan(outer, VlanId::try_new(inner).unwrap()),
        }
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(1, 2);
        let mut frame = Vec::new();
        builder.write(&mut frame, b"x").unwrap();
        frame
    }

    #[test]
    fn reads_single_tag_like_etherparse() {
        let bytes = tagged_frame(100, None);
        let ethernet = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(ethernet.ethertype(), TPID_CTAG);
        let tag = VlanTag::new_checked(ethernet.payload()).unwrap();
        let (reference, rest) =
            SingleVlanHeader::from_slice(&bytes[ETHERNET_HEADER_LEN..]).unwrap();
        assert_eq!(tag.vid(), reference.vlan_id.value());
        assert_eq!(tag.pcp(), reference.pcp.value());
        assert_eq!(tag.dei(), reference.drop_eligible_indicator);
        assert_eq!(tag.ethertype(), u16::from(reference.ether_type));
        assert_eq!(tag.payload(), rest);
    }

    #[test]
    fn double_tag_is_service_tag_then_customer_tag() {
        let bytes = tagged_frame(10, Some(20));
        let ethernet = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(ethernet.ethertype(), TPID_STAG);
        let outer = VlanTag::new_checked(ethernet.payload()).unwrap();
        assert_eq!((outer.vid(), outer.ethertype()), (10, TPID_CTAG));
        let inner = VlanTag::new_checked(outer.payload()).unwrap();
        assert_eq!((inner.vid(), inner.ethertype()), (20, 0x0800));
        assert!(is_tpid(outer.ethertype()) && !is_tpid(inner.ethertype()));
        assert!(!is_tpid(0x9100));
    }

    #[test]
    fn rejects_every_length_below_header() {
        let bytes = [0u8; HEADER_LEN];
        for len in 0..HEADER_LEN {
            assert_eq!(
                VlanTag::new_checked(&bytes[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        assert!(VlanTag::new_checked(&bytes[..]).is_ok());
    }

    #[test]
    fn setters_keep_the_other_fields() {
        let header = SingleVlanHeader {
            pcp: VlanPcp::try_new(5).unwrap(),
            drop_eligible_indicator: true,
            vlan_id: VlanId::try_new(7).unwrap(),
            ether_type: EtherType(0x86dd),
        };
        let wire = header.to_bytes();
        let mut bytes = wire.to_vec();
        let mut tag = VlanTag::new_checked(&mut bytes[..]).unwrap();
        tag.set_vid(0xf123);
        assert_eq!((tag.vid(), tag.pcp(), tag.dei()), (0x123, 5, true));
        tag.set_pcp(0xfa);
        assert_eq!((tag.vid(), tag.pcp(), tag.dei()), (0x123, 2, true));
        tag.set_ethertype(0x0806);
        let (reference, _) = SingleVlanHeader::from_slice(&bytes).unwrap();
        assert_eq!(reference.vlan_id.value(), 0x123);
        assert_eq!(reference.pcp.value(), 2);
        assert!(reference.drop_eligible_indicator);
        assert_eq!(u16::from(reference.ether_type), 0x0806);
    }
}
