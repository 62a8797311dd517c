//! The configuration file (TOML). Every key is optional; defaults suit a
//! small host. Errors name the file, the line and what to change.

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dataplane::worker::PollMode;
use crate::packet::MacAddr;
use crate::pipeline::acl::{AclAction, AclRule};
use crate::pipeline::antispoof::PortGuard;
use crate::pipeline::guard::Trusted;
use crate::pipeline::storm::{StormLimits, StormOverrides};
use crate::xdp::XdpModeRequest;

mod locate;
pub mod rules;
mod validate;

use rules::{Invalid, Step};

pub const DEFAULT_PATH: &str = "/etc/xsw/xsw.toml";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub dataplane: DataplaneSection,
    #[serde(default)]
    pub umem: UmemSection,
    #[serde(default)]
    pub fast_path: FastPathSection,
    /// Storm-control limits of every port that does not set its own.
    #[serde(default)]
    pub storm_control: StormLimits,
    #[serde(default, rename = "port", skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    #[serde(default, rename = "fdb", skip_serializing_if = "Vec::is_empty")]
    pub fdb: Vec<StaticFdbSpec>,
    #[serde(default, rename = "tenant", skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<TenantSpec>,
    #[serde(default, skip_serializing_if = "MetricsSection::is_off")]
    pub metrics: MetricsSection,
}

/// The Prometheus endpoint (off unless `listen` is set; `xswd --metrics`
/// overrides it). Read at startup only: a reload does not move it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Address and port to serve `GET /metrics` on, e.g. "127.0.0.1:9417".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<std::net::SocketAddr>,
}

impl MetricsSection {
    pub fn is_off(&self) -> bool {
        self.listen.is_none()
    }
}

/// A tenant and its ACLs (the `default` tenant may be listed to give it ACLs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub name: String,
    #[serde(default)]
    pub ingress_default: Option<AclAction>,
    #[serde(default)]
    pub egress_default: Option<AclAction>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<AclRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<AclRule>,
    /// Unprivileged users (uids) and groups (gids) this tenant is delegated to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_uids: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_gids: Vec<u32>,
}

/// A trunk VLAN: frames of `tenant` travel on `port` tagged `vlan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VlanSpec {
    pub vlan: u16,
    pub tenant: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataplaneSection {
    /// One worker per listed core, pinned to it.
    pub workers: Vec<usize>,
    pub batch_size: usize,
    pub mode: PollMode,
    /// Adaptive mode: empty turns of the loop before a worker sleeps.
    pub poll_budget: u32,
    pub mac_aging_secs: u64,
    pub fdb_capacity: usize,
    /// Most MACs one port may have in the table (absent: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_limit_per_port: Option<u32>,
    /// Most MACs one tenant may have in the table (absent: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_limit_per_tenant: Option<u32>,
}

/// The in-kernel fast path (see ARCHITECTURE.md, Fast path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FastPathSection {
    /// Switch known flows in the kernel. Off: every frame goes through the workers.
    pub enabled: bool,
    /// Size limit of the flow table; when full, new flows stay in user space.
    pub flows: u32,
    /// Entries without traffic for this long are removed.
    pub idle_timeout_secs: u64,
}

impl Default for FastPathSection {
    fn default() -> Self {
        FastPathSection {
            enabled: true,
            flows: 131_072,
            idle_timeout_secs: 10,
        }
    }
}

impl Default for DataplaneSection {
    fn default() -> Self {
        DataplaneSection {
            workers: vec![0],
            batch_size: 64,
            mode: PollMode::Adaptive,
            poll_budget: 200,
            mac_aging_secs: 300,
            fdb_capacity: 65536,
            mac_limit_per_port: None,
            mac_limit_per_tenant: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UmemSection {
    /// Frames per worker; shared by all the worker's sockets.
    pub frame_count: u32,
    pub frame_size: u32,
    pub rx_ring: u32,
    pub tx_ring: u32,
    pub fill_ring: u32,
    pub comp_ring: u32,
}

impl Default for UmemSection {
    fn default() -> Self {
        UmemSection {
            frame_count: 4096,
            frame_size: 2048,
            rx_ring: 1024,
            tx_ring: 1024,
            fill_ring: 2048,
            comp_ring: 2048,
        }
    }
}

/// A port, as the config file and `xswctl port add` describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub name: String,
    /// Where xsw takes the port's frames: tc (the fast path's hook) or XDP.
    #[serde(default)]
    pub hook: HookRequest,
    /// Frames entering here may be switched by the fast path (when it is on).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub fast_path: bool,
    #[serde(default)]
    pub xdp_mode: XdpModeRequest,
    /// Replace an XDP program someone else attached.
    #[serde(default)]
    pub force: bool,
    /// Frames to this MAC go to the host's own stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_mac: Option<MacAddr>,
    /// ARP requests for these addresses go to the host's own stack.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_ipv4: Vec<Ipv4Addr>,
    /// Create a persistent tap with this name (for a VM) instead of
    /// attaching to an existing interface.
    #[serde(default)]
    pub create_tap: bool,
    /// With create_tap: the uid allowed to open the tap (QEMU's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap_owner: Option<u32>,
    /// The tenant of an access port (`default` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// A trunk carries tenants as 802.1Q VLANs (`vlans`), not one tenant.
    #[serde(default)]
    pub trunk: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<VlanSpec>,
    /// Which worker serves each rx queue: queue q goes to worker
    /// `queue_workers[q % len]` (worker indices, 0-based). Empty: spread
    /// automatically.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queue_workers: Vec<usize>,
    /// The addresses the port may send from (anti-spoofing), set by root.
    /// Router advertisements and DHCP server messages the port may send (RA and DHCP
    /// guard); none by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust: Vec<Trusted>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub antispoof: Option<PortGuard>,
    /// The port's own storm-control limits, kind by kind (others follow
    /// `[storm_control]`).
    #[serde(default, skip_serializing_if = "StormOverrides::is_empty")]
    pub storm_control: StormOverrides,
    /// A VXLAN tunnel port (no interface): its underlay and VNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<crate::port::tunnel::TunnelSpec>,
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

impl Default for PortSpec {
    fn default() -> Self {
        PortSpec {
            name: String::new(),
            hook: HookRequest::default(),
            fast_path: true,
            xdp_mode: XdpModeRequest::default(),
            force: false,
            host_mac: None,
            host_ipv4: Vec::new(),
            create_tap: false,
            tap_owner: None,
            tenant: None,
            trunk: false,
            vlans: Vec::new(),
            queue_workers: Vec::new(),
            trust: Vec::new(),
            antispoof: None,
            storm_control: StormOverrides::default(),
            tunnel: None,
        }
    }
}

/// Where a port's frames enter xsw.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookRequest {
    /// tc for veths and taps (the fast path, and the kernel's GSO and
    /// checksum state kept), XDP for other interfaces (NICs).
    #[default]
    Auto,
    /// tc ingress: the fast path; misses reach the workers through the
    /// internal slow-path device.
    Tc,
    /// XDP: frames go straight to the workers' sockets; no fast path.
    Xdp,
}

impl std::str::FromStr for HookRequest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "tc" => Ok(Self::Tc),
            "xdp" => Ok(Self::Xdp),
            other => Err(format!("unknown hook {other:?}: use auto, tc or xdp")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticFdbSpec {
    pub mac: MacAddr,
    pub port: String,
    /// Needed for a trunk port: which of its tenants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Needed for a tunnel port: the remote endpoint the MAC is behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<std::net::IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Not TOML, or not the shape of a config (toml's message carries the
    /// line and column and quotes the line).
    #[error("{path}: {}", .source.to_string().trim_end())]
    Syntax {
        path: String,
        source: toml::de::Error,
    },
    /// Well-formed, but a value breaks a rule.
    #[error("{path}: {}{field}: {message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Rule {
        path: String,
        line: Option<usize>,
        field: String,
        message: String,
    },
}

/// A field path as the operator reads it: `port[2].vlans[0].vlan`.
pub fn field_name(field: &[Step]) -> String {
    let mut name = String::new();
    for step in field {
        match step {
            Step::Key(key) => {
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(key);
            }
            Step::Index(index) => name.push_str(&format!("[{index}]")),
        }
    }
    name
}

impl Config {
    /// Parses and validates a config file's text: the one check that
    /// `xswctl config check`, xswd's startup and a reload share.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Syntax {
            path: path.to_string(),
            source,
        })?;
        config.validate().map_err(|invalid| ConfigError::Rule {
            path: path.to_string(),
            line: locate::line_of(text, &invalid.field),
            field: field_name(&invalid.field),
            message: invalid.message,
        })?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// The line of `field` in the file at `path` (for errors found after
    /// the file was read, such as a step the host refused).
    pub fn line_in_file(path: &Path, field: &[Step]) -> Option<usize> {
        let text = std::fs::read_to_string(path).ok()?;
        locate::line_of(&text, field)
    }

    /// Checks what the types cannot: the first problem and its field.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let config = Config::parse("", "t.toml").expect("empty config");
        assert_eq!(config, Config::default());
        assert_eq!(config.dataplane.batch_size, 64);
        assert_eq!(config.dataplane.mode, PollMode::Adaptive);
    }

    #[test]
    fn a_full_file_parses() {
        let text = r#"
            [dataplane]
            workers = [1]
            mode = "busy-poll"
            [umem]
            frame_count = 8192
            [[port]]
            name = "veth-a"
            host_mac = "02:00:00:00:00:aa"
            host_ipv4 = ["198.18.0.1"]
            [[port]]
            name = "tap-vm1"
            create_tap = true
            tap_owner = 1000
            [[fdb]]
            mac = "02:00:00:00:00:01"
            port = "veth-a"
        "#;
        let config = Config::parse(text, "t.toml").expect("valid config");
        assert_eq!(config.ports.len(), 2);
        assert_eq!(config.dataplane.mode, PollMode::BusyPoll);
        assert!(config.ports[1].create_tap);
    }

    #[test]
    fn tenants_trunks_guards_and_acls_parse() {
        let text = r#"
            [[tenant]]
            name = "web"
            egress_default = "deny"
            [[tenant.egress]]
            action = "allow"
            proto = "tcp"
            dport = "22"
            [[tenant.ingress]]
            action = "deny"
            proto = "tcp"
            dport = "25"

            [[port]]
            name = "vnet1"
            tenant = "web"
            [port.antispoof]
            macs = ["52:54:00:00:00:01"]
            ipv4 = ["198.51.100.7/32"]

            [[port]]
            name = "eth1"
            trunk = true
            vlans = [{ vlan = 100, tenant = "web" }]
        "#;
        let config = Config::parse(text, "t.toml").expect("valid config");
        let web = &config.tenants[0];
        assert_eq!(web.egress_default, Some(AclAction::Deny));
        assert_eq!(web.egress[0].to_string(), "allow --proto tcp --dport 22");
        assert_eq!(web.ingress[0].action, AclAction::Deny);
        let guard = config.ports[0].antispoof.as_ref().expect("guard");
        assert_eq!(guard.macs.len(), 1);
        assert!(config.ports[1].trunk);
        assert_eq!(config.ports[1].vlans[0].vlan, 100);
        let err = Config::parse(
            "[[tenant]]\nname = \"t\"\n[[tenant.ingress]]\naction = \"deny\"\ndport = \"9-1\"\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("9-1"), "{err}");
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_key() {
        let err = Config::parse("[umem]\nframe_size = 3000\n", "/etc/xsw/xsw.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/etc/xsw/xsw.toml")
                && err.contains("line 2")
                && err.contains("frame_size"),
            "{err}"
        );
        let err = Config::parse("[dataplane]\nbatch = 3\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("batch"), "{err}");
        let err = Config::parse("[[port]]\nname = \"a\"\nhost_mac = \"zz\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3"), "{err}");
        let err = Config::parse(
            "[[fdb]]\nmac = \"02:00:00:00:00:01\"\nport = \"nope\"\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    /// What xswd used to refuse only at startup, each with its line.
    #[test]
    fn what_the_switch_refuses_the_validator_refuses_with_the_line() {
        let cases: &[(&str, usize, &str, &str)] = &[
            (
                "[[tenant]]\nname = \"t\"\n[[port]]\nname = \"tr\"\ntrunk = true\nvlans = [{ vlan = 0, tenant = \"t\" }]\n",
                6,
                "port[0].vlans[0].vlan",
                "VLAN ID 0",
            ),
            (
                "[[port]]\nname = \"p\"\n[port.antispoof]\nmacs = [\"ff:ff:ff:ff:ff:ff\"]\n",
                3,
                "port[0].antispoof",
                "broadcast",
            ),
            (
                "[[port]]\nname = \"p\"\ntenant = \"nosuch\"\n",
                3,
                "port[0].tenant",
                "no tenant named nosuch",
            ),
            (
                "[[tenant]]\nname = \"t\"\ngrant_uids = [0]\n",
                3,
                "tenant[0].grant_uids",
                "uid 0",
            ),
            (
                "[[port]]\nname = \"p\"\n\ntap_owner = 1000\n",
                4,
                "port[0].tap_owner",
                "create_tap",
            ),
            (
                "[[port]]\nname = \"a\"\n[[port]]\nname = \"a\"\n",
                4,
                "port[1].name",
                "listed twice",
            ),
        ];
        for (text, line, field, words) in cases {
            let err = Config::parse(text, "x.toml").unwrap_err().to_string();
            let want = format!("x.toml: line {line}: {field}: ");
            assert!(
                err.starts_with(&want) && err.contains(words),
                "{text}\ngot  {err}\nwant {want}...{words}"
            );
        }
    }
}
