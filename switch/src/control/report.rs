//! What xswctl stats and status show.

use serde_json::{json, Value};

use super::switch::{system, ControlError, Outcome, Switch};
use crate::dataplane::worker::{PollMode, MAX_BATCH};
use crate::pipeline::DropReason;
use crate::port::afxdp::{self, KernelSocketStats};

impl Switch {
    /// Applies data-plane settings that workers can take between two
    /// batches. The config's [dataplane] section follows, so they are saved.
    pub(super) fn tune(
        &mut self,
        batch_size: Option<usize>,
        mode: Option<PollMode>,
        aging: Option<u64>,
    ) -> Outcome {
        let mut next = self.settings.clone();
        if let Some(batch) = batch_size {
            if !(1..=MAX_BATCH).contains(&batch) {
                return Err(ControlError::invalid(format!(
                    "batch size {batch} is outside 1..={MAX_BATCH}"
                )));
            }
            next.batch_size = batch;
        }
        if let Some(secs) = aging {
            if secs == 0 {
                return Err(ControlError::invalid("MAC aging must be at least 1 second"));
            }
            next.mac_aging_secs = secs;
        }
        next.mode = mode.unwrap_or(next.mode);
        if batch_size.is_some() || mode.is_some() {
            self.dataplane
                .set_polling(next.batch_size, next.mode)
                .map_err(system)?;
        }
        if aging.is_some() {
            self.dataplane
                .set_aging(next.mac_aging_secs.saturating_mul(1_000_000_000))
                .map_err(system)?;
        }
        self.settings = next;
        Ok(json!({
            "batch_size": self.settings.batch_size,
            "mode": self.settings.mode,
            "mac_aging_secs": self.settings.mac_aging_secs,
        }))
    }

    pub(super) fn stats(&self) -> Value {
        let ports: Vec<Value> = self
            .ports
            .iter()
            .map(|(name, record)| {
                let t = self.dataplane.port_totals(record.id).since(&record.base);
                let drops: serde_json::Map<String, Value> = DropReason::ALL
                    .iter()
                    .map(|r| (r.as_str().to_string(), json!(t.drops[r.index()])))
                    .collect();
                let mut kernel = KernelSocketStats::default();
                for fd in &record.socket_fds {
                    if let Some(k) = afxdp::kernel_stats(*fd) {
                        kernel.add(&k);
                    }
                }
                json!({
                    "name": name,
                    "rx_frames": t.rx_frames,
                    "rx_bytes": t.rx_bytes,
                    "tx_frames": t.tx_frames,
                    "tx_bytes": t.tx_bytes,
                    "drops": drops,
                    "kernel": kernel,
                })
            })
            .collect();
        json!({ "ports": ports, "workers": self.dataplane.worker_summaries() })
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
        }))
    }
}
