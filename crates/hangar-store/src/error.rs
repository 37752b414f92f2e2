//! What can go wrong in the store, in terms a caller acts on.

use hangar_protocol::ErrorDetail;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist (or is not visible to the caller).
    #[error("{resource} '{id}' not found")]
    NotFound { resource: &'static str, id: String },
    /// The request contradicts what is stored: a duplicate id, a delete of something in use.
    #[error("{message}")]
    Conflict {
        message: String,
        details: Vec<ErrorDetail>,
    },
    /// The request is well-formed but refers to something unusable (e.g. a deprecated model).
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// The database could not be reached or answered with an error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not decode (a bug or a hand-edited row).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The store URL or options are unusable.
    #[error("{0}")]
    Config(String),
}

impl StoreError {
    /// The database could not be reached (pool exhausted or closed, I/O failure): worth a 503
    /// and a retry rather than a 500.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Database(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_))
        )
    }

    pub(crate) fn not_found(resource: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            resource,
            id: id.to_string(),
        }
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict {
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn corrupt(what: impl std::fmt::Display) -> Self {
        Self::Corrupt(what.to_string())
    }
}
