//! The frame `xswctl trace` asks about, built from the fields an operator
//! types (unspecified ones get defaults) or taken as hex bytes. Every field
//! is checked, and contradictory ones are refused, before anything is traced.

use std::net::IpAddr;

use etherparse::{IpNumber, PacketBuilder, PacketBuilderStep};
use serde::{Deserialize, Serialize};

use crate::packet::l4::{protocol as proto, tcp_flags as tcp_flag};
use crate::packet::{MacAddr, MacParseError};
use crate::pipeline::acl::rule::parse_proto;

/// A frame to trace through the pipeline, as typed: every field a string or
/// number the daemon checks, so a script sending the request gets the same
/// errors as xswctl. The same struct is xswctl's `trace` arguments and the
/// request's fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct TraceArgs {
    /// The port the frame enters on.
    pub port: String,
    /// Source MAC (default 02:00:00:00:00:01).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_mac: Option<String>,
    /// Destination MAC (default ff:ff:ff:ff:ff:ff).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_mac: Option<String>,
    /// An 802.1Q tag with this VID (1-4094), as a trunk receives it.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// A non-IP frame of this EtherType (e.g. 0x88b5), zero payload.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethertype: Option<String>,
    /// IPv4 or IPv6 source (default 192.0.2.1 or 2001:db8::1).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<String>,
    /// IPv4 or IPv6 destination (default 192.0.2.2 or 2001:db8::2).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ip: Option<String>,
    /// tcp, udp, icmp, icmpv6, or a protocol number (default udp).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    /// TCP or UDP source port (default 49152).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    /// TCP or UDP destination port (default 9).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// TCP flags, comma-separated: syn, ack, fin, rst, psh, urg, ece, cwr (default syn).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<String>,
    /// ICMP or ICMPv6 type (default: echo request, 8 or 128).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// The whole frame as hex bytes (spaces and colons allowed), instead of fields.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
}

/// Why a trace's frame cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceFrameError {
    #[error("--hex gives the whole frame: leave out {0}")]
    HexWithFields(String),
    #[error("--hex: {0}")]
    BadHex(String),
    #[error("--hex: a frame has {MIN_FRAME}-{MAX_FRAME} bytes, not {0}")]
    HexLength(usize),
    #[error("--{field}: {source}")]
    Mac {
        field: &'static str,
        source: MacParseError,
    },
    #[error("--vlan {0}: a VID is 1-4094")]
    Vlan(u16),
    #[error("--ethertype {0:?}: give a number such as 0x88b5")]
    EtherType(String),
    #[error("--ethertype {0:#06x}: {1}")]
    EtherTypeTaken(u16, &'static str),
    #[error("--ethertype builds a non-IP frame: leave out {0}")]
    EtherTypeWithIp(String),
    #[error("--{field} {input:?}: not an IPv4 or IPv6 address")]
    Address { field: &'static str, input: String },
    #[error("--src-ip is {0} and --dst-ip is {1}: give two addresses of one family")]
    MixedFamilies(&'static str, &'static str),
    #[error("--proto: {0}")]
    Protocol(String),
    #[error("--proto {0} is IPv4's ICMP: use icmpv6 for IPv6 addresses")]
    IcmpFamily(&'static str),
    #[error("{0} needs --proto tcp or udp")]
    PortsWithoutL4(&'static str),
    #[error("--tcp-flags needs --proto tcp")]
    FlagsWithoutTcp,
    #[error("--tcp-flags: unknown flag {0:?} (syn, ack, fin, rst, psh, urg, ece, cwr)")]
    Flag(String),
    #[error("--icmp-type needs --proto icmp or icmpv6")]
    IcmpTypeWithoutIcmp,
    #[error("cannot build the frame: {0}")]
    Build(String),
}

const MIN_FRAME: usize = 14;
const MAX_FRAME: usize = 9216;
/// Short frames are padded to Ethernet's minimum (without the FCS), as a sender would.
const MIN_PADDED: usize = 60;

const DEFAULT_SRC_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const DEFAULT_SPORT: u16 = 49152;
/// The discard service: a harmless destination.
const DEFAULT_DPORT: u16 = 9;

/// The frame `args` describes, or why it cannot be built.
pub fn build(args: &TraceArgs) -> Result<Vec<u8>, TraceFrameError> {
    if let Some(hex) = &args.hex {
        let fields = given(args, &FIELD_NAMES);
        if !fields.is_empty() {
            return Err(TraceFrameError::HexWithFields(fields.join(", ")));
        }
        return parse_hex(hex);
    }
    let mac = |field: &'static str, text: &Option<String>, default: MacAddr| {
        text.as_deref().map_or(Ok(default), |t| {
            t.parse()
                .map_err(|source| TraceFrameError::Mac { field, source })
        })
    };
    let src_mac = mac("src-mac", &args.src_mac, DEFAULT_SRC_MAC)?;
    let dst_mac = mac("dst-mac", &args.dst_mac, MacAddr::BROADCAST)?;
    if let Some(vid) = args.vlan {
        if !(1..=4094).contains(&vid) {
            return Err(TraceFrameError::Vlan(vid));
        }
    }
    let (ethertype, payload) = match &args.ethertype {
        Some(text) => {
            let ip_fields = given(args, &IP_FIELD_NAMES);
            if !ip_fields.is_empty() {
                return Err(TraceFrameError::EtherTypeWithIp(ip_fields.join(", ")));
            }
            (parse_ethertype(text)?, Vec::new())
        }
        None => ip_packet(args)?,
    };
    let mut frame = Vec::with_capacity(MIN_PADDED + payload.len());
    frame.extend_from_slice(&dst_mac.0);
    frame.extend_from_slice(&src_mac.0);
    if let Some(vid) = args.vlan {
        frame.extend_from_slice(&0x8100u16.to_be_bytes());
        frame.extend_from_slice(&vid.to_be_bytes());
    }
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(&payload);
    if frame.len() < MIN_PADDED {
        frame.resize(MIN_PADDED, 0);
    }
    Ok(frame)
}

/// Every field besides `port` and `hex`, by its option name.
const FIELD_NAMES: [&str; 11] = [
    "--src-mac",
    "--dst-mac",
    "--vlan",
    "--ethertype",
    "--src-ip",
    "--dst-ip",
    "--proto",
    "--sport",
    "--dport",
    "--tcp-flags",
    "--icmp-type",
];
/// The fields that make an IP packet.
const IP_FIELD_NAMES: [&str; 7] = [
    "--src-ip",
    "--dst-ip",
    "--proto",
    "--sport",
    "--dport",
    "--tcp-flags",
    "--icmp-type",
];

/// Those of `names` that `args` sets.
fn given(args: &TraceArgs, names: &[&'static str]) -> Vec<&'static str> {
    let set = [
        args.src_mac.is_some(),
        args.dst_mac.is_some(),
        args.vlan.is_some(),
        args.ethertype.is_some(),
        args.src_ip.is_some(),
        args.dst_ip.is_some(),
        args.proto.is_some(),
        args.sport.is_some(),
        args.dport.is_some(),
        args.tcp_flags.is_some(),
        args.icmp_type.is_some(),
    ];
    FIELD_NAMES
        .iter()
        .zip(set)
        .filter(|(name, set)| *set && names.contains(name))
        .map(|(name, _)| *name)
        .collect()
}

fn parse_hex(text: &str) -> Result<Vec<u8>, TraceFrameError> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b':')
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err(TraceFrameError::BadHex(
            "an odd number of hex digits".into(),
        ));
    }
    let nibble = |b: u8| {
        (b as char)
            .to_digit(16)
            .ok_or_else(|| TraceFrameError::BadHex(format!("{:?} is not a hex digit", b as char)))
    };
    let bytes = digits
        .chunks(2)
        .map(|pair| Ok((nibble(pair[0])? * 16 + nibble(pair[1])?) as u8))
        .collect::<Result<Vec<u8>, TraceFrameError>>()?;
    if !(MIN_FRAME..=MAX_FRAME).contains(&bytes.len()) {
        return Err(TraceFrameError::HexLength(bytes.len()));
    }
    Ok(bytes)
}

fn parse_ethertype(text: &str) -> Result<u16, TraceFrameError> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => text.parse(),
    };
    let value = parsed.map_err(|_| TraceFrameError::EtherType(text.to_string()))?;
    let taken = match value {
        0..=0x05ff => Some("below 0x0600 the field is a length, not an EtherType"),
        0x8100 | 0x88a8 => Some("a VLAN tag: use --vlan"),
        0x0800 | 0x86dd => Some("IP frames are built from --src-ip, --dst-ip and --proto"),
        _ => None,
    };
    match taken {
        Some(why) => Err(TraceFrameError::EtherTypeTaken(value, why)),
        None => Ok(value),
    }
}

fn address(field: &'static str, text: &Option<String>) -> Result<Option<IpAddr>, TraceFrameError> {
    text.as_deref()
        .map(|t| {
            t.parse().map_err(|_| TraceFrameError::Address {
                field,
                input: t.to_string(),
            })
        })
        .transpose()
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// The EtherType and bytes of the IP packet `args` describes.
fn ip_packet(args: &TraceArgs) -> Result<(u16, Vec<u8>), TraceFrameError> {
    let protocol = match &args.proto {
        Some(text) => parse_proto(text).map_err(|e| TraceFrameError::Protocol(e.to_string()))?,
        None => proto::UDP,
    };
    let src = address("src-ip", &args.src_ip)?;
    let dst = address("dst-ip", &args.dst_ip)?;
    let v6 = match (src, dst) {
        (Some(a), Some(b)) if a.is_ipv4() != b.is_ipv4() => {
            return Err(TraceFrameError::MixedFamilies(family(a), family(b)))
        }
        (Some(a), _) | (None, Some(a)) => a.is_ipv6(),
        (None, None) => protocol == proto::ICMPV6,
    };
    if protocol == proto::ICMP && v6 {
        return Err(TraceFrameError::IcmpFamily("icmp"));
    }
    // UDP is only the default: ports without a protocol say nothing of which.
    let l4_ports = args.proto.is_some() && (protocol == proto::TCP || protocol == proto::UDP);
    for (set, name) in [(args.sport, "--sport"), (args.dport, "--dport")] {
        if set.is_some() && !l4_ports {
            return Err(TraceFrameError::PortsWithoutL4(name));
        }
    }
    if args.tcp_flags.is_some() && protocol != proto::TCP {
        return Err(TraceFrameError::FlagsWithoutTcp);
    }
    let icmp = protocol == proto::ICMP || protocol == proto::ICMPV6;
    if args.icmp_type.is_some() && !icmp {
        return Err(TraceFrameError::IcmpTypeWithoutIcmp);
    }
    let flags = match &args.tcp_flags {
        Some(text) => parse_flags(text)?,
        None => tcp_flag::SYN,
    };
    let builder = match (src, dst, v6) {
        (src, dst, false) => {
            let v4 = |ip: Option<IpAddr>, default: [u8; 4]| match ip {
                Some(IpAddr::V4(ip)) => ip.octets(),
                _ => default,
            };
            PacketBuilder::ipv4(v4(src, [192, 0, 2, 1]), v4(dst, [192, 0, 2, 2]), 64)
        }
        (src, dst, true) => {
            let host = |last: u8| {
                let mut ip = [0u8; 16];
                ip[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
                ip[15] = last;
                ip
            };
            let v6 = |ip: Option<IpAddr>, default: [u8; 16]| match ip {
                Some(IpAddr::V6(ip)) => ip.octets(),
                _ => default,
            };
            PacketBuilder::ipv6(v6(src, host(1)), v6(dst, host(2)), 64)
        }
    };
    let mut out = Vec::new();
    let sport = args.sport.unwrap_or(DEFAULT_SPORT);
    let dport = args.dport.unwrap_or(DEFAULT_DPORT);
    let written = match protocol {
        proto::UDP => builder.udp(sport, dport).write(&mut out, &[]),
        proto::TCP => with_flags(builder.tcp(sport, dport, 1, 64240), flags).write(&mut out, &[]),
        proto::ICMP => builder
            .icmpv4_raw(args.icmp_type.unwrap_or(8), 0, [0; 4])
            .write(&mut out, &[]),
        proto::ICMPV6 => builder
            .icmpv6_raw(args.icmp_type.unwrap_or(128), 0, [0; 4])
            .write(&mut out, &[]),
        other => builder.write(&mut out, IpNumber(other), &[]),
    };
    written.map_err(|e| TraceFrameError::Build(e.to_string()))?;
    Ok((if v6 { 0x86dd } else { 0x0800 }, out))
}

fn parse_flags(text: &str) -> Result<u8, TraceFrameError> {
    text.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .try_fold(0u8, |flags, name| {
            let flag = match name.to_ascii_lowercase().as_str() {
                "fin" => tcp_flag::FIN,
                "syn" => tcp_flag::SYN,
                "rst" => tcp_flag::RST,
                "psh" => tcp_flag::PSH,
                "ack" => tcp_flag::ACK,
                "urg" => tcp_flag::URG,
                "ece" => tcp_flag::ECE,
                "cwr" => tcp_flag::CWR,
                _ => return Err(TraceFrameError::Flag(name.to_string())),
            };
            Ok(flags | flag)
        })
}

/// The builder's step that takes TCP flags.
type TcpStep = PacketBuilderStep<etherparse::TcpHeader>;

fn with_flags(mut step: TcpStep, flags: u8) -> TcpStep {
    for bit in 0..8 {
        let flag = 1u8 << bit;
        if flags & flag == 0 {
            continue;
        }
        step = match flag {
            tcp_flag::FIN => step.fin(),
            tcp_flag::SYN => step.syn(),
            tcp_flag::RST => step.rst(),
            tcp_flag::PSH => step.psh(),
            tcp_flag::ACK => step.ack(1),
            tcp_flag::URG => step.urg(0),
            tcp_flag::ECE => step.ece(),
            _ => step.cwr(),
        };
    }
    step
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{parse_frame, L3Info};

    fn args() -> TraceArgs {
        TraceArgs {
            port: "vm1".into(),
            ..TraceArgs::default()
        }
    }

    #[test]
    fn fields_build_the_frame_the_parser_reads_back() {
        let frame = build(&TraceArgs {
            src_mac: Some("52:54:00:00:00:01".into()),
            dst_mac: Some("52:54:00:00:00:02".into()),
            vlan: Some(100),
            src_ip: Some("10.0.0.1".into()),
            dst_ip: Some("10.0.0.2".into()),
            proto: Some("tcp".into()),
            dport: Some(443),
            tcp_flags: Some("syn,ack".into()),
            ..args()
        })
        .unwrap();
        let info = parse_frame(&frame).unwrap();
        assert_eq!(info.vlan, Some(100));
        assert_eq!(info.src_mac.to_string(), "52:54:00:00:00:01");
        let L3Info::Ipv4(ip) = info.l3 else {
            panic!("not IPv4: {:?}", info.l3)
        };
        assert_eq!((ip.proto, ip.sport, ip.dport), (6, DEFAULT_SPORT, 443));
        assert_eq!(ip.tcp_flags, tcp_flag::SYN | tcp_flag::ACK);
        assert_eq!(ip.dst.to_string(), "10.0.0.2");

        let v6 = build(&TraceArgs {
            dst_ip: Some("2001:db8::9".into()),
            proto: Some("icmpv6".into()),
            ..args()
        })
        .unwrap();
        let L3Info::Ipv6(ip) = parse_frame(&v6).unwrap().l3 else {
            panic!("not IPv6")
        };
        assert_eq!((ip.proto, ip.icmp_type), (58, Some(128)));
        assert_eq!(ip.src.to_string(), "2001:db8::1");
    }

    #[test]
    fn contradictory_fields_are_refused_by_name() {
        let refused = |a: TraceArgs| build(&a).unwrap_err().to_string();
        assert!(refused(TraceArgs {
            sport: Some(1),
            proto: Some("icmp".into()),
            ..args()
        })
        .contains("--sport needs --proto tcp or udp"));
        assert!(refused(TraceArgs {
            dport: Some(53),
            ..args()
        })
        .contains("--dport needs --proto tcp or udp"));
        assert!(refused(TraceArgs {
            src_ip: Some("10.0.0.1".into()),
            dst_ip: Some("fd00::1".into()),
            ..args()
        })
        .contains("two addresses of one family"));
        assert!(refused(TraceArgs {
            hex: Some("ffffffffffff".into()),
            vlan: Some(5),
            ..args()
        })
        .contains("leave out --vlan"));
        assert!(refused(TraceArgs {
            ethertype: Some("0x88b5".into()),
            dport: Some(53),
            ..args()
        })
        .contains("leave out --dport"));
        assert!(refused(TraceArgs {
            hex: Some("zz".into()),
            ..args()
        })
        .contains("not a hex digit"));
        assert!(refused(TraceArgs {
            hex: Some("ffff".into()),
            ..args()
        })
        .contains("not 2"));
        assert!(refused(TraceArgs {
            vlan: Some(4095),
            ..args()
        })
        .contains("1-4094"));
        assert!(refused(TraceArgs {
            tcp_flags: Some("syn".into()),
            ..args()
        })
        .contains("needs --proto tcp"));
        assert!(refused(TraceArgs {
            proto: Some("icmp".into()),
            dst_ip: Some("fd00::1".into()),
            ..args()
        })
        .contains("icmpv6"));
    }

    #[test]
    fn hex_and_ethertype_frames() {
        let frame = build(&TraceArgs {
            hex: Some("ff:ff:ff:ff:ff:ff 02 00 00 00 00 01 88b5".into()),
            ..args()
        })
        .unwrap();
        assert_eq!(frame.len(), 14);
        let frame = build(&TraceArgs {
            ethertype: Some("0x88b5".into()),
            ..args()
        })
        .unwrap();
        assert_eq!((frame.len(), &frame[12..14]), (60, &[0x88, 0xb5][..]));
    }
}
