//! Tunnel ports (VXLAN) in the control plane: checking a tunnel's spec, opening its
//! underlay sockets, and what the workers are told about it.
//!
//! A tunnel is a port (`PortSpec::tunnel`), added, listed, moved, guarded, saved and
//! removed like any other; this file holds what differs: it has no interface, its link is
//! always up, and its frames come and go through the sockets of `port::tunnel`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::protocol::ErrorCode;
use super::switch::{system, Attachment, ControlError, Outcome, PortRecord, Switch};
use crate::config::PortSpec;
use crate::dataplane::tunnel::{TunnelEndpoint, TunnelView};
use crate::pipeline::stages::PortPolicy;
use crate::pipeline::tenant::PortMode;
use crate::pipeline::PortId;
use crate::port::iface::IfaceKind;
use crate::port::tunnel::{self, TunnelSpec};

/// An endpoint's socket and its (VNI, port) pairs, while the snapshot is built.
type SharedEndpoint = (Arc<UdpSocket>, Vec<(u32, PortId)>);

/// What keeps a tunnel port's underlay open.
pub(super) struct TunnelSockets {
    /// Shared by the tunnels with the same local address and port.
    pub receiver: Arc<UdpSocket>,
    pub sender: Arc<OwnedFd>,
}

impl Switch {
    /// What a tunnel port's spec must not clash with in the running switch (its own
    /// rules are `config::rules::port`'s); nothing for other ports.
    pub(super) fn check_tunnel(&self, spec: &PortSpec) -> Outcome<()> {
        let Some(tunnel) = &spec.tunnel else {
            return Ok(());
        };
        let endpoint = tunnel.endpoint();
        if let Some((other, _)) = self
            .tunnels()
            .find(|(name, t)| *name != spec.name && t.endpoint() == endpoint && t.vni == tunnel.vni)
        {
            return Err(ControlError::new(
                ErrorCode::AlreadyExists,
                format!(
                    "VNI {} on {endpoint} is already tunnel {other}'s",
                    tunnel.vni
                ),
            ));
        }
        Ok(())
    }

    /// The tunnel ports: (name, their tunnel settings).
    fn tunnels(&self) -> impl Iterator<Item = (&str, &TunnelSpec)> {
        self.ports
            .iter()
            .filter_map(|(name, r)| Some((name.as_str(), r.spec.tunnel.as_ref()?)))
    }

    /// Opens a tunnel port's sockets and makes its record; `check_tunnel` passed. The
    /// receive socket of another tunnel on the same local address and port is shared.
    pub(super) fn attach_tunnel(
        &mut self,
        id: PortId,
        spec: &PortSpec,
        tunnel: &TunnelSpec,
        policy: Arc<PortPolicy>,
    ) -> Outcome<PortRecord> {
        let endpoint = tunnel.endpoint();
        let shared = self.ports.values().find_map(|r| match &r.attachment {
            Attachment::Tunnel(sockets)
                if r.spec.tunnel.as_ref().map(TunnelSpec::endpoint) == Some(endpoint) =>
            {
                Some(sockets.receiver.clone())
            }
            _ => None,
        });
        let receiver = match shared {
            Some(receiver) => receiver,
            None => Arc::new(tunnel::open_receiver(endpoint).map_err(system)?),
        };
        let sender = Arc::new(tunnel::open_sender(tunnel.local).map_err(system)?);
        Ok(PortRecord {
            id,
            spec: spec.clone(),
            kind: IfaceKind::Tunnel,
            ifindex: 0,
            attachment: Attachment::Tunnel(TunnelSockets { receiver, sender }),
            queues: Vec::new(),
            socket_fds: Vec::new(),
            zero_copy: false,
            link_up: true,
            peer_elsewhere: false,
            base: self.dataplane.port_totals(id),
            policy,
        })
    }

    /// What the workers need to send on tunnel port `record` (None for other ports).
    pub(super) fn tunnel_view(&self, record: &PortRecord) -> Option<Arc<TunnelView>> {
        let (Attachment::Tunnel(sockets), Some(tunnel)) = (&record.attachment, &record.spec.tunnel)
        else {
            return None;
        };
        let PortMode::Access(tenant_id) = record.policy.mode else {
            return None;
        };
        Some(Arc::new(TunnelView::new(
            tunnel.vni,
            tunnel.dstport,
            tenant_id,
            &tunnel.remote,
            sockets.sender.clone(),
        )))
    }

    /// The receive sockets of every tunnel endpoint, each with the tunnel ports on it and
    /// the worker that reads it (the one its lowest port id picks, as a port's queue 0).
    pub(super) fn tunnel_endpoints(&self) -> Vec<Arc<TunnelEndpoint>> {
        let mut by_endpoint: BTreeMap<SocketAddr, SharedEndpoint> = BTreeMap::new();
        for record in self.ports.values() {
            if let (Attachment::Tunnel(sockets), Some(tunnel)) =
                (&record.attachment, &record.spec.tunnel)
            {
                by_endpoint
                    .entry(tunnel.endpoint())
                    .or_insert_with(|| (sockets.receiver.clone(), Vec::new()))
                    .1
                    .push((tunnel.vni, record.id));
            }
        }
        let workers = self.dataplane.worker_count().max(1);
        by_endpoint
            .into_values()
            .map(|(socket, mut ports)| {
                ports.sort_unstable();
                let first = ports.iter().map(|&(_, id)| id).min().unwrap_or(0);
                Arc::new(TunnelEndpoint {
                    socket,
                    rx_worker: usize::from(first) % workers,
                    ports: ports.into_boxed_slice(),
                })
            })
            .collect()
    }

    /// The remote index (1-based) the MAC table stores for a static entry on `port`: the
    /// position of `remote` among a tunnel's remotes; 0 for other ports.
    pub(super) fn static_remote(&self, port: &str, remote: Option<IpAddr>) -> Outcome<u8> {
        let record = self.port(port)?;
        match (&record.spec.tunnel, remote) {
            (None, None) => Ok(0),
            (None, Some(_)) => Err(ControlError::invalid(format!(
                "{port} is not a tunnel: --remote is for tunnel ports"
            ))),
            (Some(_), None) => Err(ControlError::invalid(format!(
                "{port} is a tunnel: say which remote the MAC is behind with --remote"
            ))),
            (Some(tunnel), Some(ip)) => tunnel
                .remote
                .iter()
                .position(|r| *r == ip)
                .and_then(|i| u8::try_from(i + 1).ok())
                .ok_or_else(|| {
                    ControlError::invalid(format!(
                        "{ip} is not a remote of tunnel {port} (its remotes: {})",
                        tunnel
                            .remote
                            .iter()
                            .map(IpAddr::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }),
        }
    }

    /// The address of remote `index` (1-based, as the MAC table has it) of tunnel `port`.
    pub(super) fn remote_address(&self, port: PortId, index: u8) -> Option<IpAddr> {
        let record = self.ports.values().find(|r| r.id == port)?;
        let position = usize::from(index).checked_sub(1)?;
        record.spec.tunnel.as_ref()?.remote.get(position).copied()
    }
}
