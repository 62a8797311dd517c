//! Test frames: Ethernet II / IPv4 / UDP, built with etherparse.
//!
//! Size convention (RFC 2544): `size` is the frame length on the wire
//! including the 4-byte FCS, so 64..=1518. Veths and XDP see frames without
//! FCS, so the bytes built here are `size - 4` long (60 for a 64-byte frame).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use etherparse::PacketBuilder;

pub const FCS_LEN: usize = 4;
pub const MIN_SIZE: usize = 64;
pub const MAX_SIZE: usize = 1518;
/// Ethernet (14) + IPv4 without options (20) + UDP (8): the XDP generator
/// rewrites the UDP source port at offset 34, so this layout is fixed.
const HEADERS_LEN: usize = 14 + 20 + 8;
/// With `--stamp`, the payload starts with the sequence number (8 bytes) and
/// the send time (8 bytes), written per frame by the XDP generator, then this
/// marker, by which the measuring sink tells test frames from anything else.
/// The smallest frame (64 on the wire) has exactly room for all three.
pub const STAMP_MAGIC: u16 = 0xb55b;
const STAMP_MAGIC_OFF: usize = 16;

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = [0u8; 6];
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!(
                "{s:?} is not a MAC address (expected six hex bytes like 02:00:00:00:00:01)"
            ));
        }
        for (o, p) in out.iter_mut().zip(parts) {
            *o = u8::from_str_radix(p, 16)
                .ok()
                .filter(|_| p.len() == 2)
                .ok_or_else(|| format!("{s:?} is not a MAC address (bad byte {p:?})"))?;
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

pub struct UdpFlow {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// Builds one frame of `size` bytes on the wire (FCS included, see above).
/// With `zero_udp_checksum` the UDP checksum is 0 ("not computed", valid for
/// IPv4): needed when the XDP program varies the source port per frame.
/// With `stamp` the payload gets the marker the measuring sink looks for (the
/// XDP program fills in sequence number and time), and the checksum is 0.
pub fn build_udp(
    flow: &UdpFlow,
    size: usize,
    zero_udp_checksum: bool,
    stamp: bool,
) -> Result<Vec<u8>> {
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        bail!("frame size {size} is out of range: use {MIN_SIZE}..={MAX_SIZE} (bytes on the wire, FCS included)");
    }
    let mut payload = vec![0u8; size - FCS_LEN - HEADERS_LEN];
    if stamp {
        // MIN_SIZE leaves 18 payload bytes: 16 for seq + time, 2 for this.
        payload[STAMP_MAGIC_OFF..STAMP_MAGIC_OFF + 2].copy_from_slice(&STAMP_MAGIC.to_be_bytes());
    }
    let builder = PacketBuilder::ethernet2(flow.src_mac.0, flow.dst_mac.0)
        .ipv4(flow.src_ip.octets(), flow.dst_ip.octets(), 64)
        .udp(flow.src_port, flow.dst_port);
    let mut frame = Vec::with_capacity(size - FCS_LEN);
    builder
        .write(&mut frame, &payload)
        .context("building the UDP frame")?;
    if frame.len() != size - FCS_LEN {
        bail!(
            "internal error: built a {}-byte frame, wanted {}",
            frame.len(),
            size - FCS_LEN
        );
    }
    if zero_udp_checksum || stamp {
        frame[HEADERS_LEN - 2..HEADERS_LEN].fill(0);
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> UdpFlow {
        UdpFlow {
            src_mac: "02:00:00:00:00:01".parse().unwrap(),
            dst_mac: "02:00:00:00:00:02".parse().unwrap(),
            src_ip: Ipv4Addr::new(198, 18, 0, 1),
            dst_ip: Ipv4Addr::new(198, 18, 0, 2),
            src_port: 1024,
            dst_port: 9,
        }
    }

    #[test]
    fn sizes_follow_the_fcs_convention() {
        for size in [64, 128, 512, 1518] {
            let f = build_udp(&flow(), size, false, false).unwrap();
            assert_eq!(f.len(), size - 4);
            let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
            assert!(matches!(
                p.transport,
                Some(etherparse::TransportSlice::Udp(_))
            ));
        }
        assert!(build_udp(&flow(), 63, false, false).is_err());
        assert!(build_udp(&flow(), 1519, false, false).is_err());
    }

    #[test]
    fn source_port_sits_where_the_xdp_program_writes_it() {
        let f = build_udp(&flow(), 64, true, false).unwrap();
        assert_eq!(&f[34..36], &1024u16.to_be_bytes());
        assert_eq!(&f[40..42], &[0, 0]);
    }

    #[test]
    fn stamp_layout_matches_the_xdp_programs() {
        // tx.c writes seq at 42 and time at 50; sink_measure.c checks the
        // marker at 58 and the destination port at 36.
        let f = build_udp(&flow(), 64, false, true).unwrap();
        assert_eq!(f.len(), 60);
        assert_eq!(&f[42..58], &[0u8; 16]);
        assert_eq!(&f[58..60], &STAMP_MAGIC.to_be_bytes());
        assert_eq!(&f[36..38], &9u16.to_be_bytes());
        assert_eq!(&f[40..42], &[0, 0], "UDP checksum must be 0 (none)");
        assert_eq!(f[23], 17);
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(
            "02:ab:00:00:00:ff".parse::<Mac>().unwrap().to_string(),
            "02:ab:00:00:00:ff"
        );
        assert!("02:ab:00:00:00".parse::<Mac>().is_err());
        assert!("02:ab:00:00:00:fff".parse::<Mac>().is_err());
        assert!("02:ab:00:00:00:zz".parse::<Mac>().is_err());
    }
}
