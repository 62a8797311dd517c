//! Hand-made Ethernet frames for `xsw-nettool raw-send`: 802.1Q/802.1ad
//! tags, IPv4/UDP, ARP, IPv6 neighbour advertisements and DHCP DISCOVER,
//! with correct checksums, so the only thing wrong with a test frame is what
//! the test forges on purpose.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_ARP: u16 = 0x0806;
pub const ETH_IPV6: u16 = 0x86dd;
/// IEEE local experimental ethertype: frames no stack answers.
pub const ETH_EXPERIMENTAL: u16 = 0x88b5;
pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;

/// Parses "02:78:0a:00:00:01" with xsw's own parser (panics on a malformed
/// literal: test input).
pub fn mac(s: &str) -> [u8; 6] {
    s.parse::<xsw::packet::MacAddr>()
        .unwrap_or_else(|e| panic!("bad MAC {s}: {e}"))
        .0
}

pub fn ip4(s: &str) -> Ipv4Addr {
    s.parse()
        .unwrap_or_else(|e| panic!("bad IPv4 address {s}: {e}"))
}

pub fn ip6(s: &str) -> Ipv6Addr {
    s.parse()
        .unwrap_or_else(|e| panic!("bad IPv6 address {s}: {e}"))
}

/// Lower-case hex of `bytes`, as raw-send's --frame takes it.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An Ethernet frame: dst, src, then the tags in order (outermost first, each
/// (TPID, VID)), the ethertype and the payload, padded so that the frame
/// without its tags is at least 60 bytes.
pub fn eth(dst: &str, src: &str, tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(64 + payload.len());
    f.extend_from_slice(&mac(dst));
    f.extend_from_slice(&mac(src));
    for (tpid, vid) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    let min = 60 + 4 * tags.len();
    if f.len() < min {
        f.resize(min, 0);
    }
    f
}

/// Internet checksum (RFC 1071) over `data`, starting from `sum`.
fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [last] = chunks.remainder() {
        sum += (*last as u32) << 8;
    }
    sum
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    csum_fold(csum_add(0, data))
}

/// An IPv4 packet (20-byte header, DF, TTL 64) carrying `proto` / `payload`.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&0x7873u16.to_be_bytes()); // id
    h.extend_from_slice(&0x4000u16.to_be_bytes()); // DF
    h.push(64);
    h.push(proto);
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An IPv4/UDP packet with a correct UDP checksum.
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let len = (8 + data.len()) as u16;
    let mut u = Vec::with_capacity(len as usize);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&len.to_be_bytes());
    let mut c = csum_fold(csum_add(csum_add(0, &pseudo), &u));
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    ipv4(src, dst, 17, &u)
}

/// ARP request (op 1) or reply (op 2) for Ethernet/IPv4.
pub fn arp(op: u16, sha: &str, spa: Ipv4Addr, tha: &str, tpa: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&mac(sha));
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&mac(tha));
    a.extend_from_slice(&tpa.octets());
    a
}

/// An IPv6 packet (hop limit 255) carrying ICMPv6 message `icmp` (its
/// checksum field, bytes 2..4, is filled in here).
pub fn ipv6_icmpv6(src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> Vec<u8> {
    let mut icmp = icmp.to_vec();
    icmp[2] = 0;
    icmp[3] = 0;
    let len = icmp.len() as u32;
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&len.to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    let c = csum_fold(csum_add(csum_add(0, &pseudo), &icmp));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    p.push(58);
    p.push(255);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&icmp);
    p
}

/// ICMPv6 neighbour advertisement (type 136, override flag set, solicited
/// flag as given) for `target`, with a target link-layer address option.
pub fn icmpv6_na(target: Ipv6Addr, tll: &str, solicited: bool) -> Vec<u8> {
    let mut m = vec![136, 0, 0, 0];
    let flags: u32 = 0x2000_0000 | if solicited { 0x4000_0000 } else { 0 };
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&target.octets());
    m.extend_from_slice(&[2, 1]);
    m.extend_from_slice(&mac(tll));
    m
}

/// A whole unsolicited-NA frame from `src_mac`/`src_ip` to all nodes
/// (ff02::1), claiming that `target` is at `src_mac`.
pub fn na_frame(src_mac: &str, src_ip: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let all_nodes = ip6("ff02::1");
    let p = ipv6_icmpv6(src_ip, all_nodes, &icmpv6_na(target, src_mac, false));
    eth("33:33:00:00:00:01", src_mac, &[], ETH_IPV6, &p)
}

/// A DHCP DISCOVER from `client` (0.0.0.0:68 → 255.255.255.255:67, broadcast).
pub fn dhcp_discover_frame(client: &str, xid: u32) -> Vec<u8> {
    let mut b = vec![1, 1, 6, 0];
    b.extend_from_slice(&xid.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0x80, 0]); // secs, flags: broadcast
    b.extend_from_slice(&[0u8; 16]); // ciaddr yiaddr siaddr giaddr
    b.extend_from_slice(&mac(client));
    b.extend_from_slice(&[0u8; 10]);
    b.extend_from_slice(&[0u8; 64 + 128]); // sname, file
    b.extend_from_slice(&[0x63, 0x82, 0x53, 0x63]);
    b.extend_from_slice(&[53, 1, 1]); // DHCP message type: DISCOVER
    b.extend_from_slice(&[55, 2, 1, 3]); // parameter request: mask, router
    b.push(255);
    let p = ipv4_udp(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68, 67, &b);
    eth("ff:ff:ff:ff:ff:ff", client, &[], ETH_IPV4, &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_and_udp_checksums_verify() {
        let p = ipv4_udp(ip4("198.18.1.1"), ip4("198.18.1.2"), 1000, 2000, b"hello");
        assert_eq!(checksum(&p[..20]), 0, "IPv4 header checksum");
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, 17, 0, 13]);
        assert_eq!(csum_fold(csum_add(csum_add(0, &pseudo), &p[20..])), 0);
        assert_eq!(p.len(), 20 + 8 + 5);
    }

    #[test]
    fn tagged_frames_carry_the_tags_in_order_and_are_padded() {
        let f = eth(
            "ff:ff:ff:ff:ff:ff",
            "02:78:01:00:00:01",
            &[(TPID_8021AD, 100), (TPID_8021Q, 200)],
            ETH_EXPERIMENTAL,
            b"x",
        );
        assert_eq!(&f[12..14], &[0x88, 0xa8]);
        assert_eq!(&f[14..16], &[0x00, 100]);
        assert_eq!(&f[16..18], &[0x81, 0x00]);
        assert_eq!(&f[18..20], &[0x00, 200]);
        assert_eq!(&f[20..22], &[0x88, 0xb5]);
        assert_eq!(f.len(), 68);
    }

    #[test]
    fn icmpv6_checksum_verifies() {
        let src = ip6("fd00:7873:77:1::1");
        let p = ipv6_icmpv6(
            src,
            ip6("ff02::1"),
            &icmpv6_na(src, "02:78:01:00:00:01", false),
        );
        let icmp = &p[40..];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[8..40]);
        pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        assert_eq!(csum_fold(csum_add(csum_add(0, &pseudo), icmp)), 0);
    }
}
