//! Integration tests of the `hangar` server over real HTTP on 127.0.0.1, against SQLite and
//! PostgreSQL.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "helpers shared by the tests (outside #[test] fns) fail the test loudly on broken setup"
)]

mod suite;
