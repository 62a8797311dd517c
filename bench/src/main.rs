//! xsw-bench: traffic generator, sink and reference forwarder for measuring
//! xsw against the Linux bridge and a bare XDP forwarder. See bench/README.md.

mod afxdp;
mod afxdp_fwd;
mod frame;
mod fwd;
mod gen;
mod gen_afxdp;
mod measure;
mod plot;
mod prog_run;
mod progs;
mod sink;
mod stats;
mod sys;
mod tap_sink;

use std::net::Ipv4Addr;
use std::process::ExitCode;

use clap::{ArgGroup, Parser, Subcommand};

use frame::{Sizes, UdpFlow};
use progs::XdpMode;
use xsw::packet::MacAddr;

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
    /// Send UDP/IPv4 frames out of an interface, from inside the kernel
    /// (XDP_TX run by BPF_PROG_RUN in live-frames mode) or from an AF_XDP
    /// socket (--engine afxdp).
    #[command(group(ArgGroup::new("stop").required(true).args(["count", "duration"])))]
    Gen {
        /// Interface to send from (on a veth, frames arrive at its peer).
        #[arg(long)]
        iface: String,
        /// kernel: BPF_PROG_RUN live frames (fastest on one host); afxdp: an
        /// AF_XDP socket, zero-copy where the driver has it, else copy mode
        /// (for driving a remote host through a real NIC).
        #[arg(long, value_enum, default_value_t = gen::Engine::Kernel)]
        engine: gen::Engine,
        /// Frame size on the wire INCLUDING the 4-byte FCS, as in RFC 2544
        /// (64..=1518); the frames in memory are 4 bytes shorter.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Send the simple IMIX instead of one size: 64, 594 and 1518-byte
        /// frames (FCS included) 7:4:1, interleaved (UDP checksum then 0).
        #[arg(long, conflicts_with = "size")]
        imix: bool,
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
        src_mac: MacAddr,
        #[arg(long, default_value = "02:b5:00:00:00:02")]
        dst_mac: MacAddr,
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
        /// Number of source addresses: the source MAC's low 24 bits and the
        /// source IPv4 cycle over K consecutive values from --src-mac and
        /// --src-ip, frame by frame, so a switch learns K MACs (UDP checksum
        /// then 0). Combines with --flows.
        #[arg(long, default_value_t = 1)]
        src_macs: u32,
        /// Frames per kernel batch (kernel: 1..=256) or per TX kick (afxdp:
        /// 1..=1024).
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
    /// Read frames from a tap like a VM's backend (QEMU opens taps the same
    /// way) and count them, or with --measure measure them like `sink
    /// --measure`: the latency then includes the tap's queue and the
    /// reader's wake-up, as a guest's would.
    TapSink(tap_sink::TapSinkOpts),
    /// Draw benchmark results as SVG.
    #[command(subcommand)]
    Plot(plot::PlotCmd),
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
    /// Forward every frame between two interfaces through AF_XDP sockets on
    /// one shared UMEM, with no switching logic: the baseline for xsw's own
    /// cost. One thread; prints what it forwarded and its user and system
    /// CPU time.
    AfxdpFwd {
        #[arg(long)]
        a: String,
        #[arg(long)]
        b: String,
        /// Pin the forwarding thread to this CPU.
        #[arg(long)]
        cpu: Option<usize>,
        /// Stop after this many seconds (default: until Ctrl-C or SIGTERM).
        #[arg(long)]
        duration: Option<f64>,
        /// Frames taken from an RX ring at a time (1..=1024).
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Sleep in poll() after 200 turns without traffic, as xsw's default
        /// mode does (default: busy-poll, never sleep; a turn without frames
        /// makes one non-blocking poll()).
        #[arg(long)]
        adaptive: bool,
        /// Print the summary as one JSON object on stdout (the text summary
        /// stays on stderr).
        #[arg(long)]
        json: bool,
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
            engine,
            size,
            imix,
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
            src_macs,
            batch,
            cpu,
            stamp,
            json,
        } => gen::run(gen::GenOpts {
            iface,
            engine,
            sizes: if imix {
                Sizes::Imix
            } else {
                Sizes::Fixed(size)
            },
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
            src_macs,
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
        Cmd::TapSink(o) => tap_sink::run(o),
        Cmd::Plot(cmd) => plot::run(cmd),
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
        Cmd::AfxdpFwd {
            a,
            b,
            cpu,
            duration,
            batch,
            adaptive,
            json,
        } => afxdp_fwd::run(afxdp_fwd::AfxdpFwdOpts {
            a,
            b,
            cpu,
            duration,
            batch,
            adaptive,
            json,
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
