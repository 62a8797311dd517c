//! Test frames: Ethernet II / IPv4 / UDP, built with etherparse.
//!
//! Size convention (RFC 2544): `size` is the frame length on the wire
//! including the 4-byte FCS, so 64..=1518. Veths and XDP see frames without
//! FCS, so the bytes built here are `size - 4` long (60 for a 64-byte frame).

use std::fmt;
use std::net::Ipv4Addr;
use xsw::packet::MacAddr;

use anyhow::{bail, Context, Result};
use etherparse::PacketBuilder;

pub const FCS_LEN: usize = 4;
pub const MIN_SIZE: usize = 64;
pub const MAX_SIZE: usize = 1518;
/// Ethernet (14) + IPv4 without options (20) + UDP (8): the generators
/// rewrite fields at the fixed offsets below, so this layout is fixed.
const HEADERS_LEN: usize = 14 + 20 + 8;
/// The fields the generators rewrite per frame (both engines; tx.c has the
/// same numbers).
const ETH_SRC_LOW_OFF: usize = 9; // the source MAC's low three bytes
const IP_TOT_LEN_OFF: usize = 16;
const IP_CSUM_OFF: usize = 24;
const IP_SRC_OFF: usize = 26;
const UDP_SRC_PORT_OFF: usize = 34;
const UDP_LEN_OFF: usize = 38;
/// Where the stamp (sequence number, then send time) starts.
pub const PAYLOAD_OFF: usize = HEADERS_LEN;
/// With `--stamp`, the payload starts with the sequence number (8 bytes) and
/// the send time (8 bytes), written per frame by the XDP generator, then this
/// marker, by which the measuring sink tells test frames from anything else.
/// The smallest frame (64 on the wire) has exactly room for all three.
pub const STAMP_MAGIC: u16 = 0xb55b;
const STAMP_MAGIC_OFF: usize = 16;

pub struct UdpFlow {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// Builds one frame of `size` bytes on the wire (FCS included, see above).
/// With `zero_udp_checksum` the UDP checksum is 0 ("not computed", valid for
/// IPv4): needed when the generator varies ports, addresses or lengths per
/// frame (see `Variants`).
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

/// The simple IMIX: 7 frames of 64 bytes, 4 of 594 and 1 of 1518 (on the
/// wire, FCS included) in each period of 12, spread out so no size comes in
/// long runs. Both engines send exactly this sequence, from the start.
pub const IMIX_PATTERN: [usize; 12] = [64, 594, 64, 64, 594, 64, 1518, 64, 594, 64, 64, 594];
const IMIX_MID: usize = 594;
const IMIX_BIG: usize = 1518;

/// The frame sizes a run sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizes {
    Fixed(usize),
    Imix,
}

impl Sizes {
    /// The largest frame (on the wire): the template's size.
    pub fn largest(self) -> usize {
        match self {
            Sizes::Fixed(s) => s,
            Sizes::Imix => IMIX_BIG,
        }
    }

    /// Bytes on the wire (FCS included, no preamble or gap) of the first
    /// `frames` frames of a run.
    pub fn wire_bytes(self, frames: u64) -> u64 {
        match self {
            Sizes::Fixed(s) => frames * s as u64,
            Sizes::Imix => {
                let period = IMIX_PATTERN.len() as u64;
                let whole: u64 = IMIX_PATTERN.iter().map(|&s| s as u64).sum();
                let rest: u64 = IMIX_PATTERN[..(frames % period) as usize]
                    .iter()
                    .map(|&s| s as u64)
                    .sum();
                frames / period * whole + rest
            }
        }
    }

    /// The mean size on the wire.
    pub fn mean(self) -> f64 {
        let period = IMIX_PATTERN.len() as u64;
        self.wire_bytes(period) as f64 / period as f64
    }

    /// The value of the "size" field in JSON: the number, or "imix".
    pub fn json(self) -> String {
        match self {
            Sizes::Fixed(s) => s.to_string(),
            Sizes::Imix => "\"imix\"".to_string(),
        }
    }

    /// For tx.c: bit i set when frame i of the period has that size.
    fn imix_mask(size: usize) -> u32 {
        IMIX_PATTERN
            .iter()
            .enumerate()
            .filter(|(_, &s)| s == size)
            .fold(0, |m, (i, _)| m | 1 << i)
    }
}

impl fmt::Display for Sizes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sizes::Fixed(s) => write!(f, "{s} bytes ({} without FCS)", s - FCS_LEN),
            Sizes::Imix => write!(
                f,
                "IMIX 7:4:1 of 64/594/1518 bytes (mean {:.1})",
                self.mean()
            ),
        }
    }
}

/// The one's-complement sum (not folded) of the 16-bit words of an IPv4
/// header, leaving out total length, checksum and source address: the part
/// that stays the same in every variant of a run.
fn ip_sum_base(frame: &[u8]) -> u32 {
    (14..34)
        .step_by(2)
        .filter(|&o| {
            o != IP_TOT_LEN_OFF && o != IP_CSUM_OFF && o != IP_SRC_OFF && o != IP_SRC_OFF + 2
        })
        .map(|o| u32::from(u16::from_be_bytes([frame[o], frame[o + 1]])))
        .sum()
}

fn ip_checksum(sum_base: u32, tot_len: u32, src_ip: u32) -> u16 {
    let mut sum = sum_base + tot_len + (src_ip >> 16) + (src_ip & 0xffff);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// What changes from one frame of a run to the next, and where in the cycles
/// the next frame is. The kernel engine's tx.c applies the same rules from
/// the values of `tx_globals`; the AF_XDP engine calls `apply` per frame.
pub struct Variants {
    flows: u32,
    base_port: u16,
    src_macs: u32,
    mac_low_base: u32,
    ip_base: u32,
    imix: bool,
    len_big: usize,
    ip_sum_base: u32,
    /// The template's first 48 bytes (headers and the payload's start) as
    /// tx.c writes them back before every frame.
    header_words: [u64; 6],
    next_flow: u32,
    next_mac: u32,
    next_imix: usize,
}

/// The first 48 bytes of `template` (at least 60 bytes long) as six words in
/// memory order, so that storing them rebuilds those bytes.
fn header_words(template: &[u8]) -> [u64; 6] {
    let mut words = [0u64; 6];
    for (word, chunk) in words.iter_mut().zip(template.chunks_exact(8)) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        *word = u64::from_ne_bytes(bytes);
    }
    words
}

impl Variants {
    /// Checks the options and builds the template (the largest frame of the
    /// run) that every frame starts from.
    pub fn new(
        flow: &UdpFlow,
        sizes: Sizes,
        flows: u16,
        src_macs: u32,
        stamp: bool,
    ) -> Result<(Self, Vec<u8>)> {
        if flows == 0 {
            bail!("--flows must be at least 1");
        }
        if u32::from(flow.src_port) + u32::from(flows) - 1 > u32::from(u16::MAX) {
            bail!(
                "--src-port {} + --flows {flows} runs past port 65535",
                flow.src_port
            );
        }
        if src_macs == 0 || src_macs > 1 << 24 {
            bail!("--src-macs must be 1..=16777216 (the source MAC's low 24 bits)");
        }
        let m = flow.src_mac.0;
        let mac_low_base = u32::from_be_bytes([0, m[3], m[4], m[5]]);
        if mac_low_base + (src_macs - 1) > 0xff_ffff {
            bail!(
                "--src-mac {} + --src-macs {src_macs} runs past {:02x}:{:02x}:{:02x}:ff:ff:ff: lower the MAC's last three bytes",
                flow.src_mac, m[0], m[1], m[2]
            );
        }
        let d = flow.dst_mac.0;
        let dst_low = u32::from_be_bytes([0, d[3], d[4], d[5]]);
        if src_macs > 1
            && d[..3] == m[..3]
            && (mac_low_base..mac_low_base + src_macs).contains(&dst_low)
        {
            bail!(
                "--dst-mac {} is one of the {src_macs} source MACs from --src-mac {}: a switch would learn it \
                 on the sending port; move the range, e.g. --src-mac {:02x}:{:02x}:01:00:00:00",
                flow.dst_mac, flow.src_mac, m[0], m[1]
            );
        }
        let ip_base = u32::from(flow.src_ip);
        if ip_base.checked_add(src_macs - 1).is_none() {
            bail!(
                "--src-ip {} + --src-macs {src_macs} runs past 255.255.255.255",
                flow.src_ip
            );
        }
        let imix = sizes == Sizes::Imix;
        let varies = flows > 1 || src_macs > 1 || imix;
        let template = build_udp(flow, sizes.largest(), varies, stamp)?;
        let v = Variants {
            flows: u32::from(flows),
            base_port: flow.src_port,
            src_macs,
            mac_low_base,
            ip_base,
            imix,
            len_big: template.len(),
            ip_sum_base: ip_sum_base(&template),
            header_words: header_words(&template),
            next_flow: 0,
            next_mac: 0,
            next_imix: 0,
        };
        Ok((v, template))
    }

    /// The read-only globals of tx.c that make it apply these variants.
    pub fn tx_globals(&self) -> Vec<(&'static str, crate::progs::Global)> {
        use crate::progs::Global;
        let mem = |s: usize| Global::U32((s - FCS_LEN) as u32);
        vec![
            ("FLOWS", Global::U32(self.flows)),
            ("BASE_SRC_PORT", Global::U16(self.base_port)),
            ("SRC_MACS", Global::U32(self.src_macs)),
            ("MAC_LOW_BASE", Global::U32(self.mac_low_base)),
            ("IP_BASE", Global::U32(self.ip_base)),
            ("IMIX", Global::U32(u32::from(self.imix))),
            ("IMIX_PERIOD", Global::U32(IMIX_PATTERN.len() as u32)),
            ("IMIX_MID_MASK", Global::U32(Sizes::imix_mask(IMIX_MID))),
            ("IMIX_BIG_MASK", Global::U32(Sizes::imix_mask(IMIX_BIG))),
            ("LEN_SMALL", mem(MIN_SIZE)),
            ("LEN_MID", mem(IMIX_MID)),
            ("LEN_BIG", Global::U32(self.len_big as u32)),
            ("IP_SUM_BASE", Global::U32(self.ip_sum_base)),
            ("HEADER_0", Global::U64(self.header_words[0])),
            ("HEADER_1", Global::U64(self.header_words[1])),
            ("HEADER_2", Global::U64(self.header_words[2])),
            ("HEADER_3", Global::U64(self.header_words[3])),
            ("HEADER_4", Global::U64(self.header_words[4])),
            ("HEADER_5", Global::U64(self.header_words[5])),
        ]
    }

    /// Turns `frame`, which holds the template or an earlier frame of this
    /// run, into the next frame, and returns that frame's length in memory.
    /// Fields are written absolutely, so any earlier frame will do.
    #[inline]
    pub fn apply(&mut self, frame: &mut [u8]) -> usize {
        let mut len = self.len_big;
        if self.flows > 1 {
            let f = self.next_flow;
            self.next_flow = if f + 1 >= self.flows { 0 } else { f + 1 };
            let port = self.base_port.wrapping_add(f as u16);
            frame[UDP_SRC_PORT_OFF..UDP_SRC_PORT_OFF + 2].copy_from_slice(&port.to_be_bytes());
        }
        if !self.imix && self.src_macs <= 1 {
            return len;
        }
        let mut ip = self.ip_base;
        if self.imix {
            let i = self.next_imix;
            self.next_imix = if i + 1 >= IMIX_PATTERN.len() {
                0
            } else {
                i + 1
            };
            len = IMIX_PATTERN[i] - FCS_LEN;
            frame[IP_TOT_LEN_OFF..IP_TOT_LEN_OFF + 2]
                .copy_from_slice(&((len - 14) as u16).to_be_bytes());
            frame[UDP_LEN_OFF..UDP_LEN_OFF + 2].copy_from_slice(&((len - 34) as u16).to_be_bytes());
        }
        if self.src_macs > 1 {
            let k = self.next_mac;
            self.next_mac = if k + 1 >= self.src_macs { 0 } else { k + 1 };
            let mac = (self.mac_low_base + k).to_be_bytes();
            frame[ETH_SRC_LOW_OFF..ETH_SRC_LOW_OFF + 3].copy_from_slice(&mac[1..]);
            ip += k;
            frame[IP_SRC_OFF..IP_SRC_OFF + 4].copy_from_slice(&ip.to_be_bytes());
        }
        let csum = ip_checksum(self.ip_sum_base, (len - 14) as u32, ip);
        frame[IP_CSUM_OFF..IP_CSUM_OFF + 2].copy_from_slice(&csum.to_be_bytes());
        len
    }
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
    fn imix_is_7_4_1_and_spread_out() {
        let count = |size| IMIX_PATTERN.iter().filter(|&&s| s == size).count();
        assert_eq!((count(64), count(594), count(1518)), (7, 4, 1));
        // Never more than two frames of one size in a row, also across periods.
        let twice: Vec<usize> = IMIX_PATTERN.iter().chain(&IMIX_PATTERN).copied().collect();
        assert!(twice.windows(3).all(|w| !(w[0] == w[1] && w[1] == w[2])));
        assert_eq!(Sizes::Imix.wire_bytes(12), 7 * 64 + 4 * 594 + 1518);
        assert_eq!(Sizes::Imix.wire_bytes(14), 4342 + 64 + 594);
        assert_eq!(Sizes::Fixed(64).wire_bytes(10), 640);
        assert!((Sizes::Imix.mean() - 361.83).abs() < 0.01);
        // tx.c's masks describe the same pattern.
        let (mid, big) = (Sizes::imix_mask(594), Sizes::imix_mask(1518));
        for (i, &s) in IMIX_PATTERN.iter().enumerate() {
            let from_masks = if big >> i & 1 == 1 {
                1518
            } else if mid >> i & 1 == 1 {
                594
            } else {
                64
            };
            assert_eq!(from_masks, s, "frame {i}");
        }
    }

    #[test]
    fn variants_are_valid_frames_in_the_documented_order() {
        let mut f = flow();
        f.src_mac = "02:b5:00:00:ff:fe".parse().unwrap();
        f.src_ip = Ipv4Addr::new(198, 18, 0, 254);
        let (mut v, template) = Variants::new(&f, Sizes::Imix, 3, 5, true).unwrap();
        assert_eq!(template.len(), 1514);
        let mut buf = template.clone();
        for i in 0..60usize {
            let len = v.apply(&mut buf);
            assert_eq!(len + FCS_LEN, IMIX_PATTERN[i % 12], "frame {i}");
            let frame = &buf[..len];
            let (ip, _) = etherparse::Ipv4Header::from_slice(&frame[14..]).unwrap();
            assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "frame {i}");
            assert_eq!(usize::from(ip.total_len), len - 14);
            let k = (i % 5) as u32;
            assert_eq!(ip.source, (u32::from(f.src_ip) + k).to_be_bytes());
            // The low 24 bits count on, carrying across bytes.
            let low = (0xfffe + k).to_be_bytes();
            assert_eq!(&frame[6..12], &[0x02, 0xb5, 0, low[1], low[2], low[3]]);
            let p = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
            let Some(etherparse::TransportSlice::Udp(udp)) = p.transport else {
                panic!("frame {i} is not UDP");
            };
            assert_eq!(udp.source_port(), 1024 + (i % 3) as u16);
            assert_eq!(usize::from(udp.length()), len - 34);
            assert_eq!(udp.checksum(), 0);
            assert_eq!(&frame[58..60], &STAMP_MAGIC.to_be_bytes());
        }
    }

    #[test]
    fn one_variant_leaves_the_template_alone() {
        let (mut v, template) = Variants::new(&flow(), Sizes::Fixed(128), 1, 1, false).unwrap();
        let mut buf = template.clone();
        assert_eq!(v.apply(&mut buf), 124);
        assert_eq!(buf, template);
        let globals = v.tx_globals();
        assert!(globals.iter().any(|(n, _)| *n == "IP_SUM_BASE"));
    }

    #[test]
    fn address_ranges_are_checked() {
        let mut f = flow();
        assert!(Variants::new(&f, Sizes::Fixed(64), 1, 0, false).is_err());
        // 02:00:00:00:00:01 + 2 covers the destination 02:00:00:00:00:02.
        assert!(Variants::new(&f, Sizes::Fixed(64), 1, 2, false).is_err());
        f.src_mac = "02:00:01:00:00:00".parse().unwrap();
        assert!(Variants::new(&f, Sizes::Fixed(64), 1, 1_000_000, false).is_ok());
        f.src_mac = "02:b5:00:ff:ff:00".parse().unwrap();
        assert!(Variants::new(&f, Sizes::Fixed(64), 1, 256, false).is_ok());
        assert!(Variants::new(&f, Sizes::Fixed(64), 1, 257, false).is_err());
        f.src_port = 65535;
        assert!(Variants::new(&f, Sizes::Fixed(64), 2, 1, false).is_err());
        let mut f = flow();
        f.src_ip = Ipv4Addr::new(255, 255, 255, 250);
        assert!(Variants::new(&f, Sizes::Fixed(64), 1, 7, false).is_err());
    }
}
