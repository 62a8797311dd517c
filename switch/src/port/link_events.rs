//! Link-state notifications: the kernel tells xswd when a link goes up or down,
//! so an idle switch does not poll every port's state.

use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// The rtnetlink multicast group of link changes (`RTMGRP_LINK`).
const RTMGRP_LINK: u32 = 1;

/// Why link notifications could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinkEventsError {
    #[error("cannot open a netlink route socket for link notifications")]
    Socket(#[source] std::io::Error),
    #[error("cannot subscribe to link notifications (RTMGRP_LINK)")]
    Subscribe(#[source] std::io::Error),
}

/// What [`LinkEvents::wait`] saw.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// Some link changed (or the kernel dropped notifications because we were slow,
    /// which means the same: re-read every port).
    Changed,
    /// Nothing happened within the timeout.
    Quiet,
}

/// A netlink socket subscribed to link changes in the daemon's network namespace.
pub struct LinkEvents {
    socket: Socket,
    buffer: Vec<u8>,
}

impl LinkEvents {
    pub fn open() -> Result<LinkEvents, LinkEventsError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(LinkEventsError::Socket)?;
        socket
            .bind(&SocketAddr::new(0, RTMGRP_LINK))
            .map_err(LinkEventsError::Subscribe)?;
        socket
            .set_non_blocking(true)
            .map_err(LinkEventsError::Socket)?;
        Ok(LinkEvents {
            socket,
            buffer: vec![0; 64 * 1024],
        })
    }

    /// Sleeps until a link notification arrives or `timeout` passes, then drains every
    /// queued notification: a burst of changes (a port flapping, many veths created at
    /// once) costs one re-read. The messages themselves are not parsed: any link
    /// message means "re-read the ports".
    pub fn wait(&mut self, timeout: Duration) -> LinkEvent {
        let mut pfd = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: pfd is one valid pollfd that poll only writes the revents field of.
        let ready = unsafe { libc::poll(&mut pfd, 1, millis) };
        if ready <= 0 {
            return LinkEvent::Quiet;
        }
        let mut event = LinkEvent::Quiet;
        loop {
            match self.socket.recv(&mut &mut self.buffer[..], 0) {
                Ok(0) => break,
                Ok(_) => event = LinkEvent::Changed,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // ENOBUFS: notifications were lost; the caller re-reads everything.
                Err(_) => {
                    event = LinkEvent::Changed;
                    break;
                }
            }
        }
        event
    }
}
