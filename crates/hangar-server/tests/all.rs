//! Integration tests of the `hangar` server over real HTTP on 127.0.0.1, against SQLite and
//! PostgreSQL.

mod suite;
