//! Partial updates that can tell "absent" from "explicitly null".

use serde::{Deserialize, Deserializer};

/// Deserialises a field as `Some(value)` when present, so `Option<Option<T>>` distinguishes an
/// absent field (`None`, leave as is) from `null` (`Some(None)`, clear it).
/// Use with `#[serde(default, deserialize_with = "double_option")]`.
pub fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
