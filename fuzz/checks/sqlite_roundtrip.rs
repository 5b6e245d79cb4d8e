//! `SqliteTokenStore` against `MemoryTokenStore` on arbitrary records.
//!
//! Records with odd Unicode, NUL bytes, huge fields, keys around the size limit,
//! deeply nested or odd JSON profiles and extreme times are stored, loaded,
//! consumed, deleted, cleaned up and written in atomic batches, on an in-memory
//! SQLite database (encrypted or plaintext) and on the reference model with the
//! same clock. Checked after every action:
//! - SQLite answers exactly what the model answers, errors included (a record
//!   comes back equal, or the write is refused with the model's typed error);
//! - a write SQLite refuses changes nothing there;
//! - both hold the same records (`contents()`), and SQLite can read all of them;
//! - no error's text shows a secret.
//!
//! Times are stored as REAL seconds (mxcp's schema), so the model is given each
//! time as it comes back from a double. Within 2^52 µs of the epoch (about 142
//! years either side) that must be the time itself: checked for every time.
//!
//! Shared by the fuzz target `sqlite_roundtrip` and the stable replay test
//! `tests/tests/fuzz_corpus.rs` (both include this file with `#[path]`).

use arbitrary::{Arbitrary, Unstructured};
use serde_json::{Map, Value};
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokenstore_core::buffer::{Step, WriteOp, apply, apply_batch};
use tokenstore_core::{
    AuthCodeRecord, ClientRecord, Clock, MAX_KEY_BYTES, MIN_STORABLE_TIME, ManualClock,
    MemoryTokenStore, Secret, StateRecord, StoreError, StoredSession, Timestamp,
    TokenEndpointAuthMethod, TokenStore, UserInfo,
};
use tokenstore_sqlite::SqliteTokenStore;

/// One fuzz input: the store's settings and the actions (at most 12 run).
#[derive(Arbitrary, Debug)]
pub(crate) struct Input {
    encrypted: bool,
    actions: Vec<Action>,
}

/// Strings that break naive encoders.
const ODD: &[&str] = &[
    "\0",
    "a\0b",
    "\u{feff}",
    "\u{202e}",
    "\u{10ffff}",
    "\u{fffd}",
    "e\u{301}",
    "\u{e9}",
    "\u{1f600}",
    "\"",
    "\\",
    "'",
    "%",
    "_",
    "\n",
    "\r\n",
    "\t",
    "\u{7f}",
    "\u{1}",
    "\u{2028}",
    "\u{85}",
    "\u{d7ff}",
    "\u{e000}",
    "null",
    "[]",
    "{}",
    " ",
    "x",
];

/// Keys records share, so that stores replace each other.
const SHARED: &[&str] = &["a", "b", "c"];

/// A string: arbitrary, built from [`ODD`] pieces, huge, around the key limit,
/// one of the [`SHARED`] keys, or empty.
#[derive(Clone, PartialEq, Eq)]
struct Text(String);

impl Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.len() > 64 {
            let head: String = self.0.chars().take(16).collect();
            write!(f, "Text({head:?}.. {} bytes)", self.0.len())
        } else {
            write!(f, "Text({:?})", self.0)
        }
    }
}

impl<'a> Arbitrary<'a> for Text {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self(match u.int_in_range(0..=9u8)? {
            0..=2 => String::arbitrary(u)?,
            3..=4 => {
                let mut s = String::new();
                for _ in 0..u.int_in_range(1..=6u8)? {
                    s.push_str(u.choose(ODD)?);
                }
                s
            }
            5 => u
                .choose(ODD)?
                .repeat(usize::from(u.int_in_range(1..=50_000u16)?)),
            6 => {
                // Byte length within 3 of the key limit, ending in a 1 to 4
                // byte character.
                let last = *u.choose(&["k", "\u{e9}", "\u{20ac}", "\u{1f600}"])?;
                let len = MAX_KEY_BYTES as i64 + i64::from(u.int_in_range(-3..=3i8)?);
                let mut s = "k".repeat(len as usize - last.len());
                s.push_str(last);
                s
            }
            7..=8 => (*u.choose(SHARED)?).to_owned(),
            _ => String::new(),
        }))
    }
}

/// A time: near the clock (live or expired), or extreme.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Time(Timestamp);

impl Debug for Time {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Time({}us)", self.0.as_unix_micros())
    }
}

const NOW_SECS: i64 = 1_700_000_000;

impl<'a> Arbitrary<'a> for Time {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        const P52: i64 = 1 << 52;
        const P53: i64 = 1 << 53;
        let micros = match u.int_in_range(0..=3u8)? {
            0..=1 => NOW_SECS * 1_000_000 + i64::from(u.int_in_range(-100_000..=100_000i32)?),
            2 => *u.choose(&[
                i64::MIN,
                i64::MIN + 1,
                i64::MAX,
                i64::MAX - 1,
                0,
                -1,
                1,
                P52,
                -P52,
                P52 + 1,
                P53,
                -P53,
                P53 + 1,
                -P53 - 1,
                253_402_300_799_000_000, // 9999-12-31T23:59:59
                -62_135_596_800_000_000, // 0001-01-01
                MIN_STORABLE_TIME.as_unix_micros(),
                MIN_STORABLE_TIME.as_unix_micros() - 1,
            ])?,
            _ => i64::arbitrary(u)?,
        };
        Ok(Self(Timestamp::from_unix_micros(micros)))
    }
}

/// A JSON object for `raw_profile`.
#[derive(Clone, PartialEq)]
struct Profile(Map<String, Value>);

impl Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = Value::Object(self.0.clone()).to_string();
        let head: String = text.chars().take(200).collect();
        write!(f, "Profile({head:?}, {} bytes)", text.len())
    }
}

fn json(u: &mut Unstructured<'_>, depth: u8) -> arbitrary::Result<Value> {
    let leaf = depth >= 4;
    Ok(match u.int_in_range(0..=if leaf { 5 } else { 8u8 })? {
        0 => Value::Null,
        1 => Value::Bool(bool::arbitrary(u)?),
        2 => Value::from(i64::arbitrary(u)?),
        3 => Value::from(u64::arbitrary(u)?),
        4 => {
            let f = f64::arbitrary(u)?;
            serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
        5 => Value::String(Text::arbitrary(u)?.0),
        6 => {
            let n = u.int_in_range(0..=3u8)?;
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(json(u, depth + 1)?);
            }
            Value::Array(items)
        }
        7 => {
            let n = u.int_in_range(0..=3u8)?;
            let mut map = Map::new();
            for _ in 0..n {
                map.insert(Text::arbitrary(u)?.0, json(u, depth + 1)?);
            }
            Value::Object(map)
        }
        _ => {
            // Deep nesting: arrays or objects inside each other.
            let levels = u.int_in_range(1..=300u16)?;
            let objects = bool::arbitrary(u)?;
            let mut v = Value::Null;
            for _ in 0..levels {
                v = if objects {
                    let mut m = Map::new();
                    m.insert("k".to_owned(), v);
                    Value::Object(m)
                } else {
                    Value::Array(vec![v])
                };
            }
            v
        }
    })
}

impl<'a> Arbitrary<'a> for Profile {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let n = u.int_in_range(0..=4u8)?;
        let mut map = Map::new();
        for _ in 0..n {
            map.insert(Text::arbitrary(u)?.0, json(u, 1)?);
        }
        Ok(Self(map))
    }
}

#[derive(Arbitrary, Debug, Clone)]
struct ArbState {
    state: Text,
    client_id: Option<Text>,
    redirect_uri: Option<Text>,
    code_challenge: Option<Text>,
    code_challenge_method: Option<Text>,
    provider_code_verifier: Option<Text>,
    client_state: Option<Text>,
    scopes: Vec<Text>,
    expires_at: Time,
    created_at: Time,
}

#[derive(Arbitrary, Debug, Clone)]
struct ArbCode {
    code: Text,
    session_id: Text,
    client_id: Option<Text>,
    redirect_uri: Option<Text>,
    code_challenge: Option<Text>,
    code_challenge_method: Option<Text>,
    scopes: Vec<Text>,
    expires_at: Time,
    created_at: Time,
}

#[derive(Arbitrary, Debug, Clone)]
struct ArbUser {
    provider: Text,
    user_id: Text,
    username: Text,
    email: Option<Text>,
    name: Option<Text>,
    avatar_url: Option<Text>,
    raw_profile: Option<Profile>,
    scopes: Vec<Text>,
    capabilities: Vec<Text>,
}

#[derive(Arbitrary, Debug, Clone)]
struct ArbSession {
    session_id: Text,
    provider: Text,
    user: ArbUser,
    access_token: Text,
    refresh_token: Option<Text>,
    provider_access_token: Option<Text>,
    provider_refresh_token: Option<Text>,
    provider_expires_at: Option<Time>,
    access_expires_at: Option<Time>,
    refresh_expires_at: Option<Time>,
    created_at: Time,
    issued_at: Option<Time>,
}

#[derive(Arbitrary, Debug, Clone)]
struct ArbClient {
    client_id: Text,
    client_secret: Option<Text>,
    method: Option<u8>,
    redirect_uris: Vec<Text>,
    grant_types: Vec<Text>,
    response_types: Vec<Text>,
    scope: Option<Text>,
    client_name: Option<Text>,
    created_at: Time,
}

#[derive(Arbitrary, Debug, Clone)]
enum ArbWrite {
    StoreState(ArbState),
    RemoveState(Text),
    StoreCode(ArbCode),
    DeleteCode(Text),
    StoreSession(Box<ArbSession>),
    DeleteSessionByToken(Text),
    DeleteSessionById(Text),
    StoreClient(ArbClient),
    DeleteClient(Text),
}

#[derive(Arbitrary, Debug)]
enum Action {
    StoreState(ArbState),
    StoreCode(ArbCode),
    StoreSession(Box<ArbSession>),
    StoreClient(ArbClient),
    /// Writes in one atomic batch (`BatchWriteStore`).
    Batch(Vec<ArbWrite>),
    ConsumeState(Text),
    LoadCode(Text),
    TryDeleteCode(Text),
    DeleteCode(Text),
    LoadByToken(Text),
    LoadById(Text),
    LoadByRefresh(Text),
    DeleteByToken(Text),
    DeleteById(Text),
    LoadClient(Text),
    ListClients,
    DeleteClient(Text),
    Cleanup,
    /// Moves the clock by this many seconds (backwards too).
    Advance(i32),
}

fn text(t: &Text) -> String {
    t.0.clone()
}

fn opt(t: &Option<Text>) -> Option<String> {
    t.as_ref().map(text)
}

fn opt_secret(t: &Option<Text>) -> Option<Secret> {
    t.as_ref().map(|t| Secret::new(t.0.clone()))
}

fn list(items: &[Text]) -> Vec<String> {
    items.iter().map(text).collect()
}

fn time(t: Time) -> Timestamp {
    t.0
}

fn opt_time(t: Option<Time>) -> Option<Timestamp> {
    t.map(time)
}

impl ArbState {
    fn record(&self) -> StateRecord {
        StateRecord {
            state: text(&self.state),
            client_id: opt(&self.client_id),
            redirect_uri: opt(&self.redirect_uri),
            code_challenge: opt(&self.code_challenge),
            code_challenge_method: opt(&self.code_challenge_method),
            provider_code_verifier: opt_secret(&self.provider_code_verifier),
            client_state: opt(&self.client_state),
            provider_scopes_requested: list(&self.scopes),
            expires_at: time(self.expires_at),
            created_at: time(self.created_at),
        }
    }
}

impl ArbCode {
    fn record(&self) -> AuthCodeRecord {
        AuthCodeRecord {
            code: text(&self.code),
            session_id: text(&self.session_id),
            client_id: opt(&self.client_id),
            redirect_uri: opt(&self.redirect_uri),
            code_challenge: opt(&self.code_challenge),
            code_challenge_method: opt(&self.code_challenge_method),
            scopes: list(&self.scopes),
            expires_at: time(self.expires_at),
            created_at: time(self.created_at),
        }
    }
}

impl ArbSession {
    fn record(&self) -> StoredSession {
        let u = &self.user;
        StoredSession {
            session_id: text(&self.session_id),
            provider: text(&self.provider),
            user_info: UserInfo {
                provider: text(&u.provider),
                user_id: text(&u.user_id),
                username: text(&u.username),
                email: opt(&u.email),
                name: opt(&u.name),
                avatar_url: opt(&u.avatar_url),
                raw_profile: u.raw_profile.as_ref().map(|p| p.0.clone()),
                provider_scopes_granted: list(&u.scopes),
                capabilities: list(&u.capabilities),
            },
            access_token: Secret::new(text(&self.access_token)),
            refresh_token: opt_secret(&self.refresh_token),
            provider_access_token: opt_secret(&self.provider_access_token),
            provider_refresh_token: opt_secret(&self.provider_refresh_token),
            provider_expires_at: opt_time(self.provider_expires_at),
            access_expires_at: opt_time(self.access_expires_at),
            refresh_expires_at: opt_time(self.refresh_expires_at),
            created_at: time(self.created_at),
            issued_at: opt_time(self.issued_at),
        }
    }
}

impl ArbClient {
    fn record(&self) -> ClientRecord {
        use TokenEndpointAuthMethod as M;
        ClientRecord {
            client_id: text(&self.client_id),
            client_secret: opt_secret(&self.client_secret),
            token_endpoint_auth_method: self.method.map(|m| {
                [
                    M::None,
                    M::ClientSecretPost,
                    M::ClientSecretBasic,
                    M::PrivateKeyJwt,
                ][usize::from(m % 4)]
            }),
            redirect_uris: list(&self.redirect_uris),
            grant_types: list(&self.grant_types),
            response_types: list(&self.response_types),
            scope: opt(&self.scope),
            client_name: opt(&self.client_name),
            created_at: time(self.created_at),
        }
    }
}

impl ArbWrite {
    fn op(&self) -> WriteOp {
        match self {
            Self::StoreState(r) => WriteOp::StoreState(Arc::new(r.record())),
            Self::RemoveState(k) => WriteOp::RemoveState(text(k)),
            Self::StoreCode(r) => WriteOp::StoreAuthCode(Arc::new(r.record())),
            Self::DeleteCode(k) => WriteOp::DeleteAuthCode(text(k)),
            Self::StoreSession(r) => WriteOp::StoreSession(Arc::new(r.record())),
            Self::DeleteSessionByToken(k) => WriteOp::DeleteSessionByToken(Secret::new(text(k))),
            Self::DeleteSessionById(k) => WriteOp::DeleteSessionById(text(k)),
            Self::StoreClient(r) => WriteOp::StoreClient(Arc::new(r.record())),
            Self::DeleteClient(k) => WriteOp::DeleteClient(text(k)),
        }
    }
}

/// A time as it comes back from a REAL column. A time before
/// `MIN_STORABLE_TIME` is refused before it reaches one, so the model gets it
/// unchanged and refuses it too (its double may round up to the minimum).
fn real(t: Timestamp) -> Timestamp {
    if t < MIN_STORABLE_TIME {
        return t;
    }
    let back = Timestamp::from_unix_secs_f64(t.as_unix_secs_f64());
    if t.as_unix_micros().unsigned_abs() <= 1 << 52 {
        assert_eq!(back, t, "a time within 2^52 us must survive a REAL column");
    }
    back
}

fn real_opt(t: Option<Timestamp>) -> Option<Timestamp> {
    t.map(real)
}

/// The record as the model should hold it: times as SQLite keeps them.
fn model_op(op: &WriteOp) -> WriteOp {
    match op {
        WriteOp::StoreState(r) => {
            let mut r = StateRecord::clone(r);
            r.expires_at = real(r.expires_at);
            r.created_at = real(r.created_at);
            WriteOp::StoreState(Arc::new(r))
        }
        WriteOp::StoreAuthCode(r) => {
            let mut r = AuthCodeRecord::clone(r);
            r.expires_at = real(r.expires_at);
            r.created_at = real(r.created_at);
            WriteOp::StoreAuthCode(Arc::new(r))
        }
        WriteOp::StoreSession(s) => {
            let mut s = StoredSession::clone(s);
            s.provider_expires_at = real_opt(s.provider_expires_at);
            s.access_expires_at = real_opt(s.access_expires_at);
            s.refresh_expires_at = real_opt(s.refresh_expires_at);
            s.created_at = real(s.created_at);
            s.issued_at = real_opt(s.issued_at);
            WriteOp::StoreSession(Arc::new(s))
        }
        WriteOp::StoreClient(r) => {
            let mut r = ClientRecord::clone(r);
            r.created_at = real(r.created_at);
            WriteOp::StoreClient(Arc::new(r))
        }
        other => other.clone(),
    }
}

/// The secrets a write carries.
fn secrets(op: &WriteOp) -> Vec<String> {
    let all: Vec<&Secret> = match op {
        WriteOp::StoreState(r) => r.provider_code_verifier.iter().collect(),
        WriteOp::StoreSession(s) => std::iter::once(&s.access_token)
            .chain(&s.refresh_token)
            .chain(&s.provider_access_token)
            .chain(&s.provider_refresh_token)
            .collect(),
        WriteOp::DeleteSessionByToken(t) => vec![t],
        WriteOp::StoreClient(r) => r.client_secret.iter().collect(),
        _ => Vec::new(),
    };
    all.into_iter().map(|s| s.expose().to_owned()).collect()
}

fn block<F: Future>(f: F) -> F::Output {
    smol::block_on(f)
}

struct Run {
    sqlite: SqliteTokenStore,
    model: MemoryTokenStore,
    clock: ManualClock,
    /// Secrets seen so far that no error text could contain by chance (they
    /// hold a character outside printable ASCII and are at least 4 bytes).
    secrets: Vec<String>,
}

/// Runs `input` and panics on the first violation.
pub(crate) fn check(input: Input) {
    let clock = ManualClock::new(Timestamp::from_unix_secs(NOW_SECS));
    let builder = SqliteTokenStore::builder(":memory:").clock(clock.clone());
    let builder = if input.encrypted {
        builder.encryption_key(tokenstore_sqlite::generate_key())
    } else {
        builder.allow_plaintext_tokens(true)
    };
    let mut run = Run {
        sqlite: block(builder.open()).expect("an in-memory database opens"),
        model: MemoryTokenStore::new(clock.clone()),
        clock,
        secrets: Vec::new(),
    };
    for action in input.actions.into_iter().take(12) {
        run.act(action);
        run.same_contents();
    }
    block(run.sqlite.close()).expect("close");
}

impl Run {
    fn same_contents(&self) {
        let stored = block(self.sqlite.contents());
        assert_eq!(
            stored,
            Ok(self.model.contents()),
            "SQLite and the model differ"
        );
    }

    /// Both answers must be equal, and an error must not show a secret.
    fn agree<T: PartialEq + Debug>(
        &self,
        what: &str,
        sqlite: Result<T, StoreError>,
        model: Result<T, StoreError>,
    ) {
        if let Err(e) = &sqlite {
            self.no_secret_in(e);
        }
        assert_eq!(
            sqlite, model,
            "{what}: SQLite and the model answer differently"
        );
    }

    fn no_secret_in(&self, e: &StoreError) {
        let shown = format!("{e} {e:?}");
        for s in &self.secrets {
            assert!(!shown.contains(s.as_str()), "an error shows a secret");
        }
    }

    fn remember(&mut self, op: &WriteOp) {
        for s in secrets(op) {
            if s.len() >= 4 && s.chars().any(|c| !(' '..='~').contains(&c)) {
                self.secrets.push(s);
            }
        }
    }

    /// A write: SQLite and the model must agree; a refused write changes nothing.
    fn write(&mut self, op: WriteOp) {
        self.remember(&op);
        let model = model_op(&op);
        let before = block(self.sqlite.contents());
        let got = block(apply(&self.sqlite, Step::Single(op)));
        let expected = block(apply(&self.model, Step::Single(model)));
        if got.is_err() {
            assert_eq!(
                block(self.sqlite.contents()),
                before,
                "a refused write changed SQLite"
            );
        }
        self.agree("write", got, expected);
    }

    /// An atomic batch on SQLite; the model applies it only when SQLite did.
    fn batch(&mut self, writes: Vec<ArbWrite>) {
        let ops: Vec<WriteOp> = writes.iter().take(8).map(ArbWrite::op).collect();
        for op in &ops {
            self.remember(op);
        }
        let before = block(self.sqlite.contents());
        let batch = self
            .sqlite
            .batch_writer()
            .expect("SQLite has atomic batches");
        match block(batch.apply_batch(ops.clone())) {
            Ok(()) => {
                let model: Vec<WriteOp> = ops.iter().map(model_op).collect();
                block(apply_batch(&self.model, model)).expect("the model applies the batch");
            }
            Err(e) => {
                self.no_secret_in(&e);
                assert_eq!(
                    block(self.sqlite.contents()),
                    before,
                    "a failed batch changed SQLite"
                );
                // The model must refuse one of the writes the same way.
                let refused = ops.iter().any(|op| {
                    let probe = MemoryTokenStore::new(self.clock.clone());
                    block(apply(&probe, Step::Single(model_op(op)))).err() == Some(e.clone())
                });
                assert!(refused, "SQLite refused a batch the model accepts: {e:?}");
            }
        }
    }

    fn act(&mut self, action: Action) {
        let (s, m) = (&self.sqlite, &self.model);
        match action {
            Action::StoreState(r) => self.write(WriteOp::StoreState(Arc::new(r.record()))),
            Action::StoreCode(r) => self.write(WriteOp::StoreAuthCode(Arc::new(r.record()))),
            Action::StoreSession(r) => self.write(WriteOp::StoreSession(Arc::new(r.record()))),
            Action::StoreClient(r) => self.write(WriteOp::StoreClient(Arc::new(r.record()))),
            Action::Batch(writes) => self.batch(writes),
            Action::ConsumeState(k) => self.agree(
                "consume_state",
                block(s.consume_state(&k.0)),
                block(m.consume_state(&k.0)),
            ),
            Action::LoadCode(k) => self.agree(
                "load_auth_code",
                block(s.load_auth_code(&k.0)),
                block(m.load_auth_code(&k.0)),
            ),
            Action::TryDeleteCode(k) => self.agree(
                "try_delete_auth_code",
                block(s.try_delete_auth_code(&k.0)),
                block(m.try_delete_auth_code(&k.0)),
            ),
            Action::DeleteCode(k) => self.write(WriteOp::DeleteAuthCode(k.0)),
            Action::LoadByToken(k) => self.agree(
                "load_session_by_token",
                block(s.load_session_by_token(&k.0)),
                block(m.load_session_by_token(&k.0)),
            ),
            Action::LoadById(k) => self.agree(
                "load_session_by_id",
                block(s.load_session_by_id(&k.0)),
                block(m.load_session_by_id(&k.0)),
            ),
            Action::LoadByRefresh(k) => self.agree(
                "load_session_by_refresh_token",
                block(s.load_session_by_refresh_token(&k.0)),
                block(m.load_session_by_refresh_token(&k.0)),
            ),
            Action::DeleteByToken(k) => self.write(WriteOp::DeleteSessionByToken(Secret::new(k.0))),
            Action::DeleteById(k) => self.write(WriteOp::DeleteSessionById(k.0)),
            Action::LoadClient(k) => self.agree(
                "load_client",
                block(s.load_client(&k.0)),
                block(m.load_client(&k.0)),
            ),
            Action::ListClients => self.agree(
                "list_clients",
                block(s.list_clients()),
                block(m.list_clients()),
            ),
            Action::DeleteClient(k) => self.write(WriteOp::DeleteClient(k.0)),
            Action::Cleanup => self.agree(
                "cleanup_expired",
                block(s.cleanup_expired()),
                block(m.cleanup_expired()),
            ),
            Action::Advance(secs) => {
                let d = Duration::from_secs(u64::from(secs.unsigned_abs()));
                let now = self.clock.now();
                self.clock.set(if secs < 0 { now - d } else { now + d });
            }
        }
    }
}
