//! The counter identity of `xswctl stats --json` (ARCHITECTURE.md,
//! "Counters"), checked after a scenario:
//!
//! - per frame received, on its ingress port: `rx_frames` = `switched` + the
//!   sum of `ingress_drops`, each dropped frame under exactly one reason;
//! - per copy offered to an egress port, on that port: `egress_drops`;
//! - `drops` = `ingress_drops` + `egress_drops`, reason by reason;
//! - in total, over all ports, the same.

use anyhow::{anyhow, bail, ensure, Result};
use serde_json::Value;
use std::time::{Duration, Instant};

use crate::Lab;

/// The switch's frames in total, over every port, as the identity reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameTotals {
    pub received: u64,
    pub switched: u64,
    /// Frames received and dropped (per ingress frame, one reason each).
    pub dropped: u64,
    /// Copies refused or lost at an egress port.
    pub copies_dropped: u64,
}

fn number(port: &Value, key: &str) -> Result<u64> {
    port[key]
        .as_u64()
        .ok_or_else(|| anyhow!("stats of port {} lack numeric {key}: {port}", port["name"]))
}

fn reasons<'a>(port: &'a Value, key: &str) -> Result<&'a serde_json::Map<String, Value>> {
    port[key]
        .as_object()
        .ok_or_else(|| anyhow!("stats of port {} lack object {key}: {port}", port["name"]))
}

fn sum(port: &Value, key: &str) -> Result<u64> {
    reasons(port, key)?
        .iter()
        .map(|(reason, n)| {
            n.as_u64().ok_or_else(|| {
                anyhow!(
                    "{key}.{reason} of port {} is not a count: {n}",
                    port["name"]
                )
            })
        })
        .sum()
}

/// Checks the identity on one `stats --json` reply; the error names every
/// port and counter that does not add up.
pub fn check_identity(stats: &Value) -> Result<FrameTotals> {
    let ports = stats["ports"]
        .as_array()
        .ok_or_else(|| anyhow!("stats --json has no \"ports\" array: {stats}"))?;
    let mut totals = FrameTotals::default();
    let mut wrong = Vec::new();
    for port in ports {
        let name = &port["name"];
        let received = number(port, "rx_frames")?;
        let switched = number(port, "switched")?;
        let dropped = sum(port, "ingress_drops")?;
        let copies_dropped = sum(port, "egress_drops")?;
        if received != switched + dropped {
            wrong.push(format!(
                "port {name}: rx_frames {received} != switched {switched} + ingress drops {dropped} \
                 (ingress_drops {}, kernel {}, slow_path_drops {})",
                port["ingress_drops"], port["kernel"], port["slow_path_drops"]
            ));
        }
        let (ingress, egress, all) = (
            reasons(port, "ingress_drops")?,
            reasons(port, "egress_drops")?,
            reasons(port, "drops")?,
        );
        for (reason, n) in all {
            let parts = ingress.get(reason).and_then(Value::as_u64).unwrap_or(0)
                + egress.get(reason).and_then(Value::as_u64).unwrap_or(0);
            if n.as_u64() != Some(parts) {
                wrong.push(format!(
                    "port {name}: drops.{reason} {n} != ingress_drops + egress_drops {parts}"
                ));
            }
        }
        totals.received += received;
        totals.switched += switched;
        totals.dropped += dropped;
        totals.copies_dropped += copies_dropped;
    }
    if !wrong.is_empty() {
        bail!("counters do not add up:\n  {}", wrong.join("\n  "));
    }
    ensure!(
        totals.received == totals.switched + totals.dropped,
        "in total: received {} != switched {} + dropped {}",
        totals.received,
        totals.switched,
        totals.dropped
    );
    Ok(totals)
}

impl Lab {
    /// Checks the counter identity once traffic has stopped: counters are
    /// stored once per batch, so a reply can be a batch behind; this waits
    /// up to 2 s for one that adds up, and fails with the last discrepancy.
    pub fn expect_counters_add_up(&self) -> Result<FrameTotals> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match check_identity(&self.stats()?) {
                Ok(totals) => return Ok(totals),
                Err(error) if Instant::now() >= deadline => return Err(error),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn port(rx: u64, switched: u64, no_egress: u64, not_for_port: u64) -> Value {
        json!({
            "name": "p",
            "rx_frames": rx,
            "switched": switched,
            "ingress_drops": {"no_egress": no_egress, "not_for_port": 0},
            "egress_drops": {"no_egress": 0, "not_for_port": not_for_port},
            "drops": {"no_egress": no_egress, "not_for_port": not_for_port},
        })
    }

    #[test]
    fn adds_up_when_every_frame_is_switched_or_dropped_once() {
        let stats = json!({"ports": [port(10, 7, 3, 5), port(4, 4, 0, 0)]});
        let totals = check_identity(&stats).expect("adds up");
        assert_eq!(
            totals,
            FrameTotals {
                received: 14,
                switched: 11,
                dropped: 3,
                copies_dropped: 5
            }
        );
    }

    #[test]
    fn a_frame_neither_switched_nor_dropped_is_reported() {
        let stats = json!({"ports": [port(10, 7, 2, 5)]});
        let error = check_identity(&stats).expect_err("one frame is missing");
        assert!(error.to_string().contains("rx_frames 10"), "{error}");
    }

    #[test]
    fn a_drops_total_that_is_not_its_parts_is_reported() {
        let mut stats = json!({"ports": [port(10, 7, 3, 5)]});
        stats["ports"][0]["drops"]["not_for_port"] = json!(6);
        let error = check_identity(&stats).expect_err("drops differ");
        assert!(error.to_string().contains("drops.not_for_port"), "{error}");
    }
}
