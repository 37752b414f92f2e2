//! Integration tests of the agent loop against a scripted model.

#![expect(
    clippy::unwrap_used,
    reason = "helpers shared by the tests (outside #[test] fns) fail the test loudly on broken setup"
)]

mod suite;
