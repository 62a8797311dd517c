//! The forwarding pipeline: what happens to a frame between RX and TX.
//!
//! Built Snabb-style from small pure stages, each with one job, joined by batches: a stage
//! takes a batch of frames plus the state it owns and fills in a batch of [`Decision`]s,
//! with no I/O, locks, allocation or clock reads of its own. The worker owns the rings and
//! the clock and turns decisions into transmissions and counters.
//!
//! Today there is one stage, [`l2`] (learning bridge over the worker's [`fdb`]). Tenant
//! isolation adds stages around it: anti-spoofing before (a source must belong to its
//! port), ACLs after (may turn a `Forward` or `Flood` into a `Drop`), each returning the
//! same [`Decision`] type with its own [`DropReason`]s.

pub mod acl;
pub mod antispoof;
pub mod decision;
pub mod fdb;
pub mod guard;
pub mod l2;
pub mod stages;
pub mod storm;
pub mod tenant;

pub use antispoof::{link_local_of, PortGuard};
pub use decision::{Decision, DropReason, PortId, TenantId};
pub use fdb::{Fdb, FdbEntry, FdbError, Learned};
pub use l2::IngressPort;
