//! The client side of the control socket, used by xswctl and by tests.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{encode_request, Reply, Request};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to xswd at {path}: {source} (is xswd running? does --socket match?)")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("talking to xswd: {0}")]
    Io(#[from] std::io::Error),
    #[error("xswd sent a reply this xswctl cannot read: {0}")]
    BadReply(String),
}

/// Sends one request and waits for its reply.
pub fn call(socket: &Path, request: &Request, timeout: Duration) -> Result<Reply, ClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.display().to_string(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = encode_request(request);
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    if reply.is_empty() {
        return Err(ClientError::BadReply(
            "connection closed without a reply".into(),
        ));
    }
    serde_json::from_str(&reply).map_err(|e| ClientError::BadReply(e.to_string()))
}
