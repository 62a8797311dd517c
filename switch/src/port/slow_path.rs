//! The internal device that carries frames which miss the fast path to the
//! workers: a veth pair private to one data plane. The port program sends
//! each such frame, tagged with its ingress port id, to the transmit side
//! `xsws<pid>g<n>`; the receive side `xswt<pid>g<n>` carries the XDP program
//! that hands it to the AF_XDP socket of its queue (one queue per worker).
//!
//! Created over rtnetlink (netlink-packet-route). Unlike the anchor tap, a
//! veth outlives a process that is killed: xswd removes the pairs that dead
//! xswd processes left behind when it starts one.

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::iface;

/// MTU of the pair: the most native XDP on a veth accepts without multi-buffer
/// support is about 3.5 KB; larger frames would not fit a UMEM frame anyway.
pub const MTU: u32 = 3000;

#[derive(Debug, thiserror::Error)]
pub enum SlowPathError {
    #[error("cannot create the slow-path device pair {name}/{peer}")]
    Create {
        name: String,
        peer: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot configure the slow-path device {name}: {what}")]
    Configure {
        name: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The pair; dropping it deletes both ends.
pub struct SlowPathDevice {
    sender: String,
    receiver: String,
    sender_ifindex: u32,
}

impl SlowPathDevice {
    /// Creates the pair with `queues` queues on each end, up, with VLAN
    /// insertion in software (the tag must be in the frame for XDP to see it).
    pub fn create(queues: u32) -> Result<SlowPathDevice, SlowPathError> {
        remove_orphans();
        static GENERATION: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1000;
        let pid = std::process::id() % 10_000_000;
        let sender = format!("xsws{pid}g{generation}");
        let receiver = format!("xswt{pid}g{generation}");
        create_veth_pair(&sender, &receiver, queues.max(1)).map_err(|source| {
            SlowPathError::Create {
                name: sender.clone(),
                peer: receiver.clone(),
                source,
            }
        })?;
        let mut device = SlowPathDevice {
            sender_ifindex: 0,
            sender: sender.clone(),
            receiver,
        };
        let configure = |what, source| SlowPathError::Configure {
            name: sender.clone(),
            what,
            source,
        };
        disable_tx_vlan_offload(&device.sender)
            .map_err(|e| configure("turn off tx-vlan-offload", e))?;
        // Up only once both ends exist (a veth cannot open without its peer).
        for end in [&device.sender, &device.receiver] {
            super::tap::set_admin_up(end).map_err(|e| configure("set it up", e))?;
        }
        device.sender_ifindex = iface::ifindex(&device.sender)
            .map_err(|e| configure("read its ifindex", io::Error::other(e)))?;
        Ok(device)
    }

    /// The end the port program redirects to.
    pub fn sender_ifindex(&self) -> u32 {
        self.sender_ifindex
    }

    /// The end the workers' sockets and the XDP program sit on.
    pub fn receiver(&self) -> &str {
        &self.receiver
    }
}

impl Drop for SlowPathDevice {
    fn drop(&mut self) {
        // Deleting one end deletes the pair.
        if let Err(e) = delete_link(&self.sender) {
            tracing::warn!(device = %self.sender, error = %e, "could not remove the slow-path device");
        }
    }
}

/// Deletes pairs whose creator (the pid in the name) is not an xswd any more.
fn remove_orphans() {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("xsws") else {
            continue;
        };
        let Some(pid) = rest.split('g').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let alive = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim() == "xswd");
        if !alive {
            if let Err(e) = delete_link(&name) {
                tracing::debug!(device = %name, error = %e, "could not remove an orphaned slow-path device");
            } else {
                tracing::info!(device = %name, "removed a slow-path device left by a dead xswd");
            }
        }
    }
}

fn request(message: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
    packet.finalize();
    let mut buffer = vec![0; packet.buffer_len()];
    packet.serialize(&mut buffer);
    socket.send_to(&buffer, &SocketAddr::new(0, 0), 0)?;
    let mut reply = vec![0; 8192];
    let n = socket.recv(&mut &mut reply[..], 0)?;
    let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[..n])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    match parsed.payload {
        NetlinkPayload::Error(e) => match e.code {
            None => Ok(()),
            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
        },
        _ => Ok(()),
    }
}

fn create_veth_pair(name: &str, peer: &str, queues: u32) -> io::Result<()> {
    let mut peer_message = LinkMessage::default();
    peer_message.attributes = vec![
        LinkAttribute::IfName(peer.to_string()),
        LinkAttribute::Mtu(MTU),
        LinkAttribute::NumTxQueues(queues),
        LinkAttribute::NumRxQueues(queues),
    ];
    let mut message = LinkMessage::default();
    message.attributes = vec![
        LinkAttribute::IfName(name.to_string()),
        LinkAttribute::Mtu(MTU),
        LinkAttribute::NumTxQueues(queues),
        LinkAttribute::NumRxQueues(queues),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
        ]),
    ];
    request(
        RouteNetlinkMessage::NewLink(message),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

fn delete_link(name: &str) -> io::Result<()> {
    let mut message = LinkMessage::default();
    message.attributes = vec![LinkAttribute::IfName(name.to_string())];
    request(RouteNetlinkMessage::DelLink(message), 0)
}

/// ETHTOOL_SFLAGS with ETH_FLAG_TXVLAN cleared: a tag pushed by the port
/// program is then written into the frame when the sender transmits it,
/// where the receiver's XDP program can read it.
fn disable_tx_vlan_offload(name: &str) -> io::Result<()> {
    const ETHTOOL_GFLAGS: u32 = 0x25;
    const ETHTOOL_SFLAGS: u32 = 0x26;
    const ETH_FLAG_TXVLAN: u32 = 1 << 7;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut value = EthtoolValue {
        cmd: ETHTOOL_GFLAGS,
        data: 0,
    };
    // SAFETY: EthtoolValue is struct ethtool_value, what GFLAGS and SFLAGS
    // read and write.
    unsafe { iface::ethtool(name, &mut value) }?;
    value.cmd = ETHTOOL_SFLAGS;
    value.data &= !ETH_FLAG_TXVLAN;
    // SAFETY: as above.
    unsafe { iface::ethtool(name, &mut value) }
}
