//! Store errors as Python exceptions.
//!
//! Bad values (and mxcp's own `ValueError` cases: no key, a key that is not a
//! Fernet key, an undecryptable value) raise `ValueError`; a closed store
//! raises the package's `StoreClosedError`; anything else (the backend failed,
//! writes could not be applied) its `TokenStoreError`. Messages are
//! `StoreError`'s, which never hold a token, secret or user identifier.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use tokenstore::StoreError;

struct Errors {
    base: Py<PyAny>,
    closed: Py<PyAny>,
}

static ERRORS: PyOnceLock<Errors> = PyOnceLock::new();

/// Sets the package's exception classes, once (the package does it at import).
#[pyfunction]
pub(crate) fn set_errors(py: Python<'_>, base: Py<PyAny>, closed: Py<PyAny>) -> PyResult<()> {
    ERRORS
        .set(py, Errors { base, closed })
        .map_err(|_| PyValueError::new_err("the exception classes are already set"))
}

/// The Python exception for a store error.
pub(crate) fn to_py(py: Python<'_>, e: StoreError) -> PyErr {
    let message = e.to_string();
    let class = match e {
        StoreError::InvalidInput(_)
        | StoreError::EncryptionKeyRequired
        | StoreError::Decrypt { .. }
        | StoreError::InvalidConfig(_) => return PyValueError::new_err(message),
        StoreError::Closed => ERRORS.get(py).map(|e| &e.closed),
        _ => ERRORS.get(py).map(|e| &e.base),
    };
    match class {
        Some(class) => PyErr::from_type(
            class
                .bind(py)
                .cast()
                .map_or_else(|_| py.get_type::<PyRuntimeError>(), |t| t.clone()),
            message,
        ),
        None => PyRuntimeError::new_err(message),
    }
}
