//! Test support for Hangar: a fake model server (see `fake_model`).
