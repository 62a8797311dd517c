//! The control plane: the switch's state (`switch`, with its operations by
//! subject in `ports`, `tenants`, `fdb`, `report`), the protocol spoken on
//! the control socket (`protocol`), the daemon's listener (`server`) and the
//! client xswctl uses (`client`), and the Prometheus endpoint (`metrics`).

pub mod access;
pub mod client;
mod fdb;
mod guards;
pub mod metrics;
mod missing;
pub mod persist;
mod ports;
pub mod protocol;
pub mod refusals;
mod report;
pub mod server;
pub mod switch;
mod tenants;
mod trace;
pub mod trace_frame;
mod tuning;
mod tunnels;
