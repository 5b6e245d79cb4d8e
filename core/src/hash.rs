//! SHA-256 token hashes: how sessions are keyed.

use sha2::{Digest, Sha256};
use std::fmt;

/// The SHA-256 of a token's UTF-8 bytes.
///
/// Sessions are found by the hash of their access token (and of their refresh
/// token); raw tokens are never keys. At the SQLite boundary it is lowercase hex,
/// as mxcp writes it. Its `Debug` never shows the digest.
///
/// ```
/// use tokenstore_core::TokenHash;
///
/// let h = TokenHash::of("abc");
/// assert_eq!(
///     h.to_hex(),
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// assert_eq!(TokenHash::from_hex(&h.to_hex()), Some(h));
/// assert_eq!(format!("{h:?}"), "TokenHash(..)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Hashes a token.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// From the raw 32 digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters (mxcp's `hexdigest()`).
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(DIGITS[usize::from(b >> 4)] as char);
            out.push(DIGITS[usize::from(b & 0x0f)] as char);
        }
        out
    }

    /// Parses 64 hex digits (either case); `None` for anything else.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Some(Self(out))
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Feeds the first 8 digest bytes to the hasher: a SHA-256 digest is already
/// uniform, and a keyed hasher on top keeps bucket placement unpredictable.
impl std::hash::Hash for TokenHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(prefix));
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_rejects_bad_input() {
        assert_eq!(TokenHash::from_hex(""), None);
        assert_eq!(TokenHash::from_hex(&"g".repeat(64)), None);
        assert_eq!(TokenHash::from_hex(&"a".repeat(63)), None);
        assert_eq!(TokenHash::from_hex("é".repeat(32).as_str()), None);
        let upper = TokenHash::of("x").to_hex().to_uppercase();
        assert_eq!(TokenHash::from_hex(&upper), Some(TokenHash::of("x")));
    }
}
