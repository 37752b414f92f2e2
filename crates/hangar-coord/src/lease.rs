//! Conversation leases: while a run holds its conversation's lease, no other run of that
//! conversation can start. Acquiring never waits: a second request is refused at once, so a
//! client gets a clear conflict instead of a hang.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use uuid::Uuid;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LeaseError {
    /// Another run holds it.
    #[error("conversation {key} is busy with run {holder}")]
    Held { key: String, holder: Uuid },
    #[error("lease backend failed: {0}")]
    Backend(String),
}

/// Gives a lease back to the table it came from.
type Release = Box<dyn FnOnce(&str, Uuid) + Send + Sync>;

/// A held lease; dropping it releases the lease.
pub struct Lease {
    key: String,
    holder: Uuid,
    release: Option<Release>,
}

impl Lease {
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn holder(&self) -> Uuid {
        self.holder
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release(&self.key, self.holder);
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.key)
            .field("holder", &self.holder)
            .finish()
    }
}

#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// Takes the lease on `key` for `holder`, or says who holds it.
    async fn try_acquire(&self, key: &str, holder: Uuid) -> Result<Lease, LeaseError>;
    /// Who holds `key` now, if anyone.
    async fn holder(&self, key: &str) -> Option<Uuid>;
}

/// Leases of this process.
#[derive(Debug, Clone, Default)]
pub struct InProcessLeases {
    held: Arc<Mutex<HashMap<String, Uuid>>>,
}

#[async_trait]
impl Leases for InProcessLeases {
    async fn try_acquire(&self, key: &str, holder: Uuid) -> Result<Lease, LeaseError> {
        let mut held = self
            .held
            .lock()
            .map_err(|_| LeaseError::Backend("lease table poisoned".to_owned()))?;
        if let Some(current) = held.get(key) {
            return Err(LeaseError::Held {
                key: key.to_owned(),
                holder: *current,
            });
        }
        held.insert(key.to_owned(), holder);
        let table = self.held.clone();
        Ok(Lease {
            key: key.to_owned(),
            holder,
            release: Some(Box::new(move |key, holder| {
                if let Ok(mut held) = table.lock()
                    && held.get(key) == Some(&holder)
                {
                    held.remove(key);
                }
            })),
        })
    }

    async fn holder(&self, key: &str) -> Option<Uuid> {
        self.held.lock().ok().and_then(|held| held.get(key).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_drop_releases() {
        let leases = InProcessLeases::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let lease = leases.try_acquire("c1", a).await.unwrap();
        assert_eq!(
            leases.try_acquire("c1", b).await.unwrap_err(),
            LeaseError::Held {
                key: "c1".into(),
                holder: a
            }
        );
        let other = leases.try_acquire("c2", b).await.unwrap();
        assert_eq!(leases.holder("c1").await, Some(a));
        drop(lease);
        assert_eq!(leases.holder("c1").await, None);
        leases.try_acquire("c1", b).await.unwrap();
        drop(other);
    }
}
