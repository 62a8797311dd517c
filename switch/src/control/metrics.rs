//! Prometheus metrics: `xswd --metrics ADDR:PORT` (or `[metrics] listen` in
//! the config) serves `GET /metrics` in the OpenMetrics text format.
//!
//! A scrape reads exactly what `xswctl stats --json`, `status` and
//! `acl list` read, under the switch's lock, the way a control request does:
//! the workers' single-writer counters summed on read, and nothing else. It
//! adds no work to the data plane's hot path.
//!
//! The HTTP side is `tiny_http` (blocking, one thread, no async runtime):
//! the daemon is thread-based, and a scrape every few seconds needs no more.
//! The text is built with `prometheus-client`, from a collector that turns
//! one set of readings into metric families.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde_json::Value;

use super::switch::Switch;

/// The only path served.
pub const METRICS_PATH: &str = "/metrics";
/// OpenMetrics text, which is what `prometheus_client::encoding::text` writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How often the server thread looks up from waiting for a request.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot serve metrics on {addr}: {source} (is another xswd or exporter using it? pass a different --metrics)")]
    Bind {
        addr: SocketAddr,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot start the metrics thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The listening metrics endpoint, bound before the daemon reports ready so
/// that an address in use stops xswd at startup.
pub struct MetricsServer {
    server: tiny_http::Server,
    addr: SocketAddr,
}

impl MetricsServer {
    pub fn bind(addr: SocketAddr) -> Result<Self, MetricsError> {
        let server =
            tiny_http::Server::http(addr).map_err(|source| MetricsError::Bind { addr, source })?;
        // Port 0 asks the kernel for one: report the one it gave.
        let addr = server.server_addr().to_ip().unwrap_or(addr);
        Ok(MetricsServer { server, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves scrapes on a thread of its own for the life of the process.
    pub fn spawn(self, switch: Arc<Mutex<Switch>>) -> Result<(), MetricsError> {
        std::thread::Builder::new()
            .name("xsw-metrics".into())
            .spawn(move || loop {
                match self.server.recv_timeout(ACCEPT_TIMEOUT) {
                    Ok(Some(request)) => answer(request, &switch),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "metrics: cannot accept a request"),
                }
            })
            .map(drop)
            .map_err(MetricsError::Thread)
    }
}

fn answer(request: tiny_http::Request, switch: &Mutex<Switch>) {
    let path = request.url().split('?').next().unwrap_or_default();
    let (status, body, content_type) = if path != METRICS_PATH {
        (
            404,
            format!("not found: xswd serves only GET {METRICS_PATH}\n"),
            "text/plain",
        )
    } else if !matches!(
        request.method(),
        tiny_http::Method::Get | tiny_http::Method::Head
    ) {
        (405, format!("only GET {METRICS_PATH}\n"), "text/plain")
    } else {
        match switch.lock() {
            Ok(switch) => match switch.metrics_text() {
                Ok(text) => (200, text, CONTENT_TYPE),
                Err(e) => (
                    500,
                    format!("cannot encode the metrics: {e}\n"),
                    "text/plain",
                ),
            },
            Err(_) => (
                500,
                "the control plane failed; see xswd's log\n".to_string(),
                "text/plain",
            ),
        }
    };
    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
    if let Ok(header) = tiny_http::Header::from_bytes("Content-Type", content_type) {
        response.add_header(header);
    }
    // A scraper that hung up is its own business.
    let _ = request.respond(response);
}

impl Switch {
    /// Every metric, as OpenMetrics text: what `stats --json`, `status` and
    /// `acl list` would show right now.
    pub fn metrics_text(&self) -> Result<String, std::fmt::Error> {
        let acls = self
            .tenants
            .keys()
            .filter_map(|name| self.acl_list(name).ok())
            .collect();
        let port_tenants = self
            .ports
            .iter()
            .map(|(name, record)| {
                // A trunk carries several tenants: its series have none.
                let tenant = if record.spec.trunk {
                    String::new()
                } else {
                    record
                        .spec
                        .tenant
                        .clone()
                        .unwrap_or_else(|| super::switch::DEFAULT_TENANT.to_string())
                };
                (name.clone(), tenant)
            })
            .collect();
        let readings = Readings {
            stats: self.stats(),
            // Without an answer from every worker, the MAC table size is left out.
            status: self.status().unwrap_or(Value::Null),
            acls,
            port_tenants,
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(readings));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)?;
        Ok(text)
    }
}

/// One scrape's readings, taken under the switch's lock.
#[derive(Debug)]
struct Readings {
    stats: Value,
    status: Value,
    acls: Vec<Value>,
    /// Port name → the `tenant` label of its series.
    port_tenants: BTreeMap<String, String>,
}

type Labels = Vec<(&'static str, String)>;

/// Per-port counters of `stats --json`: (field, metric name, help).
const PORT_COUNTERS: &[(&str, &str, &str)] = &[
    (
        "rx_frames",
        "xsw_port_rx_frames",
        "Frames received on the port (fast path included).",
    ),
    (
        "rx_bytes",
        "xsw_port_rx_bytes",
        "Bytes received on the port (fast path included).",
    ),
    (
        "tx_frames",
        "xsw_port_tx_frames",
        "Frames sent out of the port (fast path included).",
    ),
    (
        "tx_bytes",
        "xsw_port_tx_bytes",
        "Bytes sent out of the port (fast path included).",
    ),
    (
        "fast_rx_frames",
        "xsw_port_fast_rx_frames",
        "Of rx frames: those the in-kernel fast path switched.",
    ),
    (
        "fast_tx_frames",
        "xsw_port_fast_tx_frames",
        "Of tx frames: those the in-kernel fast path switched.",
    ),
    (
        "learning_refused",
        "xsw_port_learning_refused",
        "Source MACs not learned (a MAC limit, or a table full of static entries).",
    ),
    (
        "learning_evicted",
        "xsw_port_learning_evicted",
        "This port's MAC entries given up to other ports' new addresses.",
    ),
    (
        "checksums_finished",
        "xsw_port_checksums_finished",
        "TCP/UDP checksums left to offload by the sender and finished by xsw.",
    ),
];

/// Per-worker counters and gauges of `stats --json`.
const WORKER_COUNTERS: &[(&str, &str, &str)] = &[
    ("frames", "xsw_worker_frames", "Frames the worker received."),
    (
        "batches",
        "xsw_worker_batches",
        "Non-empty receive batches.",
    ),
    (
        "sleeps",
        "xsw_worker_sleeps",
        "Times the worker slept in poll() (adaptive mode).",
    ),
    (
        "frame_violations",
        "xsw_worker_frame_violations",
        "UMEM frame ownership violations found by the ledger (should stay 0).",
    ),
];

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let samples = samples.into_iter().map(|(l, v)| (l, ConstCounter::new(v)));
    family(encoder, name, help, MetricType::Counter, samples)
}

fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, i64)>,
) -> Result<(), std::fmt::Error> {
    let samples = samples.into_iter().map(|(l, v)| (l, ConstGauge::new(v)));
    family(encoder, name, help, MetricType::Gauge, samples)
}

/// A metric without labels: one sample, no `{}`.
fn single<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: M,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, value.metric_type())?;
    value.encode(metric)
}

fn gauge_value(v: &Value) -> i64 {
    i64::try_from(count(v)).unwrap_or(i64::MAX)
}

impl Readings {
    fn ports(&self) -> impl Iterator<Item = (Labels, &Value)> {
        items(&self.stats["ports"]).iter().map(|p| {
            let name = p["name"].as_str().unwrap_or_default().to_string();
            let tenant = self.port_tenants.get(&name).cloned().unwrap_or_default();
            (vec![("port", name), ("tenant", tenant)], p)
        })
    }

    /// Per-port counters broken down by the keys of one of the port's objects.
    fn by_reason(&self, object: &str) -> Vec<(Labels, u64)> {
        let mut out = Vec::new();
        for (labels, port) in self.ports() {
            for (reason, value) in port[object].as_object().into_iter().flatten() {
                let mut labels = labels.clone();
                labels.push(("reason", reason.clone()));
                out.push((labels, count(value)));
            }
        }
        out
    }

    fn workers(&self) -> impl Iterator<Item = (Labels, &Value)> {
        items(&self.stats["workers"]).iter().map(|w| {
            let labels = vec![
                ("worker", w["id"].to_string()),
                ("core", w["core"].to_string()),
            ];
            (labels, w)
        })
    }

    fn acl_hits(&self) -> Vec<(Labels, u64)> {
        let mut out = Vec::new();
        for acl in &self.acls {
            let tenant = acl["tenant"].as_str().unwrap_or_default().to_string();
            for direction in ["ingress", "egress"] {
                let list = &acl[direction];
                let label = |position: String, rule: String| {
                    vec![
                        ("tenant", tenant.clone()),
                        ("direction", direction.to_string()),
                        ("position", position),
                        ("rule", rule),
                    ]
                };
                for rule in items(&list["rules"]) {
                    let text = rule["text"].as_str().unwrap_or_default().to_string();
                    out.push((
                        label(rule["position"].to_string(), text),
                        count(&rule["hits"]),
                    ));
                }
                let policy = list["default"].as_str().unwrap_or_default();
                out.push((
                    label("default".into(), format!("default {policy}")),
                    count(&list["default_hits"]),
                ));
            }
        }
        out
    }
}

impl Collector for Readings {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        for (field, name, help) in PORT_COUNTERS {
            counters(
                e,
                name,
                help,
                self.ports().map(|(l, p)| (l, count(&p[*field]))),
            )?;
        }
        counters(
            e,
            "xsw_port_drops",
            "Frames dropped, by the port they concern and the reason.",
            self.by_reason("drops"),
        )?;
        counters(
            e,
            "xsw_port_slow_path_drops",
            "Frames the fast path missed and could not hand to the workers, by reason.",
            self.by_reason("slow_path_drops"),
        )?;
        counters(e, "xsw_port_kernel_socket", "The kernel's AF_XDP socket counters of the port (frames it could not hand to xsw), by counter.", self.by_reason("kernel"))?;

        for (field, name, help) in WORKER_COUNTERS {
            counters(
                e,
                name,
                help,
                self.workers().map(|(l, w)| (l, count(&w[*field]))),
            )?;
        }
        gauges(
            e,
            "xsw_worker_umem_frames_free",
            "Free UMEM frames of the worker (published once a second).",
            self.workers()
                .map(|(l, w)| (l, gauge_value(&w["umem_frames_free"]))),
        )?;

        counters(
            e,
            "xsw_acl_rule_hits",
            "Frames an ACL rule (or the direction's default policy) decided, per tenant.",
            self.acl_hits(),
        )?;

        let fast = &self.stats["fast_path"];
        single(
            e,
            "xsw_fast_path_enabled",
            "1 when the in-kernel fast path is on.",
            ConstGauge::new(i64::from(fast["enabled"] == true)),
        )?;
        single(
            e,
            "xsw_fast_path_entries",
            "Flow entries in the fast path's table.",
            ConstGauge::new(gauge_value(&fast["entries"])),
        )?;
        single(
            e,
            "xsw_fast_path_capacity",
            "Size of the fast path's flow table.",
            ConstGauge::new(gauge_value(&fast["capacity"])),
        )?;
        let hits: u64 = self.ports().map(|(_, p)| count(&p["fast_rx_frames"])).sum();
        single(
            e,
            "xsw_fast_path_hits",
            "Frames the fast path switched (all ports).",
            ConstCounter::new(hits),
        )?;
        single(
            e,
            "xsw_fast_path_refused_table_full",
            "Flow entries not written because the table was full.",
            ConstCounter::new(count(&fast["refused_table_full"])),
        )?;

        if !self.status.is_null() {
            single(
                e,
                "xsw_mac_table_entries",
                "Learned and static entries in the MAC table (all tenants).",
                ConstGauge::new(gauge_value(&self.status["fdb_entries"])),
            )?;
            single(
                e,
                "xsw_mac_table_capacity",
                "MAC entries each worker's table can hold.",
                ConstGauge::new(gauge_value(&self.status["fdb_capacity"])),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn readings() -> Readings {
        Readings {
            stats: json!({
                "ports": [{
                    "name": "vm1", "rx_frames": 7, "rx_bytes": 700, "tx_frames": 3, "tx_bytes": 300,
                    "fast_rx_frames": 2, "fast_tx_frames": 1,
                    "drops": { "acl_deny": 4, "malformed": 0 },
                    "slow_path_drops": { "too_big": 1, "unavailable": 0 },
                    "kernel": { "rx_dropped": 0 },
                }],
                "workers": [{ "id": 0, "core": 1, "frames": 9, "batches": 5, "sleeps": 2, "umem_frames_free": 4000, "frame_violations": 0 }],
                "fast_path": { "enabled": true, "entries": 3, "capacity": 1024, "refused_table_full": 0 },
            }),
            status: json!({ "fdb_entries": 2, "fdb_capacity": 65536 }),
            acls: vec![json!({
                "tenant": "web",
                "ingress": { "default": "allow", "default_hits": 5, "rules": [
                    { "position": 1, "text": "deny tcp dport 25", "hits": 4 }
                ]},
                "egress": { "default": "deny", "default_hits": 0, "rules": [] },
            })],
            port_tenants: [("vm1".to_string(), "web".to_string())].into(),
        }
    }

    fn encode(readings: Readings) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(readings));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn names_and_labels_follow_prometheus_conventions() {
        let text = encode(readings());
        for line in [
            "# TYPE xsw_port_rx_frames counter",
            r#"xsw_port_rx_frames_total{port="vm1",tenant="web"} 7"#,
            r#"xsw_port_tx_bytes_total{port="vm1",tenant="web"} 300"#,
            r#"xsw_port_drops_total{port="vm1",tenant="web",reason="acl_deny"} 4"#,
            r#"xsw_port_slow_path_drops_total{port="vm1",tenant="web",reason="too_big"} 1"#,
            r#"xsw_worker_batches_total{worker="0",core="1"} 5"#,
            r#"xsw_worker_umem_frames_free{worker="0",core="1"} 4000"#,
            r#"xsw_acl_rule_hits_total{tenant="web",direction="ingress",position="1",rule="deny tcp dport 25"} 4"#,
            r#"xsw_acl_rule_hits_total{tenant="web",direction="egress",position="default",rule="default deny"} 0"#,
            "xsw_fast_path_entries 3",
            "xsw_fast_path_hits_total 2",
            "xsw_mac_table_entries 2",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn the_config_section_parses_refuses_a_bad_address_and_round_trips() {
        use crate::config::Config;
        let config = Config::parse("[metrics]\nlisten = \"127.0.0.1:9417\"\n", "t.toml").unwrap();
        assert_eq!(
            config.metrics.listen,
            Some("127.0.0.1:9417".parse().unwrap())
        );
        let saved = toml::to_string_pretty(&config).unwrap();
        assert_eq!(Config::parse(&saved, "saved.toml").unwrap(), config);
        // Off by default, and then absent from a saved file.
        let plain = Config::parse("", "t.toml").unwrap();
        assert!(plain.metrics.is_off());
        assert!(!toml::to_string_pretty(&plain).unwrap().contains("metrics"));

        let error = Config::parse("[metrics]\nlisten = \"localhost\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("t.toml") && error.contains("line 2"),
            "{error}"
        );
    }

    #[test]
    fn a_failed_status_leaves_out_only_the_mac_table() {
        let mut r = readings();
        r.status = Value::Null;
        let text = encode(r);
        assert!(!text.contains("xsw_mac_table"));
        assert!(text.contains("xsw_port_rx_frames_total"));
    }
}
