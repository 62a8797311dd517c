//! DHCP (BOOTP, RFC 2131) view: the fixed header up to the client hardware address, which
//! is all the DHCP guard reads. Options are not parsed.
//!
//! [`DhcpPacket::new_checked`] refuses a message whose hardware address is not an
//! Ethernet MAC (htype 1, hlen 6) as [`WireError::Malformed`]: a server would hand out a
//! lease keyed by whatever `chaddr` holds, so a message whose `chaddr` xsw cannot read as
//! a MAC is one whose client it cannot vouch for.

use super::ethernet::WireError;
use super::ipv4::Ipv4Packet;
use super::l4::UdpHeader;
use super::mac::MacAddr;

/// UDP port a DHCP (BOOTP) client sends from and listens on.
pub const CLIENT_PORT: u16 = 68;
/// UDP port a DHCP (BOOTP) server or relay agent listens on.
pub const SERVER_PORT: u16 = 67;
/// UDP port a DHCPv6 client listens on.
pub const V6_CLIENT_PORT: u16 = 546;
/// UDP port a DHCPv6 server or relay agent listens on.
pub const V6_SERVER_PORT: u16 = 547;
/// `op` of a client's message.
pub const OP_BOOTREQUEST: u8 = 1;
/// `op` of a server's message.
pub const OP_BOOTREPLY: u8 = 2;
/// `htype` of Ethernet.
pub const HARDWARE_ETHERNET: u8 = 1;

/// Byte ranges of the BOOTP header, from the start of the UDP payload.
mod field {
    use core::ops::Range;

    pub const OP: usize = 0;
    pub const HARDWARE_TYPE: usize = 1;
    pub const HARDWARE_LEN: usize = 2;
    pub const TRANSACTION_ID: Range<usize> = 4..8;
    /// The first 6 of the 16 `chaddr` bytes: an Ethernet MAC.
    pub const CLIENT_HARDWARE_ADDR: Range<usize> = 28..34;
}

/// The bytes [`DhcpPacket::new_checked`] needs: up to the end of an Ethernet `chaddr`.
pub const MIN_LEN: usize = field::CLIENT_HARDWARE_ADDR.end;

/// A DHCP message for an Ethernet client, over a buffer of at least [`MIN_LEN`] bytes.
#[derive(Debug, Clone)]
pub struct DhcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> DhcpPacket<T> {
    /// Checks the length, then that the hardware address is an Ethernet MAC.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let bytes = buffer.as_ref();
        if bytes.len() < MIN_LEN {
            return Err(WireError::TruncatedHeader);
        }
        if bytes[field::HARDWARE_TYPE] != HARDWARE_ETHERNET || bytes[field::HARDWARE_LEN] != 6 {
            return Err(WireError::Malformed);
        }
        Ok(DhcpPacket { buffer })
    }

    pub fn op(&self) -> u8 {
        self.buffer.as_ref()[field::OP]
    }

    pub fn transaction_id(&self) -> u32 {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(&self.buffer.as_ref()[field::TRANSACTION_ID]);
        u32::from_be_bytes(bytes)
    }

    /// The client's hardware address, which the server keys its lease by.
    pub fn client_mac(&self) -> MacAddr {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::CLIENT_HARDWARE_ADDR]);
        MacAddr(mac)
    }
}

/// The DHCP message in an IPv4 frame's UDP payload; `l2_len` is where the IPv4 header
/// starts. For a frame the parser already found to be UDP to port 67.
pub fn in_ipv4_frame(frame: &[u8], l2_len: usize) -> Result<DhcpPacket<&[u8]>, WireError> {
    let packet = frame.get(l2_len..).ok_or(WireError::TruncatedHeader)?;
    let ip = Ipv4Packet::new_checked(packet)?;
    // The payload up to the IP total length (`Ipv4Packet::payload`), as a slice of
    // `frame` rather than of the view.
    let payload = packet
        .get(ip.header_len()..usize::from(ip.total_len()))
        .ok_or(WireError::TruncatedHeader)?;
    UdpHeader::new_checked(payload)?;
    DhcpPacket::new_checked(
        payload
            .get(UDP_HEADER_LEN..)
            .ok_or(WireError::TruncatedHeader)?,
    )
}

const UDP_HEADER_LEN: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn discover(chaddr: [u8; 6], htype: u8) -> Vec<u8> {
        let mut bootp = vec![0u8; 240];
        bootp[0] = OP_BOOTREQUEST;
        bootp[1] = htype;
        bootp[2] = 6;
        bootp[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        bootp[28..34].copy_from_slice(&chaddr);
        let mut out = Vec::new();
        PacketBuilder::ethernet2(chaddr, [0xff; 6])
            .ipv4([0, 0, 0, 0], [255, 255, 255, 255], 64)
            .udp(CLIENT_PORT, SERVER_PORT)
            .write(&mut out, &bootp)
            .expect("build");
        out
    }

    #[test]
    fn reads_the_client_mac_of_a_discover() {
        let mac = [0x52, 0x54, 0, 1, 2, 3];
        let frame = discover(mac, HARDWARE_ETHERNET);
        let dhcp = in_ipv4_frame(&frame, 14).expect("dhcp");
        assert_eq!(dhcp.op(), OP_BOOTREQUEST);
        assert_eq!(dhcp.transaction_id(), 0x1234_5678);
        assert_eq!(dhcp.client_mac(), MacAddr(mac));
    }

    #[test]
    fn refuses_what_it_cannot_read_as_an_ethernet_client() {
        let frame = discover([2, 0, 0, 0, 0, 1], 6);
        assert_eq!(in_ipv4_frame(&frame, 14).err(), Some(WireError::Malformed));
        let mut short = discover([2, 0, 0, 0, 0, 1], HARDWARE_ETHERNET);
        // Cut inside chaddr, and say so in the IP and UDP lengths.
        let cut = 14 + 20 + 8 + 30;
        short.truncate(cut);
        short[16..18].copy_from_slice(&((cut - 14) as u16).to_be_bytes());
        assert_eq!(
            in_ipv4_frame(&short, 14).err(),
            Some(WireError::TruncatedHeader)
        );
        for len in 0..frame.len() {
            let _ = in_ipv4_frame(&frame[..len], 14);
        }
        assert!(in_ipv4_frame(&frame, 400).is_err());
    }
}
