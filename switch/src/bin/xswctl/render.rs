//! Human-readable forms of xswd's replies (tables, one-line confirmations).

use serde_json::Value;
use xsw::config::PortSpec;
use xsw::control::protocol::Request;

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub(crate) fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

pub(crate) fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

/// Storm-control limits: the default, then each port's in force.
fn storm(data: &Value) -> String {
    let limit = |v: &Value| match v.as_u64() {
        Some(0) => "off".to_string(),
        _ => text(v),
    };
    let row = |name: &str, l: &Value| {
        vec![
            name.to_string(),
            limit(&l["broadcast"]),
            limit(&l["multicast"]),
            limit(&l["unknown_unicast"]),
        ]
    };
    let mut rows = vec![row("(default)", &data["default"])];
    for (name, limits) in data["ports"].as_object().into_iter().flatten() {
        rows.push(row(name, limits));
    }
    table(
        &["PORT", "BROADCAST/S", "MULTICAST/S", "UNKNOWN-UNICAST/S"],
        rows,
    )
}

/// Lines naming every non-zero counter of `object`, e.g. "  p1 dropped acl_deny: 3".
fn nonzero(port: &str, what: &str, object: &Value) -> String {
    let mut out = String::new();
    for (name, count) in object.as_object().into_iter().flatten() {
        if count.as_u64().unwrap_or(0) > 0 {
            out.push_str(&format!("\n  {port} {what} {name}: {count}"));
        }
    }
    out
}

fn port_tenant(p: &Value) -> String {
    if p["trunk"].as_bool() != Some(true) {
        return text(&p["tenant"]);
    }
    let vlans: Vec<String> = items(&p["vlans"])
        .iter()
        .map(|v| format!("{}:{}", v["vlan"], text(&v["tenant"])))
        .collect();
    format!("trunk[{}]", vlans.join(","))
}

fn ports(data: &Value) -> String {
    let rows = items(data)
        .iter()
        .map(|p| {
            let queues: Vec<String> = items(&p["queues"])
                .iter()
                .map(|q| format!("{}@w{}", q["queue"], q["worker"]))
                .collect();
            vec![
                text(&p["name"]),
                text(&p["kind"]),
                text(&p["link"]),
                text(&p["hook"]),
                text(&p["fast_path"]),
                text(&p["xdp_mode"]),
                text(&p["zero_copy"]),
                queues.join(","),
                port_tenant(p),
                if p["antispoof"].is_null() { "-" } else { "on" }.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "NAME", "KIND", "LINK", "HOOK", "FAST", "XDP", "ZEROCOPY", "QUEUES", "TENANT", "GUARD",
        ],
        rows,
    )
}

fn fdb(data: &Value) -> String {
    let rows = items(data)
        .iter()
        .map(|e| {
            let is_static = e["static"].as_bool().unwrap_or(false);
            vec![
                text(&e["mac"]),
                text(&e["port"]),
                text(&e["tenant"]),
                if is_static { "static" } else { "learned" }.to_string(),
                if is_static {
                    "-".to_string()
                } else {
                    format!("{}s", e["age_secs"])
                },
                text(&e["remote"]),
            ]
        })
        .collect();
    table(&["MAC", "PORT", "TENANT", "TYPE", "AGE", "REMOTE"], rows)
}

fn stats(data: &Value) -> String {
    let ports = items(&data["ports"]);
    let rows = ports
        .iter()
        .map(|p| {
            // Per frame received: RX-FRAMES = SWITCHED + DROPPED.
            let dropped: u64 = p["ingress_drops"]
                .as_object()
                .map_or(0, |d| d.values().filter_map(Value::as_u64).sum());
            vec![
                text(&p["name"]),
                text(&p["rx_frames"]),
                text(&p["rx_bytes"]),
                text(&p["tx_frames"]),
                text(&p["tx_bytes"]),
                text(&p["fast_rx_frames"]),
                text(&p["fast_tx_frames"]),
                text(&p["switched"]),
                dropped.to_string(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "PORT",
            "RX-FRAMES",
            "RX-BYTES",
            "TX-FRAMES",
            "TX-BYTES",
            "FAST-RX",
            "FAST-TX",
            "SWITCHED",
            "DROPPED",
        ],
        rows,
    );
    for p in ports {
        let name = text(&p["name"]);
        out.push_str(&nonzero(&name, "dropped", &p["ingress_drops"]));
        // Copies offered to this port that it refused or lost (per copy).
        out.push_str(&nonzero(&name, "copies dropped", &p["egress_drops"]));
        // Missed by the fast path and not passed to the workers.
        out.push_str(&nonzero(&name, "slow path dropped", &p["slow_path_drops"]));
        // Frames the kernel could not hand to xsw never reach its counters.
        // tx_ring_empty counts wake-ups that found nothing left to send:
        // not a loss, so only --json shows it.
        let mut kernel = p["kernel"].clone();
        if let Some(object) = kernel.as_object_mut() {
            object.remove("tx_ring_empty");
        }
        out.push_str(&nonzero(&name, "kernel", &kernel));
    }
    let workers = items(&data["workers"])
        .iter()
        .map(|w| {
            [
                "id",
                "core",
                "frames",
                "batches",
                "sleeps",
                "umem_frames_free",
            ]
            .iter()
            .map(|k| text(&w[*k]))
            .collect()
        })
        .collect();
    let fast = &data["fast_path"];
    out.push_str(&format!(
        "\n\nfast path: {}, {} of {} flow entries, {} refused (table full)",
        if fast["enabled"].as_bool() == Some(true) {
            "on"
        } else {
            "off"
        },
        text(&fast["entries"]),
        text(&fast["capacity"]),
        text(&fast["refused_table_full"]),
    ));
    out.push_str("\n\n");
    out.push_str(&table(
        &[
            "WORKER",
            "CORE",
            "FRAMES",
            "BATCHES",
            "SLEEPS",
            "FREE-FRAMES",
        ],
        workers,
    ));
    out
}

fn flows(data: &Value) -> String {
    let rows = items(&data["flows"])
        .iter()
        .map(|f| {
            let vlan = if f["vlan"].is_null() {
                String::new()
            } else {
                format!(" vlan {}", f["vlan"])
            };
            vec![
                text(&f["in"]),
                format!("{} > {}{vlan}", text(&f["src_mac"]), text(&f["dst_mac"])),
                text(&f["l3"]),
                text(&f["out"]),
                if f["peer"] == true {
                    format!("{} (peer)", text(&f["action"]))
                } else {
                    text(&f["action"])
                },
                text(&f["packets"]),
                text(&f["bytes"]),
                if f["current"] == true {
                    "live"
                } else {
                    "stale"
                }
                .to_string(),
            ]
        })
        .collect();
    let table_summary = &data["table"];
    format!(
        "{}\n\n{} of {} entries",
        table(
            &["IN", "MACS", "L3", "OUT", "ACTION", "PACKETS", "BYTES", "STATE"],
            rows
        ),
        text(&table_summary["entries"]),
        text(&table_summary["capacity"]),
    )
}

fn tenants(data: &Value) -> String {
    let rows = items(data)
        .iter()
        .map(|t| {
            let mut members: Vec<String> = items(&t["ports"]).iter().map(text).collect();
            members.extend(
                items(&t["vlans"])
                    .iter()
                    .map(|v| format!("{}(vlan {})", text(&v["port"]), v["vlan"])),
            );
            vec![text(&t["name"]), text(&t["id"]), members.join(",")]
        })
        .collect();
    table(&["NAME", "ID", "PORTS"], rows)
}

fn acl(data: &Value) -> String {
    let mut out = Vec::new();
    for direction in ["ingress", "egress"] {
        let list = &data[direction];
        let mut rows: Vec<Vec<String>> = items(&list["rules"])
            .iter()
            .map(|r| vec![text(&r["position"]), text(&r["text"]), text(&r["hits"])])
            .collect();
        rows.push(vec![
            "-".into(),
            format!("default {}", text(&list["default"])),
            text(&list["default_hits"]),
        ]);
        out.push(format!(
            "{direction}:\n{}",
            table(&["#", "RULE", "HITS"], rows)
        ));
    }
    out.join("\n\n")
}

fn ids(v: &Value) -> String {
    items(v).iter().map(text).collect::<Vec<_>>().join(", ")
}

fn key_values(data: &Value) -> String {
    data.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k}: {}", text(v)))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

pub fn render(request: &Request, data: &Value) -> String {
    match request {
        Request::PortList {} => ports(data),
        Request::FdbShow { .. } => fdb(data),
        Request::Stats {} => stats(data),
        Request::TenantList {} => tenants(data),
        Request::AclList { .. } => acl(data),
        Request::Status {} | Request::TenantShow { .. } => key_values(data),
        Request::PortAdd(spec) => {
            let added = match &spec.tunnel {
                Some(tunnel) => crate::tunnel::added(&spec.name, tunnel),
                None => port_added(spec, data),
            };
            match data["size_limit"].as_str() {
                Some(limit) => format!("{added}\nnote: {limit}"),
                None => added,
            }
        }
        Request::PortFastPath { name, enabled } => format!(
            "fast path {} for frames entering {name}",
            if *enabled { "on" } else { "off" }
        ),
        Request::FlowList {} => flows(data),
        Request::Trace(_) => crate::trace::render(data),
        Request::PortDel { name } => format!("port {name} removed"),
        Request::PortSet { name, tenant } => format!("port {name} moved to tenant {tenant}"),
        Request::PortQueues { name, .. } => {
            format!("port {name} re-attached with its new queue placement")
        }
        Request::TenantCreate { name } => format!("tenant {name} created"),
        Request::TenantDelete { name } => format!("tenant {name} deleted"),
        Request::TenantGrant { name, .. } | Request::TenantRevoke { name, .. } => format!(
            "tenant {name} is delegated to uids [{}], gids [{}]",
            ids(&data["uids"]),
            ids(&data["gids"])
        ),
        Request::VlanAdd { port, vlan, tenant } => {
            format!("{port} carries tenant {tenant} as VLAN {vlan}")
        }
        Request::VlanDel { port, vlan } => format!("VLAN {vlan} removed from {port}"),
        Request::AntispoofSet { port, .. } => format!("anti-spoofing on for {port}"),
        Request::AntispoofClear { port } => format!("anti-spoofing off for {port}"),
        Request::PortTrust { name, trust } => {
            let kinds: Vec<&str> = trust.iter().map(|t| t.as_str()).collect();
            format!(
                "{name} may send: {}",
                if kinds.is_empty() {
                    "no router advertisements, no DHCP server messages".to_string()
                } else {
                    kinds.join(", ")
                }
            )
        }
        Request::StormSet { .. } | Request::StormShow {} => storm(data),
        Request::AclAdd(_)
        | Request::AclDel { .. }
        | Request::AclMove { .. }
        | Request::AclPolicy { .. } => acl(data),
        Request::FdbAdd { mac, port, .. } => format!("static MAC {mac} -> {port}"),
        Request::FdbDel { mac, .. } => format!("MAC {mac} removed"),
        Request::Tune(_) => {
            let mut out = key_values(data);
            if let Some(queues) = data["recreated_queues"].as_u64() {
                out.push_str(&format!(
                    "\nre-created {queues} queues; traffic paused for {} ms",
                    data["interruption_ms"]
                ));
            }
            out
        }
        Request::ConfigShow {} => data["toml"]
            .as_str()
            .unwrap_or_default()
            .trim_end()
            .to_string(),
        Request::ConfigReload {} => {
            let mut lines = vec!["configuration reloaded".to_string()];
            for (key, label) in [("applied", "applied"), ("failed", "FAILED")] {
                lines.extend(
                    items(&data[key])
                        .iter()
                        .map(|v| format!("  {label}: {}", text(v))),
                );
            }
            lines.join("\n")
        }
    }
}

/// The line for an added port: its hook and how its frames are taken.
fn port_added(spec: &PortSpec, data: &Value) -> String {
    if data["hook"] == "tc" {
        format!(
            "port {} added (tc hook, fast path {})",
            spec.name,
            if data["fast_path"].is_null() {
                "off"
            } else {
                "on"
            }
        )
    } else {
        format!(
            "port {} added ({} XDP, {})",
            spec.name,
            text(&data["xdp_mode"]),
            if data["zero_copy"].as_bool() == Some(true) {
                "zero-copy"
            } else {
                "copy mode"
            }
        )
    }
}
