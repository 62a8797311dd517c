//! What xswctl stats and status show.

use serde_json::{json, Value};

use super::switch::{system, Attachment, Outcome, Switch};
use crate::pipeline::DropReason;
use crate::port::afxdp::{self, KernelSocketStats};

impl Switch {
    pub(super) fn stats(&self) -> Value {
        let ids: Vec<_> = self.ports.values().map(|r| r.id).collect();
        let totals = self.dataplane.ports_totals(&ids);
        let slow_path_drops = self.dataplane.slow_path_drops();
        let ports: Vec<Value> = self
            .ports
            .iter()
            .zip(totals)
            .map(|((name, record), totals)| {
                let t = totals.since(&record.base);
                let by_reason =
                    |counts: &[u64; DropReason::COUNT]| -> serde_json::Map<String, Value> {
                        DropReason::ALL
                            .iter()
                            .map(|r| (r.as_str().to_string(), json!(counts[r.index()])))
                            .collect()
                    };
                // `drops` is both views added up, as it was before they
                // were told apart (ARCHITECTURE.md, "Frames received = switched + dropped").
                let mut all_drops = t.drops;
                for (sum, copies) in all_drops.iter_mut().zip(&t.egress_drops) {
                    *sum += copies;
                }
                let mut kernel = KernelSocketStats::default();
                for fd in &record.socket_fds {
                    if let Some(k) = afxdp::kernel_stats(*fd) {
                        kernel.add(&k);
                    }
                }
                // On an XDP-hooked port every frame goes to the workers:
                // its steering program counts the ones too long for them.
                let mut slow_path_drops = slow_path_drops
                    .get(usize::from(record.id))
                    .copied()
                    .unwrap_or_default();
                if let Attachment::Xdp(program) = &record.attachment {
                    slow_path_drops.too_big += program.too_big();
                }
                json!({
                    "name": name,
                    "rx_frames": t.rx_frames,
                    "rx_bytes": t.rx_bytes,
                    "tx_frames": t.tx_frames,
                    "tx_bytes": t.tx_bytes,
                    "switched": t.switched,
                    "ingress_drops": by_reason(&t.drops),
                    "egress_drops": by_reason(&t.egress_drops),
                    "drops": by_reason(&all_drops),
                    "learning_refused": t.learning_refused,
                    "learning_evicted": t.learning_evicted,
                    "checksums_finished": t.checksums_finished,
                    "fast_rx_frames": t.fast_rx_frames,
                    "fast_tx_frames": t.fast_tx_frames,
                    "slow_path_drops": slow_path_drops,
                    "kernel": kernel,
                })
            })
            .collect();
        json!({
            "ports": ports,
            "workers": self.dataplane.worker_summaries(),
            "fast_path": self.dataplane.flow_table_summary(),
        })
    }

    pub(super) fn status(&self) -> Outcome {
        let fdb_entries = self.dataplane.fdb_dump().map_err(system)?.len();
        Ok(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": self.started.elapsed().as_secs(),
            "workers": self.dataplane.worker_count(),
            "dead_workers": self.dataplane.dead_workers(),
            "mode": self.settings.mode,
            "ports": self.ports.len(),
            "tenants": self.tenants.len(),
            "fdb_entries": fdb_entries,
            "fdb_capacity": self.settings.fdb_capacity,
            // Learning then evicts from the busiest port (see ARCHITECTURE.md).
            "fdb_full": fdb_entries >= self.settings.fdb_capacity,
        }))
    }
}
