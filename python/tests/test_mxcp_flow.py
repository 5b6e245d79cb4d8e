"""A full issuer-mode OAuth flow through mxcp 0.12.3's own server classes,
with and without tokenstore installed in place of mxcp's SQLite token store.

What is real and what is faked
------------------------------
* The store is obtained the way mxcp gets it: a real ``RAWMCP`` server object is
  constructed from an ``mxcp-site.yml`` and a user ``config.yml`` written to a
  tmp dir (issuer mode, SQLite persistence with a Fernet key).  Its
  ``_initialize_oauth`` builds the store by calling the name ``SqliteTokenStore``
  of ``mxcp.server.interfaces.server.mcp`` -- the name ``tokenstore.mxcp.install()``
  replaces -- then ``SessionManager``, ``AuthService`` and
  ``IssuerOAuthAuthorizationServer``.  Nothing of that is rebuilt by the test.
* The only thing swapped is the upstream identity provider: the module-level
  ``create_provider_adapter`` of that same module is monkeypatched to return
  ``FakeIdP`` below (a ``ProviderAdapter``) so nothing touches the network.
  (The config names the ``github`` provider only because mxcp's config schema
  requires a known provider; the GitHub adapter is never built.)
* The flow is driven through the methods the MCP SDK's auth handlers call on the
  ``OAuthAuthorizationServerProvider`` (``register_client``, ``get_client``,
  ``authorize``, ``load_authorization_code``, ``exchange_authorization_code``,
  ``load_access_token``, ``load_refresh_token``, ``exchange_refresh_token``,
  ``revoke_token``), doing the client-side PKCE check the SDK's token handler
  does, plus ``IssuerOAuthAuthorizationServer.handle_callback`` (what mxcp's
  ``oauth_callback`` route calls when the IdP redirects back).  A second test
  runs the same flow over HTTP against the server's own Starlette app (the SDK's
  /register, /authorize, /token, /revoke handlers, mxcp's callback route, and
  the SDK's bearer-auth middleware in front of /mcp).

Every await here is on network-free code and is bounded by ``asyncio.wait_for``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

# mxcp's analytics would try to reach PostHog; keep everything offline.
os.environ.setdefault("MXCP_DISABLE_ANALYTICS", "1")

import httpx
import pytest
from cryptography.fernet import Fernet
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationParams,
    AuthorizeError,
    RefreshToken,
    TokenError,
)
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import AnyUrl

import mxcp.server.interfaces.server.mcp as mxcp_mcp
import mxcp.sdk.auth.storage as mxcp_storage
from mxcp.sdk.auth.auth_service import AuthService
from mxcp.sdk.auth.context import clear_verified_user_info, get_verified_user_info
from mxcp.sdk.auth.contracts import GrantResult, ProviderError, UserInfo
from mxcp.sdk.auth.session_manager import SessionManager
from mxcp.server.core.auth.issuer_provider import IssuerOAuthAuthorizationServer

import tokenstore
import tokenstore.mxcp

# mxcp's own store class, taken from its defining module (install() only
# replaces the name in mxcp.server.interfaces.server.mcp).
MXCP_SQLITE_STORE = mxcp_storage.SqliteTokenStore

STEP_TIMEOUT = 20.0  # seconds, for any single await

CALLBACK_PATH = "/idp/callback"
SERVER_BASE = "http://localhost:8000"
CLIENT_REDIRECT = "https://client.example/oauth/cb"
OTHER_REDIRECT = "https://other.example/cb"
CONFIGURED_CLIENT_ID = "configured-client"
IDP_SCOPE = "openid profile email"


async def bounded(awaitable: Any, timeout: float = STEP_TIMEOUT) -> Any:
    return await asyncio.wait_for(awaitable, timeout)


def pkce_pair() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# ─────────────────────────────────────────────────────────────────────────────
# Fake upstream identity provider
# ─────────────────────────────────────────────────────────────────────────────


class FakeIdP:
    """An in-process IdP plus the mxcp ProviderAdapter that talks to it.

    It enforces what a real IdP would: codes are one-time and bound to the
    redirect URI and the upstream PKCE challenge; refresh tokens rotate (an old
    one stops working); user info is only served for live access tokens.
    """

    provider_name = "fakeidp"
    pkce_methods_supported = ["S256"]
    callback_path = CALLBACK_PATH
    scope = IDP_SCOPE

    def __init__(self) -> None:
        self.pending: dict[str, dict[str, Any]] = {}  # IdP-side authorize requests by state
        self.codes: dict[str, dict[str, Any]] = {}
        self.access_tokens: dict[str, str] = {}  # token -> user id
        self.refresh_tokens: dict[str, str] = {}  # token -> user id
        self.users = {
            "alice": {"username": "alice", "email": "alice@example.test", "name": "Alice A."},
            "bob": {"username": "bob", "email": "bob@example.test", "name": "Bob B."},
        }
        self.calls: dict[str, int] = {"exchange_code": 0, "refresh_token": 0, "fetch_user_info": 0}

    # ── ProviderAdapter protocol ────────────────────────────────────────────
    def build_authorize_url(
        self,
        *,
        redirect_uri: str,
        state: str,
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
        extra_params: Mapping[str, str] | None = None,
    ) -> str:
        self.pending[state] = {
            "redirect_uri": redirect_uri,
            "code_challenge": code_challenge,
            "code_challenge_method": code_challenge_method,
        }
        params = {"response_type": "code", "state": state, "redirect_uri": redirect_uri, "scope": self.scope}
        if code_challenge:
            params["code_challenge"] = code_challenge
            params["code_challenge_method"] = code_challenge_method or "plain"
        params.update(extra_params or {})
        return "https://idp.test/authorize?" + urlencode(params)

    async def exchange_code(
        self,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str | None = None,
        scopes: Sequence[str],
    ) -> GrantResult:
        self.calls["exchange_code"] += 1
        entry = self.codes.pop(code, None)  # one-time
        if entry is None:
            raise ProviderError("invalid_grant", "unknown or used code", status_code=400)
        if redirect_uri != entry["redirect_uri"]:
            raise ProviderError("invalid_grant", "redirect_uri mismatch", status_code=400)
        if entry["code_challenge"] is not None:
            if code_verifier is None:
                raise ProviderError("invalid_grant", "missing code_verifier", status_code=400)
            digest = base64.urlsafe_b64encode(hashlib.sha256(code_verifier.encode()).digest())
            if digest.decode().rstrip("=") != entry["code_challenge"]:
                raise ProviderError("invalid_grant", "PKCE failed", status_code=400)
        return self._grant(entry["user"], scopes)

    async def refresh_token(self, *, refresh_token: str, scopes: Sequence[str]) -> GrantResult:
        self.calls["refresh_token"] += 1
        user = self.refresh_tokens.pop(refresh_token, None)  # rotation: old one dies
        if user is None:
            raise ProviderError("invalid_grant", "unknown refresh token", status_code=400)
        return self._grant(user, scopes)

    async def fetch_user_info(self, *, access_token: str) -> UserInfo:
        self.calls["fetch_user_info"] += 1
        user = self.access_tokens.get(access_token)
        if user is None:
            raise ProviderError("invalid_token", "unknown access token", status_code=401)
        profile = self.users[user]
        return UserInfo(
            provider=self.provider_name,
            user_id=f"uid-{user}",
            username=profile["username"],
            email=profile["email"],
            name=profile["name"],
            raw_profile={"sub": f"uid-{user}", "groups": ["staff"]},
        )

    # ── test helpers (the user's browser at the IdP) ────────────────────────
    def login(self, authorize_url: str, user: str) -> str:
        """The user signs in at the IdP; returns the URL the IdP redirects to."""
        q = query_of(authorize_url)
        state = q["state"]
        pending = self.pending.pop(state)
        assert pending["redirect_uri"] == q["redirect_uri"]
        code = "idp_code_" + secrets.token_urlsafe(12)
        self.codes[code] = {"user": user, **pending}
        return pending["redirect_uri"] + "?" + urlencode({"code": code, "state": state})

    def _grant(self, user: str, scopes: Sequence[str]) -> GrantResult:
        access = "idp_at_" + secrets.token_urlsafe(16)
        refresh = "idp_rt_" + secrets.token_urlsafe(16)
        self.access_tokens[access] = user
        self.refresh_tokens[refresh] = user
        now = time.time()
        return GrantResult(
            access_token=access,
            refresh_token=refresh,
            expires_at=now + 3600,
            refresh_expires_at=now + 86400,
            provider_scopes_granted=list(scopes) or self.scope.split(),
        )


# ─────────────────────────────────────────────────────────────────────────────
# Fixtures: install modes, an mxcp project, the real server object
# ─────────────────────────────────────────────────────────────────────────────

INSTALL_MODES = [
    pytest.param(None, id="stock"),
    pytest.param({"cache": True}, id="cache"),
    pytest.param({"cache": True, "buffer": True}, id="cache-buffer"),
    pytest.param({"buffer": {"ack": "durable"}}, id="buffer-durable"),
]


class Installer:
    """Wraps tokenstore.mxcp.install()/uninstall(); uninstalls exactly once."""

    def __init__(self, options: dict[str, Any] | None) -> None:
        self.options = options
        self.installed = False

    def install(self) -> None:
        if self.options is not None:
            tokenstore.mxcp.install(**self.options)
            self.installed = True
            assert mxcp_mcp.SqliteTokenStore is not MXCP_SQLITE_STORE, "install() left mxcp's class in place"

    def uninstall(self) -> None:
        if self.installed:
            self.installed = False
            tokenstore.mxcp.uninstall()
        assert mxcp_mcp.SqliteTokenStore is MXCP_SQLITE_STORE, "uninstall() did not restore mxcp's class"

    @property
    def expects_cache(self) -> bool:
        return bool(self.options and self.options.get("cache", True))

    @property
    def expects_buffer(self) -> bool:
        return bool(self.options and self.options.get("buffer"))


@pytest.fixture(params=INSTALL_MODES)
def installer(request: pytest.FixtureRequest):
    assert mxcp_mcp.SqliteTokenStore is MXCP_SQLITE_STORE, "a previous test left tokenstore installed"
    inst = Installer(request.param)
    try:
        inst.install()
        yield inst
    finally:
        inst.uninstall()


class Project:
    def __init__(self, root: Path, db_path: Path, key: str) -> None:
        self.root = root
        self.db_path = db_path
        self.key = key


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    root = tmp_path / "project"
    root.mkdir()
    db_path = tmp_path / "auth" / "oauth.db"
    key = Fernet.generate_key().decode()
    (root / "mxcp-site.yml").write_text("mxcp: 1\nproject: flowtest\nprofile: default\n")
    config = f"""\
mxcp: 1
projects:
  flowtest:
    profiles:
      default:
        auth:
          provider: github
          github:
            client_id: unused
            client_secret: unused
            scope: "{IDP_SCOPE}"
            callback_path: {CALLBACK_PATH}
            auth_url: https://idp.test/authorize
            token_url: https://idp.test/token
          clients:
            - client_id: {CONFIGURED_CLIENT_ID}
              name: Configured Client
              client_secret: configured-secret-value
              redirect_uris: ["{OTHER_REDIRECT}"]
              grant_types: [authorization_code, refresh_token]
          persistence:
            type: sqlite
            path: "{db_path}"
            auth_encryption_key: "{key}"
"""
    (tmp_path / "config.yml").write_text(config)
    monkeypatch.setenv("MXCP_CONFIG", str(tmp_path / "config.yml"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MXCP_DISABLE_ANALYTICS", "1")
    monkeypatch.setenv("MXCP_ADMIN_ENABLED", "0")
    # `mxcp serve` runs from the project directory (mxcp looks up mxcp-site.yml from cwd).
    monkeypatch.chdir(root)
    return Project(root, db_path, key)


@pytest.fixture
def idp(monkeypatch: pytest.MonkeyPatch) -> FakeIdP:
    fake = FakeIdP()
    monkeypatch.setattr(mxcp_mcp, "create_provider_adapter", lambda *a, **k: fake)
    return fake


def build_server(project: Project) -> mxcp_mcp.RAWMCP:
    """Construct mxcp's real server object; its __init__ runs _initialize_oauth."""
    return mxcp_mcp.RAWMCP(site_config_path=project.root)


async def start_server(server: mxcp_mcp.RAWMCP) -> None:
    # What RAWMCP.run() does before serving (ensure_ready + oauth_server.initialize()).
    await bounded(server._initialize_oauth_server())


async def stop_server(server: mxcp_mcp.RAWMCP) -> None:
    # mxcp's own graceful shutdown; closes the OAuth server's store.
    await bounded(server.shutdown(), 60.0)


def assert_store_is_expected(store: Any, installer: Installer) -> None:
    if not installer.installed:
        assert type(store) is MXCP_SQLITE_STORE
        return
    ours = (tokenstore.SqliteTokenStore, tokenstore.CachingTokenStore, tokenstore.BufferedTokenStore)
    assert isinstance(store, ours), f"mxcp got {type(store)!r}, not a tokenstore store"
    assert not isinstance(store, MXCP_SQLITE_STORE)
    expected_outer: tuple[type, ...]
    if installer.expects_cache and installer.expects_buffer:
        expected_outer = (tokenstore.CachingTokenStore, tokenstore.BufferedTokenStore)
    elif installer.expects_cache:
        expected_outer = (tokenstore.CachingTokenStore,)
    elif installer.expects_buffer:
        expected_outer = (tokenstore.BufferedTokenStore,)
    else:
        expected_outer = (tokenstore.SqliteTokenStore,)
    assert isinstance(store, expected_outer), f"store {type(store)!r} for install({installer.options!r})"
    assert callable(getattr(store, "stats", None))


def raw_db_bytes(db_path: Path) -> bytes:
    data = b""
    for suffix in ("", "-wal", "-journal"):
        p = Path(str(db_path) + suffix)
        if p.exists():
            data += p.read_bytes()
    return data


def assert_sessions_match(a: mxcp_storage.StoredSession, b: mxcp_storage.StoredSession) -> None:
    """Same session; times compared to the microsecond (what tokenstore keeps)."""
    da, db = a.model_dump(), b.model_dump()
    for field in ("provider_expires_at", "access_expires_at", "refresh_expires_at", "issued_at", "created_at"):
        va, vb = da.pop(field), db.pop(field)
        if va is None or vb is None:
            assert va is None and vb is None, field
        else:
            assert vb == pytest.approx(va, abs=1.5e-6), field
    assert da == db


# ─────────────────────────────────────────────────────────────────────────────
# The flow, through the OAuthAuthorizationServerProvider methods
# ─────────────────────────────────────────────────────────────────────────────


def new_dcr_client(redirect: str = CLIENT_REDIRECT) -> OAuthClientInformationFull:
    # What the SDK's RegistrationHandler builds before calling register_client().
    return OAuthClientInformationFull(
        client_id="dcr-" + secrets.token_hex(8),
        client_secret=secrets.token_hex(32),
        client_id_issued_at=int(time.time()),
        redirect_uris=[AnyUrl(redirect)],
        token_endpoint_auth_method="client_secret_post",
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        client_name="Flow Test Client",
    )


async def login(
    oauth: IssuerOAuthAuthorizationServer,
    idp: FakeIdP,
    client: OAuthClientInformationFull,
    user: str,
) -> dict[str, Any]:
    """authorize -> IdP login -> callback -> code checks -> token exchange."""
    verifier, challenge = pkce_pair()
    client_state = "cs-" + secrets.token_urlsafe(8)
    params = AuthorizationParams(
        state=client_state,
        scopes=None,
        code_challenge=challenge,
        redirect_uri=AnyUrl(CLIENT_REDIRECT),
        redirect_uri_provided_explicitly=True,
    )
    idp_url = await bounded(oauth.authorize(client, params))

    # The authorize redirect goes to the IdP, carries a (fresh, internal) state,
    # our callback as redirect_uri, and upstream PKCE.
    assert idp_url.startswith("https://idp.test/authorize?")
    q = query_of(idp_url)
    assert q["state"] and q["state"] != client_state
    assert q["redirect_uri"] == SERVER_BASE + CALLBACK_PATH
    assert q["code_challenge_method"] == "S256" and q["code_challenge"]
    assert q["scope"] == IDP_SCOPE

    callback_url = idp.login(idp_url, user)
    cq = query_of(callback_url)
    redirect = await bounded(oauth.handle_callback(cq["code"], cq["state"]))

    # The callback yields an MXCP code bound to the client's redirect, with the
    # client's own state echoed back.
    assert redirect.startswith(CLIENT_REDIRECT + "?")
    rq = query_of(redirect)
    assert rq["state"] == client_state
    code = rq["code"]
    assert code.startswith("mcp_") and code != cq["code"]

    # The internal state is one-time: replaying the IdP redirect fails.
    with pytest.raises(ProviderError) as ei:
        await bounded(oauth.handle_callback(cq["code"], cq["state"]))
    assert ei.value.error == "invalid_state"

    # What the SDK's TokenHandler does: load the code, check client, redirect, PKCE.
    auth_code = await bounded(oauth.load_authorization_code(client, code))
    assert auth_code is not None
    assert auth_code.client_id == client.client_id
    assert str(auth_code.redirect_uri) == CLIENT_REDIRECT
    assert auth_code.redirect_uri_provided_explicitly
    assert auth_code.expires_at > time.time()
    sha = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    assert auth_code.code_challenge == sha

    token = await bounded(oauth.exchange_authorization_code(client, auth_code))
    assert token.token_type.lower() == "bearer"
    assert token.access_token and token.refresh_token
    assert token.access_token != token.refresh_token
    assert token.expires_in is not None and 0 < token.expires_in <= 3600

    # One-time code: a second exchange fails, and the code no longer loads.
    with pytest.raises(ProviderError) as ei:
        await bounded(oauth.exchange_authorization_code(client, auth_code))
    assert ei.value.error == "invalid_grant"
    assert await bounded(oauth.load_authorization_code(client, code)) is None
    return {"token": token, "code": code, "auth_code": auth_code, "user": user}


async def assert_access_valid(oauth: IssuerOAuthAuthorizationServer, access: str, user: str) -> AccessToken:
    async def load() -> tuple[AccessToken | None, UserInfo | None]:
        # Same task as load_access_token, so the context variable mxcp sets
        # for the request (the verified user) is visible here.
        clear_verified_user_info()
        token = await oauth.load_access_token(access)
        return token, get_verified_user_info()

    at, info = await bounded(load())
    assert at is not None, "access token does not validate"
    assert at.token == access
    assert at.expires_at is not None and at.expires_at > time.time()
    assert info is not None and info.user_id == f"uid-{user}" and info.username == user
    return at


async def assert_access_dead(oauth: IssuerOAuthAuthorizationServer, access: str) -> None:
    assert await bounded(oauth.load_access_token(access)) is None


async def refresh(
    oauth: IssuerOAuthAuthorizationServer, client: OAuthClientInformationFull, refresh_token: str
) -> Any:
    rt = await bounded(oauth.load_refresh_token(client, refresh_token))
    assert rt is not None, "refresh token does not load"
    assert rt.token == refresh_token and rt.client_id == client.client_id
    return await bounded(oauth.exchange_refresh_token(client, rt, []))


@pytest.mark.asyncio
async def test_oauth_flow_through_mxcp_server(installer: Installer, project: Project, idp: FakeIdP) -> None:
    server = build_server(project)
    stopped = False
    try:
        # ── the store mxcp built for itself ─────────────────────────────────
        oauth = server.oauth_server
        assert isinstance(oauth, IssuerOAuthAuthorizationServer)
        assert isinstance(server.session_manager, SessionManager)
        assert isinstance(server.auth_service, AuthService)
        assert server.auth_service.provider_adapter is idp
        assert oauth.session_manager is server.session_manager
        store = server.session_manager.token_store
        assert_store_is_expected(store, installer)
        await start_server(server)

        # ── clients: the configured one was persisted at init; DCR ─────────
        configured = await bounded(oauth.get_client(CONFIGURED_CLIENT_ID))
        assert configured is not None
        assert [str(u) for u in configured.redirect_uris or []] == [OTHER_REDIRECT]
        assert configured.client_secret == "configured-secret-value"
        assert configured.token_endpoint_auth_method == "client_secret_post"

        client_info = new_dcr_client()
        await bounded(oauth.register_client(client_info))
        client = await bounded(oauth.get_client(client_info.client_id))
        assert client is not None
        assert client.client_id == client_info.client_id
        assert client.client_secret == client_info.client_secret
        assert [str(u) for u in client.redirect_uris or []] == [CLIENT_REDIRECT]
        assert list(client.grant_types) == ["authorization_code", "refresh_token"]
        assert client.client_name == "Flow Test Client"
        assert await bounded(oauth.get_client("no-such-client")) is None

        no_redirect = client_info.model_copy(update={"client_id": "dcr-bad", "redirect_uris": None})
        with pytest.raises(AuthorizeError):
            await bounded(oauth.register_client(no_redirect))
        assert await bounded(oauth.get_client("dcr-bad")) is None

        # authorize refuses a redirect the client did not register.
        _, challenge = pkce_pair()
        with pytest.raises(AuthorizeError):
            await bounded(
                oauth.authorize(
                    client,
                    AuthorizationParams(
                        state="x",
                        scopes=None,
                        code_challenge=challenge,
                        redirect_uri=AnyUrl(OTHER_REDIRECT),
                        redirect_uri_provided_explicitly=True,
                    ),
                )
            )

        # ── login A: authorize, callback, exchange ─────────────────────────
        a = await login(oauth, idp, client, "alice")
        tok_a = a["token"]
        await assert_access_valid(oauth, tok_a.access_token, "alice")
        assert await bounded(oauth.load_access_token("mcp_" + "0" * 64)) is None
        assert await bounded(oauth.load_refresh_token(client, "mcp_refresh_bogus")) is None
        session_a = await bounded(store.load_session_by_token(tok_a.access_token))
        assert session_a is not None
        assert session_a.provider == "fakeidp"
        assert session_a.user_info.email == "alice@example.test"
        assert session_a.user_info.provider_scopes_granted == IDP_SCOPE.split()
        assert session_a.provider_access_token in idp.access_tokens
        assert session_a.provider_refresh_token in idp.refresh_tokens

        # A code issued for one client cannot be redeemed by another, and the
        # failed attempt does not burn it.  (Fresh login so the code is unused.)
        other = await bounded(oauth.get_client(CONFIGURED_CLIENT_ID))
        b = await _login_until_code(oauth, idp, client, "bob")
        with pytest.raises(TokenError):
            await bounded(oauth.load_authorization_code(other, b["code"]))  # redirect not registered
        with pytest.raises(ProviderError) as ei:
            await bounded(oauth.exchange_authorization_code(other, b["auth_code"]))
        assert ei.value.error == "invalid_grant"
        assert await bounded(oauth.load_authorization_code(client, b["code"])) is not None
        tok_b = await bounded(oauth.exchange_authorization_code(client, b["auth_code"]))
        await assert_access_valid(oauth, tok_b.access_token, "bob")

        # ── refresh rotates ────────────────────────────────────────────────
        provider_refresh_before = session_a.provider_refresh_token
        tok_a2 = await refresh(oauth, client, tok_a.refresh_token)
        assert tok_a2.access_token != tok_a.access_token
        assert tok_a2.refresh_token != tok_a.refresh_token
        assert tok_a2.expires_in is not None and 0 < tok_a2.expires_in <= 3600
        assert idp.calls["refresh_token"] == 1
        await assert_access_dead(oauth, tok_a.access_token)
        assert await bounded(oauth.load_refresh_token(client, tok_a.refresh_token)) is None
        with pytest.raises(TokenError) as te:
            await bounded(
                oauth.exchange_refresh_token(
                    client, RefreshToken(token=tok_a.refresh_token, client_id=client.client_id, scopes=[]), []
                )
            )
        assert te.value.error == "invalid_grant"
        assert idp.calls["refresh_token"] == 1  # refused before reaching the IdP
        await assert_access_valid(oauth, tok_a2.access_token, "alice")
        session_a2 = await bounded(store.load_session_by_token(tok_a2.access_token))
        assert session_a2 is not None
        assert session_a2.session_id != session_a.session_id
        assert session_a2.user_info.user_id == "uid-alice"
        assert session_a2.provider_refresh_token != provider_refresh_before
        assert session_a2.provider_refresh_token in idp.refresh_tokens
        assert await bounded(store.load_session_by_id(session_a.session_id)) is None
        by_refresh = await bounded(store.load_session_by_refresh_token(tok_a2.refresh_token))
        assert by_refresh is not None and by_refresh.session_id == session_a2.session_id

        # A second refresh of the new pair also works (the rotated provider
        # refresh token was persisted correctly).
        tok_a3 = await refresh(oauth, client, tok_a2.refresh_token)
        await assert_access_dead(oauth, tok_a2.access_token)
        await assert_access_valid(oauth, tok_a3.access_token, "alice")

        # ── revocation ─────────────────────────────────────────────────────
        at_a3 = await bounded(oauth.load_access_token(tok_a3.access_token))
        await bounded(oauth.revoke_token(at_a3))
        await assert_access_dead(oauth, tok_a3.access_token)
        assert await bounded(oauth.load_refresh_token(client, tok_a3.refresh_token)) is None
        with pytest.raises(TokenError):
            await bounded(
                oauth.exchange_refresh_token(
                    client, RefreshToken(token=tok_a3.refresh_token, client_id=client.client_id, scopes=[]), []
                )
            )

        # Revoking by refresh token kills the whole session too.
        c = await login(oauth, idp, client, "alice")
        tok_c = c["token"]
        rt_c = await bounded(oauth.load_refresh_token(client, tok_c.refresh_token))
        await bounded(oauth.revoke_token(rt_c))
        await assert_access_dead(oauth, tok_c.access_token)
        assert await bounded(oauth.load_refresh_token(client, tok_c.refresh_token)) is None

        # Bob's session is untouched by all of that.
        await assert_access_valid(oauth, tok_b.access_token, "bob")
        session_b = await bounded(store.load_session_by_token(tok_b.access_token))
        assert session_b is not None
        client_record = await bounded(store.load_client(client.client_id))
        assert client_record is not None

        # ── shut down, uninstall, look at the file with mxcp's own store ───
        await stop_server(server)
        stopped = True
        installer.uninstall()

        raw = raw_db_bytes(project.db_path)
        assert raw, "no SQLite file was written"
        for secret in (
            tok_b.access_token,
            tok_b.refresh_token,
            session_b.provider_access_token,
            session_b.provider_refresh_token,
            client.client_secret,
        ):
            assert secret and secret.encode() not in raw, "a token/secret is stored in plaintext"

        with sqlite3.connect(project.db_path) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"states", "auth_codes", "sessions", "oauth_clients"} <= tables

        stock = MXCP_SQLITE_STORE(project.db_path, encryption_key=project.key)
        await bounded(stock.initialize())
        try:
            got_b = await bounded(stock.load_session_by_token(tok_b.access_token))
            assert got_b is not None, "mxcp's store does not see the live session"
            assert_sessions_match(session_b, got_b)
            got_b_rt = await bounded(stock.load_session_by_refresh_token(tok_b.refresh_token))
            assert got_b_rt is not None and got_b_rt.session_id == session_b.session_id
            got_b_id = await bounded(stock.load_session_by_id(session_b.session_id))
            assert got_b_id is not None and got_b_id.access_token == tok_b.access_token
            for dead in (tok_a.access_token, tok_a2.access_token, tok_a3.access_token, tok_c.access_token):
                assert await bounded(stock.load_session_by_token(dead)) is None
            for dead in (tok_a.refresh_token, tok_a2.refresh_token, tok_a3.refresh_token, tok_c.refresh_token):
                assert await bounded(stock.load_session_by_refresh_token(dead)) is None
            for used in (a["code"], b["code"], c["code"]):
                assert await bounded(stock.load_auth_code(used)) is None
            got_client = await bounded(stock.load_client(client.client_id))
            assert got_client is not None
            assert got_client.model_dump(exclude={"created_at"}) == client_record.model_dump(exclude={"created_at"})
            assert got_client.created_at == pytest.approx(client_record.created_at, abs=1.5e-6)
            ids = sorted(r.client_id for r in await bounded(stock.list_clients()))
            assert ids == sorted([CONFIGURED_CLIENT_ID, client.client_id])
        finally:
            await bounded(stock.close())

        # ── restart on stock mxcp: Bob's tokens keep working ───────────────
        server2 = build_server(project)
        try:
            assert type(server2.session_manager.token_store) is MXCP_SQLITE_STORE
            await start_server(server2)
            oauth2 = server2.oauth_server
            await assert_access_valid(oauth2, tok_b.access_token, "bob")
            client2 = await bounded(oauth2.get_client(client.client_id))
            assert client2 is not None
            tok_b2 = await refresh(oauth2, client2, tok_b.refresh_token)
            await assert_access_dead(oauth2, tok_b.access_token)
            await assert_access_valid(oauth2, tok_b2.access_token, "bob")
        finally:
            await stop_server(server2)
    finally:
        if not stopped:
            await stop_server(server)


async def _login_until_code(
    oauth: IssuerOAuthAuthorizationServer,
    idp: FakeIdP,
    client: OAuthClientInformationFull,
    user: str,
) -> dict[str, Any]:
    """authorize -> IdP login -> callback, stopping before the token exchange."""
    _, challenge = pkce_pair()
    idp_url = await bounded(
        oauth.authorize(
            client,
            AuthorizationParams(
                state="s-" + user,
                scopes=None,
                code_challenge=challenge,
                redirect_uri=AnyUrl(CLIENT_REDIRECT),
                redirect_uri_provided_explicitly=True,
            ),
        )
    )
    cq = query_of(idp.login(idp_url, user))
    redirect = await bounded(oauth.handle_callback(cq["code"], cq["state"]))
    code = query_of(redirect)["code"]
    auth_code = await bounded(oauth.load_authorization_code(client, code))
    assert auth_code is not None
    return {"code": code, "auth_code": auth_code}


# ─────────────────────────────────────────────────────────────────────────────
# The same flow over HTTP, against the server's own Starlette app
# ─────────────────────────────────────────────────────────────────────────────

MCP_INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "flow-test", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def http_login(http: httpx.AsyncClient, idp: FakeIdP, client: dict[str, Any], user: str) -> dict[str, Any]:
    """GET /authorize -> IdP -> GET callback route; returns the client-side code and verifier."""
    verifier, challenge = pkce_pair()
    client_state = "cs-" + secrets.token_urlsafe(8)
    r = await bounded(
        http.get(
            "/authorize",
            params={
                "response_type": "code",
                "client_id": client["client_id"],
                "redirect_uri": CLIENT_REDIRECT,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "state": client_state,
            },
        )
    )
    assert r.status_code == 302, r.text
    idp_url = r.headers["location"]
    assert idp_url.startswith("https://idp.test/authorize?")
    assert query_of(idp_url)["state"] != client_state

    callback = idp.login(idp_url, user)
    assert callback.startswith(SERVER_BASE + CALLBACK_PATH + "?")
    r = await bounded(http.get(callback[len(SERVER_BASE) :]))
    assert r.status_code in (302, 303, 307), r.text
    back = r.headers["location"]
    assert back.startswith(CLIENT_REDIRECT + "?")
    bq = query_of(back)
    assert bq["state"] == client_state

    # Replaying the IdP redirect does not mint another code.  (mxcp lets the
    # ProviderError("invalid_state") escape the route: a 500, no redirect.)
    r = await bounded(http.get(callback[len(SERVER_BASE) :]))
    assert r.status_code >= 400 and "location" not in r.headers
    return {"code": bq["code"], "verifier": verifier}


def code_form(client: dict[str, Any], code: str, verifier: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CLIENT_REDIRECT,
        "code_verifier": verifier,
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
    }


def refresh_form(client: dict[str, Any], refresh_token: str) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
    }


async def mcp_status(http: httpx.AsyncClient, access: str | None) -> int:
    headers = dict(MCP_HEADERS)
    if access is not None:
        headers["Authorization"] = f"Bearer {access}"
    r = await bounded(http.post("/mcp", json=MCP_INIT, headers=headers))
    return r.status_code


@pytest.mark.asyncio
async def test_oauth_flow_over_http(installer: Installer, project: Project, idp: FakeIdP) -> None:
    server = mxcp_mcp.RAWMCP(site_config_path=project.root, json_response=True)
    stopped = False
    try:
        store = server.session_manager.token_store
        assert_store_is_expected(store, installer)
        await start_server(server)
        app = server.mcp.streamable_http_app()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=SERVER_BASE, follow_redirects=False) as http:
            # The MCP session manager's task group (the app's lifespan under uvicorn).
            async with server.mcp.session_manager.run():
                # ── dynamic client registration ────────────────────────────
                r = await bounded(
                    http.post(
                        "/register",
                        json={
                            "redirect_uris": [CLIENT_REDIRECT],
                            "token_endpoint_auth_method": "client_secret_post",
                            "grant_types": ["authorization_code", "refresh_token"],
                            "response_types": ["code"],
                            "client_name": "HTTP Flow Client",
                        },
                    )
                )
                assert r.status_code == 201, r.text
                client = r.json()
                assert client["client_id"] and client["client_secret"]

                # ── authorize, IdP, callback, token ────────────────────────
                a = await http_login(http, idp, client, "alice")
                bad = code_form(client, a["code"], "x" * 43)
                r = await bounded(http.post("/token", data=bad))
                assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
                wrong_secret = dict(code_form(client, a["code"], a["verifier"]), client_secret="nope")
                r = await bounded(http.post("/token", data=wrong_secret))
                assert r.status_code == 401
                # Neither failure burned the code.
                r = await bounded(http.post("/token", data=code_form(client, a["code"], a["verifier"])))
                assert r.status_code == 200, r.text
                tok_a = r.json()
                assert tok_a["token_type"].lower() == "bearer"
                assert tok_a["access_token"] and tok_a["refresh_token"]
                assert 0 < tok_a["expires_in"] <= 3600
                # One-time code.
                r = await bounded(http.post("/token", data=code_form(client, a["code"], a["verifier"])))
                assert r.status_code == 400 and r.json()["error"] == "invalid_grant"

                # ── bearer validation in front of /mcp ─────────────────────
                assert await mcp_status(http, None) == 401
                assert await mcp_status(http, "mcp_" + "0" * 64) == 401
                assert await mcp_status(http, tok_a["access_token"]) == 200
                # A refresh token is not an access token.
                assert await mcp_status(http, tok_a["refresh_token"]) == 401

                # ── refresh rotates ────────────────────────────────────────
                r = await bounded(http.post("/token", data=refresh_form(client, tok_a["refresh_token"])))
                assert r.status_code == 200, r.text
                tok_a2 = r.json()
                assert tok_a2["access_token"] != tok_a["access_token"]
                assert tok_a2["refresh_token"] != tok_a["refresh_token"]
                assert await mcp_status(http, tok_a["access_token"]) == 401
                assert await mcp_status(http, tok_a2["access_token"]) == 200
                r = await bounded(http.post("/token", data=refresh_form(client, tok_a["refresh_token"])))
                assert r.status_code == 400 and r.json()["error"] == "invalid_grant"

                # ── revocation ─────────────────────────────────────────────
                # mxcp 0.12.3 builds AuthSettings without revocation_options, so
                # the SDK serves no /revoke route; revoke the way that handler
                # would (load the token, then provider.revoke_token) and check
                # the bearer middleware stops accepting it.
                oauth = server.oauth_server
                client_info = await bounded(oauth.get_client(client["client_id"]))
                rt = await bounded(oauth.load_refresh_token(client_info, tok_a2["refresh_token"]))
                assert rt is not None
                await bounded(oauth.revoke_token(rt))
                assert await mcp_status(http, tok_a2["access_token"]) == 401
                r = await bounded(http.post("/token", data=refresh_form(client, tok_a2["refresh_token"])))
                assert r.status_code == 400

                # A second user's session stays live for the on-disk check.
                b = await http_login(http, idp, client, "bob")
                r = await bounded(http.post("/token", data=code_form(client, b["code"], b["verifier"])))
                assert r.status_code == 200, r.text
                tok_b = r.json()
                assert await mcp_status(http, tok_b["access_token"]) == 200
                session_b = await bounded(store.load_session_by_token(tok_b["access_token"]))
                assert session_b is not None and session_b.user_info.user_id == "uid-bob"

        await stop_server(server)
        stopped = True
        installer.uninstall()

        stock = MXCP_SQLITE_STORE(project.db_path, encryption_key=project.key)
        await bounded(stock.initialize())
        try:
            got_b = await bounded(stock.load_session_by_token(tok_b["access_token"]))
            assert got_b is not None, "mxcp's store does not see the live session"
            assert_sessions_match(session_b, got_b)
            for dead in (tok_a["access_token"], tok_a2["access_token"]):
                assert await bounded(stock.load_session_by_token(dead)) is None
            got_client = await bounded(stock.load_client(client["client_id"]))
            assert got_client is not None
            assert got_client.client_secret == client["client_secret"]
            assert got_client.redirect_uris == [CLIENT_REDIRECT]
        finally:
            await bounded(stock.close())
    finally:
        if not stopped:
            await stop_server(server)
