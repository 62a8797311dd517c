//! xswctl: manage a running xswd through its control socket.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;
use xsw::config::PortSpec;
use xsw::control::client;
use xsw::control::protocol::Request;
use xsw::packet::MacAddr;
use xsw::xdp::XdpModeRequest;

#[derive(Parser)]
#[command(name = "xswctl", version, about = "Manage a running xswd")]
struct Args {
    /// xswd's control socket.
    #[arg(long, global = true, default_value = "/run/xsw/xsw.sock")]
    socket: PathBuf,
    /// Print the reply as JSON, for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ports: interfaces (NICs, veths) and VM taps the switch forwards between.
    #[command(subcommand)]
    Port(PortCommand),
    /// The MAC table.
    #[command(subcommand)]
    Fdb(FdbCommand),
    /// Per-port counters, drops by reason, and per-worker totals.
    Stats,
    /// Version, uptime, workers, ports.
    Status,
}

#[derive(Subcommand)]
enum PortCommand {
    /// Attach an interface (or a VM's tap) to the switch.
    Add {
        name: String,
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
    },
    /// Detach a port; a tap created with --create-tap is removed.
    Del { name: String },
    /// List ports with their link state, XDP mode and queues.
    List,
}

#[derive(Subcommand)]
enum FdbCommand {
    /// Show learned and static MAC entries.
    Show,
    /// Add a static entry: frames to MAC always go to PORT.
    Add { mac: String, port: String },
    /// Remove an entry.
    Del { mac: String },
}

fn request(command: Command) -> Request {
    match command {
        Command::Port(PortCommand::Add {
            name,
            xdp_mode,
            force,
            host_mac,
            host_ipv4,
            create_tap,
            tap_owner,
        }) => Request::PortAdd(PortSpec {
            name,
            xdp_mode,
            force,
            host_mac,
            host_ipv4,
            create_tap,
            tap_owner,
        }),
        Command::Port(PortCommand::Del { name }) => Request::PortDel { name },
        Command::Port(PortCommand::List) => Request::PortList {},
        Command::Fdb(FdbCommand::Show) => Request::FdbShow {},
        Command::Fdb(FdbCommand::Add { mac, port }) => Request::FdbAdd { mac, port },
        Command::Fdb(FdbCommand::Del { mac }) => Request::FdbDel { mac },
        Command::Stats => Request::Stats {},
        Command::Status => Request::Status {},
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
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

fn render(request: &Request, data: &Value) -> String {
    let empty = Vec::new();
    let rows = data.as_array().unwrap_or(&empty);
    match request {
        Request::PortList {} => table(
            &["NAME", "KIND", "LINK", "XDP", "ZEROCOPY", "QUEUES"],
            rows.iter()
                .map(|p| {
                    let queues = p["queues"].as_array().unwrap_or(&empty);
                    let queues = queues
                        .iter()
                        .map(|q| format!("{}@w{}", q["queue"], q["worker"]))
                        .collect::<Vec<_>>()
                        .join(",");
                    vec![
                        text(&p["name"]),
                        text(&p["kind"]),
                        text(&p["link"]),
                        text(&p["xdp_mode"]),
                        text(&p["zero_copy"]),
                        queues,
                    ]
                })
                .collect(),
        ),
        Request::FdbShow {} => table(
            &["MAC", "PORT", "TYPE", "AGE"],
            rows.iter()
                .map(|e| {
                    let static_entry = e["static"].as_bool().unwrap_or(false);
                    let age = if static_entry {
                        "-".to_string()
                    } else {
                        format!("{}s", e["age_secs"])
                    };
                    vec![
                        text(&e["mac"]),
                        text(&e["port"]),
                        if static_entry { "static" } else { "learned" }.into(),
                        age,
                    ]
                })
                .collect(),
        ),
        Request::Stats {} => {
            let ports = data["ports"].as_array().unwrap_or(&empty);
            let mut out = table(
                &[
                    "PORT",
                    "RX-FRAMES",
                    "RX-BYTES",
                    "TX-FRAMES",
                    "TX-BYTES",
                    "DROPS",
                ],
                ports
                    .iter()
                    .map(|p| {
                        let drops: u64 = p["drops"]
                            .as_object()
                            .map_or(0, |d| d.values().filter_map(Value::as_u64).sum());
                        vec![
                            text(&p["name"]),
                            text(&p["rx_frames"]),
                            text(&p["rx_bytes"]),
                            text(&p["tx_frames"]),
                            text(&p["tx_bytes"]),
                            drops.to_string(),
                        ]
                    })
                    .collect(),
            );
            for p in ports {
                for (reason, count) in p["drops"].as_object().into_iter().flatten() {
                    if count.as_u64().unwrap_or(0) > 0 {
                        out.push_str(&format!(
                            "\n  {} dropped {}: {}",
                            text(&p["name"]),
                            reason,
                            count
                        ));
                    }
                }
            }
            let workers = data["workers"].as_array().unwrap_or(&empty);
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
                workers
                    .iter()
                    .map(|w| {
                        vec![
                            text(&w["id"]),
                            text(&w["core"]),
                            text(&w["frames"]),
                            text(&w["batches"]),
                            text(&w["sleeps"]),
                            text(&w["umem_frames_free"]),
                        ]
                    })
                    .collect(),
            ));
            out
        }
        Request::Status {} => data
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k}: {}", text(v)))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default(),
        Request::PortAdd(spec) => format!(
            "port {} added ({} XDP, {})",
            spec.name,
            text(&data["xdp_mode"]),
            if data["zero_copy"].as_bool() == Some(true) {
                "zero-copy"
            } else {
                "copy mode"
            }
        ),
        Request::PortDel { name } => format!("port {name} removed"),
        Request::FdbAdd { mac, port } => format!("static MAC {mac} -> {port}"),
        Request::FdbDel { mac } => format!("MAC {mac} removed"),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let request = request(args.command);
    let reply = match client::call(&args.socket, &request, Duration::from_secs(30)) {
        Ok(reply) => reply,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !reply.ok {
        let message = reply
            .error
            .map(|e| e.message)
            .unwrap_or_else(|| "xswd refused the request".into());
        eprintln!("error: {message}");
        return ExitCode::FAILURE;
    }
    let data = reply.data.unwrap_or(Value::Null);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&data).unwrap_or_default()
        );
    } else {
        println!("{}", render(&request, &data));
    }
    ExitCode::SUCCESS
}
