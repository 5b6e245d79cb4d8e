//! `tokenstore._native`: the Rust half of the Python package `tokenstore`.
//!
//! The Python half (`tokenstore/`) holds the public classes; each wraps a
//! [`Store`] from here once initialized. A `Store` is any stack (SQLite or
//! PostgreSQL, with a cache and a buffer over it in any order) behind one
//! erased type ([`erased::Erased`]); every method converts its arguments at
//! once (a bad one raises before anything runs) and returns either its result
//! or an `asyncio.Future` ([`call::run`]).

mod call;
mod convert;
mod erased;
mod errors;
mod stats;

use call::{run, runtime, unit};
use convert::*;
use erased::{DynStore, Erased};
use pyo3::IntoPyObjectExt;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokenstore::buffer::BufferConfig;
use tokenstore::cache::CacheConfig;
use tokenstore::codec::secrets::SecretCodec;
use tokenstore::postgres::PostgresTokenStore;
use tokenstore::runtime::TokioRuntime;
use tokenstore::sqlite::SqliteTokenStore;
use tokenstore::{Ack, BufferedTokenStore, CachingTokenStore, CleanupCounts, Secret};

/// What a stack's outermost layer is, for its counters and `flush`.
enum Layer {
    Sqlite(Arc<SqliteTokenStore>),
    Postgres,
    Cache(Arc<CachingTokenStore<Erased>>),
    Buffer(Arc<BufferedTokenStore<Erased>>),
}

/// An open store or stack.
#[pyclass(frozen, module = "tokenstore._native")]
struct Store {
    store: Arc<dyn DynStore>,
    layer: Layer,
}

impl Store {
    fn new<T: tokenstore::TokenStore + 'static>(store: Arc<T>, layer: Layer) -> Self {
        Self { store, layer }
    }

    fn erased(&self) -> Erased {
        Erased(Arc::clone(&self.store))
    }

    fn s(&self) -> Arc<dyn DynStore> {
        Arc::clone(&self.store)
    }
}

fn tokio_runtime() -> TokioRuntime {
    TokioRuntime::from_handle(runtime().handle().clone())
}

fn counts(py: Python<'_>, c: CleanupCounts) -> PyResult<Py<PyAny>> {
    let d = PyDict::new(py);
    d.set_item("states", c.states)?;
    d.set_item("auth_codes", c.auth_codes)?;
    d.set_item("sessions", c.sessions)?;
    Ok(d.into_any().unbind())
}

fn clients(py: Python<'_>, list: Vec<Arc<tokenstore::ClientRecord>>) -> PyResult<Py<PyAny>> {
    let out = pyo3::types::PyList::empty(py);
    for c in list {
        out.append(client_out(py, &c)?)?;
    }
    Ok(out.into_any().unbind())
}

#[pymethods]
impl Store {
    fn store_state(&self, py: Python<'_>, record: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let r = state_in(record)?;
        run(py, self.s().store_state(r), unit)
    }

    fn consume_state(&self, py: Python<'_>, state: String) -> PyResult<Py<PyAny>> {
        run(py, self.s().consume_state(state), |py, r| {
            opt_out(py, r, state_out)
        })
    }

    fn store_auth_code(&self, py: Python<'_>, record: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let r = auth_code_in(record)?;
        run(py, self.s().store_auth_code(r), unit)
    }

    fn load_auth_code(&self, py: Python<'_>, code: String) -> PyResult<Py<PyAny>> {
        run(py, self.s().load_auth_code(code), |py, r| {
            opt_out(py, r, auth_code_out)
        })
    }

    fn delete_auth_code(&self, py: Python<'_>, code: String) -> PyResult<Py<PyAny>> {
        run(py, self.s().delete_auth_code(code), unit)
    }

    fn try_delete_auth_code(&self, py: Python<'_>, code: String) -> PyResult<Py<PyAny>> {
        run(py, self.s().try_delete_auth_code(code), |py, b| {
            b.into_py_any(py)
        })
    }

    fn store_session(&self, py: Python<'_>, record: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let r = session_in(record)?;
        run(py, self.s().store_session(r), unit)
    }

    fn load_session_by_token(&self, py: Python<'_>, access_token: String) -> PyResult<Py<PyAny>> {
        run(py, self.s().load_session_by_token(access_token), |py, r| {
            opt_out(py, r, session_out)
        })
    }

    fn load_session_by_id(&self, py: Python<'_>, session_id: String) -> PyResult<Py<PyAny>> {
        run(py, self.s().load_session_by_id(session_id), |py, r| {
            opt_out(py, r, session_out)
        })
    }

    fn load_session_by_refresh_token(
        &self,
        py: Python<'_>,
        refresh_token: String,
    ) -> PyResult<Py<PyAny>> {
        run(
            py,
            self.s().load_session_by_refresh_token(refresh_token),
            |py, r| opt_out(py, r, session_out),
        )
    }

    fn delete_session_by_token(&self, py: Python<'_>, access_token: String) -> PyResult<Py<PyAny>> {
        run(py, self.s().delete_session_by_token(access_token), unit)
    }

    fn delete_session_by_id(&self, py: Python<'_>, session_id: String) -> PyResult<Py<PyAny>> {
        run(py, self.s().delete_session_by_id(session_id), unit)
    }

    fn store_client(&self, py: Python<'_>, record: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let r = client_in(record)?;
        run(py, self.s().store_client(r), unit)
    }

    fn load_client(&self, py: Python<'_>, client_id: String) -> PyResult<Py<PyAny>> {
        run(py, self.s().load_client(client_id), |py, r| {
            opt_out(py, r, client_out)
        })
    }

    fn list_clients(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        run(py, self.s().list_clients(), clients)
    }

    fn delete_client(&self, py: Python<'_>, client_id: String) -> PyResult<Py<PyAny>> {
        run(py, self.s().delete_client(client_id), unit)
    }

    fn cleanup_expired(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        run(py, self.s().cleanup_expired(), counts)
    }

    fn close(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        run(py, self.s().close(), unit)
    }

    /// Applies every buffered write (a buffer only; a no-op otherwise).
    fn flush(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.layer {
            Layer::Buffer(b) => {
                let b = Arc::clone(b);
                run(py, async move { b.flush().await }, unit)
            }
            _ => Ok(py.None()),
        }
    }

    /// This layer's counters (no keys, tokens or user identifiers).
    fn stats(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let d = match &self.layer {
            Layer::Sqlite(s) => stats::sqlite(py, &s.stats())?,
            Layer::Postgres => PyDict::new(py),
            Layer::Cache(c) => stats::cache(py, &c.metrics())?,
            Layer::Buffer(b) => stats::buffer(py, &b.metrics(), b.pending())?,
        };
        Ok(d.into_any().unbind())
    }
}

/// Checks an encryption key is a Fernet key (`ValueError` otherwise, with
/// mxcp's message).
#[pyfunction]
fn validate_key(key: &str) -> PyResult<()> {
    SecretCodec::new(Some(&Secret::new(key)), false)
        .map(drop)
        .map_err(|_| {
            PyValueError::new_err(
                "Invalid Fernet key: expected urlsafe base64-encoded 32-byte value. \
                 Pass the raw bytes from Fernet.generate_key() or the same value as a string.",
            )
        })
}

/// Opens a SQLite store (mxcp's schema; creates the file and its directory).
#[pyfunction]
#[pyo3(signature = (path, key, allow_plaintext_tokens, readers))]
fn open_sqlite(
    py: Python<'_>,
    path: PathBuf,
    key: Option<String>,
    allow_plaintext_tokens: bool,
    readers: Option<usize>,
) -> PyResult<Py<PyAny>> {
    let open = async move {
        let mut builder =
            SqliteTokenStore::builder(path).allow_plaintext_tokens(allow_plaintext_tokens);
        if let Some(key) = key {
            builder = builder.encryption_key(key);
        }
        if let Some(readers) = readers {
            builder = builder.readers(readers);
        }
        builder.open().await
    };
    run(py, open, |py, store| {
        let store = Arc::new(store);
        Store::new(Arc::clone(&store), Layer::Sqlite(store)).into_py_any(py)
    })
}

/// Opens a PostgreSQL store.
#[pyfunction]
#[pyo3(signature = (url, key, allow_plaintext_tokens, schema, pool_size))]
fn open_postgres(
    py: Python<'_>,
    url: String,
    key: Option<String>,
    allow_plaintext_tokens: bool,
    schema: String,
    pool_size: usize,
) -> PyResult<Py<PyAny>> {
    let open = async move {
        let mut builder = PostgresTokenStore::builder(&url)
            .allow_plaintext_tokens(allow_plaintext_tokens)
            .schema(schema)
            .pool_size(pool_size);
        if let Some(key) = key {
            builder = builder.encryption_key(key);
        }
        builder.open().await
    };
    run(py, open, |py, store| {
        let store = Arc::new(store);
        Store::new(store, Layer::Postgres).into_py_any(py)
    })
}

fn seconds(name: &str, secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        PyValueError::new_err(format!(
            "{name} must be a finite, non-negative number of seconds"
        ))
    })
}

/// The cache's settings, checked by the cache machine's own rules.
#[allow(clippy::too_many_arguments)]
fn cache_config(
    ttl_cap: f64,
    skew: f64,
    negative_ttl: f64,
    session_capacity: usize,
    auth_code_capacity: usize,
    client_capacity: usize,
    negative_capacity: usize,
    feed_bound: Option<f64>,
    shards: usize,
) -> PyResult<CacheConfig> {
    let config = CacheConfig {
        ttl_cap: seconds("ttl_cap", ttl_cap)?,
        skew: seconds("skew", skew)?,
        negative_ttl: seconds("negative_ttl", negative_ttl)?,
        session_capacity,
        auth_code_capacity,
        client_capacity,
        negative_capacity,
        feed_bound: feed_bound.map(|b| seconds("feed_bound", b)).transpose()?,
        shards,
        ..CacheConfig::default()
    };
    config
        .validate()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(config)
}

/// Checks cache settings without building a cache (`ValueError` if wrong).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (ttl_cap, skew, negative_ttl, session_capacity, auth_code_capacity,
                    client_capacity, negative_capacity, feed_bound, shards))]
fn check_cache(
    ttl_cap: f64,
    skew: f64,
    negative_ttl: f64,
    session_capacity: usize,
    auth_code_capacity: usize,
    client_capacity: usize,
    negative_capacity: usize,
    feed_bound: Option<f64>,
    shards: usize,
) -> PyResult<()> {
    cache_config(
        ttl_cap,
        skew,
        negative_ttl,
        session_capacity,
        auth_code_capacity,
        client_capacity,
        negative_capacity,
        feed_bound,
        shards,
    )
    .map(drop)
}

/// A read cache over `store`; with `feed_bound`, one that follows the store's
/// invalidation feed.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (store, ttl_cap, skew, negative_ttl, session_capacity, auth_code_capacity,
                    client_capacity, negative_capacity, feed_bound, shards))]
fn caching(
    store: &Store,
    ttl_cap: f64,
    skew: f64,
    negative_ttl: f64,
    session_capacity: usize,
    auth_code_capacity: usize,
    client_capacity: usize,
    negative_capacity: usize,
    feed_bound: Option<f64>,
    shards: usize,
) -> PyResult<Store> {
    let config = cache_config(
        ttl_cap,
        skew,
        negative_ttl,
        session_capacity,
        auth_code_capacity,
        client_capacity,
        negative_capacity,
        feed_bound,
        shards,
    )?;
    let cache = if config.feed_bound.is_some() {
        let _context = runtime().enter();
        CachingTokenStore::following(store.erased(), config, tokio_runtime())
            .map_err(|e| PyValueError::new_err(e.to_string()))?
    } else {
        CachingTokenStore::new(store.erased(), config)
    };
    let cache = Arc::new(cache);
    Ok(Store::new(Arc::clone(&cache), Layer::Cache(cache)))
}

/// A write buffer over `store`.
#[pyfunction]
#[pyo3(signature = (store, max_batch_size, max_delay, max_pending, max_retries, retry_backoff, ack))]
fn buffered(
    store: &Store,
    max_batch_size: usize,
    max_delay: f64,
    max_pending: usize,
    max_retries: u32,
    retry_backoff: f64,
    ack: &str,
) -> PyResult<Store> {
    let ack = match ack {
        "queued" => Ack::Queued,
        "durable" => Ack::Durable,
        _ => {
            return Err(PyValueError::new_err(
                "ack must be \"queued\" or \"durable\"",
            ));
        }
    };
    let config = BufferConfig {
        max_batch_size,
        max_delay: seconds("max_delay", max_delay)?,
        max_pending,
        max_retries,
        retry_backoff: seconds("retry_backoff", retry_backoff)?,
    };
    let _context = runtime().enter();
    let buffer = Arc::new(BufferedTokenStore::new(
        store.erased(),
        config,
        ack,
        tokio_runtime(),
    ));
    Ok(Store::new(Arc::clone(&buffer), Layer::Buffer(buffer)))
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Store>()?;
    m.add_function(wrap_pyfunction!(convert::set_models, m)?)?;
    m.add_function(wrap_pyfunction!(errors::set_errors, m)?)?;
    m.add_function(wrap_pyfunction!(validate_key, m)?)?;
    m.add_function(wrap_pyfunction!(open_sqlite, m)?)?;
    m.add_function(wrap_pyfunction!(open_postgres, m)?)?;
    m.add_function(wrap_pyfunction!(check_cache, m)?)?;
    m.add_function(wrap_pyfunction!(caching, m)?)?;
    m.add_function(wrap_pyfunction!(buffered, m)?)?;
    Ok(())
}
