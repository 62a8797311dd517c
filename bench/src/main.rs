//! xsw-bench: traffic generator, sink and reference forwarder for measuring
//! xsw against the Linux bridge and a bare XDP forwarder. See bench/README.md.

mod frame;
mod fwd;
mod gen;
mod measure;
mod prog_run;
mod progs;
mod sink;
mod sys;

use std::net::Ipv4Addr;
use std::process::ExitCode;

use clap::{ArgGroup, Parser, Subcommand};

use frame::{Mac, UdpFlow};
use progs::XdpMode;

#[derive(Parser)]
#[command(
    name = "xsw-bench",
    version,
    about = "Benchmark tools for xsw (run as root)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send UDP/IPv4 frames out of an interface from inside the kernel
    /// (XDP_TX run by BPF_PROG_RUN in live-frames mode).
    #[command(group(ArgGroup::new("stop").required(true).args(["count", "duration"])))]
    Gen {
        /// Interface to send from (on a veth, frames arrive at its peer).
        #[arg(long)]
        iface: String,
        /// Frame size on the wire INCLUDING the 4-byte FCS, as in RFC 2544
        /// (64..=1518); the frames in memory are 4 bytes shorter.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Stop after this many frames.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// Frames per second to aim for (default: as fast as possible).
        /// Frames leave in bursts every ~2 ms at full speed.
        #[arg(long)]
        rate: Option<u64>,
        #[arg(long, default_value = "02:b5:00:00:00:01")]
        src_mac: Mac,
        #[arg(long, default_value = "02:b5:00:00:00:02")]
        dst_mac: Mac,
        #[arg(long, default_value = "198.18.0.1")]
        src_ip: Ipv4Addr,
        #[arg(long, default_value = "198.18.0.2")]
        dst_ip: Ipv4Addr,
        /// UDP source port of the first flow.
        #[arg(long, default_value_t = 1024)]
        src_port: u16,
        /// UDP destination port (9 = discard).
        #[arg(long, default_value_t = 9)]
        dst_port: u16,
        /// Number of flows: the UDP source port cycles over src-port ..
        /// src-port+K-1, frame by frame (the UDP checksum is then 0, "none").
        #[arg(long, default_value_t = 1)]
        flows: u16,
        /// Frames per kernel batch (1..=256).
        #[arg(long, default_value_t = 64)]
        batch: u32,
        /// Pin the generator to this CPU (its veth peer's receive work runs
        /// there too, unless the peer has threaded NAPI).
        #[arg(long)]
        cpu: Option<usize>,
        /// Write a sequence number and the send time (CLOCK_MONOTONIC) into
        /// each frame's UDP payload, for `sink --measure` (UDP checksum 0).
        #[arg(long)]
        stamp: bool,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Count frames arriving on an interface in XDP (then drop them); print
    /// frames/s every second and a summary without the warm-up.
    Sink {
        #[arg(long)]
        iface: String,
        /// Total run time in seconds, warm-up included.
        #[arg(long)]
        duration: f64,
        /// Seconds at the start left out of the summary (rounded up to whole
        /// seconds).
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        #[arg(long, value_enum, default_value_t = XdpMode::Native)]
        xdp_mode: XdpMode,
        /// Measure loss, reordering and one-way latency of the frames of
        /// `gen --stamp` (same host) instead of only counting.
        #[arg(long)]
        measure: bool,
        /// With --measure: the UDP destination port of the stamped frames.
        #[arg(long, default_value_t = 9, requires = "measure")]
        dst_port: u16,
        /// Print the summary as one JSON object on stdout (progress stays on stderr).
        #[arg(long)]
        json: bool,
    },
    /// Forward every frame between two interfaces with a bare XDP program and
    /// a DEVMAP: the upper bound for a two-port switch on this host.
    Fwd {
        #[arg(long)]
        a: String,
        #[arg(long)]
        b: String,
        /// Stop after this many seconds (default: until Ctrl-C or SIGTERM).
        #[arg(long)]
        duration: Option<f64>,
        #[arg(long, value_enum, default_value_t = XdpMode::Native)]
        xdp_mode: XdpMode,
    },
}

/// A JSON string literal for `s` (interface names may hold any byte but '/',
/// NUL and whitespace).
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Gen {
            iface,
            size,
            count,
            duration,
            rate,
            src_mac,
            dst_mac,
            src_ip,
            dst_ip,
            src_port,
            dst_port,
            flows,
            batch,
            cpu,
            stamp,
            json,
        } => gen::run(gen::GenOpts {
            iface,
            size,
            count,
            duration,
            rate,
            flow: UdpFlow {
                src_mac,
                dst_mac,
                src_ip,
                dst_ip,
                src_port,
                dst_port,
            },
            flows,
            batch,
            cpu,
            stamp,
            json,
        }),
        Cmd::Sink {
            iface,
            duration,
            warmup,
            xdp_mode,
            measure: true,
            dst_port,
            json,
        } => measure::run(measure::MeasureOpts {
            iface,
            duration,
            warmup,
            xdp_mode,
            dst_port,
            json,
        }),
        Cmd::Sink {
            iface,
            duration,
            warmup,
            xdp_mode,
            measure: false,
            dst_port: _,
            json,
        } => sink::run(sink::SinkOpts {
            iface,
            duration,
            warmup,
            xdp_mode,
            json,
        }),
        Cmd::Fwd {
            a,
            b,
            duration,
            xdp_mode,
        } => fwd::run(fwd::FwdOpts {
            a,
            b,
            duration,
            xdp_mode,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
