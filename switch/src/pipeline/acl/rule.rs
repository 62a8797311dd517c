//! One ACL rule: what it matches, how it is written, and how it is checked.
//!
//! [`AclRule::matches`] is the specification of matching; the [`Classifier`] must agree
//! with a linear scan of it on every key, and the tests hold it to that.
//!
//! [`Classifier`]: super::Classifier

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// IP protocol numbers the rule syntax knows by name.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;

/// TCP flag bits, as in the flags byte of the TCP header.
pub const TCP_FLAG_RST: u8 = 0x04;
pub const TCP_FLAG_ACK: u8 = 0x10;

const PROTOCOL_NAMES: [(&str, u8); 5] = [
    ("tcp", PROTO_TCP),
    ("udp", PROTO_UDP),
    ("icmp", PROTO_ICMP),
    ("icmpv6", PROTO_ICMPV6),
    ("sctp", PROTO_SCTP),
];

/// Everything that can be wrong with an ACL rule or with the text it was written in.
///
/// Each message names the offending input and says what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("'{input}' is not an IP prefix: write an address with an optional length, e.g. 198.18.0.0/24, fd00::/64 or 198.18.0.7")]
    MalformedPrefix { input: String },
    #[error("{input} has host bits set: did you mean {network}?")]
    HostBitsSet { input: String, network: IpNet },
    #[error("'{input}' is not a port or port range: write a port (22) or an inclusive range (1000-2000), each 0-65535")]
    MalformedPortRange { input: String },
    #[error("port range {first}-{last} is upside down: write {last}-{first}")]
    UpsideDownPortRange { first: u16, last: u16 },
    #[error("'{input}' is not a protocol: write tcp, udp, icmp, icmpv6, sctp or a number 0-255")]
    UnknownProtocol { input: String },
    #[error("'{input}' is not an ICMP type: write a number 0-255")]
    MalformedIcmpType { input: String },
    #[error("'{input}' is not an action: write allow or deny")]
    UnknownAction { input: String },
    #[error("--src {src} and --dst {dst} are of different IP families: a rule matches IPv4 or IPv6, so write one rule per family")]
    FamilyMismatch { src: IpNet, dst: IpNet },
    #[error("{option} needs --proto tcp, udp or sctp, but the rule has {}", describe_proto(*.proto))]
    PortsNeedTransport {
        option: &'static str,
        proto: Option<u8>,
    },
    #[error("--icmp-type needs --proto icmp or icmpv6, but the rule has {}", describe_proto(*.proto))]
    IcmpTypeNeedsIcmp { proto: Option<u8> },
    #[error("{}", icmp_family_message(*.proto, .prefix))]
    IcmpFamilyMismatch { proto: u8, prefix: IpNet },
    #[error("--established matches TCP only, but the rule has --proto {}: {}", proto_name(*.proto), "write --proto tcp or leave --proto out (--established implies tcp)")]
    EstablishedNeedsTcp { proto: u8 },
    #[error("'{input}' is not a rule option: write an action (allow or deny) followed by --proto, --src, --dst, --sport, --dport, --icmp-type or --established")]
    UnknownOption { input: String },
    #[error("{option} needs a value, e.g. {example}")]
    MissingValue {
        option: &'static str,
        example: &'static str,
    },
    #[error("{option} is given twice: keep one (write two rules to match either)")]
    RepeatedOption { option: &'static str },
    #[error("the rule has no action: start it with allow or deny")]
    MissingAction,
    #[error("rule {position} ({rule}): {reason}")]
    InvalidRule {
        /// 1-based, as an operator counts rules.
        position: usize,
        rule: String,
        reason: Box<AclError>,
    },
}

fn describe_proto(proto: Option<u8>) -> String {
    match proto {
        Some(proto) => format!("--proto {}", proto_name(proto)),
        None => "no --proto".to_string(),
    }
}

fn family_name(is_ipv4: bool) -> &'static str {
    if is_ipv4 {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// E.g. "--proto icmp is for IPv4 but fd00::/64 is IPv6: write --proto icmpv6".
fn icmp_family_message(proto: u8, prefix: &IpNet) -> String {
    let (family, other_proto) = if proto == PROTO_ICMP {
        ("IPv4", PROTO_ICMPV6)
    } else {
        ("IPv6", PROTO_ICMP)
    };
    format!(
        "--proto {} is for {family} but {prefix} is {}: write --proto {}",
        proto_name(proto),
        family_name(matches!(prefix, IpNet::V4(_))),
        proto_name(other_proto),
    )
}

/// What happens to a frame a rule matches.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclAction {
    Allow,
    Deny,
}

impl AclAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AclAction::Allow => "allow",
            AclAction::Deny => "deny",
        }
    }
}

impl fmt::Display for AclAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AclAction {
    type Err = AclError;

    fn from_str(input: &str) -> Result<Self, AclError> {
        match input {
            "allow" => Ok(AclAction::Allow),
            "deny" => Ok(AclAction::Deny),
            _ => Err(AclError::UnknownAction {
                input: input.to_string(),
            }),
        }
    }
}

/// An inclusive range of TCP/UDP/SCTP ports; a single port is a range of one.
///
/// Written `22` or `1000-2000`, in text and in config files alike.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub const ANY: PortRange = PortRange {
        first: 0,
        last: u16::MAX,
    };

    pub const fn single(port: u16) -> PortRange {
        PortRange {
            first: port,
            last: port,
        }
    }

    /// False for every port when the range is upside down (which [`FromStr`] refuses).
    pub const fn contains(self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for PortRange {
    type Err = AclError;

    fn from_str(input: &str) -> Result<Self, AclError> {
        let malformed = || AclError::MalformedPortRange {
            input: input.to_string(),
        };
        let port = |text: &str| {
            // u16's own parser accepts a leading '+', which is not port syntax.
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed());
            }
            text.parse::<u16>().map_err(|_| malformed())
        };
        let (first, last) = match input.split_once('-') {
            Some((first, last)) => (port(first)?, port(last)?),
            None => {
                let only = port(input)?;
                (only, only)
            }
        };
        if first > last {
            return Err(AclError::UpsideDownPortRange { first, last });
        }
        Ok(PortRange { first, last })
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    /// Takes the text form, and also a bare number (`dport = 22` in TOML).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortRangeVisitor;

        impl serde::de::Visitor<'_> for PortRangeVisitor {
            type Value = PortRange;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port (22) or an inclusive port range (\"1000-2000\")")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<PortRange, E> {
                text.parse().map_err(E::custom)
            }

            fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<PortRange, E> {
                u16::try_from(number)
                    .map(PortRange::single)
                    .map_err(|_| E::custom(format!("port {number} is above 65535")))
            }

            fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<PortRange, E> {
                u16::try_from(number)
                    .map(PortRange::single)
                    .map_err(|_| E::custom(format!("port {number} is not in 0-65535")))
            }
        }

        deserializer.deserialize_any(PortRangeVisitor)
    }
}

/// An IP protocol by name (`tcp`, `udp`, `icmp`, `icmpv6`, `sctp`) or number (0-255).
pub fn parse_proto(input: &str) -> Result<u8, AclError> {
    if let Some(&(_, number)) = PROTOCOL_NAMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(input))
    {
        return Ok(number);
    }
    if !input.is_empty() && input.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(number) = input.parse::<u8>() {
            return Ok(number);
        }
    }
    Err(AclError::UnknownProtocol {
        input: input.to_string(),
    })
}

/// The name [`parse_proto`] reads back: a known name, else the number.
pub fn proto_name(proto: u8) -> Cow<'static, str> {
    match PROTOCOL_NAMES.iter().find(|&&(_, number)| number == proto) {
        Some(&(name, _)) => Cow::Borrowed(name),
        None => Cow::Owned(proto.to_string()),
    }
}

/// An IP prefix: `198.18.0.0/24`, `fd00::/64`, or a bare address meaning one host (/32,
/// /128). A prefix with host bits set is refused rather than truncated, since the operator
/// likely meant something else than the network it silently becomes.
pub fn parse_prefix(input: &str) -> Result<IpNet, AclError> {
    let network = match input.parse::<IpNet>() {
        Ok(network) => network,
        Err(_) => match input.parse::<IpAddr>() {
            Ok(address) => IpNet::from(address),
            Err(_) => {
                return Err(AclError::MalformedPrefix {
                    input: input.to_string(),
                })
            }
        },
    };
    check_no_host_bits(network, input)?;
    Ok(network)
}

fn check_no_host_bits(network: IpNet, input: &str) -> Result<(), AclError> {
    if network.addr() != network.network() {
        return Err(AclError::HostBitsSet {
            input: input.to_string(),
            network: network.trunc(),
        });
    }
    Ok(())
}

/// The fields the worker extracts from an IP frame, and all a rule looks at.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct AclKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 protocol or IPv6 next header (after extension headers).
    pub proto: u8,
    /// 0 unless the frame is TCP, UDP or SCTP.
    pub sport: u16,
    /// 0 unless the frame is TCP, UDP or SCTP.
    pub dport: u16,
    /// Set for ICMP and ICMPv6 frames.
    pub icmp_type: Option<u8>,
    /// The TCP flags byte; 0 unless the frame is TCP.
    pub tcp_flags: u8,
}

impl AclKey {
    /// A TCP segment that is part of a connection already under way: it carries ACK (every
    /// segment after the first SYN does) or RST. Only the opening SYN of a connection lacks
    /// both, so allowing these lets replies in without letting new connections in. Stateless:
    /// a crafted ACK passes too, as with any stateless firewall.
    #[inline]
    pub const fn is_established_tcp(&self) -> bool {
        // `&`, not `&&`: no branch on the protocol, which traffic mixes at random.
        (self.proto == PROTO_TCP) & (self.tcp_flags & (TCP_FLAG_ACK | TCP_FLAG_RST) != 0)
    }
}

/// One rule of an ACL: every field given must match, a field left out matches anything.
///
/// - With no prefix the rule matches IPv4 and IPv6 frames; with a prefix, only frames of that
///   prefix's family.
/// - Port ranges are inclusive. Ports are matched against the key as is, which holds 0 for
///   frames that are not TCP, UDP or SCTP; [`AclRule::validate`] therefore demands a
///   transport protocol next to ports.
/// - `established` implies `--proto tcp`: it matches TCP segments carrying ACK or RST (see
///   [`AclKey::is_established_tcp`]), so `allow --established` alone is valid and means
///   "replies to TCP connections opened from this side".
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_prefix"
    )]
    pub src: Option<IpNet>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_prefix"
    )]
    pub dst: Option<IpNet>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_proto",
        deserialize_with = "deserialize_proto"
    )]
    pub proto: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<PortRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<PortRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub established: bool,
    pub action: AclAction,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Through [`parse_prefix`], so config files get bare addresses and the host-bits check too.
fn deserialize_prefix<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<IpNet>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_prefix(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// By name where it has one (`proto = "tcp"`), so config files read like the command line.
fn serialize_proto<S: Serializer>(proto: &Option<u8>, serializer: S) -> Result<S::Ok, S::Error> {
    match proto {
        Some(proto) => serializer.serialize_str(&proto_name(*proto)),
        None => serializer.serialize_none(),
    }
}

/// A name or a number, as a string (`"tcp"`, `"47"`) or as a bare number (`47`).
fn deserialize_proto<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u8>, D::Error> {
    struct ProtoVisitor;

    impl serde::de::Visitor<'_> for ProtoVisitor {
        type Value = u8;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a protocol: tcp, udp, icmp, icmpv6, sctp or a number 0-255")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<u8, E> {
            parse_proto(text).map_err(E::custom)
        }

        fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<u8, E> {
            u8::try_from(number).map_err(|_| E::custom(format!("protocol {number} is above 255")))
        }

        fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<u8, E> {
            u8::try_from(number)
                .map_err(|_| E::custom(format!("protocol {number} is not in 0-255")))
        }
    }

    deserializer.deserialize_any(ProtoVisitor).map(Some)
}

fn carries_ports(proto: u8) -> bool {
    matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP)
}

impl AclRule {
    /// A rule that matches every frame.
    pub const fn any(action: AclAction) -> AclRule {
        AclRule {
            src: None,
            dst: None,
            proto: None,
            sport: None,
            dport: None,
            icmp_type: None,
            established: false,
            action,
        }
    }

    /// Whether the rule matches `key`: the definition of matching (see the type's docs).
    ///
    /// Defined for every rule, valid or not: an invalid rule simply matches what its fields
    /// say (often nothing).
    pub fn matches(&self, key: &AclKey) -> bool {
        self.src.is_none_or(|network| network.contains(&key.src))
            && self.dst.is_none_or(|network| network.contains(&key.dst))
            && self.proto.is_none_or(|proto| proto == key.proto)
            && self.sport.is_none_or(|range| range.contains(key.sport))
            && self.dport.is_none_or(|range| range.contains(key.dport))
            && self
                .icmp_type
                .is_none_or(|icmp_type| key.icmp_type == Some(icmp_type))
            && (!self.established || key.is_established_tcp())
    }

    /// The protocol the rule is limited to: `proto`, or tcp when only `established` says so.
    pub fn effective_proto(&self) -> Option<u8> {
        self.proto.or(self.established.then_some(PROTO_TCP))
    }

    /// Refuses rules that are contradictory (can never match) or that say something other
    /// than the operator likely meant. A valid rule's [`Display`](fmt::Display) form parses
    /// back to the same rule.
    pub fn validate(&self) -> Result<(), AclError> {
        for network in [self.src, self.dst].into_iter().flatten() {
            check_no_host_bits(network, &network.to_string())?;
        }
        if let (Some(src), Some(dst)) = (self.src, self.dst) {
            if matches!(src, IpNet::V4(_)) != matches!(dst, IpNet::V4(_)) {
                return Err(AclError::FamilyMismatch { src, dst });
            }
        }
        for range in [self.sport, self.dport].into_iter().flatten() {
            if range.first > range.last {
                return Err(AclError::UpsideDownPortRange {
                    first: range.first,
                    last: range.last,
                });
            }
        }
        let proto = self.effective_proto();
        for (option, range) in [("--sport", self.sport), ("--dport", self.dport)] {
            if range.is_some() && !proto.is_some_and(carries_ports) {
                return Err(AclError::PortsNeedTransport { option, proto });
            }
        }
        if self.icmp_type.is_some() && !matches!(proto, Some(PROTO_ICMP | PROTO_ICMPV6)) {
            return Err(AclError::IcmpTypeNeedsIcmp { proto });
        }
        if let Some(proto @ (PROTO_ICMP | PROTO_ICMPV6)) = proto {
            let wants_ipv4 = proto == PROTO_ICMP;
            if let Some(prefix) = [self.src, self.dst]
                .into_iter()
                .flatten()
                .find(|prefix| matches!(prefix, IpNet::V4(_)) != wants_ipv4)
            {
                return Err(AclError::IcmpFamilyMismatch { proto, prefix });
            }
        }
        if self.established {
            if let Some(proto) = self.proto.filter(|&proto| proto != PROTO_TCP) {
                return Err(AclError::EstablishedNeedsTcp { proto });
            }
        }
        Ok(())
    }
}

/// The command-line form, e.g. `allow --proto tcp --dport 22 --src 198.18.0.0/24`; parsed
/// back by [`FromStr`].
impl fmt::Display for AclRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.action.as_str())?;
        if let Some(proto) = self.proto {
            write!(f, " --proto {}", proto_name(proto))?;
        }
        if let Some(sport) = self.sport {
            write!(f, " --sport {sport}")?;
        }
        if let Some(dport) = self.dport {
            write!(f, " --dport {dport}")?;
        }
        if let Some(icmp_type) = self.icmp_type {
            write!(f, " --icmp-type {icmp_type}")?;
        }
        if self.established {
            f.write_str(" --established")?;
        }
        if let Some(src) = self.src {
            write!(f, " --src {src}")?;
        }
        if let Some(dst) = self.dst {
            write!(f, " --dst {dst}")?;
        }
        Ok(())
    }
}

/// Parses the [`Display`](fmt::Display) form: an action, then options in any order. Each
/// value is checked as it is read; the rule as a whole is not ([`AclRule::validate`]).
impl FromStr for AclRule {
    type Err = AclError;

    fn from_str(input: &str) -> Result<Self, AclError> {
        let mut words = input.split_whitespace();
        let action = words.next().ok_or(AclError::MissingAction)?.parse()?;
        let mut rule = AclRule::any(action);

        fn set<T>(slot: &mut Option<T>, option: &'static str, value: T) -> Result<(), AclError> {
            if slot.is_some() {
                return Err(AclError::RepeatedOption { option });
            }
            *slot = Some(value);
            Ok(())
        }

        while let Some(word) = words.next() {
            let mut value = |option: &'static str, example: &'static str| {
                words
                    .next()
                    .ok_or(AclError::MissingValue { option, example })
            };
            match word {
                "--src" => set(
                    &mut rule.src,
                    "--src",
                    parse_prefix(value("--src", "--src 198.18.0.0/24")?)?,
                )?,
                "--dst" => set(
                    &mut rule.dst,
                    "--dst",
                    parse_prefix(value("--dst", "--dst fd00::/64")?)?,
                )?,
                "--proto" => set(
                    &mut rule.proto,
                    "--proto",
                    parse_proto(value("--proto", "--proto tcp")?)?,
                )?,
                "--sport" => set(
                    &mut rule.sport,
                    "--sport",
                    value("--sport", "--sport 1024-65535")?.parse()?,
                )?,
                "--dport" => set(
                    &mut rule.dport,
                    "--dport",
                    value("--dport", "--dport 22")?.parse()?,
                )?,
                "--icmp-type" => {
                    let text = value("--icmp-type", "--icmp-type 8")?;
                    let icmp_type = text.parse().map_err(|_| AclError::MalformedIcmpType {
                        input: text.to_string(),
                    })?;
                    set(&mut rule.icmp_type, "--icmp-type", icmp_type)?;
                }
                "--established" => {
                    if rule.established {
                        return Err(AclError::RepeatedOption {
                            option: "--established",
                        });
                    }
                    rule.established = true;
                }
                _ => {
                    return Err(AclError::UnknownOption {
                        input: word.to_string(),
                    })
                }
            }
        }
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(src: &str, dst: &str, proto: u8, sport: u16, dport: u16) -> AclKey {
        AclKey {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto,
            sport,
            dport,
            icmp_type: None,
            tcp_flags: 0,
        }
    }

    fn rule(text: &str) -> AclRule {
        text.parse().unwrap()
    }

    #[test]
    fn port_range_parses_single_ports_and_ranges_and_prints_them_back() {
        for text in ["22", "0", "65535", "1000-2000", "0-65535", "7-7"] {
            let range: PortRange = text.parse().unwrap();
            let printed = range.to_string();
            let expected = if text == "7-7" { "7" } else { text };
            assert_eq!(printed, expected);
        }
        assert_eq!(
            "1000-2000".parse(),
            Ok(PortRange {
                first: 1000,
                last: 2000
            })
        );
    }

    #[test]
    fn port_range_upside_down_is_named_with_the_fix() {
        let error = "2000-1000".parse::<PortRange>().unwrap_err();
        assert_eq!(
            error,
            AclError::UpsideDownPortRange {
                first: 2000,
                last: 1000
            }
        );
        let message = error.to_string();
        assert!(
            message.contains("2000-1000") && message.contains("upside down"),
            "{message}"
        );
        assert!(message.contains("write 1000-2000"), "{message}");
    }

    #[test]
    fn port_range_malformed_input_is_quoted() {
        for text in [
            "",
            "-",
            "22-",
            "-22",
            "65536",
            "+22",
            "1-2-3",
            "ssh",
            " 22",
            "1000 - 2000",
        ] {
            let message = text.parse::<PortRange>().unwrap_err().to_string();
            assert!(message.contains(&format!("'{text}'")), "{text}: {message}");
        }
    }

    #[test]
    fn protocols_by_name_and_number() {
        assert_eq!(parse_proto("tcp"), Ok(6));
        assert_eq!(parse_proto("udp"), Ok(17));
        assert_eq!(parse_proto("icmp"), Ok(1));
        assert_eq!(parse_proto("icmpv6"), Ok(58));
        assert_eq!(parse_proto("sctp"), Ok(132));
        assert_eq!(parse_proto("TCP"), Ok(6));
        assert_eq!(parse_proto("47"), Ok(47));
        assert_eq!(parse_proto("0"), Ok(0));
        assert_eq!(parse_proto("255"), Ok(255));
        for bad in ["256", "gre", "", "-1", "+6"] {
            let message = parse_proto(bad).unwrap_err().to_string();
            assert!(message.contains(&format!("'{bad}'")), "{message}");
        }
        for proto in 0..=255u8 {
            assert_eq!(parse_proto(&proto_name(proto)), Ok(proto));
        }
        assert_eq!(proto_name(47), "47");
        assert_eq!(proto_name(58), "icmpv6");
    }

    #[test]
    fn prefixes_with_length_or_bare_address() {
        assert_eq!(
            parse_prefix("198.18.0.0/24").unwrap().to_string(),
            "198.18.0.0/24"
        );
        assert_eq!(parse_prefix("fd00::/64").unwrap().to_string(), "fd00::/64");
        assert_eq!(
            parse_prefix("198.18.0.7").unwrap().to_string(),
            "198.18.0.7/32"
        );
        assert_eq!(parse_prefix("fd00::7").unwrap().to_string(), "fd00::7/128");
        assert_eq!(parse_prefix("0.0.0.0/0").unwrap().prefix_len(), 0);
    }

    #[test]
    fn malformed_prefix_is_quoted() {
        for bad in [
            "198.18.0.0/33",
            "198.18.0/24",
            "fd00::/129",
            "host",
            "",
            "198.18.0.0/",
            "10.0.0.0/8 ",
        ] {
            let error = parse_prefix(bad).unwrap_err();
            assert_eq!(
                error,
                AclError::MalformedPrefix {
                    input: bad.to_string()
                }
            );
            assert!(error.to_string().contains(&format!("'{bad}'")));
        }
    }

    #[test]
    fn host_bits_suggest_the_network() {
        let message = parse_prefix("198.18.0.5/24").unwrap_err().to_string();
        assert!(message.contains("198.18.0.5/24"), "{message}");
        assert!(message.contains("did you mean 198.18.0.0/24?"), "{message}");
        let message = parse_prefix("fd00::1/64").unwrap_err().to_string();
        assert!(message.contains("did you mean fd00::/64?"), "{message}");
    }

    #[test]
    fn display_is_the_command_line_form_and_parses_back() {
        let texts = [
            "allow --proto tcp --dport 22 --src 198.18.0.0/24",
            "deny",
            "allow --proto udp --sport 1000-2000 --dport 53 --src 10.0.0.0/8 --dst 10.1.0.0/16",
            "allow --proto icmpv6 --icmp-type 128 --dst fd00::/64",
            "allow --established",
            "deny --proto 47",
        ];
        for text in texts {
            let parsed = rule(text);
            assert_eq!(parsed.to_string(), text);
            parsed.validate().unwrap();
        }
        assert_eq!(
            rule("allow --src 10.0.0.1 --proto tcp").to_string(),
            "allow --proto tcp --src 10.0.0.1/32"
        );
    }

    #[test]
    fn rule_text_errors_name_the_bad_part() {
        let cases = [
            ("", "no action"),
            ("permit --proto tcp", "'permit'"),
            ("allow --port 22", "'--port'"),
            ("allow --proto", "--proto needs a value"),
            ("allow --proto tcp --proto udp", "--proto is given twice"),
            ("allow --proto gre", "'gre'"),
            ("allow --icmp-type echo", "'echo'"),
            ("allow --src 10.0.0.1/8", "did you mean 10.0.0.0/8?"),
            (
                "allow --established --established",
                "--established is given twice",
            ),
        ];
        for (text, expected) in cases {
            let message = text.parse::<AclRule>().unwrap_err().to_string();
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn validate_refuses_mixed_families() {
        let error = rule("allow --src 10.0.0.0/8 --dst fd00::/64")
            .validate()
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("10.0.0.0/8") && message.contains("fd00::/64"),
            "{message}"
        );
        assert!(message.contains("different IP families"), "{message}");
    }

    #[test]
    fn validate_wants_a_transport_protocol_for_ports() {
        let message = rule("allow --dport 22").validate().unwrap_err().to_string();
        assert!(
            message.contains("--dport needs --proto tcp, udp or sctp"),
            "{message}"
        );
        assert!(message.contains("no --proto"), "{message}");
        let message = rule("allow --proto icmp --sport 22")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("--sport") && message.contains("--proto icmp"),
            "{message}"
        );
        for proto in ["tcp", "udp", "sctp"] {
            rule(&format!("allow --proto {proto} --sport 1-2 --dport 3"))
                .validate()
                .unwrap();
        }
        // --established implies tcp, so ports are meaningful next to it.
        rule("allow --established --sport 22").validate().unwrap();
    }

    #[test]
    fn validate_wants_icmp_for_icmp_type_and_the_matching_family() {
        let message = rule("allow --proto tcp --icmp-type 8")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("--icmp-type needs --proto icmp or icmpv6"),
            "{message}"
        );
        assert!(message.contains("--proto tcp"), "{message}");
        let message = rule("allow --icmp-type 8")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(message.contains("no --proto"), "{message}");

        let message = rule("allow --proto icmp --icmp-type 128 --src fd00::/64")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(message.contains("fd00::/64 is IPv6"), "{message}");
        assert!(message.contains("write --proto icmpv6"), "{message}");
        let message = rule("allow --proto icmpv6 --dst 10.0.0.0/8")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(message.contains("write --proto icmp"), "{message}");

        rule("allow --proto icmp --icmp-type 8 --src 10.0.0.0/8")
            .validate()
            .unwrap();
        rule("allow --proto icmpv6 --icmp-type 128 --dst fd00::/64")
            .validate()
            .unwrap();
        rule("allow --proto icmp --icmp-type 8").validate().unwrap();
    }

    #[test]
    fn validate_wants_tcp_for_established() {
        let message = rule("allow --proto udp --established")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("--established matches TCP only"),
            "{message}"
        );
        assert!(message.contains("--proto udp"), "{message}");
        rule("allow --proto tcp --established").validate().unwrap();
        rule("allow --established").validate().unwrap();
    }

    #[test]
    fn validate_catches_what_structs_and_config_can_smuggle_in() {
        let mut upside_down = AclRule::any(AclAction::Allow);
        upside_down.proto = Some(PROTO_TCP);
        upside_down.dport = Some(PortRange { first: 9, last: 1 });
        assert!(upside_down
            .validate()
            .unwrap_err()
            .to_string()
            .contains("9-1"));

        let mut host_bits = AclRule::any(AclAction::Deny);
        host_bits.src = Some("10.1.2.3/8".parse().unwrap());
        let message = host_bits.validate().unwrap_err().to_string();
        assert!(message.contains("did you mean 10.0.0.0/8?"), "{message}");
    }

    #[test]
    fn each_field_matches_on_its_own() {
        let base = key("10.1.2.3", "192.168.0.9", PROTO_TCP, 40000, 22);
        assert!(rule("allow").matches(&base));
        assert!(rule("allow --src 10.0.0.0/8").matches(&base));
        assert!(!rule("allow --src 10.2.0.0/16").matches(&base));
        assert!(rule("allow --dst 192.168.0.9").matches(&base));
        assert!(!rule("allow --dst 192.168.0.8").matches(&base));
        assert!(rule("allow --proto tcp").matches(&base));
        assert!(!rule("allow --proto udp").matches(&base));
        assert!(rule("allow --proto tcp --dport 22").matches(&base));
        assert!(rule("allow --proto tcp --dport 20-22").matches(&base));
        assert!(rule("allow --proto tcp --dport 22-30").matches(&base));
        assert!(!rule("allow --proto tcp --dport 23-30").matches(&base));
        assert!(rule("allow --proto tcp --sport 40000-65535").matches(&base));
        assert!(!rule("allow --proto tcp --sport 1-39999").matches(&base));
        assert!(!rule("allow --proto icmp --icmp-type 8").matches(&base));
    }

    #[test]
    fn prefixes_limit_a_rule_to_their_family() {
        let v4 = key("10.1.2.3", "10.0.0.1", PROTO_UDP, 1, 2);
        let v6 = key("fd00::1", "fd00::2", PROTO_UDP, 1, 2);
        assert!(rule("allow --proto udp").matches(&v4));
        assert!(rule("allow --proto udp").matches(&v6));
        assert!(!rule("allow --src 0.0.0.0/0").matches(&v6));
        assert!(!rule("allow --dst ::/0").matches(&v4));
        assert!(rule("allow --src ::/0").matches(&v6));
    }

    #[test]
    fn icmp_type_matches_only_icmp_frames_of_that_type() {
        let mut echo = key("10.0.0.1", "10.0.0.2", PROTO_ICMP, 0, 0);
        echo.icmp_type = Some(8);
        assert!(rule("allow --proto icmp --icmp-type 8").matches(&echo));
        assert!(!rule("allow --proto icmp --icmp-type 0").matches(&echo));
        let not_icmp = key("10.0.0.1", "10.0.0.2", PROTO_ICMP, 0, 0);
        assert!(!rule("allow --proto icmp --icmp-type 0").matches(&not_icmp));
    }

    #[test]
    fn established_means_tcp_with_ack_or_rst() {
        let established = rule("allow --established");
        let mut segment = key("10.0.0.1", "10.0.0.2", PROTO_TCP, 22, 40000);
        for (flags, expected) in [
            (0x02, false), // SYN: a new connection
            (0x12, true),  // SYN+ACK: the reply to one
            (0x10, true),
            (0x18, true), // PSH+ACK
            (0x04, true), // RST
            (0x01, false),
        ] {
            segment.tcp_flags = flags;
            assert_eq!(established.matches(&segment), expected, "flags {flags:#x}");
        }
        let mut not_tcp = segment;
        not_tcp.proto = PROTO_UDP;
        not_tcp.tcp_flags = TCP_FLAG_ACK;
        assert!(!established.matches(&not_tcp));
    }

    #[test]
    fn serde_skips_empty_fields_and_reads_names_numbers_and_bare_addresses() {
        let parsed = rule("allow --proto tcp --dport 1000-2000 --src 198.18.0.0/24");
        let json = serde_json::to_string(&parsed).unwrap();
        assert_eq!(
            json,
            r#"{"src":"198.18.0.0/24","proto":"tcp","dport":"1000-2000","action":"allow"}"#
        );
        assert_eq!(serde_json::from_str::<AclRule>(&json).unwrap(), parsed);

        let from_config: AclRule = toml::from_str(
            "action = \"deny\"\nproto = 17\ndport = 53\nsrc = \"10.0.0.1\"\nestablished = false\n",
        )
        .unwrap();
        assert_eq!(
            from_config,
            rule("deny --proto udp --dport 53 --src 10.0.0.1/32")
        );

        let unknown =
            serde_json::from_str::<AclRule>(r#"{"action":"allow","port":22}"#).unwrap_err();
        assert!(unknown.to_string().contains("port"), "{unknown}");
        let host_bits = serde_json::from_str::<AclRule>(r#"{"action":"allow","src":"10.0.0.1/8"}"#)
            .unwrap_err();
        assert!(
            host_bits.to_string().contains("did you mean 10.0.0.0/8?"),
            "{host_bits}"
        );
        let upside_down =
            serde_json::from_str::<AclRule>(r#"{"action":"allow","dport":"9-1"}"#).unwrap_err();
        assert!(
            upside_down.to_string().contains("upside down"),
            "{upside_down}"
        );
        let action = serde_json::from_str::<AclAction>(r#""allow""#).unwrap();
        assert_eq!(action, AclAction::Allow);
    }
}
