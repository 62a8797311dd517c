//! Storm control and RA/DHCP trust: the control plane's side of `pipeline::storm` and
//! `pipeline::guard`. Both are root's (see `access`), saved like every other change, and
//! in force from the moment the reply is sent (a new snapshot).

use std::sync::Arc;

use serde_json::{json, Value};

use super::switch::{ControlError, Outcome, Switch};
use crate::pipeline::guard::Trusted;
use crate::pipeline::storm::{StormLimits, StormOverrides};

impl Switch {
    pub(super) fn port_trust(&mut self, name: &str, mut trust: Vec<Trusted>) -> Outcome {
        let mut spec = self.port(name)?.spec.clone();
        trust.sort_unstable();
        trust.dedup();
        spec.trust = trust;
        self.update_port(name, spec, false)
    }

    /// Sets a port's own limits (`port`) or the switch-wide default.
    pub(super) fn storm_set(
        &mut self,
        port: Option<&str>,
        limits: StormOverrides,
        inherit: bool,
    ) -> Outcome {
        match port {
            Some(name) => {
                let mut spec = self.port(name)?.spec.clone();
                let mut own = if inherit {
                    StormOverrides::default()
                } else {
                    spec.storm_control
                };
                own.broadcast = limits.broadcast.or(own.broadcast);
                own.multicast = limits.multicast.or(own.multicast);
                own.unknown_unicast = limits.unknown_unicast.or(own.unknown_unicast);
                spec.storm_control = own;
                self.update_port(name, spec, false)?;
                Ok(self.storm_show())
            }
            None if inherit => Err(ControlError::invalid(
                "--inherit applies to a port (it drops the port's own limits); \
                 the switch-wide default has nothing to inherit from",
            )),
            None => {
                self.set_storm_default(self.storm_default.overridden_by(&limits))?;
                Ok(self.storm_show())
            }
        }
    }

    /// Makes `limits` the default and recomputes every port's policy with it.
    pub(super) fn set_storm_default(&mut self, limits: StormLimits) -> Outcome<()> {
        self.storm_default = limits;
        let mut policies = Vec::with_capacity(self.ports.len());
        for (name, record) in &self.ports {
            policies.push((name.clone(), Arc::new(self.policy_for(&record.spec)?)));
        }
        for (name, policy) in policies {
            if let Some(record) = self.ports.get_mut(&name) {
                record.policy = policy;
            }
        }
        self.publish();
        Ok(())
    }

    pub(super) fn storm_show(&self) -> Value {
        let ports: serde_json::Map<String, Value> = self
            .ports
            .iter()
            .map(|(name, record)| (name.clone(), json!(record.policy.storm)))
            .collect();
        json!({ "default": self.storm_default, "ports": ports })
    }
}
