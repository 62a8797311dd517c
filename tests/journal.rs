//! Under systemd, xswd logs to the journal with structured fields. No
//! journald runs here, so the test stands one in: in a private mount
//! namespace, a datagram socket at journald's path receives what xswd sends.

use anyhow::{ensure, Context, Result};
use std::time::Duration;
use xsw_integration::{cmd, require_root, Bins};

const RECEIVER: &str = r#"
import socket, struct, sys
# journald's native protocol: KEY=value lines, or KEY, newline, a 64-bit
# little-endian length, the value and a newline (for values with newlines).
def fields(data):
    out, i = [], 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            out.append(line.decode("utf-8", "replace"))
            i = nl + 1
        else:
            (size,) = struct.unpack_from("<Q", data, nl + 1)
            start = nl + 9
            out.append(line.decode() + "=" + data[start:start + size].decode("utf-8", "replace"))
            i = start + size + 1
    return out
path = "/run/systemd/journal/socket"
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(6)
try:
    while True:
        sys.stdout.write("\n".join(fields(s.recv(65536))) + "\n----\n")
        sys.stdout.flush()
except socket.timeout:
    pass
"#;

#[test]
fn log_records_reach_the_journal_with_structured_fields() -> Result<()> {
    require_root()?;
    let bins = Bins::locate(
        std::path::Path::new(env!("CARGO_BIN_EXE_xsw-guest")),
        std::path::Path::new(env!("CARGO_BIN_EXE_xsw-nettool")),
    )?;
    let xswd = bins.xswd()?.display().to_string();
    let dir = std::env::temp_dir().join(format!("xsw-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let receiver = dir.join("receiver.py");
    std::fs::write(&receiver, RECEIVER)?;
    let config = dir.join("xsw.toml");
    std::fs::write(&config, "")?;
    let script = format!(
        "set -e; mount -t tmpfs tmpfs /run/systemd/journal 2>/dev/null || {{ mkdir -p /run/systemd/journal; mount -t tmpfs tmpfs /run/systemd/journal; }}; \
         python3 {receiver} & sleep 0.5; \
         JOURNAL_STREAM=8:1 timeout -s TERM 2 {xswd} --socket {dir}/xsw.sock --config {config} --log-level info 2>{dir}/stderr || true; \
         wait",
        receiver = receiver.display(),
        dir = dir.display(),
        config = config.display(),
    );
    // A mount namespace of its own network namespace too, so nothing of the
    // host's network is touched either.
    let out = cmd::run_args(
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--net",
            "sh",
            "-c",
            &script,
        ],
        Duration::from_secs(20),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(out.success(), "journal stand-in failed: {}", out.describe());
    let ready = out
        .stdout
        .split("\n----\n")
        .find(|record| record.contains("MESSAGE=xswd ready"))
        .with_context(|| {
            format!(
                "no 'xswd ready' record reached the journal; got:\n{}",
                out.stdout
            )
        })?;
    ensure!(
        ready.contains("SYSLOG_IDENTIFIER=xswd"),
        "no identifier: {ready}"
    );
    ensure!(
        ready.contains("PRIORITY=6"),
        "info level not mapped to PRIORITY=6: {ready}"
    );
    ensure!(
        ready.contains("SOCKET=") && ready.contains("WORKERS="),
        "fields not structured: {ready}"
    );
    Ok(())
}
