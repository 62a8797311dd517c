//! Zero-copy views over wire formats. Parsing validates a buffer's length once; after that
//! accessors cannot fail, so the data path never handles errors per field.

pub mod arp;
pub mod checksum;
pub mod dhcp;
pub mod ethernet;
pub mod info;
pub mod ipv4;
pub mod ipv6;
pub mod l4;
pub mod mac;
pub mod rewrite;
pub mod vlan;
pub mod vxlan;

pub use arp::ArpPacket;
pub use ethernet::{EthernetFrame, WireError, HEADER_LEN};
pub use info::{
    parse as parse_frame, parse_into, ArpInfo, FrameInfo, IpInfo, L3Info, L4Status, NdInfo,
};
pub use ipv4::{Fragment, Ipv4Packet};
pub use ipv6::{Ipv6Packet, UpperLayer};
pub use l4::{IcmpHeader, NdKind, NdMessage, SctpHeader, TcpHeader, UdpHeader};
pub use mac::{MacAddr, MacParseError};
pub use rewrite::TagEdit;
pub use vlan::VlanTag;
pub use vxlan::{VxlanPacket, VxlanRepr};
