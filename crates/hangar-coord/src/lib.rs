//! Coordination that must hold across every run of a node, and later across nodes:
//!
//! * leases that give one run at a time a conversation ([`Leases`]);
//! * rate limits, a sliding-window log per key ([`RateLimiter`]).
//!
//! The in-process implementations serve the embedded, single-node setup; Redis ones (`SET NX PX`
//! with a token, renewal and compare-and-delete for leases; a sorted set and one Lua script for
//! rate limits) will implement the same traits for many nodes.

mod lease;
mod rate_limit;

pub use lease::{InProcessLeases, Lease, LeaseError, Leases};
pub use rate_limit::{Clock, InProcessRateLimiter, RateDecision, RateLimitError, RateLimiter};
