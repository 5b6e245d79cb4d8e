//! Typed errors of the [`TokenStore`](crate::TokenStore) contract.
//!
//! No variant carries a token, a token hash, a client secret or a user
//! identifier: errors are safe to log.

/// Why an input was refused. Nothing was changed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// A key (state, code, token, session id, client id) was empty.
    #[error("{field} must not be empty")]
    EmptyKey {
        /// Which field.
        field: &'static str,
    },
    /// A key was longer than [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES).
    #[error("{field} is {len} bytes, longer than the limit of {max}")]
    KeyTooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A key or a field stored as its own text column held a NUL byte
    /// (U+0000), which PostgreSQL's `text` cannot hold. Lists, `user_info` and
    /// the raw profile are stored as JSON, where NUL is escaped: they may hold
    /// it.
    #[error("{field} contains a NUL byte")]
    NulByte {
        /// Which field.
        field: &'static str,
    },
    /// A stored time was earlier than
    /// [`MIN_STORABLE_TIME`](crate::MIN_STORABLE_TIME), the earliest time
    /// PostgreSQL's `timestamptz` can hold.
    #[error("{field} is earlier than the earliest storable time (4713-11-24 BC)")]
    TimeTooEarly {
        /// Which field.
        field: &'static str,
    },
    /// A session was stored without `access_expires_at`.
    #[error("a session needs an access expiry (access_expires_at) to be stored")]
    MissingAccessExpiry,
    /// A session's `user_info.raw_profile` nests deeper than
    /// [`MAX_PROFILE_DEPTH`](crate::MAX_PROFILE_DEPTH).
    #[error("user_info.raw_profile nests deeper than {max} levels")]
    ProfileTooDeep {
        /// The limit.
        max: usize,
    },
}

/// The error of every [`TokenStore`](crate::TokenStore) operation.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The input was refused; nothing changed.
    #[error("invalid input: {0}")]
    InvalidInput(#[from] InvalidInput),
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// A token would be stored in plain text but no encryption key is configured
    /// and plaintext was not allowed.
    #[error(
        "an encryption key is required to store or read tokens; \
         opt in to plaintext storage explicitly to do without"
    )]
    EncryptionKeyRequired,
    /// A stored secret could not be decrypted (wrong key or tampered value).
    #[error("a stored value in {table}.{column} could not be decrypted")]
    Decrypt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
    },
    /// A stored value is malformed (bad JSON, bad time, wrong type).
    #[error("a stored value in {table}.{column} is corrupt")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
    },
    /// The store was configured wrongly (for example an invalid encryption key).
    ///
    /// The message names the problem, never the secret.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// `close()` could not apply every buffered write; they were kept, not dropped
    /// (the write buffer hands them back).
    #[error("{count} buffered writes could not be applied before close")]
    WritesNotApplied {
        /// How many.
        count: usize,
    },
    /// The backend failed (I/O, SQLite error, a worker that went away).
    ///
    /// The message describes the failure, never the data.
    #[error("backend error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether retrying the same call may succeed (backend failures), as opposed to
    /// input, configuration or data errors that will fail the same way again.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Backend(_))
    }
}
