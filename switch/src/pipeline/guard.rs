//! RA guard and DHCP guard: the messages that make hosts take a router, a prefix or an
//! address are accepted only from ports trusted to send them, as Open vSwitch/OpenStack
//! port security and switch vendors' RA guard (RFC 6105) and DHCP snooping do.
//!
//! - **RA guard.** An IPv6 router advertisement (ICMPv6 134) or redirect (137) from a
//!   port not trusted for `ra` is dropped (`ra_guard`). A redirect is guarded too: it
//!   moves a host's traffic to another next hop just as an RA does. So is a first
//!   fragment whose ICMPv6 header is not in it (RFC 7113: an RA hidden behind extension
//!   headers must not slip through).
//! - **DHCP guard.** A DHCP server message (IPv4 UDP from port 67 or to port 68: offers,
//!   acks, and relay traffic) or DHCPv6 server or relay message (UDP from port 547 or to
//!   port 546: advertise, reply, reconfigure, relay-reply) from a port not trusted for
//!   `dhcp` is dropped (`dhcp_guard`). Matching the client's listening port as well as
//!   the server's source port catches a rogue server that answers from another port.
//! - **DHCP client check.** On a port with anti-spoofing, a DHCP client message (68→67)
//!   must name one of the port's MACs as its client hardware address (`chaddr`), else it
//!   is dropped (`dhcp_spoof`): a guest cannot take leases for other MACs and starve the
//!   pool. One whose `chaddr` cannot be read as a MAC is dropped as well.
//!
//! Every port is untrusted for both until root says otherwise (`trust` in the port's
//! config): the ports of the host's router or DHCP server are the exception.

use serde::{Deserialize, Serialize};

use super::antispoof::PortGuard;
use super::decision::DropReason;
use crate::packet::dhcp;
use crate::packet::l4::{icmpv6_type, protocol};
use crate::packet::{Fragment, FrameInfo, L3Info, L4Status};

/// What a port is trusted to send.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trusted {
    /// IPv6 router advertisements and redirects.
    Ra,
    /// DHCP and DHCPv6 server and relay messages.
    Dhcp,
}

impl Trusted {
    pub const ALL: [Trusted; 2] = [Trusted::Ra, Trusted::Dhcp];

    pub const fn as_str(self) -> &'static str {
        match self {
            Trusted::Ra => "ra",
            Trusted::Dhcp => "dhcp",
        }
    }
}

impl std::str::FromStr for Trusted {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Trusted::ALL
            .into_iter()
            .find(|t| t.as_str() == text)
            .ok_or_else(|| format!("unknown trust {text:?}: expected ra or dhcp"))
    }
}

/// A port's trust, as the pipeline reads it.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Trust {
    pub ra: bool,
    pub dhcp: bool,
}

impl Trust {
    pub fn of(trusted: &[Trusted]) -> Trust {
        Trust {
            ra: trusted.contains(&Trusted::Ra),
            dhcp: trusted.contains(&Trusted::Dhcp),
        }
    }
}

/// Whether a frame from a port with `trust` and anti-spoofing `antispoof` passes the RA
/// and DHCP guards. `frame` is the frame `info` was parsed from (the DHCP client check
/// reads its `chaddr`).
#[inline]
pub fn check_from_port(
    trust: Trust,
    antispoof: Option<&PortGuard>,
    info: &FrameInfo,
    frame: &[u8],
) -> Result<(), DropReason> {
    let (ip, v6) = match &info.l3 {
        L3Info::Ipv4(ip) => (ip, false),
        L3Info::Ipv6(ip) => (ip, true),
        _ => return Ok(()),
    };
    match ip.proto {
        protocol::ICMPV6 if v6 && !trust.ra => {
            let routing = matches!(
                ip.icmp_type,
                Some(icmpv6_type::ROUTER_ADVERT | icmpv6_type::REDIRECT)
            );
            let hidden = ip.l4 == L4Status::Missing && ip.fragment == Fragment::First;
            if routing || hidden {
                return Err(DropReason::RaGuard);
            }
        }
        protocol::UDP if ip.l4 == L4Status::Read => {
            let (server, client) = if v6 {
                (dhcp::V6_SERVER_PORT, dhcp::V6_CLIENT_PORT)
            } else {
                (dhcp::SERVER_PORT, dhcp::CLIENT_PORT)
            };
            if !trust.dhcp && (ip.sport == server || ip.dport == client) {
                return Err(DropReason::DhcpGuard);
            }
            if let (Some(guard), false) = (antispoof, v6) {
                if ip.sport == dhcp::CLIENT_PORT && ip.dport == dhcp::SERVER_PORT {
                    return check_client(guard, info, frame);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// A DHCP client message must be for one of the port's own MACs.
fn check_client(guard: &PortGuard, info: &FrameInfo, frame: &[u8]) -> Result<(), DropReason> {
    match dhcp::in_ipv4_frame(frame, info.l2_len) {
        Ok(message) if guard.macs.contains(&message.client_mac()) => Ok(()),
        _ => Err(DropReason::DhcpSpoof),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{parse_frame, MacAddr};
    use etherparse::PacketBuilder;

    const GUEST: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
    const LINK_LOCAL: [u8; 16] = [
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0, 0xff, 0xfe, 0, 0, 1,
    ];
    const ALL_NODES: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

    fn icmpv6(kind: u8) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(GUEST, [0x33, 0x33, 0, 0, 0, 1])
            .ipv6(LINK_LOCAL, ALL_NODES, 255)
            .icmpv6(etherparse::Icmpv6Type::Unknown {
                type_u8: kind,
                code_u8: 0,
                bytes5to8: [0; 4],
            })
            .write(&mut out, &[0; 16])
            .expect("build");
        out
    }

    fn udp4(sport: u16, dport: u16, chaddr: [u8; 6]) -> Vec<u8> {
        let mut bootp = vec![0u8; 240];
        bootp[0] = 1;
        bootp[1] = 1;
        bootp[2] = 6;
        bootp[28..34].copy_from_slice(&chaddr);
        let mut out = Vec::new();
        PacketBuilder::ethernet2(GUEST, [0xff; 6])
            .ipv4([0, 0, 0, 0], [255; 4], 64)
            .udp(sport, dport)
            .write(&mut out, &bootp)
            .expect("build");
        out
    }

    fn udp6(sport: u16, dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(GUEST, [0x33, 0x33, 0, 1, 0, 2])
            .ipv6(LINK_LOCAL, ALL_NODES, 64)
            .udp(sport, dport)
            .write(&mut out, &[2; 40])
            .expect("build");
        out
    }

    fn judge(trust: Trust, guard: Option<&PortGuard>, frame: &[u8]) -> Result<(), DropReason> {
        let info = parse_frame(frame).expect("frame");
        check_from_port(trust, guard, &info, frame)
    }

    const UNTRUSTED: Trust = Trust {
        ra: false,
        dhcp: false,
    };
    const TRUSTED: Trust = Trust {
        ra: true,
        dhcp: true,
    };

    #[test]
    fn router_advertisements_and_redirects_need_ra_trust() {
        for kind in [icmpv6_type::ROUTER_ADVERT, icmpv6_type::REDIRECT] {
            assert_eq!(
                judge(UNTRUSTED, None, &icmpv6(kind)),
                Err(DropReason::RaGuard)
            );
            assert_eq!(judge(TRUSTED, None, &icmpv6(kind)), Ok(()));
        }
        for kind in [
            icmpv6_type::ROUTER_SOLICIT,
            icmpv6_type::NEIGHBOR_SOLICIT,
            128,
        ] {
            assert_eq!(judge(UNTRUSTED, None, &icmpv6(kind)), Ok(()));
        }
    }

    #[test]
    fn dhcp_server_messages_need_dhcp_trust() {
        for frame in [
            udp4(67, 68, GUEST),
            udp4(67, 67, GUEST),
            udp4(4000, 68, GUEST),
            udp6(547, 546),
            udp6(547, 547),
            udp6(4000, 546),
        ] {
            assert_eq!(judge(UNTRUSTED, None, &frame), Err(DropReason::DhcpGuard));
            assert_eq!(judge(TRUSTED, None, &frame), Ok(()));
        }
        // Clients are not servers.
        assert_eq!(judge(UNTRUSTED, None, &udp4(68, 67, [9; 6])), Ok(()));
        assert_eq!(judge(UNTRUSTED, None, &udp6(546, 547)), Ok(()));
        assert_eq!(judge(UNTRUSTED, None, &udp4(5353, 5353, GUEST)), Ok(()));
    }

    #[test]
    fn a_guarded_port_takes_leases_only_for_its_own_macs() {
        let guard = PortGuard {
            macs: vec![MacAddr(GUEST)],
            ..PortGuard::default()
        };
        assert_eq!(judge(UNTRUSTED, Some(&guard), &udp4(68, 67, GUEST)), Ok(()));
        assert_eq!(
            judge(UNTRUSTED, Some(&guard), &udp4(68, 67, [2, 9, 9, 9, 9, 9])),
            Err(DropReason::DhcpSpoof)
        );
        // Trust for dhcp is about serving, not about whose leases a client may take.
        assert_eq!(
            judge(TRUSTED, Some(&guard), &udp4(68, 67, [2, 9, 9, 9, 9, 9])),
            Err(DropReason::DhcpSpoof)
        );
        let mut not_ethernet = udp4(68, 67, GUEST);
        not_ethernet[14 + 20 + 8 + 1] = 6;
        assert_eq!(
            judge(UNTRUSTED, Some(&guard), &not_ethernet),
            Err(DropReason::DhcpSpoof)
        );
        // Cut inside chaddr (IP and UDP lengths say so): unreadable, so refused.
        let mut short = udp4(68, 67, GUEST);
        let cut = 14 + 20 + 8 + 30;
        short.truncate(cut);
        short[16..18].copy_from_slice(&((cut - 14) as u16).to_be_bytes());
        short[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&38u16.to_be_bytes());
        assert_eq!(
            judge(UNTRUSTED, Some(&guard), &short),
            Err(DropReason::DhcpSpoof)
        );
    }
}
