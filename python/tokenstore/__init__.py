"""tokenstore: a fast token store for OAuth servers, in Rust.

mxcp's ``TokenStore`` protocol on SQLite (mxcp's own schema and encryption)
or PostgreSQL, with a read cache and a write buffer to stack over either::

    from tokenstore import CachingTokenStore, SqliteTokenStore

    store = CachingTokenStore(SqliteTokenStore("oauth.db", key))
    await store.initialize()
    session = await store.load_session_by_token(token)

Calls run on a Rust runtime beside asyncio, with the GIL released; a cache
hit or a queued write answers without leaving the calling thread. To make a
stock mxcp server use it, see :mod:`tokenstore.mxcp`.
"""

from __future__ import annotations

from . import _native
from .errors import StoreClosedError, StoreNotInitializedError, TokenStoreError
from .models import (
    MXCP_MODELS,
    AuthCodeRecord,
    ClientRecord,
    StateRecord,
    StoredSession,
    UserInfo,
)

_native.set_models(StateRecord, AuthCodeRecord, StoredSession, ClientRecord, UserInfo)
_native.set_errors(TokenStoreError, StoreClosedError)

from ._stores import (  # noqa: E402
    BufferedTokenStore,
    CachingTokenStore,
    PostgresTokenStore,
    SqliteTokenStore,
)

__version__ = "0.1.0"

__all__ = [
    "MXCP_MODELS",
    "AuthCodeRecord",
    "BufferedTokenStore",
    "CachingTokenStore",
    "ClientRecord",
    "PostgresTokenStore",
    "SqliteTokenStore",
    "StateRecord",
    "StoreClosedError",
    "StoreNotInitializedError",
    "StoredSession",
    "TokenStoreError",
    "UserInfo",
]
