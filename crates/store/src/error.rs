//! What can go wrong talking to the store, in terms a handler can act on.

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one stampede can use.
    #[error("{0}")]
    Url(String),
    /// The store could not be reached or gave up mid-way (connection
    /// refused, pool timeout, I/O error): the caller should answer `503`
    /// and may retry later; nothing was committed.
    #[error("the store is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A row with the same key already exists.
    #[error("already exists")]
    Conflict,
    /// The stored data broke an assumption of the code (a bad status, a
    /// type mismatch): a bug or a hand-edited database, never a user's fault.
    #[error("the stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict,
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::TypeNotFound { .. } => Self::Corrupt(error.to_string()),
            _ => Self::Unavailable(error),
        }
    }
}
