//! Where frames enter and leave the switch: interfaces (NICs, veths, VM
//! taps), reached through AF_XDP sockets steered by the XDP program.

pub mod afxdp;
pub mod iface;
pub mod link_events;
pub mod slow_path;
pub mod tap;
pub mod tunnel;
