//! Encryption at rest: Fernet tokens in the secret columns, as mxcp writes
//! them, with one key format and one set of rules for every SQL backend (so a
//! value sealed by one opens in the other with the same key).
//!
//! The secret columns are `sessions.access_token_encrypted`,
//! `sessions.refresh_token_encrypted`, `sessions.provider_access_token`,
//! `sessions.provider_refresh_token` and `oauth_clients.client_secret`. With a key
//! they hold Fernet tokens; without one they hold plain text only when the store
//! was opened with `allow_plaintext_tokens`. `states.provider_code_verifier` is
//! always plain text, as in mxcp.
//!
//! ```
//! use tokenstore_core::Secret;
//! use tokenstore_core::codec::secrets::{SecretCodec, generate_key};
//!
//! let key = Secret::new(generate_key());
//! let codec = SecretCodec::new(Some(&key), false).unwrap();
//! let sealed = codec.seal(&Secret::new("access-token")).unwrap();
//! assert!(!sealed.contains("access-token"));
//! let opened = codec.open(sealed, "sessions", "access_token_encrypted").unwrap();
//! assert_eq!(opened.expose(), "access-token");
//! ```

use crate::{Secret, StoreError};
use fernet::Fernet;
use std::fmt;

fn corrupt(table: &'static str, column: &'static str) -> StoreError {
    StoreError::Corrupt { table, column }
}

/// Makes a fresh random Fernet key: URL-safe base64 of 32 random bytes, the
/// format Python's `Fernet.generate_key()` produces and mxcp accepts.
///
/// Keep it secret and keep it: without it the stored tokens cannot be read.
///
/// ```
/// let key = tokenstore_core::codec::secrets::generate_key();
/// assert_eq!(key.len(), 44);
/// ```
pub fn generate_key() -> String {
    Fernet::generate_key()
}

/// Seals and opens the values of the secret columns. Its `Debug` shows only
/// whether it encrypts, never the key. A clone shares nothing with the
/// original but the key (each connection thread of a store has its own).
#[derive(Clone)]
pub struct SecretCodec {
    fernet: Option<Fernet>,
    allow_plaintext: bool,
}

impl SecretCodec {
    /// A codec for `key` (a Fernet key) or, without one, for the plaintext
    /// policy.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidConfig`] when `key` is not a Fernet key.
    pub fn new(key: Option<&Secret>, allow_plaintext: bool) -> Result<Self, StoreError> {
        let fernet = key.map(|k| parse_key(k.expose())).transpose()?;
        Ok(Self {
            fernet,
            allow_plaintext,
        })
    }

    /// Whether secrets are encrypted.
    pub fn encrypts(&self) -> bool {
        self.fernet.is_some()
    }

    /// The stored form of a secret.
    ///
    /// # Errors
    ///
    /// [`StoreError::EncryptionKeyRequired`] without a key or the plaintext
    /// opt-in.
    pub fn seal(&self, value: &Secret) -> Result<String, StoreError> {
        match &self.fernet {
            Some(f) => Ok(f.encrypt(value.expose().as_bytes())),
            None if self.allow_plaintext => Ok(value.expose().to_owned()),
            None => Err(StoreError::EncryptionKeyRequired),
        }
    }

    /// The stored form of an optional secret.
    pub fn seal_opt(&self, value: Option<&Secret>) -> Result<Option<String>, StoreError> {
        value.map(|v| self.seal(v)).transpose()
    }

    /// The secret a stored value of `table.column` holds.
    ///
    /// # Errors
    ///
    /// [`StoreError::Decrypt`] when it is not a token under this key,
    /// [`StoreError::Corrupt`] when it decrypts to something other than UTF-8,
    /// [`StoreError::EncryptionKeyRequired`] without a key or the plaintext
    /// opt-in.
    pub fn open(
        &self,
        stored: String,
        table: &'static str,
        column: &'static str,
    ) -> Result<Secret, StoreError> {
        match &self.fernet {
            Some(f) => decrypt(f, &stored, table, column),
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

fn decrypt(
    fernet: &Fernet,
    stored: &str,
    table: &'static str,
    column: &'static str,
) -> Result<Secret, StoreError> {
    let bytes = fernet
        .decrypt(stored)
        .map_err(|_| StoreError::Decrypt { table, column })?;
    String::from_utf8(bytes)
        .map(Secret::from)
        .map_err(|_| corrupt(table, column))
}

impl fmt::Debug for SecretCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretCodec")
            .field("encrypts", &self.encrypts())
            .field("allow_plaintext", &self.allow_plaintext)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(key: Option<&str>, plaintext: bool) -> SecretCodec {
        let key = key.map(Secret::new);
        SecretCodec::new(key.as_ref(), plaintext).expect("valid key")
    }

    #[test]
    fn seals_and_opens_with_a_key() {
        let key = generate_key();
        let c = codec(Some(&key), false);
        let sealed = c.seal(&Secret::new("tok")).expect("sealed");
        assert!(!sealed.contains("tok"));
        let opened = c.open(sealed, "t", "c").expect("opened");
        assert_eq!(opened.expose(), "tok");
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
        for bad in [
            "",
            "short",
            &"A".repeat(40),
            "not base64 at all, not base64 at all, not b!",
        ] {
            let err = SecretCodec::new(Some(&Secret::new(bad)), false).err();
            assert!(matches!(err, Some(StoreError::InvalidConfig(_))), "{bad}");
        }
    }
}
