//! The control plane: the switch's state (`switch`), the protocol spoken on
//! the control socket (`protocol`), the daemon's listener (`server`) and the
//! client xswctl uses (`client`).

pub mod client;
pub mod protocol;
pub mod server;
pub mod switch;
