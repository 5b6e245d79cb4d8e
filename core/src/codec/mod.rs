//! The column codecs the SQL backends share (`tokenstore-sqlite`,
//! `tokenstore-postgres`), for backend authors: [`json`] writes lists and
//! `user_info` as mxcp does; [`secrets`] (feature `fernet`) seals the secret
//! columns with Fernet, so a record moved between backends reads back the same.

pub mod json;
#[cfg(feature = "fernet")]
pub mod secrets;
