"""The record classes tokenstore takes and returns.

When mxcp is importable these are mxcp's own frozen pydantic models
(``mxcp.sdk.auth.storage.StateRecord``, ``AuthCodeRecord``, ``StoredSession``,
``ClientRecord`` and ``mxcp.sdk.auth.contracts.UserInfo``), so records compare
and validate exactly as mxcp expects. Without mxcp they are frozen
dataclasses with the same fields and defaults.

Times are Unix seconds as floats, kept to the microsecond: a time ``t`` reads
back as ``round(t, 6)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "MXCP_MODELS",
    "AuthCodeRecord",
    "ClientRecord",
    "StateRecord",
    "StoredSession",
    "UserInfo",
]

TokenEndpointAuthMethod = Literal[
    "none", "client_secret_post", "client_secret_basic", "private_key_jwt"
]

try:
    from mxcp.sdk.auth.contracts import UserInfo
    from mxcp.sdk.auth.storage import (
        AuthCodeRecord,
        ClientRecord,
        StateRecord,
        StoredSession,
    )

    MXCP_MODELS = True
    """Whether the records are mxcp's models (mxcp is installed)."""
except ImportError:  # mxcp is not installed: our own records, same fields.
    MXCP_MODELS = False

    @dataclass(frozen=True, kw_only=True)
    class StateRecord:  # type: ignore[no-redef]
        """A persisted OAuth state (one-time, expiring), as mxcp's."""

        state: str
        client_id: str | None = None
        redirect_uri: str | None = None
        code_challenge: str | None = None
        code_challenge_method: str | None = None
        provider_code_verifier: str | None = field(default=None, repr=False)
        client_state: str | None = None
        provider_scopes_requested: list[str] = field(default_factory=list)
        expires_at: float
        created_at: float

    @dataclass(frozen=True, kw_only=True)
    class AuthCodeRecord:  # type: ignore[no-redef]
        """A persisted authorization code bound to a session, as mxcp's."""

        code: str
        session_id: str
        client_id: str | None = None
        redirect_uri: str | None = None
        code_challenge: str | None = None
        code_challenge_method: str | None = None
        mxcp_scopes: list[str] = field(default_factory=list)
        expires_at: float
        created_at: float

    @dataclass(frozen=True, kw_only=True)
    class UserInfo:  # type: ignore[no-redef]
        """Normalized user information from the identity provider, as mxcp's."""

        provider: str
        user_id: str = field(repr=False)
        username: str = field(repr=False)
        email: str | None = field(default=None, repr=False)
        name: str | None = field(default=None, repr=False)
        avatar_url: str | None = field(default=None, repr=False)
        raw_profile: dict[str, Any] | None = field(default=None, repr=False)
        provider_scopes_granted: list[str] = field(default_factory=list)
        capabilities: list[str] = field(default_factory=list)

    @dataclass(frozen=True, kw_only=True)
    class StoredSession:  # type: ignore[no-redef]
        """A persisted session: tokens bound to a user, as mxcp's."""

        session_id: str
        provider: str
        user_info: UserInfo
        access_token: str = field(repr=False)
        refresh_token: str | None = field(default=None, repr=False)
        provider_access_token: str | None = field(default=None, repr=False)
        provider_refresh_token: str | None = field(default=None, repr=False)
        provider_expires_at: float | None = None
        access_expires_at: float | None = None
        refresh_expires_at: float | None = None
        issued_at: float | None = None
        created_at: float

    @dataclass(frozen=True, kw_only=True)
    class ClientRecord:  # type: ignore[no-redef]
        """A registered OAuth client, as mxcp's."""

        client_id: str
        client_secret: str | None = field(default=None, repr=False)
        token_endpoint_auth_method: TokenEndpointAuthMethod | None = None
        redirect_uris: list[str]
        grant_types: list[str]
        response_types: list[str]
        scope: str | None = None
        client_name: str | None = None
        created_at: float
