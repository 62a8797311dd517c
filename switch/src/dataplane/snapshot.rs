//! The immutable view of the configuration that workers switch by.
//!
//! The control plane builds a new `Snapshot` for every change and publishes
//! it with one atomic pointer swap; a worker loads it once per batch, so a
//! batch is switched entirely by one version of the config.

use crate::pipeline::{DomainId, PortId};

#[derive(Clone, Debug)]
pub struct PortView {
    pub domain: DomainId,
    pub link_up: bool,
    /// The worker whose socket transmits on this port; other workers hand
    /// frames for it over (copying them into that worker's UMEM).
    pub tx_worker: usize,
}

#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Indexed by PortId; None for ids not in use.
    pub ports: Vec<Option<PortView>>,
    /// Flood members of each domain, indexed by DomainId.
    pub domains: Vec<Vec<PortId>>,
}

impl Snapshot {
    #[inline]
    pub fn port(&self, id: PortId) -> Option<&PortView> {
        self.ports.get(usize::from(id)).and_then(Option::as_ref)
    }

    #[inline]
    pub fn flood_members(&self, domain: DomainId) -> &[PortId] {
        self.domains
            .get(usize::from(domain))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}
