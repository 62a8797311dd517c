//! VXLAN header view (RFC 7348) and the outer UDP header xsw writes in front of it.
//!
//! ```text
//!  0                   1                   2                   3
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! |            VXLAN Network Identifier (VNI)     |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The RFC says receivers ignore the reserved bits; xsw, like the Linux kernel's vxlan
//! driver, refuses a header with any bit set besides I: such a header belongs to an
//! extension (group policy, generic protocol extension) whose payload may not be Ethernet,
//! and switching it as Ethernet would misread it.

use super::ethernet::WireError;

/// The IANA port for VXLAN. Linux's `ip link add ... type vxlan` uses 8472 unless told
/// `dstport 4789`.
pub const DEFAULT_PORT: u16 = 4789;
/// The largest VNI: 24 bits.
pub const VNI_MAX: u32 = 0x00ff_ffff;
/// The "I" flag: the VNI field is valid. The only flag xsw accepts or sends.
pub const FLAG_VNI: u8 = 0x08;

mod field {
    use core::ops::{Range, RangeFrom};

    pub const FLAGS: usize = 0;
    pub const RESERVED_1: Range<usize> = 1..4;
    pub const VNI: Range<usize> = 4..7;
    pub const RESERVED_2: usize = 7;
    pub const PAYLOAD: RangeFrom<usize> = 8..;
}

/// Bytes of the VXLAN header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;
/// Bytes of the UDP header before it.
pub const UDP_HEADER_LEN: usize = 8;
/// What encapsulation adds after the outer IP header: UDP and VXLAN.
pub const OVERHEAD_AFTER_IP: usize = UDP_HEADER_LEN + HEADER_LEN;

/// A VXLAN header over a buffer known to hold at least [`HEADER_LEN`] bytes whose flags and
/// reserved fields are those of plain VXLAN.
#[derive(Debug, Clone)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// [`WireError::TruncatedHeader`] for a buffer shorter than the header;
    /// [`WireError::Malformed`] when the I flag is missing or any other bit of the flags or
    /// the reserved fields is set.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let bytes = buffer.as_ref();
        if bytes.len() < HEADER_LEN {
            return Err(WireError::TruncatedHeader);
        }
        let reserved_clear =
            bytes[field::RESERVED_1].iter().all(|&b| b == 0) && bytes[field::RESERVED_2] == 0;
        if bytes[field::FLAGS] != FLAG_VNI || !reserved_clear {
            return Err(WireError::Malformed);
        }
        Ok(VxlanPacket { buffer })
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The 24-bit network identifier.
    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The inner Ethernet frame, possibly empty.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanPacket<T> {
    /// A header to be written: checks only the length (the bytes are about to be set).
    pub fn new_for_emit(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::TruncatedHeader);
        }
        Ok(VxlanPacket { buffer })
    }

    /// Sets the VNI; bits above 24 are ignored.
    pub fn set_vni(&mut self, vni: u32) {
        let b = (vni & VNI_MAX).to_be_bytes();
        self.buffer.as_mut()[field::VNI].copy_from_slice(&b[1..]);
    }

    fn clear_flags(&mut self) {
        let bytes = self.buffer.as_mut();
        bytes[field::FLAGS] = FLAG_VNI;
        bytes[field::RESERVED_1].fill(0);
        bytes[field::RESERVED_2] = 0;
    }
}

/// The fields of a VXLAN header: only the VNI carries information.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VxlanRepr {
    pub vni: u32,
}

impl VxlanRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &VxlanPacket<T>) -> VxlanRepr {
        VxlanRepr { vni: packet.vni() }
    }

    /// Writes the header: the I flag, the VNI, every reserved bit clear.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut VxlanPacket<T>) {
        packet.clear_flags();
        packet.set_vni(self.vni);
    }
}

/// Writes the outer UDP header and the VXLAN header (`OVERHEAD_AFTER_IP` bytes) in front of
/// an inner frame of `inner_len` bytes. The checksum is left 0: over IPv4 that means "none"
/// (RFC 7348 allows it), over IPv6 the kernel fills it in (`IPV6_CHECKSUM`).
/// None if `out` is too short or the datagram would not fit UDP's 16-bit length.
pub fn emit_udp_vxlan(
    out: &mut [u8],
    src_port: u16,
    dst_port: u16,
    vni: u32,
    inner_len: usize,
) -> Option<()> {
    let udp_len = u16::try_from(OVERHEAD_AFTER_IP + inner_len).ok()?;
    let (udp, vxlan) = out
        .get_mut(..OVERHEAD_AFTER_IP)?
        .split_at_mut(UDP_HEADER_LEN);
    udp[0..2].copy_from_slice(&src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].fill(0);
    let mut packet = VxlanPacket::new_for_emit(vxlan).ok()?;
    VxlanRepr { vni }.emit(&mut packet);
    Some(())
}

/// A UDP source port for an inner frame, from its flow: its MACs and, for IPv4 and IPv6,
/// the bytes where the addresses and the first four bytes of the L4 header sit (without IP
/// options or extension headers: for frames with them this still reads bytes that stay the
/// same along the flow). Different flows spread over the underlay's ECMP paths and the
/// receiver's RSS queues; one flow keeps one port, so its frames stay in order. In the
/// dynamic range 49152-65535 that RFC 7348 recommends.
pub fn source_port(inner: &[u8]) -> u16 {
    const IPV4: [u8; 2] = [0x08, 0x00];
    const IPV6: [u8; 2] = [0x86, 0xdd];
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut mix = |bytes: &[u8]| {
        for &b in bytes {
            // FNV-1a: a byte at a time, a few cycles each; the inputs are short.
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    mix(inner.get(..12).unwrap_or(inner));
    let flow = match inner.get(12..14) {
        Some(t) if t == IPV4 => inner.get(26..38).or_else(|| inner.get(26..34)),
        Some(t) if t == IPV6 => inner.get(22..58).or_else(|| inner.get(22..54)),
        _ => None,
    };
    if let Some(flow) = flow {
        mix(flow);
    }
    let folded = (hash ^ (hash >> 32) ^ (hash >> 16)) as u16;
    0xc000 | (folded & 0x3fff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn header(flags: u8, vni: u32, tail: u8) -> [u8; 8] {
        let v = vni.to_be_bytes();
        [flags, 0, 0, 0, v[1], v[2], v[3], tail]
    }

    #[test]
    fn reads_vni_and_payload() {
        let mut bytes = header(FLAG_VNI, 0x12_3456, 0).to_vec();
        bytes.extend_from_slice(b"inner");
        let packet = VxlanPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.vni(), 0x12_3456);
        assert_eq!(packet.flags(), FLAG_VNI);
        assert_eq!(packet.payload(), b"inner");
        assert_eq!(VxlanRepr::parse(&packet), VxlanRepr { vni: 0x12_3456 });
    }

    #[test]
    fn short_header_is_truncated() {
        let bytes = header(FLAG_VNI, 1, 0);
        for len in 0..HEADER_LEN {
            assert_eq!(
                VxlanPacket::new_checked(&bytes[..len]).unwrap_err(),
                WireError::TruncatedHeader
            );
        }
        assert!(VxlanPacket::new_checked(&bytes[..]).is_ok());
    }

    #[test]
    fn wrong_flags_or_reserved_bits_are_malformed() {
        // I flag missing, a reserved flag beside I, the GBP flag, reserved bytes set.
        for bad in [
            header(0, 5, 0),
            header(FLAG_VNI | 0x01, 5, 0),
            header(0x88, 5, 0),
            header(FLAG_VNI, 5, 1),
        ] {
            assert_eq!(
                VxlanPacket::new_checked(&bad[..]).unwrap_err(),
                WireError::Malformed,
                "{bad:?}"
            );
        }
        let mut reserved = header(FLAG_VNI, 5, 0);
        reserved[2] = 0x40;
        assert_eq!(
            VxlanPacket::new_checked(&reserved[..]).unwrap_err(),
            WireError::Malformed
        );
    }

    #[test]
    fn emit_then_parse_round_trips_and_clears_reserved_bits() {
        let mut bytes = [0xffu8; HEADER_LEN];
        let mut packet = VxlanPacket::new_for_emit(&mut bytes[..]).unwrap();
        VxlanRepr { vni: 0x1ff_fffe }.emit(&mut packet);
        let parsed = VxlanPacket::new_checked(&bytes[..]).unwrap();
        // Bits above 24 do not fit the field and are dropped.
        assert_eq!(parsed.vni(), 0xff_fffe);
        assert_eq!(bytes, header(FLAG_VNI, 0xff_fffe, 0));
    }

    #[test]
    fn udp_and_vxlan_headers_read_back_with_etherparse() {
        let mut out = [0u8; OVERHEAD_AFTER_IP];
        emit_udp_vxlan(&mut out, 50000, DEFAULT_PORT, 42, 100).unwrap();
        let (udp, rest) = etherparse::UdpHeader::from_slice(&out).unwrap();
        assert_eq!(
            (
                udp.source_port,
                udp.destination_port,
                udp.length,
                udp.checksum
            ),
            (50000, 4789, 116, 0)
        );
        assert_eq!(VxlanPacket::new_checked(rest).unwrap().vni(), 42);
        assert!(emit_udp_vxlan(&mut out[..15], 1, 2, 3, 4).is_none());
        assert!(emit_udp_vxlan(&mut out, 1, 2, 3, 65_535).is_none());
    }

    fn udp_frame(src_port: u16) -> Vec<u8> {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(src_port, 53)
            .write(&mut frame, b"payload")
            .unwrap();
        frame
    }

    #[test]
    fn source_port_follows_the_flow_and_stays_in_the_dynamic_range() {
        let a = source_port(&udp_frame(1000));
        assert_eq!(a, source_port(&udp_frame(1000)), "one flow, one port");
        let ports: std::collections::BTreeSet<u16> =
            (0..64).map(|p| source_port(&udp_frame(1000 + p))).collect();
        assert!(ports.len() > 32, "flows spread: {}", ports.len());
        assert!(ports.iter().all(|&p| p >= 49152));
        // Any bytes at all, even none, give a port.
        assert!(source_port(&[]) >= 49152);
        assert!(source_port(&[1, 2, 3]) >= 49152);
    }

    proptest::proptest! {
        /// Any bytes at all: a view or an error, never a panic; a view only for the
        /// flags and reserved bits of plain VXLAN.
        #[test]
        fn any_bytes_parse_or_refuse(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            match VxlanPacket::new_checked(&bytes[..]) {
                Ok(packet) => {
                    proptest::prop_assert_eq!(packet.flags(), FLAG_VNI);
                    proptest::prop_assert!(packet.vni() <= VNI_MAX);
                    proptest::prop_assert_eq!(packet.payload().len(), bytes.len() - HEADER_LEN);
                }
                Err(e) => proptest::prop_assert!(
                    e == WireError::TruncatedHeader || e == WireError::Malformed
                ),
            }
            proptest::prop_assert!(source_port(&bytes) >= 49152);
        }
    }
}
