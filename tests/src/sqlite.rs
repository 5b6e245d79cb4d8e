//! [`SqliteFactory`]: [`SqliteTokenStore`] in a fresh temporary directory.

use crate::Factory;
use tempfile::TempDir;
use tokenstore_core::{Contents, ManualClock};
use tokenstore_sqlite::SqliteTokenStore;

/// The Fernet key every test store is encrypted with (urlsafe base64 of the 32
/// bytes `this-is-a-test-key-for-tokenstor`).
pub const TEST_KEY: &str = "dGhpcy1pcy1hLXRlc3Qta2V5LWZvci10b2tlbnN0b3I=";

/// [`SqliteTokenStore`] with an encryption key and default settings, in a
/// temporary directory that lives as long as the store.
#[derive(Debug, Clone, Copy)]
pub struct SqliteFactory;

impl Factory for SqliteFactory {
    type Store = SqliteTokenStore;
    type Guard = TempDir;

    async fn make(clock: ManualClock) -> (SqliteTokenStore, TempDir) {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let store = SqliteTokenStore::builder(dir.path().join("tokens.sqlite"))
            .encryption_key(TEST_KEY)
            .clock(clock)
            .open()
            .await
            .expect("open the SQLite store");
        (store, dir)
    }

    async fn contents(store: &SqliteTokenStore, _: &TempDir) -> Contents {
        store
            .contents()
            .await
            .expect("read the SQLite store's contents")
    }

    fn config_secrets() -> Vec<String> {
        vec![TEST_KEY.to_owned()]
    }
}
