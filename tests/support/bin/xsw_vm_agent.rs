//! `xsw-vm-agent`: runs inside the test VM (see tests/vm/init) on the serial
//! control channel (ttyS1 as stdin/stdout). It runs the commands the host
//! sends and reports their output, so the test traffic itself is made by the
//! same `xsw-nettool` the other tests use, and the control channel never goes
//! through the network under test.
//!
//! One request or reply per line; every line starts with the request's ID:
//!
//! ```text
//! host:  ID ping                 guest: ID pong
//! host:  ID run PROG ARG...      guest: ID out LINE     (each stdout line)
//!                                       ID err LINE     (each stderr line)
//!                                       ID exit CODE    (or ID exit signal)
//!                                       ID fail MESSAGE (could not start it)
//! host:  ID poweroff             guest: ID bye          (then the VM stops)
//! ```
//!
//! `run` returns at once: many commands may run at the same time, their lines
//! interleaved (each line is written whole). Arguments are split on spaces.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

type Out = Arc<Mutex<std::io::Stdout>>;

fn say(out: &Out, line: &str) {
    let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
    let mut buf = line.replace(['\n', '\r'], " ");
    buf.push('\n');
    let _ = o.write_all(buf.as_bytes());
    let _ = o.flush();
}

fn forward<R: Read + Send + 'static>(
    out: Out,
    id: String,
    tag: &'static str,
    r: R,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            match line {
                Ok(l) => say(&out, &format!("{id} {tag} {l}")),
                Err(_) => break,
            }
        }
    })
}

fn run(out: Out, id: String, argv: Vec<String>) {
    std::thread::spawn(move || {
        let Some((prog, args)) = argv.split_first() else {
            say(&out, &format!("{id} fail empty command"));
            return;
        };
        let child = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                say(&out, &format!("{id} fail {prog}: {e}"));
                return;
            }
        };
        let mut readers = Vec::new();
        if let Some(o) = child.stdout.take() {
            readers.push(forward(out.clone(), id.clone(), "out", o));
        }
        if let Some(e) = child.stderr.take() {
            readers.push(forward(out.clone(), id.clone(), "err", e));
        }
        let status = child.wait();
        for r in readers {
            let _ = r.join();
        }
        match status.map(|s| s.code()) {
            Ok(Some(c)) => say(&out, &format!("{id} exit {c}")),
            Ok(None) => say(&out, &format!("{id} exit signal")),
            Err(e) => say(&out, &format!("{id} fail wait: {e}")),
        }
    });
}

fn main() {
    let out: Out = Arc::new(Mutex::new(std::io::stdout()));
    eprintln!("xsw-vm-agent: ready");
    let stdin = std::io::stdin();
    let mut buf = Vec::new();
    let mut input = stdin.lock();
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("xsw-vm-agent: reading the control channel: {e}");
                break;
            }
        }
        let line = String::from_utf8_lossy(&buf);
        let mut words = line.split_whitespace().map(str::to_string);
        let (Some(id), Some(verb)) = (words.next(), words.next()) else {
            continue;
        };
        match verb.as_str() {
            "ping" => say(&out, &format!("{id} pong")),
            "run" => run(out.clone(), id, words.collect()),
            "poweroff" => {
                say(&out, &format!("{id} bye"));
                break;
            }
            other => say(&out, &format!("{id} fail unknown request '{other}'")),
        }
    }
}
