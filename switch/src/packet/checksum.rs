//! Finishing TCP and UDP checksums that a sender left to checksum offload.
//!
//! A host on a veth or a guest behind a tap hands the kernel TCP and UDP packets
//! whose checksum field holds only the folded sum of the pseudo-header: the kernel
//! (CHECKSUM_PARTIAL) or the NIC would finish it on the way out. Neither AF_XDP nor
//! an XDP redirect carries the kernel's note that the work is pending, so a frame
//! xsw forwards as it came would reach its receiver with a wrong checksum and be
//! dropped there: TCP would not connect at the hosts' default offloads.
//!
//! The rule: a checksum that verifies is left alone; one that does not verify but
//! whose field equals the folded pseudo-header sum is a partial one and is
//! finished; any other is the hosts' business and is left as it is (the receiver
//! drops it, as it would behind a bridge). One pass over the segment.

use super::ipv4::{self, Fragment, Ipv4Packet};
use super::ipv6::{self, Ipv6Packet};
use super::l4::{self, protocol};

const ETHERTYPE_IPV4: u16 = ipv4::ETHERTYPE;
const ETHERTYPE_IPV6: u16 = ipv6::ETHERTYPE;

/// What [`finish_partial`] did to a frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ChecksumFix {
    /// Not an unfragmented TCP or UDP packet carrying a checksum.
    NotApplicable,
    /// The checksum verified; nothing written.
    AlreadyValid,
    /// A partial checksum was finished in place.
    Finished,
    /// Neither valid nor partial: left as it was.
    Invalid,
}

/// Finishes the TCP/UDP checksum of `frame` if the sender left it partial. `l2_len`
/// is where the IP header starts (after any VLAN tags) and `ethertype` the EtherType
/// after the tags. Never panics; reads and writes only inside `frame`.
pub fn finish_partial(frame: &mut [u8], l2_len: usize, ethertype: u16) -> ChecksumFix {
    let Some(ip) = frame.get(l2_len..) else {
        return ChecksumFix::NotApplicable;
    };
    let (pseudo, l4_start, l4_end, proto) = match ethertype {
        ETHERTYPE_IPV4 => {
            let Ok(packet) = Ipv4Packet::new_checked(ip) else {
                return ChecksumFix::NotApplicable;
            };
            if packet.fragment() != Fragment::Whole {
                return ChecksumFix::NotApplicable;
            }
            let l4_len = usize::from(packet.total_len()) - packet.header_len();
            let mut pseudo = sum_bytes(&packet.src_addr().octets(), 0);
            pseudo = sum_bytes(&packet.dst_addr().octets(), pseudo);
            pseudo += u64::from(packet.protocol()) + l4_len as u64;
            let start = l2_len + packet.header_len();
            (pseudo, start, start + l4_len, packet.protocol())
        }
        ETHERTYPE_IPV6 => {
            let Ok(packet) = Ipv6Packet::new_checked(ip) else {
                return ChecksumFix::NotApplicable;
            };
            let Ok(upper) = packet.upper_layer() else {
                return ChecksumFix::NotApplicable;
            };
            if upper.fragment != Fragment::Whole {
                return ChecksumFix::NotApplicable;
            }
            let l4_len = packet.payload().len().saturating_sub(upper.offset);
            let mut pseudo = sum_bytes(&packet.src_addr().octets(), 0);
            pseudo = sum_bytes(&packet.dst_addr().octets(), pseudo);
            pseudo += u64::from(upper.protocol) + l4_len as u64;
            let start = l2_len + ipv6::HEADER_LEN + upper.offset;
            (pseudo, start, start + l4_len, upper.protocol)
        }
        _ => return ChecksumFix::NotApplicable,
    };
    let (field_at, min_len) = match proto {
        protocol::TCP => (l4::field::TCP_CHECKSUM.start, l4::field::TCP_MIN_HEADER_LEN),
        protocol::UDP => (l4::field::UDP_CHECKSUM.start, l4::field::UDP_HEADER_LEN),
        _ => return ChecksumFix::NotApplicable,
    };
    let Some(segment) = frame.get_mut(l4_start..l4_end) else {
        return ChecksumFix::NotApplicable;
    };
    if segment.len() < min_len {
        return ChecksumFix::NotApplicable;
    }
    let field = u16::from_be_bytes([segment[field_at], segment[field_at + 1]]);
    if proto == protocol::UDP && field == 0 && ethertype == ETHERTYPE_IPV4 {
        // UDP over IPv4 without a checksum.
        return ChecksumFix::NotApplicable;
    }
    let total = sum_bytes(segment, pseudo);
    if fold(total) == 0xffff {
        return ChecksumFix::AlreadyValid;
    }
    if field != fold(pseudo) {
        return ChecksumFix::Invalid;
    }
    // The sum without the field: adding its one's complement subtracts it.
    let mut checksum = !fold(total + u64::from(!field));
    if proto == protocol::UDP && checksum == 0 {
        // 0 means "no checksum" in UDP; its one's-complement twin is sent instead.
        checksum = 0xffff;
    }
    segment[field_at..field_at + 2].copy_from_slice(&checksum.to_be_bytes());
    ChecksumFix::Finished
}

/// Adds `bytes` as big-endian 16-bit words (an odd last byte padded with zero) to
/// `sum`, one's-complement style: carries are kept in the upper bits and folded at
/// the end by [`fold`]. A u64 cannot overflow for any frame (2^48 words).
fn sum_bytes(bytes: &[u8], mut sum: u64) -> u64 {
    let mut words = bytes.chunks_exact(2);
    for word in &mut words {
        sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a wide one's-complement sum into 16 bits.
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    /// A frame built by etherparse (checksums correct), and the offset of its L4 checksum.
    fn frame(ipv6: bool, tcp: bool, payload: &[u8]) -> (Vec<u8>, usize) {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let builder = if ipv6 {
            builder.ipv6([0xfd; 16], [0xfe; 16], 64)
        } else {
            builder.ipv4([10, 77, 0, 1], [10, 77, 0, 2], 64)
        };
        let ip_len = if ipv6 { 40 } else { 20 };
        let mut bytes = Vec::new();
        if tcp {
            let b = builder.tcp(40000, 80, 7, 64240);
            b.write(&mut bytes, payload).expect("tcp frame");
            (bytes, 14 + ip_len + 16)
        } else {
            let b = builder.udp(40000, 53);
            b.write(&mut bytes, payload).expect("udp frame");
            (bytes, 14 + ip_len + 6)
        }
    }

    /// What a sender using checksum offload puts in the field: the folded pseudo-header.
    fn make_partial(bytes: &mut [u8], at: usize, ipv6: bool) {
        let l4_start = if ipv6 { 54 } else { 34 };
        let l4_len = bytes.len() - l4_start;
        let (src, dst, proto) = if ipv6 {
            (&bytes[22..38], &bytes[38..54], bytes[20])
        } else {
            (&bytes[26..30], &bytes[30..34], bytes[23])
        };
        let pseudo = sum_bytes(dst, sum_bytes(src, 0)) + u64::from(proto) + l4_len as u64;
        bytes[at..at + 2].copy_from_slice(&fold(pseudo).to_be_bytes());
    }

    proptest! {
        #[test]
        fn a_partial_checksum_is_finished_to_the_correct_one(
            ipv6: bool, tcp: bool, payload in prop::collection::vec(any::<u8>(), 0..1500)
        ) {
            let (correct, at) = frame(ipv6, tcp, &payload);
            let mut partial = correct.clone();
            make_partial(&mut partial, at, ipv6);
            let expected = if partial == correct { ChecksumFix::AlreadyValid } else { ChecksumFix::Finished };
            let ethertype = if ipv6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
            prop_assert_eq!(finish_partial(&mut partial, 14, ethertype), expected);
            prop_assert_eq!(partial, correct);
        }

        #[test]
        fn a_valid_checksum_is_left_alone(
            ipv6: bool, tcp: bool, payload in prop::collection::vec(any::<u8>(), 0..1500)
        ) {
            let (correct, _) = frame(ipv6, tcp, &payload);
            let mut bytes = correct.clone();
            let ethertype = if ipv6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
            prop_assert_eq!(finish_partial(&mut bytes, 14, ethertype), ChecksumFix::AlreadyValid);
            prop_assert_eq!(bytes, correct);
        }

        #[test]
        fn any_bytes_never_panic_and_stay_in_bounds(
            bytes in prop::collection::vec(any::<u8>(), 0..200), l2_len in 0usize..40, v6: bool
        ) {
            let mut copy = bytes.clone();
            let ethertype = if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
            let _ = finish_partial(&mut copy, l2_len, ethertype);
            prop_assert_eq!(copy.len(), bytes.len());
        }
    }

    #[test]
    fn a_wrong_checksum_that_is_not_partial_is_left_alone() {
        let (mut bytes, at) = frame(false, true, b"hello");
        bytes[at] ^= 0x55;
        let before = bytes.clone();
        assert_eq!(
            finish_partial(&mut bytes, 14, ETHERTYPE_IPV4),
            ChecksumFix::Invalid
        );
        assert_eq!(bytes, before);
    }

    #[test]
    fn ipv4_udp_without_checksum_is_not_touched() {
        let (mut bytes, at) = frame(false, false, b"hello");
        bytes[at] = 0;
        bytes[at + 1] = 0;
        assert_eq!(
            finish_partial(&mut bytes, 14, ETHERTYPE_IPV4),
            ChecksumFix::NotApplicable
        );
    }
}
