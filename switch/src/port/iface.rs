//! Facts about a network interface, read from sysfs and the kernel.
//!
//! Read on the control path only (port add, link monitoring), never per frame.

use std::ffi::CString;
use std::fs;
use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum IfaceError {
    #[error("no interface named {0:?} in this network namespace (check `ip link`)")]
    NotFound(String),
    #[error("{0:?} is not a valid interface name: at most 15 bytes, no '/', no whitespace")]
    BadName(String),
    #[error("reading {path}: {source}")]
    Sysfs { path: String, source: io::Error },
}

/// What kind of device a port sits on; it decides how the port is described
/// to the user, not how frames move (both use AF_XDP).
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IfaceKind {
    Nic,
    Tap,
    Veth,
    /// A VXLAN tunnel port: no interface of its own (see `port::tunnel`).
    Tunnel,
}

pub fn validate_name(name: &str) -> Result<(), IfaceError> {
    let ok = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace() || b == b':');
    if ok {
        Ok(())
    } else {
        Err(IfaceError::BadName(name.to_string()))
    }
}

fn sysfs(name: &str, file: &str) -> PathBuf {
    PathBuf::from("/sys/class/net").join(name).join(file)
}

pub fn ifindex(name: &str) -> Result<u32, IfaceError> {
    validate_name(name)?;
    let cname = CString::new(name).map_err(|_| IfaceError::BadName(name.to_string()))?;
    // SAFETY: cname is a valid NUL-terminated string that outlives the call;
    // if_nametoindex only reads it.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        Err(IfaceError::NotFound(name.to_string()))
    } else {
        Ok(index)
    }
}

pub fn exists(name: &str) -> bool {
    ifindex(name).is_ok()
}

pub fn kind(name: &str) -> IfaceKind {
    // Only tun/tap devices have tun_flags; a tap is what a VM sits behind.
    if sysfs(name, "tun_flags").exists() {
        IfaceKind::Tap
    } else if driver(name).as_deref() == Some("veth") {
        IfaceKind::Veth
    } else {
        IfaceKind::Nic
    }
}

/// The interface's driver name (ETHTOOL_GDRVINFO), if it says.
pub fn driver(name: &str) -> Option<String> {
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        rest: [u8; 160],
    }
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        rest: [0; 160],
    };
    // SAFETY: DrvInfo is laid out as struct ethtool_drvinfo (196 bytes)
    // with the command first, which is all ETHTOOL_GDRVINFO writes.
    unsafe { ethtool(name, &mut info) }.ok()?;
    let len = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Some(String::from_utf8_lossy(&info.driver[..len]).into_owned())
}

/// One SIOCETHTOOL request on interface `name`, with `command` as its data.
///
/// # Safety
/// `T` must be the ethtool structure the command in its first field expects,
/// as large as the kernel reads and writes for it.
pub(crate) unsafe fn ethtool<T>(name: &str, command: &mut T) -> std::io::Result<()> {
    #[repr(C)]
    struct IfReq<T> {
        name: [libc::c_char; libc::IFNAMSIZ],
        data: *mut T,
        _pad: [u8; 16],
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: command,
        _pad: [0; 16],
    };
    for (slot, byte) in req
        .name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *slot = byte as libc::c_char;
    }
    // SAFETY: socket() takes no pointers; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh descriptor nothing else owns.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    // SAFETY: req is a valid ifreq whose data points at `command`, both alive
    // across the call; the caller promises `command` fits what the kernel
    // reads and writes for it.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SIOCETHTOOL,
            &mut req,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The interface's MTU; None if it cannot be read.
pub fn mtu(name: &str) -> Option<u32> {
    fs::read_to_string(sysfs(name, "mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether frames can flow: administratively up and carrier present.
/// A tap that no process holds has no carrier.
pub fn link_up(name: &str) -> bool {
    let flags = fs::read_to_string(sysfs(name, "flags")).ok();
    let admin_up = flags
        .as_deref()
        .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|f| f & libc::IFF_UP as u32 != 0);
    let carrier = fs::read_to_string(sysfs(name, "carrier"))
        .map(|c| c.trim() == "1")
        .unwrap_or(false);
    admin_up && carrier
}

/// Whether a port of `kind` at `ifindex` is a veth whose peer sits in
/// another network namespace (a container's end). Only then may the fast
/// path hand a frame straight to the peer's receive (bpf_redirect_peer); the
/// kernel drops what it redirects so to a peer in the same namespace. The
/// kernel says so by giving the veth a link-netnsid (IFLA_LINK_NETNSID),
/// which it leaves out when the peer is in the same namespace. A failure to
/// ask counts as "no": the plain redirect works either way.
pub fn peer_elsewhere(kind: IfaceKind, ifindex: u32) -> bool {
    kind == IfaceKind::Veth && matches!(link_netnsid(ifindex), Ok(Some(_)))
}

/// The IFLA_LINK_NETNSID of the link `ifindex` (RTM_GETLINK), if it has one.
fn link_netnsid(ifindex: u32) -> io::Result<Option<i32>> {
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
    use netlink_packet_route::link::{LinkAttribute, LinkMessage};
    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    let mut message = LinkMessage::default();
    message.header.index = ifindex;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let mut packet = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::GetLink(message)),
    );
    packet.finalize();
    let mut buffer = vec![0; packet.buffer_len()];
    packet.serialize(&mut buffer);
    socket.send_to(&buffer, &SocketAddr::new(0, 0), 0)?;
    // One link's attributes (statistics included) fit in a page or two.
    let mut reply = vec![0; 32 * 1024];
    let n = socket.recv(&mut &mut reply[..], 0)?;
    let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[..n])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    match parsed.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => Ok(link
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                LinkAttribute::LinkNetNsId(id) => Some(*id),
                _ => None,
            })),
        NetlinkPayload::Error(e) => Err(e.code.map_or_else(
            || io::Error::other("no link"),
            |code| io::Error::from_raw_os_error(-code.get()),
        )),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected reply to RTM_GETLINK",
        )),
    }
}

/// The number of receive queues, each of which gets its own AF_XDP socket.
pub fn rx_queue_count(name: &str) -> Result<u32, IfaceError> {
    let dir = sysfs(name, "queues");
    let entries = fs::read_dir(&dir).map_err(|source| IfaceError::Sysfs {
        path: dir.display().to_string(),
        source,
    })?;
    let count = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count() as u32;
    Ok(count.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_names_the_kernel_would_refuse() {
        for bad in ["", "a/b", "sixteen-chars-xx", "with space", "a:b", ".."] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        validate_name("veth-a0").expect("plain name refused");
    }

    #[test]
    fn loopback_is_found_and_missing_interface_is_not() {
        assert!(ifindex("lo").is_ok());
        assert!(matches!(
            ifindex("xsw-nonexist0"),
            Err(IfaceError::NotFound(_))
        ));
        assert_eq!(kind("lo"), IfaceKind::Nic);
    }

    fn ip(args: &[&str]) {
        let status = std::process::Command::new("ip")
            .args(args)
            .status()
            .expect("running ip");
        assert!(status.success(), "ip {args:?}");
    }

    /// Needs root, as every test run does. Runs in a namespace of its own
    /// (a thread that unshares it), so the names collide with nothing.
    #[test]
    fn a_veth_peer_is_elsewhere_only_in_another_namespace() {
        let answers = std::thread::spawn(|| {
            // SAFETY: unshare takes no pointers; it changes only this
            // thread's network namespace.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
            ip(&["link", "add", "pa", "type", "veth", "peer", "name", "pb"]);
            // The end that moves out needs a name free in the test's own
            // namespace too.
            let moving = format!("xswpeer{}", std::process::id());
            ip(&["link", "add", "pc", "type", "veth", "peer", "name", &moving]);
            let here = ifindex("pa").expect("pa");
            let there = ifindex("pc").expect("pc");
            let before = peer_elsewhere(kind("pc"), there);
            // Into the namespace of this process (the test's first thread).
            let pid = std::process::id().to_string();
            ip(&["link", "set", &moving, "netns", &pid]);
            let moved = peer_elsewhere(kind("pc"), there);
            let loopback = peer_elsewhere(IfaceKind::Veth, 1);
            // Taps and NICs never are, whatever their link says.
            let not_veth = peer_elsewhere(IfaceKind::Tap, there);
            let (same, kind_pa) = (peer_elsewhere(kind("pa"), here), kind("pa"));
            ip(&["link", "del", "pc"]);
            (same, kind_pa, before, moved, loopback, not_veth)
        })
        .join()
        .expect("the namespace thread");
        assert_eq!(answers.1, IfaceKind::Veth);
        assert!(!answers.0, "a veth whose peer is in the same namespace");
        assert!(!answers.2, "before its peer moved");
        assert!(answers.3, "after its peer moved to another namespace");
        assert!(!answers.4, "loopback");
        assert!(!answers.5, "asked as a tap");
    }
}
