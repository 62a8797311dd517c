//! VXLAN tunnel ports: their description, and the underlay sockets they use.
//!
//! The underlay is the host's own network stack. A UDP socket bound to the tunnel's local
//! address and port receives the encapsulated frames (the kernel has already checked the
//! outer IP and UDP headers and checksums, and reassembled nothing: VXLAN packets are sent
//! with don't-fragment). Encapsulated frames leave through a raw `IPPROTO_UDP` socket on
//! which xsw writes the UDP header itself, so each frame gets a UDP source port hashed from
//! its inner flow; the kernel adds the IP header (source address, TTL, don't-fragment),
//! routes it and resolves the next hop. See README, Tunnels, for why not a NIC port.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use serde::{Deserialize, Serialize};

use crate::packet::vxlan::{DEFAULT_PORT, VNI_MAX};

/// Most remote endpoints one tunnel port has: the MAC table stores an endpoint as one byte.
pub const MAX_REMOTES: usize = 254;
/// TTL (IPv4) or hop limit (IPv6) of encapsulated packets, as Linux's vxlan default.
pub const OUTER_TTL: u32 = 64;

/// A tunnel port's underlay settings, as the config file and `xswctl tunnel add` give them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelSpec {
    /// This host's underlay address: encapsulated frames leave from it and arrive at it.
    pub local: IpAddr,
    /// The other hosts' underlay addresses (head-end replication sends floods to each).
    pub remote: Vec<IpAddr>,
    /// The VXLAN network identifier of the port's tenant, 0 to 16777215.
    pub vni: u32,
    /// UDP destination port (and the port received on).
    #[serde(default = "default_port")]
    pub dstport: u16,
}

fn default_port() -> u16 {
    DEFAULT_PORT
}

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("VNI {0} is out of range 0-{VNI_MAX}")]
    VniOutOfRange(u32),
    #[error("a tunnel needs at least one --remote")]
    NoRemote,
    #[error("a tunnel has at most {MAX_REMOTES} remotes, not {0}")]
    TooManyRemotes(usize),
    #[error("remote {remote} is not the local address's family ({local} is IPv{family})")]
    MixedFamilies {
        local: IpAddr,
        remote: IpAddr,
        family: u8,
    },
    #[error("remote {0} is listed twice")]
    DuplicateRemote(IpAddr),
    #[error("{0} cannot be a tunnel endpoint: use a unicast address of this host or of the peer")]
    NotUnicast(IpAddr),
    #[error("UDP port 0 cannot be a tunnel's dstport")]
    ZeroPort,
    #[error(
        "cannot receive on {local}: {source} (is the address on an interface of this namespace, \
         and no other vxlan device or xswd tunnel endpoint using the port?)"
    )]
    Bind {
        local: SocketAddr,
        source: io::Error,
    },
    #[error("cannot open the raw UDP socket that sends encapsulated frames: {0}")]
    RawSocket(#[source] io::Error),
    #[error("cannot send from {local}: {source} (is it an address of this host?)")]
    BindSender { local: IpAddr, source: io::Error },
    #[error("setting {option} on a tunnel socket: {source}")]
    SocketOption {
        option: &'static str,
        source: io::Error,
    },
}

impl TunnelSpec {
    /// Every check that needs no socket: a spec that passes can only fail on the host
    /// (address not configured, port taken).
    pub fn validate(&self) -> Result<(), TunnelError> {
        if self.vni > VNI_MAX {
            return Err(TunnelError::VniOutOfRange(self.vni));
        }
        if self.dstport == 0 {
            return Err(TunnelError::ZeroPort);
        }
        if self.remote.is_empty() {
            return Err(TunnelError::NoRemote);
        }
        if self.remote.len() > MAX_REMOTES {
            return Err(TunnelError::TooManyRemotes(self.remote.len()));
        }
        if !is_unicast(self.local) {
            return Err(TunnelError::NotUnicast(self.local));
        }
        for (i, remote) in self.remote.iter().enumerate() {
            if remote.is_ipv4() != self.local.is_ipv4() {
                return Err(TunnelError::MixedFamilies {
                    local: self.local,
                    remote: *remote,
                    family: if self.local.is_ipv4() { 4 } else { 6 },
                });
            }
            if !is_unicast(*remote) || *remote == self.local {
                return Err(TunnelError::NotUnicast(*remote));
            }
            if self.remote[..i].contains(remote) {
                return Err(TunnelError::DuplicateRemote(*remote));
            }
        }
        Ok(())
    }

    /// Where the tunnel receives.
    pub fn endpoint(&self) -> SocketAddr {
        SocketAddr::new(self.local, self.dstport)
    }
}

fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

/// The receive socket of a tunnel endpoint (local address and port): non-blocking, shared
/// by every tunnel port with that endpoint (they differ by VNI).
pub fn open_receiver(local: SocketAddr) -> Result<UdpSocket, TunnelError> {
    let bind = |source| TunnelError::Bind { local, source };
    let socket = UdpSocket::bind(local).map_err(bind)?;
    socket.set_nonblocking(true).map_err(bind)?;
    // A larger queue rides out a worker's short pauses; the kernel caps it at
    // net.core.rmem_max, which is fine: only a hint.
    let _ = set_int(
        socket.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUF,
        4 << 20,
    );
    Ok(socket)
}

/// The send socket of a tunnel: raw UDP from `local`, with the outer TTL and don't-fragment
/// set. A frame that does not fit the route's MTU is refused by `sendmsg` (EMSGSIZE) and
/// counted, never fragmented or cut. Over IPv6 the kernel computes the UDP checksum
/// (`IPV6_CHECKSUM`), which IPv6 requires; over IPv4 it stays 0 ("none").
pub fn open_sender(local: IpAddr) -> Result<OwnedFd, TunnelError> {
    let family = if local.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_UDP,
        )
    };
    if fd < 0 {
        return Err(TunnelError::RawSocket(io::Error::last_os_error()));
    }
    // SAFETY: fd is a descriptor socket(2) just returned, owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = socket.as_raw_fd();
    let option = |option: &'static str, result: io::Result<()>| {
        result.map_err(|source| TunnelError::SocketOption { option, source })
    };
    if local.is_ipv4() {
        option(
            "IP_TTL",
            set_int(raw, libc::IPPROTO_IP, libc::IP_TTL, OUTER_TTL),
        )?;
        option(
            "IP_MTU_DISCOVER",
            set_int(
                raw,
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DO as u32,
            ),
        )?;
    } else {
        option(
            "IPV6_UNICAST_HOPS",
            set_int(raw, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, OUTER_TTL),
        )?;
        option(
            "IPV6_MTU_DISCOVER",
            set_int(
                raw,
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_DO as u32,
            ),
        )?;
        // The UDP checksum sits 6 bytes into what xsw writes.
        option(
            "IPV6_CHECKSUM",
            set_int(raw, libc::IPPROTO_IPV6, libc::IPV6_CHECKSUM, 6),
        )?;
    }
    // A raw socket also receives a copy of every UDP packet for the host; this one only
    // sends, so a filter that accepts nothing keeps copies from queueing on it.
    option("SO_ATTACH_FILTER", drop_everything(raw))?;
    let addr = RawSockAddr::new(local);
    // SAFETY: addr holds a valid sockaddr of `addr.len` bytes for the call's duration.
    let bound = unsafe { libc::bind(raw, addr.as_ptr(), addr.len) };
    if bound != 0 {
        return Err(TunnelError::BindSender {
            local,
            source: io::Error::last_os_error(),
        });
    }
    Ok(socket)
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: u32) -> io::Result<()> {
    let value = value as libc::c_int;
    // SAFETY: value is a live c_int and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Attaches the classic BPF program `ret #0`: every packet is dropped before it queues.
fn drop_everything(fd: RawFd) -> io::Result<()> {
    let mut program = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let fprog = libc::sock_fprog {
        len: 1,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: fprog points at a one-instruction program that lives through the call; the
    // kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An IP address as the kernel's socket calls take it (port 0: raw sockets need no port).
#[derive(Clone, Copy)]
pub struct RawSockAddr {
    storage: libc::sockaddr_storage,
    pub len: libc::socklen_t,
}

impl std::fmt::Debug for RawSockAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.ip())
    }
}

impl RawSockAddr {
    pub fn new(ip: IpAddr) -> Self {
        // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match ip {
            IpAddr::V4(v4) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: 0,
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v4.octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe {
                    std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin)
                };
                std::mem::size_of::<libc::sockaddr_in>()
            }
            IpAddr::V6(v6) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: 0,
                    sin6_flowinfo: 0,
                    sin6_addr: libc::in6_addr {
                        s6_addr: v6.octets(),
                    },
                    sin6_scope_id: 0,
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe {
                    std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6)
                };
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        RawSockAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }

    pub fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }

    /// The address in `storage` (as recvmmsg fills it), if it is IPv4 or IPv6.
    pub fn ip_of(storage: &libc::sockaddr_storage) -> Option<IpAddr> {
        match i32::from(storage.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in, which it is
                // large and aligned enough for.
                let sin = unsafe {
                    &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
                };
                Some(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 = unsafe {
                    &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
                };
                Some(IpAddr::from(sin6.sin6_addr.s6_addr))
            }
            _ => None,
        }
    }

    pub fn ip(&self) -> Option<IpAddr> {
        Self::ip_of(&self.storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(local: &str, remotes: &[&str], vni: u32) -> TunnelSpec {
        TunnelSpec {
            local: local.parse().unwrap(),
            remote: remotes.iter().map(|r| r.parse().unwrap()).collect(),
            vni,
            dstport: DEFAULT_PORT,
        }
    }

    #[test]
    fn validate_names_what_is_wrong() {
        assert!(spec("192.0.2.1", &["192.0.2.2", "192.0.2.3"], 100)
            .validate()
            .is_ok());
        assert!(spec("2001:db8::1", &["2001:db8::2"], VNI_MAX)
            .validate()
            .is_ok());
        let cases = [
            (
                spec("192.0.2.1", &["192.0.2.2"], VNI_MAX + 1),
                "out of range",
            ),
            (spec("192.0.2.1", &[], 1), "at least one"),
            (spec("192.0.2.1", &["2001:db8::2"], 1), "family"),
            (spec("192.0.2.1", &["192.0.2.2", "192.0.2.2"], 1), "twice"),
            (spec("0.0.0.0", &["192.0.2.2"], 1), "unicast"),
            (spec("192.0.2.1", &["239.1.1.1"], 1), "unicast"),
            (spec("192.0.2.1", &["192.0.2.1"], 1), "unicast"),
        ];
        for (bad, needle) in cases {
            let message = bad.validate().unwrap_err().to_string();
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
        let mut zero = spec("192.0.2.1", &["192.0.2.2"], 1);
        zero.dstport = 0;
        assert!(zero.validate().is_err());
        let many: Vec<String> = (0..=MAX_REMOTES)
            .map(|i| format!("10.1.{}.{}", i / 200, i % 200 + 1))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(spec("192.0.2.1", &many, 1)
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at most"));
    }

    #[test]
    fn sockaddr_round_trips() {
        for ip in ["198.51.100.7", "2001:db8::7"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(RawSockAddr::new(ip).ip(), Some(ip));
        }
    }

    #[test]
    fn spec_reads_from_toml_with_the_default_port() {
        let parsed: TunnelSpec =
            toml::from_str("local = \"192.0.2.1\"\nremote = [\"192.0.2.2\"]\nvni = 7\n").unwrap();
        assert_eq!(parsed, spec("192.0.2.1", &["192.0.2.2"], 7));
        assert!(toml::from_str::<TunnelSpec>(
            "local = \"192.0.2.1\"\nremote = []\nvni = 7\nttl = 3\n"
        )
        .is_err());
    }
}
