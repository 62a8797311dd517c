//! `xswctl top`: the live view. Rates per port (frames/s, bytes/s, drops/s
//! by reason) and per worker, computed here from two `stats` readings, so
//! xswd keeps no history and the data plane does no extra work.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use xsw::control::client;
use xsw::control::protocol::Request;

/// How long one request to xswd may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Clears a terminal and puts the cursor at its top left.
const CLEAR_SCREEN: &str = "\x1b[H\x1b[2J";

#[derive(clap::Args)]
pub struct TopArgs {
    /// Show this many refreshes, then exit (default: until interrupted).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Seconds between refreshes.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_interval)]
    pub interval: Duration,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.1..=3600.0).contains(&secs) {
        return Err(format!("{secs} s is outside 0.1-3600 s"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error("{0}")]
    Refused(String),
    #[error("cannot write: {0}")]
    Output(#[source] std::io::Error),
}

/// One `stats` reply and when it came.
struct Reading {
    stats: Value,
    at: Instant,
}

fn read(socket: &Path) -> Result<Reading, TopError> {
    let reply = client::call(socket, &Request::Stats {}, CALL_TIMEOUT)?;
    let at = Instant::now();
    if !reply.ok {
        let message = reply
            .error
            .map(|e| e.message)
            .unwrap_or_else(|| "xswd refused the request".into());
        return Err(TopError::Refused(message));
    }
    Ok(Reading {
        stats: reply.data.unwrap_or(Value::Null),
        at,
    })
}

/// Runs the live view; returns when `count` refreshes are shown (or on an
/// error; a reader that went away ends it quietly).
pub fn run(socket: &Path, args: &TopArgs, as_json: bool) -> Result<(), TopError> {
    let mut stdout = std::io::stdout().lock();
    let redraw = !as_json && stdout.is_terminal();
    let mut previous = read(socket)?;
    let mut shown = 0;
    while !matches!(args.count, Some(count) if shown >= count) {
        std::thread::sleep(args.interval);
        let current = read(socket)?;
        let rates = rates(&previous, &current);
        let text = if as_json {
            rates.to_string()
        } else {
            render(&rates)
        };
        let written = if redraw {
            writeln!(stdout, "{CLEAR_SCREEN}{text}")
        } else if as_json || shown == 0 {
            writeln!(stdout, "{text}")
        } else {
            writeln!(stdout, "\n{text}")
        }
        .and_then(|()| stdout.flush());
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(TopError::Output(e)),
            Ok(()) => {}
        }
        previous = current;
        shown += 1;
    }
    Ok(())
}

/// Per-second change of `key` between two objects; None when the counter
/// went back (the data plane was rebuilt, or the port re-added).
fn rate(old: &Value, new: &Value, key: &str, secs: f64) -> Value {
    match (old[key].as_u64(), new[key].as_u64()) {
        (Some(a), Some(b)) if b >= a => json!((b - a) as f64 / secs),
        _ => Value::Null,
    }
}

fn rates(previous: &Reading, current: &Reading) -> Value {
    let secs = current
        .at
        .duration_since(previous.at)
        .as_secs_f64()
        .max(1e-3);
    let empty = Vec::new();
    let old_ports = previous.stats["ports"].as_array().unwrap_or(&empty);
    let ports: Vec<Value> = current.stats["ports"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|port| {
            let old = old_ports
                .iter()
                .find(|p| p["name"] == port["name"])
                .unwrap_or(&Value::Null);
            let drops: Map<String, Value> = port["drops"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(reason, _)| {
                    let r = rate(&old["drops"], &port["drops"], reason, secs);
                    (reason.clone(), r)
                })
                .collect();
            json!({
                "name": port["name"],
                "rx_frames_per_sec": rate(old, port, "rx_frames", secs),
                "rx_bytes_per_sec": rate(old, port, "rx_bytes", secs),
                "tx_frames_per_sec": rate(old, port, "tx_frames", secs),
                "tx_bytes_per_sec": rate(old, port, "tx_bytes", secs),
                "fast_rx_frames_per_sec": rate(old, port, "fast_rx_frames", secs),
                "drops_per_sec": drops,
            })
        })
        .collect();
    let old_workers = previous.stats["workers"].as_array().unwrap_or(&empty);
    let workers: Vec<Value> = current.stats["workers"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|worker| {
            let old = old_workers
                .iter()
                .find(|w| w["id"] == worker["id"])
                .unwrap_or(&Value::Null);
            json!({
                "id": worker["id"],
                "core": worker["core"],
                "frames_per_sec": rate(old, worker, "frames", secs),
                "batches_per_sec": rate(old, worker, "batches", secs),
                "sleeps_per_sec": rate(old, worker, "sleeps", secs),
                "umem_frames_free": worker["umem_frames_free"],
            })
        })
        .collect();
    json!({ "interval_secs": secs, "ports": ports, "workers": workers })
}

/// A rate for people: "1.2M", "830.5", "-" when unknown.
fn human(v: &Value) -> String {
    let Some(x) = v.as_f64() else {
        return "-".into();
    };
    match x {
        x if x >= 1e9 => format!("{:.2}G", x / 1e9),
        x if x >= 1e6 => format!("{:.2}M", x / 1e6),
        x if x >= 1e4 => format!("{:.1}k", x / 1e3),
        x => format!("{x:.1}"),
    }
}

fn sum(object: &Value) -> Value {
    let values = object.as_object().into_iter().flatten().map(|(_, v)| v);
    let mut total = 0.0;
    for v in values {
        match v.as_f64() {
            Some(x) => total += x,
            None => return Value::Null,
        }
    }
    json!(total)
}

fn render(rates: &Value) -> String {
    let empty = Vec::new();
    let ports = rates["ports"].as_array().unwrap_or(&empty);
    let rows: Vec<Vec<String>> = ports
        .iter()
        .map(|p| {
            vec![
                p["name"].as_str().unwrap_or("-").to_string(),
                human(&p["rx_frames_per_sec"]),
                human(&p["rx_bytes_per_sec"]),
                human(&p["tx_frames_per_sec"]),
                human(&p["tx_bytes_per_sec"]),
                human(&p["fast_rx_frames_per_sec"]),
                human(&sum(&p["drops_per_sec"])),
            ]
        })
        .collect();
    let mut out = format!(
        "xsw rates over the last {:.1} s (Ctrl-C to stop)\n\n",
        rates["interval_secs"].as_f64().unwrap_or(0.0)
    );
    out.push_str(&crate::render::table(
        &[
            "PORT",
            "RX-FRAMES/S",
            "RX-BYTES/S",
            "TX-FRAMES/S",
            "TX-BYTES/S",
            "FAST-RX/S",
            "DROPS/S",
        ],
        rows,
    ));
    // Like `ip -s -s link`: every reason with drops, under the table.
    for p in ports {
        let name = p["name"].as_str().unwrap_or("-");
        for (reason, r) in p["drops_per_sec"].as_object().into_iter().flatten() {
            if r.as_f64().is_some_and(|x| x > 0.0) {
                out.push_str(&format!("\n  {name} dropped {reason}: {}/s", human(r)));
            }
        }
    }
    let workers: Vec<Vec<String>> = rates["workers"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|w| {
            vec![
                w["id"].to_string(),
                w["core"].to_string(),
                human(&w["frames_per_sec"]),
                human(&w["batches_per_sec"]),
                human(&w["sleeps_per_sec"]),
                w["umem_frames_free"].to_string(),
            ]
        })
        .collect();
    out.push_str("\n\n");
    out.push_str(&crate::render::table(
        &[
            "WORKER",
            "CORE",
            "FRAMES/S",
            "BATCHES/S",
            "SLEEPS/S",
            "FREE-FRAMES",
        ],
        workers,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(rx: u64, drops: u64, at: Instant) -> Reading {
        Reading {
            stats: json!({
                "ports": [{ "name": "p1", "rx_frames": rx, "rx_bytes": rx * 100, "tx_frames": 0,
                            "tx_bytes": 0, "fast_rx_frames": 0, "drops": { "acl_deny": drops } }],
                "workers": [{ "id": 0, "core": 1, "frames": rx, "batches": 1, "sleeps": 0, "umem_frames_free": 10 }],
            }),
            at,
        }
    }

    #[test]
    fn rates_are_differences_over_the_time_between_readings() {
        let t0 = Instant::now();
        let r = rates(
            &reading(100, 1, t0),
            &reading(300, 5, t0 + Duration::from_secs(2)),
        );
        assert_eq!(r["ports"][0]["rx_frames_per_sec"], 100.0);
        assert_eq!(r["ports"][0]["rx_bytes_per_sec"], 10000.0);
        assert_eq!(r["ports"][0]["drops_per_sec"]["acl_deny"], 2.0);
        assert_eq!(r["workers"][0]["frames_per_sec"], 100.0);
        let text = render(&r);
        assert!(text.contains("p1 dropped acl_deny: 2.0/s"), "{text}");
    }

    #[test]
    fn a_counter_that_went_back_has_no_rate() {
        let t0 = Instant::now();
        let r = rates(
            &reading(300, 0, t0),
            &reading(10, 0, t0 + Duration::from_secs(1)),
        );
        assert!(r["ports"][0]["rx_frames_per_sec"].is_null());
        assert!(render(&r).contains('-'));
    }

    #[test]
    fn intervals_outside_the_range_are_refused() {
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("abc").is_err());
        assert_eq!(parse_interval("0.5"), Ok(Duration::from_millis(500)));
    }
}
