//! Live tuning. Batch size, poll mode and MAC aging are taken by the workers
//! between two turns. Worker count, cores and UMEM/ring sizes need new
//! sockets and UMEMs: the data plane is rebuilt in place (the new one starts
//! before the old one stops) and every port re-attached from the running
//! config, a brief interruption that the reply reports.

use std::time::Instant;

use serde_json::{json, Value};

use super::protocol::{OnOff, TuneArgs};
use super::switch::{system, ControlError, Outcome, Switch};
use crate::config::{Config, DataplaneSection, FastPathSection, UmemSection};
use crate::dataplane::worker::{PollMode, MAX_BATCH};
use crate::dataplane::{Dataplane, DataplaneSettings};

pub(super) struct Tuning {
    pub batch_size: Option<usize>,
    pub mode: Option<PollMode>,
    pub mac_aging_secs: Option<u64>,
    pub poll_budget: Option<u32>,
    /// (per port, per tenant): Some(0) removes a limit, None leaves it.
    pub mac_limits: (Option<u32>, Option<u32>),
    pub workers: Option<Vec<usize>>,
    /// MAC table size per worker (rebuilds the data plane); config reload only.
    pub fdb_capacity: Option<usize>,
    /// The UMEM section with every requested change applied.
    pub umem: UmemSection,
    /// The fast path's switch and flow idle timeout.
    pub fast_path: Option<bool>,
    pub flow_idle_timeout_secs: Option<u64>,
    /// Flow table size (rebuilds the data plane); config reload only.
    pub flow_capacity: Option<u32>,
}

impl Tuning {
    /// What a `tune` request asks for, on top of the UMEM settings in force.
    pub(super) fn from_args(args: TuneArgs, current: &UmemSection) -> Tuning {
        let mut umem = current.clone();
        umem.rx_ring = args.rx_ring.unwrap_or(umem.rx_ring);
        umem.tx_ring = args.tx_ring.unwrap_or(umem.tx_ring);
        umem.fill_ring = args.fill_ring.unwrap_or(umem.fill_ring);
        umem.comp_ring = args.comp_ring.unwrap_or(umem.comp_ring);
        umem.frame_count = args.frame_count.unwrap_or(umem.frame_count);
        Tuning {
            batch_size: args.batch_size,
            mode: args.mode,
            mac_aging_secs: args.mac_aging_secs,
            poll_budget: args.poll_budget,
            mac_limits: (args.mac_limit_per_port, args.mac_limit_per_tenant),
            workers: args.workers,
            fdb_capacity: None,
            umem,
            fast_path: args.fast_path.map(OnOff::is_on),
            flow_idle_timeout_secs: args.flow_idle_timeout_secs,
            flow_capacity: None,
        }
    }
}

impl Switch {
    pub(super) fn tune(&mut self, tuning: Tuning) -> Outcome {
        let mut next = self.settings.clone();
        if let Some(batch) = tuning.batch_size {
            if !(1..=MAX_BATCH).contains(&batch) {
                return Err(ControlError::invalid(format!(
                    "batch size {batch} is outside 1..={MAX_BATCH}"
                )));
            }
            next.batch_size = batch;
        }
        if let Some(secs) = tuning.mac_aging_secs {
            next.mac_aging_secs = secs;
        }
        next.mode = tuning.mode.unwrap_or(next.mode);
        next.poll_budget = tuning.poll_budget.unwrap_or(next.poll_budget);
        let limit = |requested: Option<u32>, current: Option<u32>| match requested {
            Some(0) => None,
            Some(n) => Some(n),
            None => current,
        };
        next.mac_limit_per_port = limit(tuning.mac_limits.0, next.mac_limit_per_port);
        next.mac_limit_per_tenant = limit(tuning.mac_limits.1, next.mac_limit_per_tenant);
        if let Some(workers) = &tuning.workers {
            next.workers = workers.clone();
        }
        next.fdb_capacity = tuning.fdb_capacity.unwrap_or(next.fdb_capacity);
        // The same checks as a config file gets, with the same messages.
        let mut fast = self.dataplane.fast_path_settings().clone();
        fast.enabled = tuning.fast_path.unwrap_or(fast.enabled);
        fast.idle_timeout_secs = tuning
            .flow_idle_timeout_secs
            .unwrap_or(fast.idle_timeout_secs);
        fast.flows = tuning.flow_capacity.unwrap_or(fast.flows);
        let candidate = Config {
            dataplane: next.clone(),
            umem: tuning.umem.clone(),
            fast_path: fast.clone(),
            // The whole running config, so that no port is left naming a
            // worker that would no longer exist (a file xswd could not load).
            ..self.running_config()
        };
        candidate.validate().map_err(|e| {
            ControlError::invalid(format!(
                "{}: {}",
                crate::config::field_name(&e.field),
                e.message
            ))
        })?;

        let rebuild = next.workers != self.settings.workers
            || next.fdb_capacity != self.settings.fdb_capacity
            || tuning.umem != self.umem
            || fast.flows != self.dataplane.fast_path_settings().flows;
        let mut reply = json!({});
        if rebuild {
            reply = self.rebuild_dataplane(&next, &tuning.umem, &fast)?;
        } else {
            if tuning.batch_size.is_some() || tuning.mode.is_some() || tuning.poll_budget.is_some()
            {
                self.dataplane
                    .set_polling(next.batch_size, next.mode, next.poll_budget)
                    .map_err(system)?;
            }
            if tuning.mac_limits != (None, None) {
                self.dataplane
                    .set_mac_limits(next.mac_limit_per_port, next.mac_limit_per_tenant)
                    .map_err(system)?;
            }
            if tuning.mac_aging_secs.is_some() {
                self.dataplane
                    .set_aging(next.mac_aging_secs.saturating_mul(1_000_000_000))
                    .map_err(system)?;
            }
        }
        self.settings = next;
        if let Some(secs) = tuning.flow_idle_timeout_secs {
            self.dataplane.set_flow_idle_timeout(secs);
        }
        if let Some(enabled) = tuning.fast_path {
            self.dataplane.set_fast_path_enabled(enabled);
            // Port flags and flow entries follow the new setting.
            self.publish();
        }
        if let Some(object) = reply.as_object_mut() {
            object.insert("fast_path".into(), json!(fast));
            object.insert("batch_size".into(), json!(self.settings.batch_size));
            object.insert("mode".into(), json!(self.settings.mode));
            object.insert("poll_budget".into(), json!(self.settings.poll_budget));
            object.insert("mac_aging_secs".into(), json!(self.settings.mac_aging_secs));
            object.insert("workers".into(), json!(self.settings.workers));
            object.insert(
                "mac_limit_per_port".into(),
                json!(self.settings.mac_limit_per_port),
            );
            object.insert(
                "mac_limit_per_tenant".into(),
                json!(self.settings.mac_limit_per_tenant),
            );
            object.insert("umem".into(), json!(self.umem));
        }
        Ok(reply)
    }

    /// Starts a data plane with `dataplane`/`umem`, moves every port onto it
    /// and stops the old one. If the new one cannot start, nothing changes.
    fn rebuild_dataplane(
        &mut self,
        dataplane: &DataplaneSection,
        umem: &UmemSection,
        fast: &FastPathSection,
    ) -> Outcome {
        let started = Instant::now();
        let fresh = Dataplane::start(&DataplaneSettings::from_config(dataplane, umem, fast))
            .map_err(system)?;
        let running = self.running_config();
        let queues: usize = self.ports.values().map(|p| p.queues.len()).sum();
        // Detach every port from the old data plane (sockets, then XDP), but
        // keep taps xsw created: the ports come straight back.
        let names: Vec<String> = self.ports.keys().cloned().collect();
        for name in names {
            if let Some(record) = self.ports.remove(&name) {
                self.publish();
                if let Err(e) = self.dataplane.remove_port(record.id) {
                    tracing::error!(port = %name, error = %e, "old workers did not release the port");
                }
            }
        }
        let mut old = std::mem::replace(&mut self.dataplane, fresh);
        old.stop();
        drop(old);
        let rows = self.dataplane.acl_rows();
        for tenant in self.tenants.values_mut() {
            tenant.rehome(rows);
        }
        self.static_macs.clear();
        self.settings = dataplane.clone();
        self.umem = umem.clone();
        self.publish();
        let mut failed: Vec<Value> = Vec::new();
        self.restoring = true;
        for spec in &running.ports {
            if let Err(e) = self.port_add(spec.clone()) {
                failed.push(json!({ "port": spec.name, "error": e.message }));
            }
        }
        for entry in &running.fdb {
            if let Err(e) = self.fdb_add(
                &entry.mac.to_string(),
                &entry.port,
                entry.tenant.as_deref(),
                entry.remote,
            ) {
                failed.push(json!({ "static_mac": entry.mac, "error": e.message }));
            }
        }
        self.restoring = false;
        let took = started.elapsed().as_millis();
        tracing::info!(
            queues,
            took_ms = took,
            failed = failed.len(),
            "data plane rebuilt"
        );
        Ok(json!({
            "recreated_queues": queues,
            "interruption_ms": took,
            "note": "worker or UMEM settings changed: every queue was re-created; counters restart",
            "failed": failed,
        }))
    }
}
