//! Records between Python and Rust.
//!
//! Python records are read by attribute, so mxcp's pydantic models and the
//! package's own dataclasses convert alike; the argument must be an instance
//! of the class the package was set up with ([`Models`]), else `TypeError`.
//! Records come back as instances of those classes, built with keyword
//! arguments (so pydantic validates them as mxcp's own loads do).

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::{IntoPyObjectExt, intern};
use serde_json::{Map, Number, Value};
use std::sync::Arc;
use tokenstore::{
    AuthCodeRecord, ClientRecord, Secret, StateRecord, StoredSession, Timestamp,
    TokenEndpointAuthMethod, UserInfo,
};

/// The record classes records are checked against and built as.
pub(crate) struct Models {
    state: Py<PyAny>,
    auth_code: Py<PyAny>,
    session: Py<PyAny>,
    client: Py<PyAny>,
    user_info: Py<PyAny>,
}

static MODELS: PyOnceLock<Models> = PyOnceLock::new();

/// Sets the record classes, once (the package does it at import).
#[pyfunction]
pub(crate) fn set_models(
    py: Python<'_>,
    state: Py<PyAny>,
    auth_code: Py<PyAny>,
    session: Py<PyAny>,
    client: Py<PyAny>,
    user_info: Py<PyAny>,
) -> PyResult<()> {
    MODELS
        .set(
            py,
            Models {
                state,
                auth_code,
                session,
                client,
                user_info,
            },
        )
        .map_err(|_| PyValueError::new_err("the record classes are already set"))
}

fn models(py: Python<'_>) -> PyResult<&Models> {
    MODELS.get(py).ok_or_else(|| {
        PyTypeError::new_err("tokenstore._native used before the package set its record classes")
    })
}

/// JSON nested deeper than this is refused (readers stop at 128 levels).
const MAX_DEPTH: usize = 128;

fn expect(obj: &Bound<'_, PyAny>, class: &Py<PyAny>, what: &str) -> PyResult<()> {
    if obj.is_instance(class.bind(obj.py()))? {
        return Ok(());
    }
    Err(PyTypeError::new_err(format!(
        "expected a {what}, got {}",
        obj.get_type().name()?
    )))
}

fn attr<'py>(obj: &Bound<'py, PyAny>, name: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyAny>> {
    obj.getattr(name)
}

fn text(obj: &Bound<'_, PyAny>, name: &Bound<'_, PyString>) -> PyResult<String> {
    let value = attr(obj, name)?;
    value
        .extract::<String>()
        .map_err(|_| field_type(name, "str", &value))
}

fn opt_text(obj: &Bound<'_, PyAny>, name: &Bound<'_, PyString>) -> PyResult<Option<String>> {
    let value = attr(obj, name)?;
    if value.is_none() {
        return Ok(None);
    }
    value
        .extract::<String>()
        .map(Some)
        .map_err(|_| field_type(name, "str or None", &value))
}

fn opt_secret(obj: &Bound<'_, PyAny>, name: &Bound<'_, PyString>) -> PyResult<Option<Secret>> {
    opt_text(obj, name).map(|v| v.map(Secret::new))
}

fn texts(obj: &Bound<'_, PyAny>, name: &Bound<'_, PyString>) -> PyResult<Vec<String>> {
    let value = attr(obj, name)?;
    if value.is_instance_of::<PyString>() {
        return Err(field_type(name, "list of str", &value));
    }
    value
        .extract::<Vec<String>>()
        .map_err(|_| field_type(name, "list of str", &value))
}

fn time(obj: &Bound<'_, PyAny>, name: &Bound<'_, PyString>) -> PyResult<Timestamp> {
    let value = attr(obj, name)?;
    to_time(name, &value)
}

fn opt_time(obj: &Bound<'_, PyAny>, name: &Bound<'_, PyString>) -> PyResult<Option<Timestamp>> {
    let value = attr(obj, name)?;
    if value.is_none() {
        return Ok(None);
    }
    to_time(name, &value).map(Some)
}

fn to_time(name: &Bound<'_, PyString>, value: &Bound<'_, PyAny>) -> PyResult<Timestamp> {
    if value.is_instance_of::<PyBool>() {
        return Err(field_type(name, "float", value));
    }
    let secs = value
        .extract::<f64>()
        .map_err(|_| field_type(name, "float", value))?;
    Timestamp::try_from_unix_secs_f64(secs)
        .ok_or_else(|| PyValueError::new_err(format!("{name} must be a finite number of seconds")))
}

fn field_type(name: &Bound<'_, PyString>, want: &str, got: &Bound<'_, PyAny>) -> PyErr {
    let got = got
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned());
    PyTypeError::new_err(format!("{name} must be {want}, got {got}"))
}

/// A `StateRecord` from Python.
pub(crate) fn state_in(obj: &Bound<'_, PyAny>) -> PyResult<Arc<StateRecord>> {
    let py = obj.py();
    expect(obj, &models(py)?.state, "StateRecord")?;
    Ok(Arc::new(StateRecord {
        state: text(obj, intern!(py, "state"))?,
        client_id: opt_text(obj, intern!(py, "client_id"))?,
        redirect_uri: opt_text(obj, intern!(py, "redirect_uri"))?,
        code_challenge: opt_text(obj, intern!(py, "code_challenge"))?,
        code_challenge_method: opt_text(obj, intern!(py, "code_challenge_method"))?,
        provider_code_verifier: opt_secret(obj, intern!(py, "provider_code_verifier"))?,
        client_state: opt_text(obj, intern!(py, "client_state"))?,
        provider_scopes_requested: texts(obj, intern!(py, "provider_scopes_requested"))?,
        expires_at: time(obj, intern!(py, "expires_at"))?,
        created_at: time(obj, intern!(py, "created_at"))?,
    }))
}

/// An `AuthCodeRecord` from Python (mxcp's `mxcp_scopes` is our `scopes`).
pub(crate) fn auth_code_in(obj: &Bound<'_, PyAny>) -> PyResult<Arc<AuthCodeRecord>> {
    let py = obj.py();
    expect(obj, &models(py)?.auth_code, "AuthCodeRecord")?;
    Ok(Arc::new(AuthCodeRecord {
        code: text(obj, intern!(py, "code"))?,
        session_id: text(obj, intern!(py, "session_id"))?,
        client_id: opt_text(obj, intern!(py, "client_id"))?,
        redirect_uri: opt_text(obj, intern!(py, "redirect_uri"))?,
        code_challenge: opt_text(obj, intern!(py, "code_challenge"))?,
        code_challenge_method: opt_text(obj, intern!(py, "code_challenge_method"))?,
        scopes: texts(obj, intern!(py, "mxcp_scopes"))?,
        expires_at: time(obj, intern!(py, "expires_at"))?,
        created_at: time(obj, intern!(py, "created_at"))?,
    }))
}

fn user_info_in(obj: &Bound<'_, PyAny>) -> PyResult<UserInfo> {
    let py = obj.py();
    expect(obj, &models(py)?.user_info, "UserInfo")?;
    let profile = attr(obj, intern!(py, "raw_profile"))?;
    let raw_profile = if profile.is_none() {
        None
    } else {
        let dict = profile
            .cast::<PyDict>()
            .map_err(|_| field_type(intern!(py, "raw_profile"), "dict or None", &profile))?;
        Some(object_in(dict, 1)?)
    };
    Ok(UserInfo {
        provider: text(obj, intern!(py, "provider"))?,
        user_id: text(obj, intern!(py, "user_id"))?,
        username: text(obj, intern!(py, "username"))?,
        email: opt_text(obj, intern!(py, "email"))?,
        name: opt_text(obj, intern!(py, "name"))?,
        avatar_url: opt_text(obj, intern!(py, "avatar_url"))?,
        raw_profile,
        provider_scopes_granted: texts(obj, intern!(py, "provider_scopes_granted"))?,
        capabilities: texts(obj, intern!(py, "capabilities"))?,
    })
}

/// A `StoredSession` from Python. (One without `access_expires_at` converts;
/// the store refuses it, as mxcp does, with `ValueError`.)
pub(crate) fn session_in(obj: &Bound<'_, PyAny>) -> PyResult<Arc<StoredSession>> {
    let py = obj.py();
    expect(obj, &models(py)?.session, "StoredSession")?;
    Ok(Arc::new(StoredSession {
        session_id: text(obj, intern!(py, "session_id"))?,
        provider: text(obj, intern!(py, "provider"))?,
        user_info: user_info_in(&attr(obj, intern!(py, "user_info"))?)?,
        access_token: Secret::new(text(obj, intern!(py, "access_token"))?),
        refresh_token: opt_secret(obj, intern!(py, "refresh_token"))?,
        provider_access_token: opt_secret(obj, intern!(py, "provider_access_token"))?,
        provider_refresh_token: opt_secret(obj, intern!(py, "provider_refresh_token"))?,
        provider_expires_at: opt_time(obj, intern!(py, "provider_expires_at"))?,
        access_expires_at: opt_time(obj, intern!(py, "access_expires_at"))?,
        refresh_expires_at: opt_time(obj, intern!(py, "refresh_expires_at"))?,
        created_at: time(obj, intern!(py, "created_at"))?,
        issued_at: opt_time(obj, intern!(py, "issued_at"))?,
    }))
}

/// A `ClientRecord` from Python.
pub(crate) fn client_in(obj: &Bound<'_, PyAny>) -> PyResult<Arc<ClientRecord>> {
    let py = obj.py();
    expect(obj, &models(py)?.client, "ClientRecord")?;
    let method = opt_text(obj, intern!(py, "token_endpoint_auth_method"))?
        .map(|m| {
            TokenEndpointAuthMethod::parse(&m).ok_or_else(|| {
                PyValueError::new_err(
                    "token_endpoint_auth_method must be none, client_secret_post, \
                     client_secret_basic or private_key_jwt",
                )
            })
        })
        .transpose()?;
    Ok(Arc::new(ClientRecord {
        client_id: text(obj, intern!(py, "client_id"))?,
        client_secret: opt_secret(obj, intern!(py, "client_secret"))?,
        token_endpoint_auth_method: method,
        redirect_uris: texts(obj, intern!(py, "redirect_uris"))?,
        grant_types: texts(obj, intern!(py, "grant_types"))?,
        response_types: texts(obj, intern!(py, "response_types"))?,
        scope: opt_text(obj, intern!(py, "scope"))?,
        client_name: opt_text(obj, intern!(py, "client_name"))?,
        created_at: time(obj, intern!(py, "created_at"))?,
    }))
}

fn object_in(dict: &Bound<'_, PyDict>, depth: usize) -> PyResult<Map<String, Value>> {
    let mut map = Map::new();
    for (key, value) in dict.iter() {
        let key = key
            .extract::<String>()
            .map_err(|_| PyTypeError::new_err("raw_profile keys must be str"))?;
        map.insert(key, json_in(&value, depth)?);
    }
    Ok(map)
}

fn json_in(value: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "raw_profile is nested deeper than {MAX_DEPTH} levels"
        )));
    }
    if value.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if value.is_instance_of::<PyInt>() {
        if let Ok(i) = value.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = value.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Err(PyValueError::new_err(
            "raw_profile holds an integer beyond 64 bits",
        ));
    }
    if let Ok(f) = value.cast::<PyFloat>() {
        return Number::from_f64(f.value())
            .map(Value::Number)
            .ok_or_else(|| PyValueError::new_err("raw_profile holds a NaN or infinite float"));
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(Value::String(s.to_str()?.to_owned()));
    }
    if let Ok(d) = value.cast::<PyDict>() {
        return object_in(d, depth + 1).map(Value::Object);
    }
    if let Ok(l) = value.cast::<PyList>() {
        return l
            .iter()
            .map(|v| json_in(&v, depth + 1))
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    if let Ok(t) = value.cast::<PyTuple>() {
        return t
            .iter()
            .map(|v| json_in(&v, depth + 1))
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    Err(PyTypeError::new_err(format!(
        "raw_profile values must be JSON values (dict, list, str, int, float, bool, None), got {}",
        value.get_type().name()?
    )))
}

fn json_out(py: Python<'_>, value: &Value) -> PyResult<Py<PyAny>> {
    Ok(match value {
        Value::Null => py.None(),
        Value::Bool(b) => b.into_py_any(py)?,
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_py_any(py)?,
            (None, Some(u)) => u.into_py_any(py)?,
            _ => n.as_f64().unwrap_or(f64::NAN).into_py_any(py)?,
        },
        Value::String(s) => s.into_py_any(py)?,
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_out(py, item)?)?;
            }
            list.into_any().unbind()
        }
        Value::Object(map) => object_out(py, map)?.into_any().unbind(),
    })
}

fn object_out<'py>(py: Python<'py>, map: &Map<String, Value>) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (k, v) in map {
        dict.set_item(k, json_out(py, v)?)?;
    }
    Ok(dict)
}

fn secs(t: Timestamp) -> f64 {
    t.as_unix_secs_f64()
}

fn opt_secs(t: Option<Timestamp>) -> Option<f64> {
    t.map(secs)
}

fn exposed(s: &Option<Secret>) -> Option<&str> {
    s.as_ref().map(Secret::expose)
}

fn build(py: Python<'_>, class: &Py<PyAny>, kwargs: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
    class.bind(py).call((), Some(kwargs)).map(Bound::unbind)
}

/// A state record as the package's class.
pub(crate) fn state_out(py: Python<'_>, r: &StateRecord) -> PyResult<Py<PyAny>> {
    let k = PyDict::new(py);
    k.set_item(intern!(py, "state"), &r.state)?;
    k.set_item(intern!(py, "client_id"), &r.client_id)?;
    k.set_item(intern!(py, "redirect_uri"), &r.redirect_uri)?;
    k.set_item(intern!(py, "code_challenge"), &r.code_challenge)?;
    k.set_item(
        intern!(py, "code_challenge_method"),
        &r.code_challenge_method,
    )?;
    k.set_item(
        intern!(py, "provider_code_verifier"),
        exposed(&r.provider_code_verifier),
    )?;
    k.set_item(intern!(py, "client_state"), &r.client_state)?;
    k.set_item(
        intern!(py, "provider_scopes_requested"),
        &r.provider_scopes_requested,
    )?;
    k.set_item(intern!(py, "expires_at"), secs(r.expires_at))?;
    k.set_item(intern!(py, "created_at"), secs(r.created_at))?;
    build(py, &models(py)?.state, &k)
}

/// An authorization code as the package's class.
pub(crate) fn auth_code_out(py: Python<'_>, r: &AuthCodeRecord) -> PyResult<Py<PyAny>> {
    let k = PyDict::new(py);
    k.set_item(intern!(py, "code"), &r.code)?;
    k.set_item(intern!(py, "session_id"), &r.session_id)?;
    k.set_item(intern!(py, "client_id"), &r.client_id)?;
    k.set_item(intern!(py, "redirect_uri"), &r.redirect_uri)?;
    k.set_item(intern!(py, "code_challenge"), &r.code_challenge)?;
    k.set_item(
        intern!(py, "code_challenge_method"),
        &r.code_challenge_method,
    )?;
    k.set_item(intern!(py, "mxcp_scopes"), &r.scopes)?;
    k.set_item(intern!(py, "expires_at"), secs(r.expires_at))?;
    k.set_item(intern!(py, "created_at"), secs(r.created_at))?;
    build(py, &models(py)?.auth_code, &k)
}

fn user_info_out(py: Python<'_>, u: &UserInfo) -> PyResult<Py<PyAny>> {
    let k = PyDict::new(py);
    k.set_item(intern!(py, "provider"), &u.provider)?;
    k.set_item(intern!(py, "user_id"), &u.user_id)?;
    k.set_item(intern!(py, "username"), &u.username)?;
    k.set_item(intern!(py, "email"), &u.email)?;
    k.set_item(intern!(py, "name"), &u.name)?;
    k.set_item(intern!(py, "avatar_url"), &u.avatar_url)?;
    match &u.raw_profile {
        Some(map) => k.set_item(intern!(py, "raw_profile"), object_out(py, map)?)?,
        None => k.set_item(intern!(py, "raw_profile"), py.None())?,
    }
    k.set_item(
        intern!(py, "provider_scopes_granted"),
        &u.provider_scopes_granted,
    )?;
    k.set_item(intern!(py, "capabilities"), &u.capabilities)?;
    build(py, &models(py)?.user_info, &k)
}

/// A session as the package's class.
pub(crate) fn session_out(py: Python<'_>, s: &StoredSession) -> PyResult<Py<PyAny>> {
    let k = PyDict::new(py);
    k.set_item(intern!(py, "session_id"), &s.session_id)?;
    k.set_item(intern!(py, "provider"), &s.provider)?;
    k.set_item(intern!(py, "user_info"), user_info_out(py, &s.user_info)?)?;
    k.set_item(intern!(py, "access_token"), s.access_token.expose())?;
    k.set_item(intern!(py, "refresh_token"), exposed(&s.refresh_token))?;
    k.set_item(
        intern!(py, "provider_access_token"),
        exposed(&s.provider_access_token),
    )?;
    k.set_item(
        intern!(py, "provider_refresh_token"),
        exposed(&s.provider_refresh_token),
    )?;
    k.set_item(
        intern!(py, "provider_expires_at"),
        opt_secs(s.provider_expires_at),
    )?;
    k.set_item(
        intern!(py, "access_expires_at"),
        opt_secs(s.access_expires_at),
    )?;
    k.set_item(
        intern!(py, "refresh_expires_at"),
        opt_secs(s.refresh_expires_at),
    )?;
    k.set_item(intern!(py, "created_at"), secs(s.created_at))?;
    k.set_item(intern!(py, "issued_at"), opt_secs(s.issued_at))?;
    build(py, &models(py)?.session, &k)
}

/// A client as the package's class.
pub(crate) fn client_out(py: Python<'_>, c: &ClientRecord) -> PyResult<Py<PyAny>> {
    let k = PyDict::new(py);
    k.set_item(intern!(py, "client_id"), &c.client_id)?;
    k.set_item(intern!(py, "client_secret"), exposed(&c.client_secret))?;
    k.set_item(
        intern!(py, "token_endpoint_auth_method"),
        c.token_endpoint_auth_method
            .map(TokenEndpointAuthMethod::as_str),
    )?;
    k.set_item(intern!(py, "redirect_uris"), &c.redirect_uris)?;
    k.set_item(intern!(py, "grant_types"), &c.grant_types)?;
    k.set_item(intern!(py, "response_types"), &c.response_types)?;
    k.set_item(intern!(py, "scope"), &c.scope)?;
    k.set_item(intern!(py, "client_name"), &c.client_name)?;
    k.set_item(intern!(py, "created_at"), secs(c.created_at))?;
    build(py, &models(py)?.client, &k)
}

/// An optional record, or `None`.
pub(crate) fn opt_out<T>(
    py: Python<'_>,
    r: Option<Arc<T>>,
    out: fn(Python<'_>, &T) -> PyResult<Py<PyAny>>,
) -> PyResult<Py<PyAny>> {
    match r {
        Some(r) => out(py, &r),
        None => Ok(py.None()),
    }
}
