//! Counters as dicts: counts and sizes only, never a key.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokenstore::buffer::BufferMetrics;
use tokenstore::cache::{CacheMetrics, KindMetrics};
use tokenstore::sqlite::SqliteStats;

fn kind<'py>(py: Python<'py>, k: &KindMetrics) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("lookups", k.lookups)?;
    d.set_item("hits", k.hits)?;
    d.set_item("negative_hits", k.negative_hits)?;
    d.set_item("misses", k.misses)?;
    d.set_item("waits", k.waits)?;
    d.set_item("fills", k.fills)?;
    d.set_item("negative_fills", k.negative_fills)?;
    d.set_item("stale_fills_refused", k.stale_fills_refused)?;
    d.set_item("invalidations", k.invalidations)?;
    d.set_item("evictions", k.evictions)?;
    d.set_item("expirations", k.expirations)?;
    Ok(d)
}

/// A cache's counters.
pub(crate) fn cache<'py>(py: Python<'py>, m: &CacheMetrics) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("states", kind(py, &m.states)?)?;
    d.set_item("auth_codes", kind(py, &m.auth_codes)?)?;
    d.set_item("sessions", kind(py, &m.sessions)?)?;
    d.set_item("clients", kind(py, &m.clients)?)?;
    d.set_item("session_entries", m.session_entries)?;
    d.set_item("auth_code_entries", m.auth_code_entries)?;
    d.set_item("client_entries", m.client_entries)?;
    d.set_item("negative_entries", m.negative_entries)?;
    Ok(d)
}

/// A buffer's counters.
pub(crate) fn buffer<'py>(
    py: Python<'py>,
    m: &BufferMetrics,
    pending: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("accepted", m.accepted)?;
    d.set_item("refused_full", m.refused_full)?;
    d.set_item("refused_closed", m.refused_closed)?;
    d.set_item("coalesced", m.coalesced)?;
    d.set_item("batches", m.batches)?;
    d.set_item("applied_writes", m.applied_writes)?;
    d.set_item("applied_batches", m.applied_batches)?;
    d.set_item("failed_attempts", m.failed_attempts)?;
    d.set_item("failed_batches", m.failed_batches)?;
    d.set_item("pending", pending)?;
    Ok(d)
}

/// A SQLite store's counters.
pub(crate) fn sqlite<'py>(py: Python<'py>, s: &SqliteStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("commits", s.commits)?;
    d.set_item("rollbacks", s.rollbacks)?;
    Ok(d)
}
