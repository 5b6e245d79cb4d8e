//! [`PostgresFactory`]: [`PostgresTokenStore`] in a fresh database of the
//! process's throwaway cluster (or of the server at `TOKENSTORE_PG_URL`).

use crate::{Factory, TEST_KEY};
use tokenstore_core::{Contents, ManualClock};
use tokenstore_pgtest::TestDatabase;
use tokenstore_postgres::PostgresTokenStore;

/// [`PostgresTokenStore`] with the suite's encryption key and default
/// settings, in a database of its own that is dropped after the store.
#[derive(Debug, Clone, Copy)]
pub struct PostgresFactory;

impl PostgresFactory {
    /// A store on `db` with the suite's key and `clock`.
    pub async fn open(db: &TestDatabase, clock: ManualClock) -> PostgresTokenStore {
        PostgresTokenStore::builder_with_config(db.config())
            .encryption_key(TEST_KEY)
            .clock(clock)
            .open()
            .await
            .expect("open the PostgreSQL store")
    }
}

impl Factory for PostgresFactory {
    type Store = PostgresTokenStore;
    type Guard = TestDatabase;

    async fn make(clock: ManualClock) -> (PostgresTokenStore, TestDatabase) {
        let db = tokenstore_pgtest::shared().database();
        let store = Self::open(&db, clock).await;
        (store, db)
    }

    async fn contents(store: &PostgresTokenStore, _: &TestDatabase) -> Contents {
        store
            .contents()
            .await
            .expect("read the PostgreSQL store's contents")
    }

    fn config_secrets() -> Vec<String> {
        vec![TEST_KEY.to_owned()]
    }
}
