//! The daemon's control socket: a Unix stream socket, one JSON request per
//! line, answered in order. Requests are applied one at a time under the
//! switch's lock (the control plane's only lock; workers never take it).
//!
//! Access control is the daemon's job, not the file system's: the socket
//! file is made mode 0666 so that users root delegated a tenant to can
//! connect (its directory must be searchable by them, e.g. 0755). Each
//! connection is identified by the kernel (SO_PEERCRED: the client's pid,
//! uid and gid when it connected; SO_PEERGROUPS: its supplementary groups,
//! else /proc/<pid>/status), and every request is decided by
//! `access::handle_as` for that peer: root may do everything, a delegated
//! user only its tenants' business, anybody else nothing (`permission
//! denied`, logged). Unprivileged peers may hold only a few connections at
//! a time, so opening the socket to them does not let them exhaust xswd.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::access::{self, Peer};
use super::protocol::{parse_request, ErrorCode, Reply};
use super::switch::Switch;

/// Longest request line accepted; a larger one is refused.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Mode of the socket file: anyone may connect; the daemon decides per
/// request from the peer's credentials.
pub const SOCKET_MODE: u32 = 0o666;
/// Open connections one unprivileged uid may hold at once.
const MAX_CONNECTIONS_PER_USER: usize = 8;
/// Open connections all unprivileged peers together may hold at once.
const MAX_UNPRIVILEGED_CONNECTIONS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create {dir}: {source}")]
    Dir { dir: String, source: io::Error },
    #[error("another xswd is already listening on {0}; stop it or pass a different --socket")]
    InUse(String),
    #[error("cannot listen on {path}: {source}")]
    Bind { path: String, source: io::Error },
    #[error("cannot make {path} mode {SOCKET_MODE:o} (so delegated users can connect): {source}")]
    Mode { path: String, source: io::Error },
}

pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    pub fn bind(path: &Path) -> Result<Self, ServerError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| ServerError::Dir {
                dir: dir.display().to_string(),
                source,
            })?;
        }
        if path.exists() {
            // A socket file that nobody answers on is left from a crash.
            if UnixStream::connect(path).is_ok() {
                return Err(ServerError::InUse(path.display().to_string()));
            }
            let _ = std::fs::remove_file(path);
        }
        let listener = UnixListener::bind(path).map_err(|source| ServerError::Bind {
            path: path.display().to_string(),
            source,
        })?;
        // Until this runs the file has the umask's mode: only narrower.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(
            |source| {
                let _ = std::fs::remove_file(path);
                ServerError::Mode {
                    path: path.display().to_string(),
                    source,
                }
            },
        )?;
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Something another thread can use to wake `serve` for a stop, even
    /// when the socket file has been removed from under xswd.
    pub fn waker(&self) -> ServerWaker {
        ServerWaker(std::os::fd::AsRawFd::as_raw_fd(&self.listener))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves until `stop` is set (and the listener woken by a connection).
    pub fn serve(&self, switch: Arc<Mutex<Switch>>, stop: Arc<AtomicBool>) {
        let open = Arc::new(OpenConnections::default());
        for stream in self.listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            match stream {
                Ok(stream) => {
                    let peer = match peer_credentials(&stream) {
                        Ok(peer) => peer,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read a control client's credentials; closing it");
                            continue;
                        }
                    };
                    let Some(slot) = open.take(&peer) else {
                        tracing::warn!(
                            uid = peer.uid,
                            pid = peer.pid,
                            "control client refused: too many open connections for an unprivileged user"
                        );
                        continue;
                    };
                    let switch = switch.clone();
                    let spawned = std::thread::Builder::new()
                        .name("xsw-control".into())
                        .spawn(move || {
                            let _slot = slot;
                            serve_client(stream, &switch, &peer)
                        });
                    if let Err(e) = spawned {
                        tracing::error!(error = %e, "cannot start a control connection thread");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
            }
        }
    }
}

/// The client's credentials as the kernel recorded them when it connected,
/// with its supplementary groups (from the kernel too where it can tell).
fn peer_credentials(stream: &UnixStream) -> io::Result<Peer> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `stream` owns the fd and outlives the call; `cred` is a live,
    // aligned ucred and `len` its exact size, the most the kernel writes.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(io::Error::other(format!(
            "SO_PEERCRED returned {len} bytes, not a ucred"
        )));
    }
    let groups = match peer_groups(stream) {
        Ok(groups) => Some(groups),
        Err(e) => {
            tracing::debug!(error = %e, "SO_PEERGROUPS failed; reading the client's groups from /proc");
            None
        }
    };
    Ok(Peer::from_kernel(cred.pid, cred.uid, cred.gid, groups))
}

/// The client's supplementary groups as the kernel recorded them when it
/// connected (SO_PEERGROUPS, Linux 4.13 and later).
fn peer_groups(stream: &UnixStream) -> io::Result<Vec<u32>> {
    const GID: usize = std::mem::size_of::<libc::gid_t>();
    // NGROUPS_MAX: the kernel never holds more.
    const MOST: usize = 65536;
    let mut groups: Vec<libc::gid_t> = vec![0; 32];
    loop {
        let mut len = (groups.len() * GID) as libc::socklen_t;
        // Too small a buffer gets ERANGE and the size needed, nothing written.
        // SAFETY: `stream` owns the fd and outlives the call; `groups` is a
        // live, aligned buffer of `len` bytes, the most the kernel writes.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast::<libc::c_void>(),
                &mut len,
            )
        };
        let needed = len as usize / GID;
        if rc == 0 {
            groups.truncate(needed.min(groups.len()));
            return Ok(groups);
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ERANGE) && needed > groups.len() && needed <= MOST {
            groups.resize(needed, 0);
            continue;
        }
        return Err(error);
    }
}

/// Counts unprivileged peers' open connections, by uid.
#[derive(Default)]
struct OpenConnections {
    by_uid: Mutex<HashMap<u32, usize>>,
}

/// One counted connection; released when the connection's thread ends.
struct Slot {
    open: Option<(Arc<OpenConnections>, u32)>,
}

impl OpenConnections {
    fn take(self: &Arc<Self>, peer: &Peer) -> Option<Slot> {
        if peer.is_root() {
            return Some(Slot { open: None });
        }
        let mut by_uid = self.by_uid.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = by_uid.values().sum();
        let mine = by_uid.entry(peer.uid).or_default();
        if *mine >= MAX_CONNECTIONS_PER_USER || total >= MAX_UNPRIVILEGED_CONNECTIONS {
            return None;
        }
        *mine += 1;
        Some(Slot {
            open: Some((self.clone(), peer.uid)),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((open, uid)) = self.open.take() {
            let mut by_uid = open.by_uid.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = by_uid.get_mut(&uid) {
                *n -= 1;
                if *n == 0 {
                    by_uid.remove(&uid);
                }
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_client(stream: UnixStream, switch: &Mutex<Switch>, peer: &Peer) {
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        // Bytes, not a String: a line that is not UTF-8 gets a refusal with its reason,
        // where `read_line` would fail and the client would see the connection close.
        let mut bytes = Vec::new();
        match Read::by_ref(&mut reader)
            .take(MAX_REQUEST_BYTES)
            .read_until(b'\n', &mut bytes)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut reply = match String::from_utf8(bytes) {
            Err(not_text) => refuse_stranger(switch, peer).unwrap_or_else(|| {
                Reply::failure(
                    ErrorCode::BadRequest,
                    format!(
                        "request is not UTF-8 text (invalid byte at offset {})",
                        not_text.utf8_error().valid_up_to()
                    ),
                )
            }),
            Ok(line) => answer(switch, peer, &line),
        };
        if let Some(error) = reply.error.as_mut() {
            // A reason may quote what the client sent: bounded in the log,
            // and in the replies to users other than root.
            if !peer.is_root() {
                error.message = super::refusals::bounded(&error.message);
            }
            let logged = super::refusals::bounded(&error.message);
            // Permission refusals were logged, with the command, by access.
            if error.code != ErrorCode::PermissionDenied {
                if let Some(suppressed) = super::refusals::admit(peer.uid) {
                    tracing::info!(uid = peer.uid, code = ?error.code, message = %logged, suppressed, "control request refused");
                }
            }
        }
        let mut text = serde_json::to_string(&reply).unwrap_or_else(|_| "{\"ok\":false}".into());
        text.push('\n');
        if writer.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

/// The reply to one request line (UTF-8, at most [`MAX_REQUEST_BYTES`]).
fn answer(switch: &Mutex<Switch>, peer: &Peer, line: &str) -> Reply {
    if !line.ends_with('\n') && line.len() as u64 >= MAX_REQUEST_BYTES {
        return refuse_stranger(switch, peer).unwrap_or_else(|| {
            Reply::failure(
                ErrorCode::BadRequest,
                format!("request longer than {MAX_REQUEST_BYTES} bytes"),
            )
        });
    }
    match parse_request(line.trim()) {
        Ok(request) => {
            tracing::debug!(?request, uid = peer.uid, pid = peer.pid, "control request");
            // A panic in a previous request must not make the switch
            // unmanageable: the state is still consistent per request.
            let mut guard = switch
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            access::handle_as(&mut guard, peer, request)
        }
        Err(e) => refuse_stranger(switch, peer).unwrap_or(Reply {
            version: super::protocol::PROTOCOL_VERSION,
            ok: false,
            data: None,
            error: Some(e),
        }),
    }
}

/// For a line that is not a valid request: a peer that may not use xsw at
/// all gets `permission denied` for it too (logged), not a parse error.
fn refuse_stranger(switch: &Mutex<Switch>, peer: &Peer) -> Option<Reply> {
    if peer.is_root() {
        return None;
    }
    let guard = switch
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if guard.grants.admits(peer) {
        return None;
    }
    if let Some(suppressed) = super::refusals::admit(peer.uid) {
        tracing::warn!(
            uid = peer.uid,
            gid = peer.gid,
            pid = peer.pid,
            command = "(unreadable request)",
            suppressed,
            "control request refused: permission denied"
        );
    }
    Some(Reply::failure(
        ErrorCode::PermissionDenied,
        format!(
            "permission denied: uid {} may not use xsw: only root may, and no tenant is delegated \
             to this user or its groups",
            peer.uid
        ),
    ))
}

/// Wakes a blocked `accept` by shutting the listening socket down.
#[derive(Copy, Clone, Debug)]
pub struct ServerWaker(std::os::fd::RawFd);

impl ServerWaker {
    pub fn wake(&self) {
        // A later accept then fails at once instead of blocking.
        // SAFETY: the fd is the listener's, alive as long as the ControlServer
        // that `serve` runs on; shutdown only changes the socket's state.
        unsafe { libc::shutdown(self.0, libc::SHUT_RDWR) };
    }
}
