//! The integration suite of `hangar-store`: every store test runs against SQLite and PostgreSQL
//! (`TEST_POSTGRES_URL` must name a PostgreSQL database; the suite never skips it silently).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on broken setup"
)]

mod suite;
