//! xsw: a kernel-bypass software switch.
//!
//! The folders follow the path of a frame and of a command:
//! - `packet`: views over frame bytes (parsing, no I/O).
//! - `pipeline`: the pure switching stages (decide what happens to a frame).
//! - `xdp`: the XDP program that steers frames into AF_XDP sockets.
//! - `port`: interfaces, taps and AF_XDP sockets (system-facing).
//! - `dataplane`: workers that move frames between sockets in batches.
//! - `control`: the daemon's state, the control socket and its protocol.
//! - `config`: the configuration file.
//! - `service`: systemd integration (readiness, watchdog).
//! - `error`: helpers for reporting errors (one line with every source).

pub mod config;
pub mod control;
pub mod daemon_cli;
pub mod dataplane;
pub mod error;
pub mod packet;
pub mod pipeline;
pub mod port;
pub mod service;
pub mod xdp;
