//! Observing a running xswd: its Prometheus endpoint scraped over HTTP from
//! inside the switch's namespace and checked against `xswctl stats --json`
//! after real traffic; an address in use refused at startup; and the live
//! view (`xswctl top`) showing the rates of traffic that is flowing.

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Duration;
use xsw_integration::{cmd, lab, Lab};

const METRICS_ADDR: &str = "127.0.0.1:9417";

/// One HTTP GET from inside namespace `ns` (xswd's loopback is its own):
/// (status code, body). A thread of its own enters the namespace, so the
/// test's other threads stay where they are.
fn http_get_in(ns: &str, addr: &str, path: &str) -> Result<(u16, String)> {
    let netns = std::fs::File::open(format!("/run/netns/{ns}"))
        .with_context(|| format!("opening namespace {ns}"))?;
    let addr = addr.to_string();
    let path = path.to_string();
    std::thread::spawn(move || -> Result<(u16, String)> {
        // SAFETY: setns takes an open namespace fd (alive for this call) and
        // moves only the calling thread, which this closure owns.
        let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
        ensure!(rc == 0, "setns: {}", std::io::Error::last_os_error());
        let mut stream =
            TcpStream::connect(&addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        let (head, body) = reply
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow!("no HTTP header in {reply:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("no status in {head:?}"))?;
        Ok((status, body.to_string()))
    })
    .join()
    .map_err(|_| anyhow!("the scrape thread panicked"))?
}

/// A parsed exposition: (metric name, labels) → value.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// Parses the text format: `name{k="v",...} value` lines; comments skipped.
fn parse_exposition(text: &str) -> Result<Samples> {
    let mut out = Samples::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| anyhow!("no value in {line:?}"))?;
        let value: f64 = value
            .parse()
            .with_context(|| format!("value of {line:?}"))?;
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .ok_or_else(|| anyhow!("unclosed labels in {line:?}"))?;
                (
                    name.to_string(),
                    parse_labels(inner).with_context(|| line.to_string())?,
                )
            }
        };
        ensure!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && name.starts_with("xsw_"),
            "metric name {name:?} does not follow the conventions"
        );
        ensure!(
            out.insert((name, labels), value).is_none(),
            "duplicate series {line:?}"
        );
    }
    Ok(out)
}

fn parse_labels(inner: &str) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut chars = inner.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        ensure!(chars.next() == Some('"'), "label {key} is not quoted");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => value.push(chars.next().unwrap_or('\\')),
                Some('"') => break,
                Some(c) => value.push(c),
                None => bail!("unterminated value of label {key}"),
            }
        }
        labels.insert(key, value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Ok(labels)
}

fn scrape(lab: &Lab) -> Result<(String, Samples)> {
    let (status, body) = http_get_in(&lab.sw, METRICS_ADDR, "/metrics")?;
    ensure!(status == 200, "GET /metrics: {status}\n{body}");
    let samples = parse_exposition(&body)?;
    Ok((body, samples))
}

fn sample(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
    let key = (
        name.to_string(),
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    samples
        .get(&key)
        .copied()
        .ok_or_else(|| anyhow!("no series {name}{labels:?} in the scrape"))
}

/// `value` lies between what `before` and `after` (JSON readings taken just
/// before and after the scrape) say: counters that moved meanwhile (a
/// worker's sleeps) still compare exactly when nothing else moves.
fn between(what: &str, value: f64, before: &Value, after: &Value) -> Result<()> {
    let (a, b) = (
        before
            .as_u64()
            .ok_or_else(|| anyhow!("{what}: not a number in stats: {before}"))?,
        after
            .as_u64()
            .ok_or_else(|| anyhow!("{what}: not a number in stats: {after}"))?,
    );
    let (lo, hi) = (a.min(b) as f64, a.max(b) as f64);
    ensure!(
        lo <= value && value <= hi,
        "{what}: metrics say {value}, xswctl stats --json said {a} before and {b} after"
    );
    Ok(())
}

#[test]
fn scraped_counters_match_xswctl_stats_after_traffic() -> Result<()> {
    let lab = lab!("metrics", "met", 91)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&format!("[metrics]\nlisten = \"{METRICS_ADDR}\"\n"))?;
    lab.port_add(&h1.port)?;
    lab.port_add(&h2.port)?;
    // A rule for the ACL hit series; ICMP both ways matches it.
    lab.ctl_ok(&[
        "acl", "add", "default", "ingress", "allow", "--proto", "icmp",
    ])?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.ping_all(&h1, &h2, 10)?;
    lab.udp_exchange(&h2, &h1, 20, 10)?;
    // One-way traffic, denied: h1's rx and tx then differ, and a drop
    // reason and a second rule have counts of their own.
    lab.ctl_ok(&[
        "acl", "add", "default", "ingress", "deny", "--proto", "udp", "--dport", "9",
    ])?;
    let mut denied = lab.spawn_udp_probe(&h1, &h2.ip, 9, 25, 5)?;
    lab.probe_result(&mut denied, Duration::from_secs(15))?;

    let (text, samples) = scrape(&lab)?;
    for line in [
        "# TYPE xsw_port_rx_frames counter",
        "# TYPE xsw_port_drops counter",
        "# TYPE xsw_worker_umem_frames_free gauge",
        "# TYPE xsw_acl_rule_hits counter",
        "# TYPE xsw_mac_table_entries gauge",
        "# EOF",
    ] {
        ensure!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }

    // Compare while the switch is quiet; a reading taken while a flow entry
    // was being removed (its counters folded) is simply taken again.
    let mut last_error = None;
    for _ in 0..5 {
        let before = lab.ctl_json(&["stats"])?;
        let acl_before = lab.ctl_json(&["acl", "list", "default"])?;
        let (_, samples) = scrape(&lab)?;
        let after = lab.ctl_json(&["stats"])?;
        let acl_after = lab.ctl_json(&["acl", "list", "default"])?;
        match compare(&samples, (&before, &after), (&acl_before, &acl_after)) {
            Ok(()) => {
                last_error = None;
                break;
            }
            Err(e) => last_error = Some(e),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    if let Some(e) = last_error {
        return Err(e.context(format!("scrape:\n{text}")));
    }

    let h1_labels = [("port", h1.port.as_str()), ("tenant", "default")];
    let (rx, tx) = (
        sample(&samples, "xsw_port_rx_frames_total", &h1_labels)?,
        sample(&samples, "xsw_port_tx_frames_total", &h1_labels)?,
    );
    ensure!(
        rx >= tx + 25.0,
        "h1 sent 25 denied datagrams, yet rx {rx} and tx {tx}"
    );
    let denied = sample(
        &samples,
        "xsw_port_drops_total",
        &[
            ("port", h1.port.as_str()),
            ("tenant", "default"),
            ("reason", "acl_deny"),
        ],
    )?;
    ensure!(
        denied == 25.0,
        "acl_deny drops on h1: {denied}, expected 25"
    );
    for host in [&h1, &h2] {
        let labels = [("port", host.port.as_str()), ("tenant", "default")];
        let rx = sample(&samples, "xsw_port_rx_frames_total", &labels)?;
        ensure!(
            rx >= 30.0,
            "{}: only {rx} rx frames after 10 pings and 20 datagrams",
            host.port
        );
    }
    let acl = lab.ctl_json(&["acl", "list", "default"])?;
    let rule_text = acl["ingress"]["rules"][0]["text"]
        .as_str()
        .ok_or_else(|| anyhow!("no ingress rule in {acl}"))?;
    ensure!(rule_text.contains("icmp"), "rule 1 is {rule_text:?}");
    let icmp_hits = sample(
        &samples,
        "xsw_acl_rule_hits_total",
        &[
            ("tenant", "default"),
            ("direction", "ingress"),
            ("position", "1"),
            ("rule", rule_text),
        ],
    )?;
    ensure!(
        icmp_hits >= 20.0,
        "10 pings both ways hit the icmp rule only {icmp_hits} times"
    );
    let status = lab.ctl_json(&["status"])?;
    let macs = sample(&samples, "xsw_mac_table_entries", &[])?;
    ensure!(
        Some(macs as u64) == status["fdb_entries"].as_u64() && macs == 2.0,
        "MAC table: metrics say {macs}, status says {}",
        status["fdb_entries"]
    );

    // Only GET /metrics is served.
    let (status, _) = http_get_in(&lab.sw, METRICS_ADDR, "/other")?;
    ensure!(status == 404, "GET /other answered {status}");
    Ok(())
}

fn compare(samples: &Samples, stats: (&Value, &Value), acl: (&Value, &Value)) -> Result<()> {
    let (before, after) = stats;
    let ports = before["ports"]
        .as_array()
        .ok_or_else(|| anyhow!("no ports: {before}"))?;
    ensure!(ports.len() == 2, "expected 2 ports: {before}");
    for (i, port) in ports.iter().enumerate() {
        let name = port["name"].as_str().unwrap_or_default();
        let labels = [("port", name), ("tenant", "default")];
        let port_after = &after["ports"][i];
        for field in [
            "rx_frames",
            "rx_bytes",
            "tx_frames",
            "tx_bytes",
            "fast_rx_frames",
            "fast_tx_frames",
        ] {
            let value = sample(samples, &format!("xsw_port_{field}_total"), &labels)?;
            between(
                &format!("{name} {field}"),
                value,
                &port[field],
                &port_after[field],
            )?;
        }
        for (reason, count) in port["drops"].as_object().into_iter().flatten() {
            let value = sample(
                samples,
                "xsw_port_drops_total",
                &[("port", name), ("tenant", "default"), ("reason", reason)],
            )?;
            between(
                &format!("{name} drops {reason}"),
                value,
                count,
                &port_after["drops"][reason],
            )?;
        }
    }
    for (i, worker) in before["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let (id, core) = (worker["id"].to_string(), worker["core"].to_string());
        let labels = [("worker", id.as_str()), ("core", core.as_str())];
        for field in ["frames", "batches", "sleeps"] {
            let value = sample(samples, &format!("xsw_worker_{field}_total"), &labels)?;
            between(
                &format!("worker {id} {field}"),
                value,
                &worker[field],
                &after["workers"][i][field],
            )?;
        }
    }
    let entries = sample(samples, "xsw_fast_path_entries", &[])?;
    between(
        "fast path entries",
        entries,
        &before["fast_path"]["entries"],
        &after["fast_path"]["entries"],
    )?;

    let (acl_before, acl_after) = acl;
    for (i, rule) in acl_before["ingress"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let position = rule["position"].to_string();
        let text = rule["text"].as_str().unwrap_or_default();
        let labels = [
            ("tenant", "default"),
            ("direction", "ingress"),
            ("position", position.as_str()),
            ("rule", text),
        ];
        let value = sample(samples, "xsw_acl_rule_hits_total", &labels)?;
        between(
            &format!("ingress rule {position} hits"),
            value,
            &rule["hits"],
            &acl_after["ingress"]["rules"][i]["hits"],
        )?;
    }
    Ok(())
}

#[test]
fn a_metrics_address_in_use_stops_xswd_at_startup_and_changes_nothing() -> Result<()> {
    let lab = lab!("metricsinuse", "miu", 92)?;
    lab.start_xswd(&format!("[metrics]\nlisten = \"{METRICS_ADDR}\"\n"))?;
    let other_socket = lab.dir.join("other.sock");
    let other_config = lab.dir.join("other.toml");
    std::fs::write(&other_config, "")?;
    let xswd = lab.bins.xswd()?.display().to_string();
    let argv = cmd::in_ns(
        &lab.sw,
        &[
            &xswd,
            "--socket",
            &other_socket.display().to_string(),
            "--config",
            &other_config.display().to_string(),
            "--metrics",
            METRICS_ADDR,
        ],
    );
    let out = cmd::run(&argv, Duration::from_secs(15))?;
    ensure!(
        !out.timed_out,
        "a second xswd on a metrics address in use kept running:\n{}",
        out.describe()
    );
    ensure!(
        out.code.is_some() && out.code != Some(0),
        "second xswd: {}",
        out.describe()
    );
    ensure!(
        out.stderr.contains(METRICS_ADDR) && out.stderr.contains("in use"),
        "the error should name {METRICS_ADDR} and say it is in use:\n{}",
        out.describe()
    );
    ensure!(
        !other_socket.exists(),
        "the refused xswd created its control socket"
    );
    ensure!(
        std::fs::read_to_string(&other_config)?.is_empty(),
        "the refused xswd wrote its config"
    );
    // The first one still serves.
    scrape(&lab)?;
    lab.ctl_ok(&["status"])?;
    Ok(())
}

#[test]
fn top_shows_the_rates_of_flowing_traffic() -> Result<()> {
    let lab = lab!("top", "top", 93)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd("")?;
    lab.port_add(&h1.port)?;
    lab.port_add(&h2.port)?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    // About 100 frames/s from h1 for 5 s, and their echoes back.
    let (_echo, port) = lab.start_udp_echo(&h2, 10)?;
    let mut probe = lab.spawn_udp_probe(&h1, &h2.ip, port, 500, 10)?;
    std::thread::sleep(Duration::from_millis(500));

    let rx_frames = |stats: &Value| -> Result<u64> {
        Ok(xsw_integration::PortCounters::from_stats(stats, &h1.port)?.rx_frames)
    };
    let before = rx_frames(&lab.ctl_json(&["stats"])?)?;
    let out = lab.ctl_ok(&["--json", "top", "--count", "2"])?;
    let after = rx_frames(&lab.ctl_json(&["stats"])?)?;
    let readings: Vec<Value> = out
        .lines()
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("top --json --count 2 printed:\n{out}"))?;
    ensure!(
        readings.len() == 2,
        "--count 2 gave {} readings:\n{out}",
        readings.len()
    );
    for reading in &readings {
        let interval = reading["interval_secs"].as_f64().unwrap_or(0.0);
        ensure!(
            (0.9..2.0).contains(&interval),
            "interval {interval} s, expected about 1 s"
        );
        let port = reading["ports"]
            .as_array()
            .and_then(|ports| ports.iter().find(|p| p["name"] == h1.port.as_str()))
            .ok_or_else(|| anyhow!("no {} in {reading}", h1.port))?;
        let rx = port["rx_frames_per_sec"].as_f64().unwrap_or(0.0);
        let bytes = port["rx_bytes_per_sec"].as_f64().unwrap_or(0.0);
        // udp-probe sends one datagram every 10 ms at most (it also waits for
        // replies), so anything from 30/s up shows the flow.
        ensure!(
            (30.0..=150.0).contains(&rx),
            "{} rx {rx} frames/s while ~100/s flow: {reading}",
            h1.port
        );
        ensure!(
            bytes >= rx * 60.0,
            "{} rx {bytes} bytes/s for {rx} frames/s",
            h1.port
        );
        ensure!(
            port["drops_per_sec"].is_object(),
            "no drops by reason: {port}"
        );
    }

    // The frames the rates account for (rate x interval, summed) happened
    // between the two stats readings around top, and make up most of them:
    // top's readings span all but the start-up of two short commands.
    let accounted: f64 = readings
        .iter()
        .map(|r| {
            let port = r["ports"]
                .as_array()
                .and_then(|ports| ports.iter().find(|p| p["name"] == h1.port.as_str()));
            let rate = port
                .and_then(|p| p["rx_frames_per_sec"].as_f64())
                .unwrap_or(0.0);
            rate * r["interval_secs"].as_f64().unwrap_or(0.0)
        })
        .sum();
    let outer = (after - before) as f64;
    ensure!(
        outer >= 50.0 && accounted <= outer + 0.5 && accounted >= 0.6 * outer,
        "top's rates account for {accounted:.1} frames; stats counted {outer} around it"
    );

    // The table form names every port and the rate columns.
    let text = lab.ctl_ok(&["top", "--count", "1"])?;
    for needle in [
        "PORT",
        "RX-FRAMES/S",
        "RX-BYTES/S",
        "TX-FRAMES/S",
        "DROPS/S",
        h1.port.as_str(),
        h2.port.as_str(),
    ] {
        ensure!(text.contains(needle), "top shows no {needle}:\n{text}");
    }
    let stats = lab.probe_result(&mut probe, Duration::from_secs(15))?;
    ensure!(stats.received > 0, "the probe got no echo: {stats:?}");
    // Bad input changes nothing and says why.
    let refused = lab.ctl_err(&["top", "--count", "0"])?;
    ensure!(
        refused.stderr.contains("count"),
        "top --count 0: {}",
        refused.describe()
    );
    Ok(())
}
