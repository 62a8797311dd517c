//! Taps that xsw creates for VMs (the persistent kind libvirt and QEMU open
//! by name). A tap that QEMU or libvirt already created needs none of this:
//! xsw attaches to its host-side interface like to any other.
//!
//! The tap is made persistent and the fd closed at once, so the guest's
//! process is the only one that ever holds it; xsw moves frames through the
//! host-side interface with AF_XDP like for a NIC.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error(
        "cannot open /dev/net/tun: {0} (is the tun module loaded? does xswd have CAP_NET_ADMIN?)"
    )]
    OpenTun(#[source] io::Error),
    #[error("cannot create tap {name:?}: {source}")]
    Create { name: String, source: io::Error },
    #[error("cannot make tap {name:?} persistent: {source}")]
    Persist { name: String, source: io::Error },
    #[error("cannot give tap {name:?} to uid {uid}: {source}")]
    Owner {
        name: String,
        uid: u32,
        source: io::Error,
    },
    #[error("cannot bring tap {name:?} up: {source}")]
    LinkUp { name: String, source: io::Error },
    #[error("cannot remove tap {name:?}: {source}")]
    Remove { name: String, source: io::Error },
}

#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl IfReqFlags {
    fn new(name: &str, flags: libc::c_short) -> Self {
        let mut req = IfReqFlags {
            name: [0; libc::IFNAMSIZ],
            flags,
            _pad: [0; 22],
        };
        // Callers validated the name (< IFNAMSIZ bytes), so the NUL stays.
        for (dst, src) in req
            .name
            .iter_mut()
            .zip(name.bytes().take(libc::IFNAMSIZ - 1))
        {
            *dst = src as libc::c_char;
        }
        req
    }
}

fn ioctl(fd: &impl AsRawFd, request: libc::c_ulong, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: fd is open for the call; `arg` is an integer or the address of a
    // live IfReqFlags, the size these requests read and write.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, arg) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn attach(name: &str) -> Result<File, TapError> {
    attach_with(name, IFF_TAP | IFF_NO_PI, 0)
}

/// Opens the single queue of tap `name` (creating the tap if it does not
/// exist) the way a guest's backend, QEMU, does: no packet-information
/// header, non-blocking reads. A tap made here goes away with the fd. The
/// kernel's answer stays in the error (`TapError::Create`'s source: EBUSY
/// when another process holds the queue, EINVAL for a multi-queue tap).
pub fn open_as_guest(name: &str) -> Result<File, TapError> {
    attach_with(name, IFF_TAP | IFF_NO_PI, libc::O_NONBLOCK)
}

fn attach_with(
    name: &str,
    flags: libc::c_short,
    open_flags: libc::c_int,
) -> Result<File, TapError> {
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(open_flags)
        .open("/dev/net/tun")
        .map_err(TapError::OpenTun)?;
    let mut req = IfReqFlags::new(name, flags);
    ioctl(
        &tun,
        TUNSETIFF,
        &mut req as *mut IfReqFlags as libc::c_ulong,
    )
    .map_err(|source| TapError::Create {
        name: name.to_string(),
        source,
    })?;
    Ok(tun)
}

/// Creates a persistent tap named `name` that `owner` (a uid, e.g. the one
/// QEMU runs as) may open, and brings it administratively up.
pub fn create(name: &str, owner: Option<u32>) -> Result<(), TapError> {
    let tun = attach(name)?;
    ioctl(&tun, TUNSETPERSIST, 1).map_err(|source| TapError::Persist {
        name: name.to_string(),
        source,
    })?;
    if let Some(uid) = owner {
        if let Err(source) = ioctl(&tun, TUNSETOWNER, uid as libc::c_ulong) {
            let _ = ioctl(&tun, TUNSETPERSIST, 0);
            return Err(TapError::Owner {
                name: name.to_string(),
                uid,
                source,
            });
        }
    }
    if let Err(source) = set_admin_up(name) {
        let _ = ioctl(&tun, TUNSETPERSIST, 0);
        return Err(TapError::LinkUp {
            name: name.to_string(),
            source,
        });
    }
    Ok(())
}

/// Removes a tap that `create` made. A guest still holding it keeps the
/// device until it closes its fd, as with `ip tuntap del`.
pub fn remove(name: &str) -> Result<(), TapError> {
    let tun = attach(name).map_err(|e| match e {
        TapError::Create { source, .. } => TapError::Remove {
            name: name.to_string(),
            source,
        },
        other => other,
    })?;
    ioctl(&tun, TUNSETPERSIST, 0).map_err(|source| TapError::Remove {
        name: name.to_string(),
        source,
    })
}

/// A private, non-persistent tap with one queue per worker, held open by
/// xswd only: each worker binds its UMEM's first socket here (see
/// `port::afxdp`). The kernel removes it when xswd exits, however it exits.
pub struct AnchorTap {
    name: String,
    _queues: Vec<File>,
}

impl AnchorTap {
    pub fn create(queues: usize) -> Result<AnchorTap, TapError> {
        // Unique per data plane, so a new one can start before the old one
        // (a live rebuild) has let go of its anchor.
        static GENERATION: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1000;
        let name = format!("xswa{}g{generation}", std::process::id() % 10_000_000);
        let fds = (0..queues.max(1))
            .map(|_| attach_with(&name, IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE, 0))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AnchorTap { name, _queues: fds })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Sets interface `name` administratively up (`ip link set NAME up`).
pub fn set_admin_up(name: &str) -> io::Result<()> {
    // SAFETY: socket() takes no pointers; the result is checked below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh descriptor that nothing else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let mut req = IfReqFlags::new(name, 0);
    ioctl(
        &sock,
        libc::SIOCGIFFLAGS,
        &mut req as *mut IfReqFlags as libc::c_ulong,
    )?;
    req.flags |= libc::IFF_UP as libc::c_short;
    ioctl(
        &sock,
        libc::SIOCSIFFLAGS,
        &mut req as *mut IfReqFlags as libc::c_ulong,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::iface;

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn creates_a_persistent_tap_and_removes_it() {
        assert!(
            is_root(),
            "this test needs root (CAP_NET_ADMIN) to create a real tap"
        );
        let name = format!("xswt{}", std::process::id() % 100_000);
        create(&name, Some(1000)).expect("create tap");
        assert!(iface::exists(&name), "tap {name} not visible after create");
        assert_eq!(iface::kind(&name), iface::IfaceKind::Tap);
        let owner =
            std::fs::read_to_string(format!("/sys/class/net/{name}/owner")).unwrap_or_default();
        assert_eq!(owner.trim(), "1000");
        remove(&name).expect("remove tap");
        assert!(!iface::exists(&name), "tap {name} still there after remove");
    }
}
