//! `xswctl tunnel`: VXLAN tunnel ports. A tunnel is a port, so these are port requests
//! (`port_add` with a `tunnel` section, `port_del`, `port_list`); `tunnel list` shows only
//! the tunnel ports, with their underlay.

use std::net::IpAddr;

use clap::Subcommand;
use serde_json::Value;
use xsw::config::PortSpec;
use xsw::control::protocol::Request;
use xsw::packet::vxlan::DEFAULT_PORT;
use xsw::port::tunnel::TunnelSpec;

use crate::render::{items, table, text};

#[derive(Subcommand)]
pub enum TunnelCommand {
    /// Add a VXLAN tunnel port: the tenant's frames for MACs behind the remotes are
    /// encapsulated with the VNI and sent to them; floods go to every remote.
    Add {
        name: String,
        /// This host's underlay address (IPv4 or IPv6).
        #[arg(long)]
        local: IpAddr,
        /// The other hosts' underlay addresses, e.g. 192.0.2.2,192.0.2.3.
        #[arg(long, value_delimiter = ',', required = true)]
        remote: Vec<IpAddr>,
        /// The VXLAN network identifier (0-16777215); the same on every host of the tenant.
        #[arg(long)]
        vni: u32,
        /// The tenant the tunnel carries; `default` when absent.
        #[arg(long)]
        tenant: Option<String>,
        /// UDP port (Linux's vxlan devices need `dstport 4789` to match).
        #[arg(long, default_value_t = DEFAULT_PORT)]
        dstport: u16,
    },
    /// Remove a tunnel port.
    Del { name: String },
    /// List the tunnel ports with their underlay, VNI and tenant.
    List,
}

pub fn request(command: TunnelCommand) -> Request {
    match command {
        TunnelCommand::Add {
            name,
            local,
            remote,
            vni,
            tenant,
            dstport,
        } => Request::PortAdd(PortSpec {
            name,
            tenant,
            tunnel: Some(TunnelSpec {
                local,
                remote,
                vni,
                dstport,
            }),
            ..PortSpec::default()
        }),
        TunnelCommand::Del { name } => Request::PortDel { name },
        TunnelCommand::List => Request::PortList {},
    }
}

/// The tunnel ports of a `port_list` reply.
pub fn only_tunnels(ports: &Value) -> Value {
    Value::Array(
        ports
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| !p["tunnel"].is_null())
            .cloned()
            .collect(),
    )
}

/// One row per tunnel port.
pub fn render_list(ports: &Value) -> String {
    let rows = items(ports)
        .iter()
        .map(|p| {
            let t = &p["tunnel"];
            let remotes: Vec<String> = items(&t["remote"]).iter().map(text).collect();
            vec![
                text(&p["name"]),
                text(&t["vni"]),
                text(&t["local"]),
                text(&t["dstport"]),
                text(&p["tenant"]),
                remotes.join(","),
            ]
        })
        .collect();
    table(
        &["NAME", "VNI", "LOCAL", "DSTPORT", "TENANT", "REMOTES"],
        rows,
    )
}

/// The confirmation of `tunnel add`.
pub fn added(name: &str, tunnel: &TunnelSpec) -> String {
    let remotes: Vec<String> = tunnel.remote.iter().map(IpAddr::to_string).collect();
    format!(
        "tunnel {name} added (VNI {}, {} -> {} port {})",
        tunnel.vni,
        tunnel.local,
        remotes.join(","),
        tunnel.dstport
    )
}
