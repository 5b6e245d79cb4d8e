"""The stores: mxcp's ``TokenStore`` protocol over tokenstore's Rust stacks."""

from __future__ import annotations

import asyncio
import logging
import math
import os
from typing import Any, Literal

from . import _native
from .errors import StoreClosedError, StoreNotInitializedError
from .models import AuthCodeRecord, ClientRecord, StateRecord, StoredSession

__all__ = [
    "BufferedTokenStore",
    "CachingTokenStore",
    "PostgresTokenStore",
    "SqliteTokenStore",
]

_logger = logging.getLogger("tokenstore")

# A native call returns its result, or an asyncio.Future when it must wait
# for I/O (see python/src/call.rs).
_Future = asyncio.Future


class _NotOpen:
    """Stands in for the native store until ``initialize()``."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise StoreNotInitializedError(
                "the store is not initialized: await store.initialize() first"
            )

        return fail


_NOT_OPEN = _NotOpen()


class _Closed:
    """Stands in for the native store of a store closed before it was opened."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise StoreClosedError("the store is closed")

        return fail


_CLOSED = _Closed()


def _key(encryption_key: str | bytes | None) -> str | None:
    """mxcp's key rules: a falsy key is no key; bytes or str; a Fernet key."""
    if not encryption_key:
        return None
    if isinstance(encryption_key, bytes):
        try:
            encryption_key = encryption_key.decode("ascii")
        except UnicodeDecodeError:
            encryption_key = "\x00"  # not a Fernet key: validate_key says so
    if not isinstance(encryption_key, str):
        raise TypeError(
            f"encryption_key must be str, bytes or None, got {type(encryption_key).__name__}"
        )
    _native.validate_key(encryption_key)
    return encryption_key


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite, non-negative number of seconds")
    return value


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0 or value >= 2**32:
        raise ValueError(f"{name} must be between 0 and 2**32 - 1")
    return value


class _Store:
    """The mxcp ``TokenStore`` protocol over a native stack.

    Every method is a coroutine; none blocks the event loop. Records are
    :mod:`tokenstore.models` (mxcp's own when mxcp is installed).
    """

    def __init__(self) -> None:
        self._n: Any = _NOT_OPEN
        self._open = False
        self._lock: asyncio.Lock | None = None

    async def _build(self) -> Any:
        raise NotImplementedError

    async def initialize(self) -> None:
        """Opens the store (creating mxcp's tables when missing). Idempotent;
        reopens a closed store."""
        if self._open:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._open:
                self._n = await self._build()
                self._open = True

    async def close(self) -> None:
        """Closes the store (a wrapper closes what it wraps; a buffer applies
        its pending writes first). Afterwards every call raises
        :class:`~tokenstore.StoreClosedError` until ``initialize()``."""
        if not self._open:
            if self._n is _NOT_OPEN:
                self._n = _CLOSED
            return
        self._open = False
        r = self._n.close()
        if isinstance(r, _Future):
            await r

    def stats(self) -> dict[str, Any]:
        """This layer's counters (and, under ``"inner"``, those of what it
        wraps). Counts and sizes only: never a key, token or user."""
        return self._n.stats()

    # ── States ──────────────────────────────────────────────────────────
    async def store_state(self, record: StateRecord) -> None:
        """Stores a state, replacing one with the same value."""
        r = self._n.store_state(record)
        if isinstance(r, _Future):
            await r

    async def consume_state(self, state: str) -> StateRecord | None:
        """Removes and returns a live state; ``None`` if absent or expired.
        One-time: of concurrent callers, one gets the record."""
        r = self._n.consume_state(state)
        return (await r) if isinstance(r, _Future) else r

    # ── Authorization codes ─────────────────────────────────────────────
    async def store_auth_code(self, record: AuthCodeRecord) -> None:
        """Stores an authorization code, replacing one with the same code."""
        r = self._n.store_auth_code(record)
        if isinstance(r, _Future):
            await r

    async def load_auth_code(self, code: str) -> AuthCodeRecord | None:
        """Loads a live code without consuming it; ``None`` if absent or expired."""
        r = self._n.load_auth_code(code)
        return (await r) if isinstance(r, _Future) else r

    async def delete_auth_code(self, code: str) -> None:
        """Removes a code if present."""
        r = self._n.delete_auth_code(code)
        if isinstance(r, _Future):
            await r

    async def try_delete_auth_code(self, code: str) -> bool:
        """Removes a code; ``True`` only for the one caller that removed it live."""
        r = self._n.try_delete_auth_code(code)
        return (await r) if isinstance(r, _Future) else r

    # ── Sessions ────────────────────────────────────────────────────────
    async def store_session(self, record: StoredSession) -> None:
        """Stores a session, replacing every session sharing its access token,
        refresh token or session id (so a rotation leaves no way to the old
        tokens). ``ValueError`` without ``access_expires_at``, as in mxcp."""
        r = self._n.store_session(record)
        if isinstance(r, _Future):
            await r

    async def load_session_by_token(self, access_token: str) -> StoredSession | None:
        """The live session with this access token, or ``None``."""
        r = self._n.load_session_by_token(access_token)
        return (await r) if isinstance(r, _Future) else r

    async def load_session_by_id(self, session_id: str) -> StoredSession | None:
        """The live session with this id, or ``None``."""
        r = self._n.load_session_by_id(session_id)
        return (await r) if isinstance(r, _Future) else r

    async def load_session_by_refresh_token(self, refresh_token: str) -> StoredSession | None:
        """The session with this refresh token while the refresh token lives."""
        r = self._n.load_session_by_refresh_token(refresh_token)
        return (await r) if isinstance(r, _Future) else r

    async def delete_session_by_token(self, access_token: str) -> None:
        """Deletes the session with this access token, if any."""
        r = self._n.delete_session_by_token(access_token)
        if isinstance(r, _Future):
            await r

    async def delete_session_by_id(self, session_id: str) -> None:
        """Deletes the session with this id, if any (not in mxcp's protocol)."""
        r = self._n.delete_session_by_id(session_id)
        if isinstance(r, _Future):
            await r

    async def cleanup_expired(self) -> dict[str, int]:
        """Removes expired states and codes and every session no lookup can
        return again; the counts under ``states``, ``auth_codes``, ``sessions``."""
        r = self._n.cleanup_expired()
        return (await r) if isinstance(r, _Future) else r

    # ── Clients ─────────────────────────────────────────────────────────
    async def store_client(self, record: ClientRecord) -> None:
        """Stores a client, replacing one with the same id."""
        r = self._n.store_client(record)
        if isinstance(r, _Future):
            await r

    async def load_client(self, client_id: str) -> ClientRecord | None:
        """The client with this id, or ``None``."""
        r = self._n.load_client(client_id)
        return (await r) if isinstance(r, _Future) else r

    async def list_clients(self) -> list[ClientRecord]:
        """Every client, ordered by client id."""
        r = self._n.list_clients()
        return (await r) if isinstance(r, _Future) else r

    async def delete_client(self, client_id: str) -> None:
        """Deletes a client, if present."""
        r = self._n.delete_client(client_id)
        if isinstance(r, _Future):
            await r

    def __repr__(self) -> str:
        state = "open" if self._open else "not open"
        return f"<{type(self).__name__} ({state})>"


class SqliteTokenStore(_Store):
    """mxcp's ``SqliteTokenStore``, in Rust: the same constructor, protocol,
    schema and Fernet encryption, so it opens a database mxcp wrote (with the
    same key) and mxcp opens what it writes.

    ``encryption_key`` is a Fernet key (``str`` or ``bytes``; ``ValueError``
    when it is not one). Without a key, storing a token raises ``ValueError``
    unless ``allow_plaintext_tokens=True`` (which logs a warning on the
    ``tokenstore`` logger, as mxcp logs on its own).

    ``readers`` (an extension of mxcp's constructor): reader threads with
    read-only connections that answer lookups beside the one writer, so a
    lookup never waits for another call's commit. ``0`` (default) runs every
    read on the one connection, as mxcp does; ``None`` is Rust's default, one
    per core (2 to 8); at most 64. Reader threads busy with SQLite compete
    for the cores with the event loop's thread: on a small machine they can
    delay the loop by milliseconds under a burst of lookups.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        encryption_key: str | bytes | None = None,
        *,
        allow_plaintext_tokens: bool = False,
        readers: int | None = 0,
    ) -> None:
        super().__init__()
        os.fspath(db_path)  # TypeError for anything that is not a path
        self.db_path = db_path
        self.allow_plaintext_tokens = _bool("allow_plaintext_tokens", allow_plaintext_tokens)
        self._readers = None if readers is None else _count("readers", readers)
        if self._readers is not None and self._readers > 64:
            raise ValueError("readers must be between 0 and 64")
        self._key = _key(encryption_key)
        if self._key is None and self.allow_plaintext_tokens:
            _logger.warning(
                "Storing auth tokens in plaintext because allow_plaintext_tokens=True and no "
                "encryption key was provided. This disables at-rest protection."
            )

    async def _build(self) -> Any:
        r = _native.open_sqlite(
            os.fspath(self.db_path), self._key, self.allow_plaintext_tokens, self._readers
        )
        return (await r) if isinstance(r, _Future) else r

    def __repr__(self) -> str:
        return f"<SqliteTokenStore {os.fspath(self.db_path)!r} ({'open' if self._open else 'not open'})>"


class PostgresTokenStore(_Store):
    """The same protocol on PostgreSQL, for servers that run several replicas.

    ``url`` is a libpq URL or key-value string (``postgresql://user@host/db``,
    ``sslmode`` honoured); tables live in ``schema``; at most ``pool_size``
    connections. Key rules as :class:`SqliteTokenStore`.
    """

    def __init__(
        self,
        url: str,
        encryption_key: str | bytes | None = None,
        *,
        allow_plaintext_tokens: bool = False,
        schema: str = "tokenstore",
        pool_size: int = 4,
    ) -> None:
        super().__init__()
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {type(url).__name__}")
        if not isinstance(schema, str):
            raise TypeError(f"schema must be a str, got {type(schema).__name__}")
        self._url = url
        self.schema = schema
        self.pool_size = _count("pool_size", pool_size)
        if self.pool_size == 0:
            raise ValueError("pool_size must be at least 1")
        self.allow_plaintext_tokens = _bool("allow_plaintext_tokens", allow_plaintext_tokens)
        self._key = _key(encryption_key)
        if self._key is None and self.allow_plaintext_tokens:
            _logger.warning(
                "Storing auth tokens in plaintext because allow_plaintext_tokens=True and no "
                "encryption key was provided. This disables at-rest protection."
            )

    async def _build(self) -> Any:
        r = _native.open_postgres(
            self._url, self._key, self.allow_plaintext_tokens, self.schema, self.pool_size
        )
        return (await r) if isinstance(r, _Future) else r

    def __repr__(self) -> str:
        # The URL may hold a password: never shown.
        return f"<PostgresTokenStore schema={self.schema!r} ({'open' if self._open else 'not open'})>"


class _Wrapper(_Store):
    def __init__(self, store: _Store) -> None:
        super().__init__()
        if not isinstance(store, _Store):
            raise TypeError(
                f"store must be a tokenstore store, got {type(store).__name__}"
            )
        self._inner = store

    @property
    def inner(self) -> _Store:
        """The store this one wraps."""
        return self._inner

    async def _build(self) -> Any:
        await self._inner.initialize()
        return self._wrap(self._inner._n)

    def _wrap(self, native: Any) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        was_open = self._open
        await super().close()
        if not was_open:
            return
        # Closing this layer closed every layer under it.
        inner: _Store = self._inner
        while True:
            if inner._open:
                inner._open = False
            elif inner._n is _NOT_OPEN:
                inner._n = _CLOSED
            if not isinstance(inner, _Wrapper):
                break
            inner = inner._inner

    def stats(self) -> dict[str, Any]:
        own = self._n.stats()
        own["inner"] = self._inner.stats()
        return own

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {self._inner!r}>"


class CachingTokenStore(_Wrapper):
    """A read cache over any store: the same answers, most reads from memory.

    Each entry lives until its record's own expiry less ``skew``, at most
    ``ttl_cap`` seconds; absences are remembered ``negative_ttl`` seconds
    (0 turns that off); every write through this cache invalidates what it
    changes; entries are capped per kind. With ``feed_bound`` (seconds, below
    ``ttl_cap``; needs a store with an invalidation feed, such as PostgreSQL)
    the cache follows writes made by other instances, and never serves an
    entry more than ``feed_bound`` seconds stale. ``shards`` bounds how many
    shards (each with its own lock) the cache is split into; fewer when a
    capacity is below 64 per shard; 1 turns sharding off.
    """

    def __init__(
        self,
        store: _Store,
        *,
        ttl_cap: float = 30.0,
        skew: float = 1.0,
        negative_ttl: float = 2.0,
        session_capacity: int = 100_000,
        auth_code_capacity: int = 10_000,
        client_capacity: int = 10_000,
        negative_capacity: int = 10_000,
        feed_bound: float | None = None,
        shards: int = 16,
    ) -> None:
        super().__init__(store)
        self._config = (
            _seconds("ttl_cap", ttl_cap),
            _seconds("skew", skew),
            _seconds("negative_ttl", negative_ttl),
            _count("session_capacity", session_capacity),
            _count("auth_code_capacity", auth_code_capacity),
            _count("client_capacity", client_capacity),
            _count("negative_capacity", negative_capacity),
            None if feed_bound is None else _seconds("feed_bound", feed_bound),
            _count("shards", shards),
        )
        _native.check_cache(*self._config)  # the cache machine's own rules

    def _wrap(self, native: Any) -> Any:
        return _native.caching(native, *self._config)


class BufferedTokenStore(_Wrapper):
    """A write buffer over any store: writes are queued, coalesced and applied
    in batches (one transaction per batch on SQLite).

    ``ack="queued"`` (default) returns once a write is accepted: fastest, and a
    crash can lose at most ``max_pending`` accepted writes. ``ack="durable"``
    returns once the batch holding the write committed (group commit).
    Reads see this process's pending writes; one-time calls (consume a state,
    delete a code) are never queued. A batch flushes when it holds
    ``max_batch_size`` writes or its oldest is ``max_delay`` seconds old;
    failed batches are retried ``max_retries`` times from ``retry_backoff``
    seconds, doubling. ``close()`` applies everything pending and raises
    :class:`~tokenstore.TokenStoreError` if it cannot.
    """

    def __init__(
        self,
        store: _Store,
        *,
        max_batch_size: int = 256,
        max_delay: float = 0.005,
        max_pending: int = 10_000,
        max_retries: int = 3,
        retry_backoff: float = 0.01,
        ack: Literal["queued", "durable"] = "queued",
    ) -> None:
        super().__init__(store)
        if not isinstance(ack, str):
            raise TypeError(f'ack must be "queued" or "durable", got {type(ack).__name__}')
        if ack not in ("queued", "durable"):
            raise ValueError('ack must be "queued" or "durable"')
        self.ack = ack
        self._config = (
            _count("max_batch_size", max_batch_size),
            _seconds("max_delay", max_delay),
            _count("max_pending", max_pending),
            _count("max_retries", max_retries),
            _seconds("retry_backoff", retry_backoff),
            ack,
        )

    def _wrap(self, native: Any) -> Any:
        return _native.buffered(native, *self._config)

    async def flush(self) -> None:
        """Applies every write accepted so far; raises if they fail, and
        :class:`~tokenstore.StoreClosedError` after ``close()``."""
        if not self._open and self._n is not _NOT_OPEN:
            raise StoreClosedError("the store is closed")
        r = self._n.flush()
        if isinstance(r, _Future):
            await r
