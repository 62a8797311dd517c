//! xswctl's command line, and the control request each command becomes.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use xsw::config::{HookRequest, PortSpec};
use xsw::control::protocol::{AclAddArgs, OnOff, Request, TuneArgs};
use xsw::packet::MacAddr;
use xsw::pipeline::guard::Trusted;
use xsw::pipeline::storm::StormOverrides;
use xsw::xdp::XdpModeRequest;

#[derive(Parser)]
#[command(name = "xswctl", version, about = "Manage a running xswd")]
pub struct Args {
    /// xswd's control socket.
    #[arg(long, global = true, default_value = "/run/xsw/xsw.sock")]
    pub socket: PathBuf,
    /// Print the reply as JSON, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Ports: interfaces (NICs, veths) and VM taps the switch forwards between.
    #[command(subcommand)]
    Port(PortCommand),
    /// Tenants: isolated networks, each with its own MAC table, broadcast domain and ACLs.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// VLANs on trunk ports: which tenant travels under which 802.1Q tag.
    #[command(subcommand)]
    Vlan(VlanCommand),
    /// Anti-spoofing: the addresses a port may send from.
    #[command(subcommand)]
    Antispoof(AntispoofCommand),
    /// Storm control: broadcast, multicast and unknown-unicast frames per second per port.
    #[command(subcommand)]
    Storm(StormCommand),
    /// Tenant ACLs: ordered allow/deny rules per direction, first match wins.
    #[command(subcommand)]
    Acl(AclCommand),
    /// The MAC table.
    #[command(subcommand)]
    Fdb(FdbCommand),
    /// VXLAN tunnel ports: a tenant's network carried to other hosts.
    #[command(subcommand)]
    Tunnel(crate::tunnel::TunnelCommand),
    /// The configuration: the running one, a file to check, a reload.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Change data-plane settings live (saved to the config file).
    Tune(TuneArgs),
    /// Per-port counters, drops by reason, and per-worker totals.
    Stats,
    /// Live rates per port (frames/s, bytes/s, drops/s by reason) and per
    /// worker, refreshed every second until interrupted.
    Top(crate::top::TopArgs),
    /// The fast path's flow entries: key, action, counters, age.
    Flows,
    /// What the running switch would do with a frame entering PORT, stage by
    /// stage (parse, tenant, anti-spoofing, RA/DHCP guard, ACLs, MAC lookup,
    /// storm control, each egress port, fast path), without sending it or
    /// changing anything. Give the frame as fields (defaults fill the rest)
    /// or as --hex bytes.
    Trace(xsw::control::protocol::TraceArgs),
    /// Version, uptime, workers, ports.
    Status,
    /// Write man pages and shell completions for xswctl and xswd into DIR
    /// (packaging; needs no running xswd).
    #[command(hide = true)]
    GenerateAssets { dir: PathBuf },
}

#[derive(Subcommand)]
pub enum PortCommand {
    /// Attach an interface (or a VM's tap) to the switch.
    Add {
        name: String,
        /// Where frames enter xsw: auto (tc for veths and taps, XDP for
        /// NICs), tc (the in-kernel fast path) or xdp (AF_XDP only).
        #[arg(long, default_value = "auto")]
        hook: HookRequest,
        /// Send every frame entering this port through the workers.
        #[arg(long)]
        no_fast_path: bool,
        /// auto (native, else generic), native or generic.
        #[arg(long, default_value = "auto")]
        xdp_mode: XdpModeRequest,
        /// Replace an XDP program someone else attached to the interface.
        #[arg(long)]
        force: bool,
        /// Frames to this MAC go to the host's own stack, not the switch.
        #[arg(long)]
        host_mac: Option<MacAddr>,
        /// ARP requests for this address go to the host's own stack.
        #[arg(long)]
        host_ipv4: Vec<Ipv4Addr>,
        /// Create a persistent tap with this name for a VM to open.
        #[arg(long)]
        create_tap: bool,
        /// With --create-tap: the uid allowed to open the tap (QEMU's).
        #[arg(long)]
        tap_owner: Option<u32>,
        /// The tenant of this (access) port; `default` when absent.
        #[arg(long, conflicts_with = "trunk")]
        tenant: Option<String>,
        /// A trunk: carries tenants as 802.1Q VLANs (see `xswctl vlan add`).
        #[arg(long)]
        trunk: bool,
        /// Workers for the port's queues, e.g. 0,1 (default: spread).
        #[arg(long, value_delimiter = ',')]
        queue_workers: Vec<usize>,
        /// What the port may send past the RA and DHCP guards: ra, dhcp (e.g. ra,dhcp
        /// for the port of the tenants' router). Default: neither.
        #[arg(long, value_delimiter = ',')]
        trust: Vec<Trusted>,
    },
    /// Detach a port; a tap created with --create-tap is removed.
    Del { name: String },
    /// List ports with their link state, XDP mode, queues, tenant and guard.
    List,
    /// Choose which worker serves each of the port's rx queues: queue q goes
    /// to the (q mod n)-th listed worker (the port is re-attached).
    Queues {
        name: String,
        #[arg(long, value_delimiter = ',', required = true)]
        workers: Vec<usize>,
    },
    /// Let the fast path switch frames entering the port (on), or send them
    /// all through the workers (off).
    FastPath { name: String, state: OnOff },
    /// What the port may send past the RA and DHCP guards: ra, dhcp, both
    /// (ra,dhcp) or none.
    Trust {
        name: String,
        #[arg(value_delimiter = ',', required = true)]
        kinds: Vec<TrustChoice>,
    },
    /// Move an access port to another tenant (its learned MACs are forgotten).
    Set {
        name: String,
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Subcommand)]
pub enum TenantCommand {
    Create {
        name: String,
    },
    /// Refused while ports or trunk VLANs still use the tenant.
    Delete {
        name: String,
    },
    List,
    Show {
        name: String,
    },
    /// Delegate the tenant to an unprivileged user or group: they may then
    /// manage its taps, ACLs and MAC entries, and nothing else (root only).
    Grant {
        name: String,
        #[command(flatten)]
        whom: Grantee,
    },
    /// Withdraw a grant (root only).
    Revoke {
        name: String,
        #[command(flatten)]
        whom: Grantee,
    },
}

/// Whom a tenant is granted to: a user, a group, or both.
#[derive(clap::Args)]
#[group(required = true, multiple = true)]
pub struct Grantee {
    /// A user id.
    #[arg(long)]
    uid: Option<u32>,
    /// A group id: every member (primary or supplementary group) gets the grant.
    #[arg(long)]
    gid: Option<u32>,
}

#[derive(Subcommand)]
pub enum VlanCommand {
    /// Carry TENANT on trunk PORT tagged with VID (1-4094).
    Add {
        port: String,
        vid: u16,
        tenant: String,
    },
    Del {
        port: String,
        vid: u16,
    },
}

/// A kind of trust on the command line; `none` clears them.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TrustChoice {
    Ra,
    Dhcp,
    None,
}

#[derive(Subcommand)]
pub enum StormCommand {
    /// Set limits in frames per second (0: no limit) for one port (--port) or as the
    /// switch-wide default; kinds not given stay as they are.
    Set {
        /// The port whose own limits to set; without it, the default of every port
        /// that has none of its own.
        #[arg(long)]
        port: Option<String>,
        #[arg(long)]
        broadcast: Option<u32>,
        #[arg(long)]
        multicast: Option<u32>,
        #[arg(long)]
        unknown_unicast: Option<u32>,
        /// With --port: drop the port's own limits first, so it follows the default.
        #[arg(long)]
        inherit: bool,
    },
    /// The default limits and each port's limits in force.
    Show,
}

#[derive(Subcommand)]
pub enum AntispoofCommand {
    /// Allow PORT to send only from these MACs and IP prefixes (replaces the port's list).
    Set {
        port: String,
        /// A MAC the port may send from (repeat for several).
        #[arg(long = "mac", required = true)]
        macs: Vec<String>,
        /// An IPv4/IPv6 address or prefix the port may send from (repeat for several).
        #[arg(long = "ip")]
        ips: Vec<String>,
        /// Also deliver to the port only unicast IP traffic for its own addresses.
        #[arg(long)]
        restrict_to_port: bool,
    },
    /// Turn anti-spoofing off for PORT.
    Clear { port: String },
}

#[derive(Subcommand)]
pub enum AclCommand {
    /// Add a rule, evaluated in order: first match wins.
    Add(AclAddArgs),
    /// Remove the rule at POSITION (1-based).
    Del {
        tenant: String,
        direction: String,
        position: usize,
    },
    /// Move the rule at FROM to position TO.
    Move {
        tenant: String,
        direction: String,
        from: usize,
        to: usize,
    },
    /// Set what happens when no rule matches: allow or deny.
    Policy {
        tenant: String,
        direction: String,
        action: String,
    },
    /// Show the rules with their hit counters.
    List { tenant: String },
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the running configuration (what xswd saves after every change).
    Show,
    /// Validate a config file without applying it (needs no running xswd).
    Check { file: PathBuf },
    /// Re-read xswd's config file and apply only the difference (like SIGHUP).
    Reload,
}

#[derive(Subcommand)]
pub enum FdbCommand {
    /// Show learned and static MAC entries.
    Show {
        /// Only this tenant's table.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Add a static entry: frames to MAC always go to PORT.
    Add {
        mac: String,
        port: String,
        /// For a trunk port: which of its tenants.
        #[arg(long)]
        tenant: Option<String>,
        /// For a tunnel port: the remote endpoint the MAC is behind.
        #[arg(long)]
        remote: Option<std::net::IpAddr>,
    },
    /// Remove an entry.
    Del {
        mac: String,
        /// The tenant whose table holds it (default: `default`).
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// The request a command sends; `config check` sends none (it runs here).
pub fn request(command: Command) -> Request {
    match command {
        Command::Config(ConfigCommand::Show) => Request::ConfigShow {},
        Command::Config(ConfigCommand::Reload) => Request::ConfigReload {},
        // Handled before any request is built (see main).
        Command::Config(ConfigCommand::Check { .. })
        | Command::Top(_)
        | Command::GenerateAssets { .. } => Request::Status {},
        Command::Port(PortCommand::Add {
            name,
            hook,
            no_fast_path,
            xdp_mode,
            force,
            host_mac,
            host_ipv4,
            create_tap,
            tap_owner,
            tenant,
            trunk,
            queue_workers,
            trust,
        }) => Request::PortAdd(PortSpec {
            name,
            hook,
            fast_path: !no_fast_path,
            xdp_mode,
            force,
            host_mac,
            host_ipv4,
            create_tap,
            tap_owner,
            tenant,
            trunk,
            queue_workers,
            trust,
            ..PortSpec::default()
        }),
        Command::Port(PortCommand::Trust { name, kinds }) => Request::PortTrust {
            name,
            trust: kinds
                .into_iter()
                .filter_map(|kind| match kind {
                    TrustChoice::Ra => Some(Trusted::Ra),
                    TrustChoice::Dhcp => Some(Trusted::Dhcp),
                    TrustChoice::None => None,
                })
                .collect(),
        },
        Command::Storm(StormCommand::Set {
            port,
            broadcast,
            multicast,
            unknown_unicast,
            inherit,
        }) => Request::StormSet {
            port,
            limits: StormOverrides {
                broadcast,
                multicast,
                unknown_unicast,
            },
            inherit,
        },
        Command::Storm(StormCommand::Show) => Request::StormShow {},
        Command::Port(PortCommand::Del { name }) => Request::PortDel { name },
        Command::Port(PortCommand::List) => Request::PortList {},
        Command::Port(PortCommand::Set { name, tenant }) => Request::PortSet { name, tenant },
        Command::Port(PortCommand::FastPath { name, state }) => Request::PortFastPath {
            name,
            enabled: state.is_on(),
        },
        Command::Port(PortCommand::Queues { name, workers }) => Request::PortQueues {
            name,
            queue_workers: workers,
        },
        Command::Tenant(TenantCommand::Create { name }) => Request::TenantCreate { name },
        Command::Tenant(TenantCommand::Delete { name }) => Request::TenantDelete { name },
        Command::Tenant(TenantCommand::List) => Request::TenantList {},
        Command::Tenant(TenantCommand::Show { name }) => Request::TenantShow { name },
        Command::Tenant(TenantCommand::Grant { name, whom }) => Request::TenantGrant {
            name,
            uid: whom.uid,
            gid: whom.gid,
        },
        Command::Tenant(TenantCommand::Revoke { name, whom }) => Request::TenantRevoke {
            name,
            uid: whom.uid,
            gid: whom.gid,
        },
        Command::Vlan(VlanCommand::Add { port, vid, tenant }) => Request::VlanAdd {
            port,
            vlan: vid,
            tenant,
        },
        Command::Vlan(VlanCommand::Del { port, vid }) => Request::VlanDel { port, vlan: vid },
        Command::Antispoof(AntispoofCommand::Set {
            port,
            macs,
            ips,
            restrict_to_port,
        }) => Request::AntispoofSet {
            port,
            macs,
            ips,
            restrict_to_port,
        },
        Command::Antispoof(AntispoofCommand::Clear { port }) => Request::AntispoofClear { port },
        Command::Acl(AclCommand::Add(args)) => Request::AclAdd(args),
        Command::Acl(AclCommand::Del {
            tenant,
            direction,
            position,
        }) => Request::AclDel {
            tenant,
            direction,
            position,
        },
        Command::Acl(AclCommand::Move {
            tenant,
            direction,
            from,
            to,
        }) => Request::AclMove {
            tenant,
            direction,
            from,
            to,
        },
        Command::Acl(AclCommand::Policy {
            tenant,
            direction,
            action,
        }) => Request::AclPolicy {
            tenant,
            direction,
            action,
        },
        Command::Acl(AclCommand::List { tenant }) => Request::AclList { tenant },
        Command::Fdb(FdbCommand::Show { tenant }) => Request::FdbShow { tenant },
        Command::Fdb(FdbCommand::Add {
            mac,
            port,
            tenant,
            remote,
        }) => Request::FdbAdd {
            mac,
            port,
            tenant,
            remote,
        },
        Command::Fdb(FdbCommand::Del { mac, tenant }) => Request::FdbDel { mac, tenant },
        Command::Tune(args) => Request::Tune(args),
        Command::Tunnel(command) => crate::tunnel::request(command),
        Command::Stats => Request::Stats {},
        Command::Flows => Request::FlowList {},
        Command::Trace(args) => Request::Trace(args),
        Command::Status => Request::Status {},
    }
}
