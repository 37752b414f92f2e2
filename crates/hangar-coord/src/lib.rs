//! Coordination that must hold across every run of a node, and later across nodes: leases
//! that give one run at a time a conversation. The in-process implementation serves the
//! embedded, single-node setup; a Redis one (`SET NX PX` with a token, renewal and
//! compare-and-delete) will implement the same trait for many nodes.

mod lease;

pub use lease::{InProcessLeases, Lease, LeaseError, Leases};
