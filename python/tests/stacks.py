"""The store stacks the tests run on, and records to feed them.

A stack is built from its name: ``"mxcp"`` is mxcp's own SqliteTokenStore, the
baseline that proves the tests right; the others are this package's stores and
wrappers. Every stack is built in a test's ``tmp_path`` with a Fernet key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tokenstore
from cryptography.fernet import Fernet
from mxcp.sdk.auth.contracts import UserInfo
from mxcp.sdk.auth.storage import AuthCodeRecord, ClientRecord, StateRecord, StoredSession
from mxcp.sdk.auth.storage import SqliteTokenStore as MxcpSqliteTokenStore

MXCP = "mxcp"
POSTGRES_STACKS = ("postgres", "cached_postgres", "cached_buffered_postgres")
OUR_STACKS = (
    "sqlite",
    "cached",
    "buffered",
    "buffered_durable",
    "cached_buffered",
    *POSTGRES_STACKS,
)
STACKS = (MXCP, *OUR_STACKS)
BUFFERED_STACKS = ("buffered", "buffered_durable", "cached_buffered", "cached_buffered_postgres")


def needs_postgres(name: str) -> bool:
    return name in POSTGRES_STACKS


def new_key() -> bytes:
    return Fernet.generate_key()


@dataclass
class Stack:
    """A built stack: the outermost store and every layer under it, outermost first."""

    name: str
    store: Any
    layers: list[Any] = field(default_factory=list)

    @property
    def buffers(self) -> list[Any]:
        return [layer for layer in self.layers if hasattr(layer, "flush")]


def build(name: str, tmp_path: Path, key: bytes | str | None, pg_url: str | None = None) -> Stack:
    """The stack ``name``, not yet initialized."""
    if name == MXCP:
        store = MxcpSqliteTokenStore(tmp_path / "mxcp.sqlite", key)
        return Stack(name, store, [store])
    if needs_postgres(name):
        if pg_url is None:
            raise AssertionError(f"stack {name} needs a PostgreSQL URL")
        base = tokenstore.PostgresTokenStore(pg_url, key)
    else:
        base = tokenstore.SqliteTokenStore(tmp_path / "tokens.sqlite", key)
    layers = [base]
    parts = {
        "sqlite": [],
        "postgres": [],
        "cached": ["cache"],
        "cached_postgres": ["cache"],
        "buffered": ["buffer"],
        "buffered_durable": ["durable"],
        "cached_buffered": ["buffer", "cache"],
        "cached_buffered_postgres": ["buffer", "cache"],
    }[name]
    store = base
    for part in parts:
        if part == "cache":
            store = tokenstore.CachingTokenStore(store)
        elif part == "buffer":
            store = tokenstore.BufferedTokenStore(store)
        else:
            store = tokenstore.BufferedTokenStore(store, ack="durable")
        layers.insert(0, store)
    return Stack(name, store, layers)


# The stacks of stores the tests opened, by id of the outermost store, so that
# `settle` finds the buffers under a caching wrapper.
OPEN: dict[int, Stack] = {}


async def settle(store: Any) -> None:
    """Flushes every write buffer of the stack (nothing for unbuffered stacks)."""
    stack = OPEN.get(id(store))
    buffers = stack.buffers if stack is not None else ([store] if hasattr(store, "flush") else [])
    for buffer in buffers:
        await buffer.flush()


# ── Records ────────────────────────────────────────────────────────────────────


def now() -> float:
    """Now, to the microsecond: what a store reads back exactly."""
    return round(time.time(), 6)


def state(value: str = "state-1", *, ttl: float = 600.0, t: float | None = None, **kw: Any) -> StateRecord:
    t = now() if t is None else t
    fields: dict[str, Any] = dict(
        state=value,
        client_id="client-1",
        redirect_uri="https://app.example/callback",
        code_challenge="challenge-abc",
        code_challenge_method="S256",
        provider_code_verifier="verifier-xyz",
        client_state="client-state-1",
        provider_scopes_requested=["openid", "email"],
        expires_at=round(t + ttl, 6),
        created_at=t,
    )
    fields.update(kw)
    return StateRecord(**fields)


def auth_code(value: str = "code-1", *, ttl: float = 600.0, t: float | None = None, **kw: Any) -> AuthCodeRecord:
    t = now() if t is None else t
    fields: dict[str, Any] = dict(
        code=value,
        session_id="session-1",
        client_id="client-1",
        redirect_uri="https://app.example/callback",
        code_challenge="challenge-abc",
        code_challenge_method="S256",
        mxcp_scopes=["mxcp:access"],
        expires_at=round(t + ttl, 6),
        created_at=t,
    )
    fields.update(kw)
    return AuthCodeRecord(**fields)


def user_info(user_id: str = "42", **kw: Any) -> UserInfo:
    fields: dict[str, Any] = dict(
        provider="github",
        user_id=user_id,
        username=f"user-{user_id}",
        email=f"user-{user_id}@example.com",
        name="Octo Cat",
        avatar_url="https://avatars.example/42.png",
        raw_profile={"login": f"user-{user_id}", "id": 42, "nested": {"a": [1, 2, 3]}},
        provider_scopes_granted=["read:user"],
        capabilities=["mxcp:access"],
    )
    fields.update(kw)
    return UserInfo(**fields)


def session(
    session_id: str = "session-1",
    *,
    access: str | None = None,
    refresh: str | None | bool = True,
    access_ttl: float | None = 3600.0,
    refresh_ttl: float | None = 86400.0,
    t: float | None = None,
    **kw: Any,
) -> StoredSession:
    """A session; ``refresh=True`` makes a refresh token from the id, ``None`` none.

    ``issued_at`` equals ``created_at``: mxcp reads ``issued_at`` back as ``created_at``.
    """
    t = now() if t is None else t
    access = f"access-{session_id}" if access is None else access
    if refresh is True:
        refresh = f"refresh-{session_id}"
    fields: dict[str, Any] = dict(
        session_id=session_id,
        provider="github",
        user_info=user_info(),
        access_token=access,
        refresh_token=refresh,
        provider_access_token=f"gho_provider_access_{session_id}",
        provider_refresh_token=f"ghr_provider_refresh_{session_id}",
        provider_expires_at=round(t + 7200, 6),
        access_expires_at=None if access_ttl is None else round(t + access_ttl, 6),
        refresh_expires_at=(None if (refresh_ttl is None or refresh is None) else round(t + refresh_ttl, 6)),
        issued_at=t,
        created_at=t,
    )
    fields.update(kw)
    return StoredSession(**fields)


def client(client_id: str = "client-1", *, t: float | None = None, **kw: Any) -> ClientRecord:
    t = now() if t is None else t
    fields: dict[str, Any] = dict(
        client_id=client_id,
        client_secret=f"secret-{client_id}",
        token_endpoint_auth_method="client_secret_post",
        redirect_uris=["https://app.example/callback", "http://localhost:8080/cb"],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        scope="mxcp:access",
        client_name=f"Client {client_id}",
        created_at=t,
    )
    fields.update(kw)
    return ClientRecord(**fields)
