//! Encryption at rest: Fernet tokens in the secret columns, with the same key
//! format and rules as `tokenstore-sqlite` (so a sealed value moved between
//! the backends opens with the same key).
//!
//! This duplicates `tokenstore-sqlite`'s `crypto.rs` (the backends may not
//! depend on each other); it belongs in core once a shared home is agreed.

use crate::error::corrupt;
use fernet::Fernet;
use std::fmt;
use tokenstore_core::{Secret, StoreError};

/// Makes a fresh random Fernet key: URL-safe base64 of 32 random bytes, the
/// format Python's `Fernet.generate_key()` produces, as `tokenstore-sqlite`'s
/// `generate_key` does.
///
/// ```
/// let key = tokenstore_postgres::generate_key();
/// assert_eq!(key.len(), 44);
/// ```
pub fn generate_key() -> String {
    Fernet::generate_key()
}

/// Seals and opens the values of the secret columns.
pub(crate) struct Codec {
    fernet: Option<Fernet>,
    allow_plaintext: bool,
}

impl Codec {
    /// A codec for `key` (a Fernet key) or, without one, for the plaintext policy.
    pub(crate) fn new(key: Option<&Secret>, allow_plaintext: bool) -> Result<Self, StoreError> {
        let fernet = key.map(|k| parse_key(k.expose())).transpose()?;
        Ok(Self {
            fernet,
            allow_plaintext,
        })
    }

    /// Whether secrets are encrypted.
    pub(crate) fn encrypts(&self) -> bool {
        self.fernet.is_some()
    }

    /// The stored form of a secret.
    pub(crate) fn seal(&self, value: &Secret) -> Result<String, StoreError> {
        match &self.fernet {
            Some(f) => Ok(f.encrypt(value.expose().as_bytes())),
            None if self.allow_plaintext => Ok(value.expose().to_owned()),
            None => Err(StoreError::EncryptionKeyRequired),
        }
    }

    /// The stored form of an optional secret.
    pub(crate) fn seal_opt(&self, value: Option<&Secret>) -> Result<Option<String>, StoreError> {
        value.map(|v| self.seal(v)).transpose()
    }

    /// The secret a stored value of `table.column` holds.
    pub(crate) fn open(
        &self,
        stored: String,
        table: &'static str,
        column: &'static str,
    ) -> Result<Secret, StoreError> {
        match &self.fernet {
            Some(f) => {
                let bytes = f
                    .decrypt(&stored)
                    .map_err(|_| StoreError::Decrypt { table, column })?;
                String::from_utf8(bytes)
                    .map(Secret::from)
                    .map_err(|_| corrupt(table, column))
            }
            None if self.allow_plaintext => Ok(Secret::from(stored)),
            None => Err(StoreError::EncryptionKeyRequired),
        }
    }
}

fn parse_key(key: &str) -> Result<Fernet, StoreError> {
    Fernet::new(key).ok_or_else(|| {
        StoreError::InvalidConfig(
            "the encryption key is not a Fernet key (URL-safe base64 of 32 bytes)".to_owned(),
        )
    })
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("encrypts", &self.encrypts())
            .field("allow_plaintext", &self.allow_plaintext)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(key: Option<&str>, plaintext: bool) -> Codec {
        let key = key.map(Secret::new);
        Codec::new(key.as_ref(), plaintext).expect("valid key")
    }

    #[test]
    fn seals_and_opens_with_a_key() {
        let key = generate_key();
        let c = codec(Some(&key), false);
        let sealed = c.seal(&Secret::new("tok")).expect("sealed");
        assert!(!sealed.contains("tok"));
        assert_eq!(c.open(sealed, "t", "c").expect("opened").expose(), "tok");
    }

    #[test]
    fn wrong_key_or_garbage_is_a_decrypt_error() {
        let sealed = codec(Some(&generate_key()), false)
            .seal(&Secret::new("tok"))
            .expect("sealed");
        let other = codec(Some(&generate_key()), false);
        let err = StoreError::Decrypt {
            table: "t",
            column: "c",
        };
        assert_eq!(other.open(sealed, "t", "c").err(), Some(err.clone()));
        assert_eq!(other.open("tok".into(), "t", "c").err(), Some(err));
    }

    #[test]
    fn plaintext_needs_the_opt_in() {
        let strict = codec(None, false);
        let required = Some(StoreError::EncryptionKeyRequired);
        assert_eq!(strict.seal(&Secret::new("tok")).err(), required);
        assert_eq!(strict.open("tok".into(), "t", "c").err(), required);
        let lax = codec(None, true);
        assert_eq!(lax.seal(&Secret::new("tok")).ok().as_deref(), Some("tok"));
    }

    #[test]
    fn a_bad_key_is_invalid_config() {
        for bad in ["", "short", &"A".repeat(40)] {
            let err = Codec::new(Some(&Secret::new(bad)), false).err();
            assert!(matches!(err, Some(StoreError::InvalidConfig(_))), "{bad}");
        }
    }
}
