//! The daemon's control socket: a Unix stream socket, one JSON request per
//! line, answered in order. Requests are applied one at a time under the
//! switch's lock (the control plane's only lock; workers never take it).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::protocol::{parse_request, Reply};
use super::switch::Switch;

/// Longest request line accepted; a larger one is refused.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create {dir}: {source}")]
    Dir { dir: String, source: io::Error },
    #[error("another xswd is already listening on {0}; stop it or pass a different --socket")]
    InUse(String),
    #[error("cannot listen on {path}: {source}")]
    Bind { path: String, source: io::Error },
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
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves until `stop` is set (and the listener woken by a connection).
    pub fn serve(&self, switch: Arc<Mutex<Switch>>, stop: Arc<AtomicBool>) {
        for stream in self.listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            match stream {
                Ok(stream) => {
                    let switch = switch.clone();
                    let spawned = std::thread::Builder::new()
                        .name("xsw-control".into())
                        .spawn(move || serve_client(stream, &switch));
                    if let Err(e) = spawned {
                        tracing::error!(error = %e, "cannot start a control connection thread");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_client(stream: UnixStream, switch: &Mutex<Switch>) {
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match Read::by_ref(&mut reader)
            .take(MAX_REQUEST_BYTES)
            .read_line(&mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let reply = if !line.ends_with('\n') && line.len() as u64 >= MAX_REQUEST_BYTES {
            Reply::failure(
                super::protocol::ErrorCode::BadRequest,
                format!("request longer than {MAX_REQUEST_BYTES} bytes"),
            )
        } else {
            match parse_request(line.trim()) {
                Ok(request) => {
                    tracing::debug!(?request, "control request");
                    // A panic in a previous request must not make the switch
                    // unmanageable: the state is still consistent per request.
                    let mut guard = switch
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    guard.handle(request)
                }
                Err(e) => Reply {
                    version: super::protocol::PROTOCOL_VERSION,
                    ok: false,
                    data: None,
                    error: Some(e),
                },
            }
        };
        if let Some(error) = &reply.error {
            tracing::info!(code = ?error.code, message = %error.message, "control request refused");
        }
        let mut text = serde_json::to_string(&reply).unwrap_or_else(|_| "{\"ok\":false}".into());
        text.push('\n');
        if writer.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}
