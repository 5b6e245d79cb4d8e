//! One store type for every stack Python can build.
//!
//! `TokenStore` returns `impl Future` and so is not dyn-compatible, but Python
//! builds its stacks at run time (a cache over a buffer over SQLite, or any
//! other order). [`DynStore`] is the object-safe mirror of the contract: owned
//! arguments, boxed `'static` futures (so a call can be spawned on the runtime
//! as it is), blanket-implemented for every `Arc` of a store. [`Erased`] is a
//! `TokenStore` again, so the cache and the buffer can wrap it.

use std::future::Future;
use std::sync::Arc;
use tokenstore::feed::InvalidationFeed;
use tokenstore::{
    AuthCodeRecord, BatchWriteStore, BoxFuture, BulkSessionStore, CleanupCounts, ClientRecord,
    StateRecord, StoreError, StoredSession, TokenStore,
};

type Res<T> = Result<T, StoreError>;
type Fut<T> = BoxFuture<'static, Res<T>>;

/// The contract with owned arguments and `'static` futures.
pub(crate) trait DynStore: Send + Sync + 'static {
    fn store_state(self: Arc<Self>, record: Arc<StateRecord>) -> Fut<()>;
    fn consume_state(self: Arc<Self>, state: String) -> Fut<Option<Arc<StateRecord>>>;
    fn store_auth_code(self: Arc<Self>, record: Arc<AuthCodeRecord>) -> Fut<()>;
    fn load_auth_code(self: Arc<Self>, code: String) -> Fut<Option<Arc<AuthCodeRecord>>>;
    fn delete_auth_code(self: Arc<Self>, code: String) -> Fut<()>;
    fn try_delete_auth_code(self: Arc<Self>, code: String) -> Fut<bool>;
    fn store_session(self: Arc<Self>, record: Arc<StoredSession>) -> Fut<()>;
    fn load_session_by_token(self: Arc<Self>, token: String) -> Fut<Option<Arc<StoredSession>>>;
    fn load_session_by_id(self: Arc<Self>, id: String) -> Fut<Option<Arc<StoredSession>>>;
    fn load_session_by_refresh_token(
        self: Arc<Self>,
        token: String,
    ) -> Fut<Option<Arc<StoredSession>>>;
    fn delete_session_by_token(self: Arc<Self>, token: String) -> Fut<()>;
    fn delete_session_by_id(self: Arc<Self>, id: String) -> Fut<()>;
    fn store_client(self: Arc<Self>, record: Arc<ClientRecord>) -> Fut<()>;
    fn load_client(self: Arc<Self>, client_id: String) -> Fut<Option<Arc<ClientRecord>>>;
    fn list_clients(self: Arc<Self>) -> Fut<Vec<Arc<ClientRecord>>>;
    fn delete_client(self: Arc<Self>, client_id: String) -> Fut<()>;
    fn cleanup_expired(self: Arc<Self>) -> Fut<CleanupCounts>;
    fn close(self: Arc<Self>) -> Fut<()>;
    fn bulk(&self) -> Option<&dyn BulkSessionStore>;
    fn batch_writer(&self) -> Option<&dyn BatchWriteStore>;
    fn invalidation_feed(&self) -> Option<&dyn InvalidationFeed>;
}

/// Forwards a call with a record argument.
macro_rules! with_record {
    ($name:ident, $record:ty, $out:ty) => {
        fn $name(self: Arc<Self>, record: Arc<$record>) -> Fut<$out> {
            Box::pin(async move { TokenStore::$name(&*self, record).await })
        }
    };
}

/// Forwards a call with a key argument.
macro_rules! with_key {
    ($name:ident, $out:ty) => {
        fn $name(self: Arc<Self>, key: String) -> Fut<$out> {
            Box::pin(async move { TokenStore::$name(&*self, &key).await })
        }
    };
}

/// Forwards a call without arguments.
macro_rules! without_args {
    ($name:ident, $out:ty) => {
        fn $name(self: Arc<Self>) -> Fut<$out> {
            Box::pin(async move { TokenStore::$name(&*self).await })
        }
    };
}

impl<T: TokenStore + 'static> DynStore for T {
    with_record!(store_state, StateRecord, ());
    with_key!(consume_state, Option<Arc<StateRecord>>);
    with_record!(store_auth_code, AuthCodeRecord, ());
    with_key!(load_auth_code, Option<Arc<AuthCodeRecord>>);
    with_key!(delete_auth_code, ());
    with_key!(try_delete_auth_code, bool);
    with_record!(store_session, StoredSession, ());
    with_key!(load_session_by_token, Option<Arc<StoredSession>>);
    with_key!(load_session_by_id, Option<Arc<StoredSession>>);
    with_key!(load_session_by_refresh_token, Option<Arc<StoredSession>>);
    with_key!(delete_session_by_token, ());
    with_key!(delete_session_by_id, ());
    with_record!(store_client, ClientRecord, ());
    with_key!(load_client, Option<Arc<ClientRecord>>);
    without_args!(list_clients, Vec<Arc<ClientRecord>>);
    with_key!(delete_client, ());
    without_args!(cleanup_expired, CleanupCounts);
    without_args!(close, ());

    fn bulk(&self) -> Option<&dyn BulkSessionStore> {
        TokenStore::bulk(self)
    }
    fn batch_writer(&self) -> Option<&dyn BatchWriteStore> {
        TokenStore::batch_writer(self)
    }
    fn invalidation_feed(&self) -> Option<&dyn InvalidationFeed> {
        TokenStore::invalidation_feed(self)
    }
}

/// Any stack, shared; a `TokenStore` the cache and the buffer can wrap.
#[derive(Clone)]
pub(crate) struct Erased(pub(crate) Arc<dyn DynStore>);

impl Erased {
    pub(crate) fn arc(&self) -> Arc<dyn DynStore> {
        Arc::clone(&self.0)
    }
}

/// Forwards a `TokenStore` call with a record argument to the erased store.
macro_rules! erased_record {
    ($name:ident, $record:ty, $out:ty) => {
        fn $name(&self, record: Arc<$record>) -> impl Future<Output = Res<$out>> + Send {
            self.arc().$name(record)
        }
    };
}

/// Forwards a `TokenStore` call with a key argument to the erased store.
macro_rules! erased_key {
    ($name:ident, $out:ty) => {
        fn $name(&self, key: &str) -> impl Future<Output = Res<$out>> + Send {
            self.arc().$name(key.to_owned())
        }
    };
}

/// Forwards a `TokenStore` call without arguments to the erased store.
macro_rules! erased_none {
    ($name:ident, $out:ty) => {
        fn $name(&self) -> impl Future<Output = Res<$out>> + Send {
            self.arc().$name()
        }
    };
}

impl TokenStore for Erased {
    erased_record!(store_state, StateRecord, ());
    erased_key!(consume_state, Option<Arc<StateRecord>>);
    erased_record!(store_auth_code, AuthCodeRecord, ());
    erased_key!(load_auth_code, Option<Arc<AuthCodeRecord>>);
    erased_key!(delete_auth_code, ());
    erased_key!(try_delete_auth_code, bool);
    erased_record!(store_session, StoredSession, ());
    erased_key!(load_session_by_token, Option<Arc<StoredSession>>);
    erased_key!(load_session_by_id, Option<Arc<StoredSession>>);
    erased_key!(load_session_by_refresh_token, Option<Arc<StoredSession>>);
    erased_key!(delete_session_by_token, ());
    erased_key!(delete_session_by_id, ());
    erased_record!(store_client, ClientRecord, ());
    erased_key!(load_client, Option<Arc<ClientRecord>>);
    erased_none!(list_clients, Vec<Arc<ClientRecord>>);
    erased_key!(delete_client, ());
    erased_none!(cleanup_expired, CleanupCounts);
    erased_none!(close, ());

    fn bulk(&self) -> Option<&dyn BulkSessionStore> {
        self.0.bulk()
    }
    fn batch_writer(&self) -> Option<&dyn BatchWriteStore> {
        self.0.batch_writer()
    }
    fn invalidation_feed(&self) -> Option<&dyn InvalidationFeed> {
        self.0.invalidation_feed()
    }
}
