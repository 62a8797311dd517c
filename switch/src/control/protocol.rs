//! The control socket's protocol: one JSON request per line, one JSON reply
//! per line. Specified for script writers in docs/control-protocol.md.

use serde::{Deserialize, Serialize};

use crate::config::PortSpec;
pub use crate::control::trace_frame::TraceArgs;
use crate::pipeline::guard::Trusted;
use crate::pipeline::storm::StormOverrides;

pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    PortAdd(PortSpec),
    PortDel {
        name: String,
    },
    PortList {},
    /// Moves an access port to another tenant.
    PortSet {
        name: String,
        tenant: String,
    },
    /// Chooses which worker serves each of a port's queues (re-attaches it).
    PortQueues {
        name: String,
        queue_workers: Vec<usize>,
    },
    VlanAdd {
        port: String,
        vlan: u16,
        tenant: String,
    },
    VlanDel {
        port: String,
        vlan: u16,
    },
    AntispoofSet {
        port: String,
        macs: Vec<String>,
        #[serde(default)]
        ips: Vec<String>,
        #[serde(default)]
        restrict_to_port: bool,
    },
    AntispoofClear {
        port: String,
    },
    TenantCreate {
        name: String,
    },
    TenantDelete {
        name: String,
    },
    TenantList {},
    TenantShow {
        name: String,
    },
    /// Delegates tenant `name` to an unprivileged user or group (root only).
    TenantGrant {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
    },
    /// Withdraws a grant made with `TenantGrant` (root only).
    TenantRevoke {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
    },
    AclAdd(AclAddArgs),
    AclDel {
        tenant: String,
        direction: String,
        position: usize,
    },
    AclMove {
        tenant: String,
        direction: String,
        from: usize,
        to: usize,
    },
    AclPolicy {
        tenant: String,
        direction: String,
        action: String,
    },
    AclList {
        tenant: String,
    },
    FdbShow {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
    },
    FdbAdd {
        mac: String,
        port: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        /// For a tunnel port: the remote endpoint the MAC is behind.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remote: Option<std::net::IpAddr>,
    },
    FdbDel {
        mac: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
    },
    Stats {},
    Status {},
    /// Changes data-plane settings live; absent fields stay as they are.
    Tune(TuneArgs),
    /// The fast path's flow entries, with their keys, actions and counters.
    FlowList {},
    /// Lets the fast path switch frames entering this port, or not.
    PortFastPath {
        name: String,
        enabled: bool,
    },
    /// Sets what a port is trusted to send: router advertisements (`ra`), DHCP server
    /// messages (`dhcp`); an empty list trusts it for neither (root only).
    PortTrust {
        name: String,
        trust: Vec<Trusted>,
    },
    /// Sets storm-control limits (frames per second, 0: none): a port's own when `port`
    /// is given, else the switch-wide default. Kinds left out stay as they are; with
    /// `inherit`, a port's own limits are dropped first, so it follows the default
    /// (root only).
    StormSet {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<String>,
        #[serde(flatten)]
        limits: StormOverrides,
        #[serde(default)]
        inherit: bool,
    },
    /// The switch-wide storm-control limits and each port's limits in force.
    StormShow {},
    /// What the pipeline would do with a frame entering a port, stage by
    /// stage, without sending it (see `control::trace`).
    Trace(TraceArgs),
    /// The running configuration as a config file.
    ConfigShow {},
    /// Re-read the config file and apply the difference (as SIGHUP does).
    ConfigReload {},
}

impl Request {
    /// Whether a successful request changes what the config file holds.
    pub fn changes_config(&self) -> bool {
        !matches!(
            self,
            Request::PortList {}
                | Request::TenantList {}
                | Request::TenantShow { .. }
                | Request::AclList { .. }
                | Request::FdbShow { .. }
                | Request::Stats {}
                | Request::FlowList {}
                | Request::Status {}
                | Request::ConfigShow {}
                | Request::ConfigReload {}
                | Request::StormShow {}
                | Request::Trace(_)
        )
    }
}

/// Data-plane settings to change; absent ones stay as they are. The same
/// struct is xswctl's `tune` arguments and the request's fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct TuneArgs {
    /// Frames per receive batch (1-1024).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// adaptive (sleep when idle) or busy-poll (never sleep).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<crate::dataplane::worker::PollMode>,
    /// Adaptive mode: empty turns before a worker sleeps (a longer spin wakes
    /// faster after a pause and costs more idle CPU).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_budget: Option<u32>,
    /// Seconds before an unused MAC entry is forgotten.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_aging_secs: Option<u64>,
    /// Most MACs one port may have in the table (0: no limit).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_limit_per_port: Option<u32>,
    /// Most MACs one tenant may have in the table (0: no limit).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_limit_per_tenant: Option<u32>,
    /// Cores to run one worker each on, e.g. 0,1 (rebuilds the data plane).
    #[arg(long, value_delimiter = ',')]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<Vec<usize>>,
    /// Ring sizes and UMEM frames per worker (rebuild the data plane).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_ring: Option<u32>,
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_ring: Option<u32>,
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_ring: Option<u32>,
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comp_ring: Option<u32>,
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_count: Option<u32>,
    /// Switch known flows in the kernel: on or off, for the whole switch.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_path: Option<OnOff>,
    /// Seconds without traffic after which a flow entry is removed.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_idle_timeout_secs: Option<u64>,
}

/// A switch's two positions, as typed on the command line.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn is_on(self) -> bool {
        self == OnOff::On
    }
}

impl std::str::FromStr for OnOff {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(OnOff::On),
            "off" => Ok(OnOff::Off),
            other => Err(format!("{other:?}: use on or off")),
        }
    }
}

/// An ACL rule as typed: every field a string the daemon parses, so a
/// malformed value is refused by xswd with a reason, whoever sent it. The
/// same struct is xswctl's `acl add` arguments and the request's fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct AclAddArgs {
    pub tenant: String,
    /// ingress (frames ports send) or egress (frames delivered to ports).
    pub direction: String,
    /// allow or deny
    pub action: String,
    /// Insert at this 1-based position (default: append).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<usize>,
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    /// tcp, udp, icmp, icmpv6, sctp or a protocol number.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    /// A port or range, e.g. 1024-65535.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<String>,
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<String>,
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// TCP with ACK or RST set: replies to connections the other side opened.
    #[arg(long)]
    #[serde(default)]
    pub established: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is not valid JSON or not a known command.
    BadRequest,
    UnsupportedVersion,
    /// An argument has the wrong form (a MAC, a mode, a name).
    InvalidArgument,
    NotFound,
    AlreadyExists,
    /// The kernel refused (XDP attach, socket bind, tap creation).
    System,
    /// The client may not do this (see `xswctl tenant grant`).
    PermissionDenied,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub version: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReply>,
}

impl Reply {
    pub fn success(data: serde_json::Value) -> Self {
        Reply {
            version: PROTOCOL_VERSION,
            ok: true,
            data: Some(data),
            error: None,
        }
    }

    pub fn failure(code: ErrorCode, message: impl Into<String>) -> Self {
        Reply {
            version: PROTOCOL_VERSION,
            ok: false,
            data: None,
            error: Some(ErrorReply {
                code,
                message: message.into(),
            }),
        }
    }
}

/// Parses one request line: `{"version":1,"cmd":"port_add",...}`.
pub fn parse_request(line: &str) -> Result<Request, ErrorReply> {
    let bad = |message: String| ErrorReply {
        code: ErrorCode::BadRequest,
        message,
    };
    let mut value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| bad(format!("request is not valid JSON: {e}")))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| bad("request must be a JSON object".into()))?;
    match object.remove("version") {
        Some(v) if v.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => {}
        Some(v) => {
            return Err(ErrorReply {
                code: ErrorCode::UnsupportedVersion,
                message: format!("protocol version {v} is not supported; this xswd speaks version {PROTOCOL_VERSION}"),
            })
        }
        None => return Err(bad(format!("missing \"version\" (this xswd speaks version {PROTOCOL_VERSION})"))),
    }
    if !object.contains_key("cmd") {
        return Err(bad("missing \"cmd\"".into()));
    }
    serde_json::from_value(value).map_err(|e| bad(e.to_string()))
}

pub fn encode_request(request: &Request) -> String {
    let mut value = serde_json::to_value(request).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("version".into(), PROTOCOL_VERSION.into());
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_through_its_line_form() {
        let request = Request::FdbAdd {
            mac: "02:00:00:00:00:01".into(),
            port: "veth0".into(),
            tenant: Some("web".into()),
            remote: Some("192.0.2.2".parse().unwrap()),
        };
        assert_eq!(parse_request(&encode_request(&request)), Ok(request));
    }

    #[test]
    fn a_trace_request_round_trips_and_refuses_unknown_fields() {
        let request = Request::Trace(TraceArgs {
            port: "vm1".into(),
            dst_mac: Some("02:00:00:00:00:02".into()),
            proto: Some("udp".into()),
            dport: Some(53),
            ..TraceArgs::default()
        });
        assert_eq!(parse_request(&encode_request(&request)), Ok(request));
        let field =
            parse_request(r#"{"version":1,"cmd":"trace","port":"vm1","ttl":3}"#).unwrap_err();
        assert!(field.message.contains("ttl"), "{}", field.message);
    }

    #[test]
    fn unknown_commands_fields_and_versions_are_refused_with_their_names() {
        let unknown = parse_request(r#"{"version":1,"cmd":"port_explode"}"#).unwrap_err();
        assert!(
            unknown.message.contains("port_explode"),
            "{}",
            unknown.message
        );
        let field = parse_request(r#"{"version":1,"cmd":"port_del","name":"a","colour":"red"}"#)
            .unwrap_err();
        assert!(field.message.contains("colour"), "{}", field.message);
        let wrong_type = parse_request(r#"{"version":1,"cmd":"port_del","name":7}"#).unwrap_err();
        assert_eq!(wrong_type.code, ErrorCode::BadRequest);
        let version = parse_request(r#"{"version":9,"cmd":"status"}"#).unwrap_err();
        assert_eq!(version.code, ErrorCode::UnsupportedVersion);
        assert!(parse_request("not json").is_err());
        assert!(parse_request(r#"{"version":1}"#).is_err());
    }
}
