"""Databases written by mxcp's SqliteTokenStore read identically through ours, and back.

With odd strings everywhere a string goes: quotes and backslashes, SQL-ish text,
CJK, emoji with ZWJ sequences, every NUL-free control character, a ~1 MB raw
profile, and empty strings where the contract allows them (not in keys: ours
refuses empty keys, and an empty refresh token means "none" to mxcp).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tokenstore
from mxcp.sdk.auth.storage import AuthCodeRecord, ClientRecord, StateRecord
from mxcp.sdk.auth.storage import SqliteTokenStore as MxcpSqliteTokenStore

from stacks import client, new_key, now, session, user_info

pytestmark = pytest.mark.asyncio

CONTROL = "".join(chr(c) for c in range(1, 32)) + "\x7f"
ODD = [
    "quotes ' \" \\ \\\\ '' \"\" \\' end",
    "'; DROP TABLE sessions; --",
    "\"); DELETE FROM oauth_clients WHERE ('1'='1",
    "漢字・かな・カナ・한국어・中文",
    "emoji 😀 👩‍👩‍👧‍👦 🏳️‍🌈 👍🏽 🧑🏿‍💻 ❤️‍🔥",
    f"ctl{CONTROL}ctl",
    "tab\tnewline\ncr\r",
    "% _ LIKE wildcards * ? [a-z]",
    "\u2028\u2029\ufeff\u200b bidi \u202e reversed",
    "x" * 3000,
]
EMPTY_OK = ""  # for non-key text fields


def odd_states(t: float) -> list[StateRecord]:
    out = []
    for i, s in enumerate(ODD):
        out.append(
            StateRecord(
                state=f"st{i}-{s}",
                client_id=s,
                redirect_uri=f"https://app.example/cb?x={s}",
                code_challenge=s,
                code_challenge_method="S256",
                provider_code_verifier=s,
                client_state=s,
                provider_scopes_requested=[s, EMPTY_OK, "openid"],
                expires_at=round(t + 600 + i, 6),
                created_at=t,
            )
        )
    out.append(
        StateRecord(
            state="st-empty-fields",
            client_id=EMPTY_OK,
            redirect_uri=EMPTY_OK,
            code_challenge=EMPTY_OK,
            code_challenge_method=EMPTY_OK,
            provider_code_verifier=EMPTY_OK,
            client_state=EMPTY_OK,
            provider_scopes_requested=[],
            expires_at=round(t + 600, 6),
            created_at=t,
        )
    )
    return out


def odd_codes(t: float) -> list[AuthCodeRecord]:
    out = []
    for i, s in enumerate(ODD):
        out.append(
            AuthCodeRecord(
                code=f"cd{i}-{s}",
                session_id=f"sid{i}-{s}",
                client_id=s,
                redirect_uri=s,
                code_challenge=s,
                code_challenge_method="plain",
                mxcp_scopes=[s, "mxcp:access"],
                expires_at=round(t + 600 + i, 6),
                created_at=t,
            )
        )
    out.append(
        AuthCodeRecord(
            code="cd-empty-fields",
            session_id="sid-empty-fields",
            client_id=EMPTY_OK,
            redirect_uri=EMPTY_OK,
            code_challenge=EMPTY_OK,
            code_challenge_method=EMPTY_OK,
            mxcp_scopes=[],
            expires_at=round(t + 600, 6),
            created_at=t,
        )
    )
    return out


def big_profile() -> dict:
    """A nested profile of about 1 MB of strings."""
    chunk = "".join(ODD[:9]) + "abcdefghij" * 20
    return {
        "login": "big",
        "numbers": [0, -1, 2**53, -(2**53), 0.1, 1.5e300, -2.25e-300, True, False, None],
        "level1": {
            "level2": {
                "level3": {f"k{i}-{ODD[i % len(ODD)][:20]}": chunk for i in range(1500)},
                "list": [chunk] * 200,
            }
        },
        ODD[1]: {ODD[3]: [ODD[4], {ODD[5]: ODD[0]}]},
    }


def odd_sessions(t: float, *, encrypted: bool = True):
    out = []
    for i, s in enumerate(ODD):
        out.append(
            session(
                f"sid{i}-{s}",
                access=f"at{i}-{s}",
                refresh=f"rt{i}-{s}",
                t=t,
                provider=f"prov-{s}",
                user_info=user_info(
                    user_id=f"u{i}-{s}",
                    provider=s,
                    username=s,
                    email=s,
                    name=s,
                    avatar_url=s,
                    raw_profile={"s": s, "list": [s, s], "nested": {s: s}},
                    provider_scopes_granted=[s],
                    capabilities=[s, EMPTY_OK],
                ),
                provider_access_token=f"pat-{s}",
                provider_refresh_token=f"prt-{s}",
            )
        )
    out.append(
        session(
            "sid-big-profile",
            access="at-big-profile",
            refresh="rt-big-profile",
            t=t,
            user_info=user_info(user_id="big", raw_profile=big_profile()),
        )
    )
    out.append(
        session(
            "sid-empty-fields",
            access="at-empty-fields",
            refresh=None,
            t=t,
            user_info=user_info(
                user_id=EMPTY_OK,
                provider=EMPTY_OK,
                username=EMPTY_OK,
                email=EMPTY_OK,
                name=EMPTY_OK,
                avatar_url=EMPTY_OK,
                raw_profile={},
                provider_scopes_granted=[],
                capabilities=[],
            ),
            # mxcp reads an empty provider token back as None in plaintext mode
            # (it tests the stored text's truth), so only with encryption.
            provider_access_token=EMPTY_OK if encrypted else None,
            provider_refresh_token=EMPTY_OK if encrypted else None,
            provider_expires_at=None,
        )
    )
    out.append(
        session(
            "sid-no-optionals",
            access="at-no-optionals",
            refresh=None,
            t=t,
            user_info=user_info(
                email=None, name=None, avatar_url=None, raw_profile=None
            ),
            provider_access_token=None,
            provider_refresh_token=None,
            provider_expires_at=None,
        )
    )
    return out


def odd_clients(t: float, *, encrypted: bool = True) -> list[ClientRecord]:
    out = []
    for i, s in enumerate(ODD):
        out.append(
            client(
                f"cl{i}-{s}",
                t=t,
                client_secret=f"secret-{s}",
                redirect_uris=[f"https://app.example/{s}", s],
                grant_types=["authorization_code", s],
                response_types=["code", s],
                scope=s,
                client_name=s,
            )
        )
    out.append(
        client(
            "cl-empty-fields",
            t=t,
            client_secret=EMPTY_OK if encrypted else None,
            token_endpoint_auth_method=None,
            redirect_uris=[],
            grant_types=[],
            response_types=[],
            scope=EMPTY_OK,
            client_name=EMPTY_OK,
        )
    )
    return out


class Records:
    def __init__(self, *, encrypted: bool = True) -> None:
        t = now()
        self.states = odd_states(t)
        self.codes = odd_codes(t)
        self.sessions = odd_sessions(t, encrypted=encrypted)
        self.clients = odd_clients(t, encrypted=encrypted)


async def write_all(store, records: Records) -> None:
    for r in records.states:
        await store.store_state(r)
    for r in records.codes:
        await store.store_auth_code(r)
    for r in records.sessions:
        await store.store_session(r)
    for r in records.clients:
        await store.store_client(r)


async def check_all(store, records: Records) -> None:
    for r in records.codes:
        assert await store.load_auth_code(r.code) == r, r.code[:40]
    for r in records.sessions:
        assert await store.load_session_by_token(r.access_token) == r, r.session_id[:40]
        assert await store.load_session_by_id(r.session_id) == r, r.session_id[:40]
        if r.refresh_token is not None:
            assert await store.load_session_by_refresh_token(r.refresh_token) == r, r.session_id[:40]
    for r in records.clients:
        assert await store.load_client(r.client_id) == r, r.client_id[:40]
    listed = sorted(await store.list_clients(), key=lambda c: c.client_id)
    assert listed == sorted(records.clients, key=lambda c: c.client_id)
    # the one-time calls last: they change the database
    for r in records.states:
        assert await store.consume_state(r.state) == r, r.state[:40]
        assert await store.consume_state(r.state) is None
    for r in records.codes:
        assert await store.try_delete_auth_code(r.code) is True, r.code[:40]


def ours(path: Path, key, **kw):
    return tokenstore.SqliteTokenStore(path, key, **kw)


def theirs(path: Path, key, **kw):
    return MxcpSqliteTokenStore(path, key, **kw)


MODES = {
    "encrypted": lambda: (new_key(), {}),
    "plaintext": lambda: (None, {"allow_plaintext_tokens": True}),
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("direction", ["mxcp_writes_ours_reads", "ours_writes_mxcp_reads"])
async def test_database_reads_identically(tmp_path, mode, direction):
    key, kw = MODES[mode]()
    records = Records(encrypted=mode == "encrypted")
    path = tmp_path / "shared.sqlite"
    writer_make, reader_make = (theirs, ours) if direction.startswith("mxcp") else (ours, theirs)

    writer = writer_make(path, key, **kw)
    await writer.initialize()
    try:
        await write_all(writer, records)
    finally:
        await writer.close()

    reader = reader_make(path, key, **kw)
    await reader.initialize()
    try:
        await check_all(reader, records)
        # the reader deletes through the other's schema too
        victim = records.sessions[0]
        await reader.delete_session_by_token(victim.access_token)
        assert await reader.load_session_by_id(victim.session_id) is None
        await reader.delete_client(records.clients[0].client_id)
        assert await reader.load_client(records.clients[0].client_id) is None
    finally:
        await reader.close()

    # and the writer sees the reader's deletions
    again = writer_make(path, key, **kw)
    await again.initialize()
    try:
        assert await again.load_session_by_token(records.sessions[0].access_token) is None
        assert await again.load_session_by_token(records.sessions[1].access_token) == records.sessions[1]
        assert await again.load_client(records.clients[0].client_id) is None
        assert await again.consume_state(records.states[0].state) is None
    finally:
        await again.close()


async def test_both_open_at_once_see_each_others_writes(tmp_path):
    key = new_key()
    path = tmp_path / "live.sqlite"
    mine = ours(path, key)
    await mine.initialize()
    other = theirs(path, key)
    await other.initialize()
    try:
        s1 = session("live-1", access="at-live-1", refresh="rt-live-1")
        await mine.store_session(s1)
        assert await other.load_session_by_refresh_token("rt-live-1") == s1
        s2 = session("live-2", access="at-live-2")
        await other.store_session(s2)
        assert await mine.load_session_by_token("at-live-2") == s2
        # rotation through mxcp is seen by ours
        s1b = session("live-1", access="at-live-1b", refresh="rt-live-1b")
        await other.store_session(s1b)
        assert await mine.load_session_by_token("at-live-1") is None
        assert await mine.load_session_by_refresh_token("rt-live-1") is None
        assert await mine.load_session_by_id("live-1") == s1b
    finally:
        await other.close()
        await mine.close()


async def mxcp_database(path: Path, key) -> tuple:
    s = session("sess-key", access="at-key", refresh="rt-key")
    c = client("client-key")
    st = StateRecord(state="state-key", expires_at=round(now() + 600, 6), created_at=now())
    store = theirs(path, key)
    await store.initialize()
    await store.store_session(s)
    await store.store_client(c)
    await store.store_state(st)
    await store.close()
    return s, c, st


@pytest.mark.parametrize("reader", ["ours", "mxcp"])
@pytest.mark.parametrize("which", ["wrong_key", "no_key"])
async def test_without_the_right_key_token_reads_fail(tmp_path, reader, which):
    path = tmp_path / "keyed.sqlite"
    s, c, st = await mxcp_database(path, new_key())
    key = new_key() if which == "wrong_key" else None
    store = (ours if reader == "ours" else theirs)(path, key)
    await store.initialize()
    try:
        with pytest.raises(ValueError):
            await store.load_session_by_token("at-key")
        with pytest.raises(ValueError):
            await store.load_session_by_id("sess-key")
        with pytest.raises(ValueError):
            await store.load_session_by_refresh_token("rt-key")
        if reader == "mxcp":
            # mxcp treats a client it cannot decrypt as missing (fail-closed)
            assert await store.load_client("client-key") is None
            assert await store.list_clients() == []
        else:
            # ours raises, as for the session tokens (differs from mxcp; never garbage)
            with pytest.raises(ValueError):
                await store.load_client("client-key")
            with pytest.raises(ValueError):
                await store.list_clients()
        # states hold no tokens: they read fine
        assert await store.consume_state("state-key") == st
    finally:
        await store.close()


async def test_right_key_after_wrong_key_still_reads(tmp_path):
    path = tmp_path / "keyed.sqlite"
    key = new_key()
    s, c, _ = await mxcp_database(path, key)
    wrong = ours(path, new_key())
    await wrong.initialize()
    with pytest.raises(ValueError):
        await wrong.load_session_by_token("at-key")
    await wrong.close()
    right = theirs(path, key)
    await right.initialize()
    try:
        assert await right.load_session_by_token("at-key") == s
        assert await right.load_client("client-key") == c
    finally:
        await right.close()


@pytest.mark.parametrize("maker", ["ours", "mxcp"])
async def test_key_accepted_as_str_or_bytes(tmp_path, maker):
    key = new_key()
    make = ours if maker == "ours" else theirs
    first = make(tmp_path / "k.sqlite", key)
    await first.initialize()
    s = session("sess-kb")
    await first.store_session(s)
    await first.close()
    second = make(tmp_path / "k.sqlite", key.decode("ascii"))
    await second.initialize()
    try:
        assert await second.load_session_by_id("sess-kb") == s
    finally:
        await second.close()


@pytest.mark.parametrize("maker", ["ours", "mxcp"])
async def test_no_key_refuses_tokens_without_plaintext_opt_in(tmp_path, maker):
    store = (ours if maker == "ours" else theirs)(tmp_path / "nokey.sqlite", None)
    await store.initialize()
    try:
        with pytest.raises(ValueError):
            await store.store_session(session("sess-nokey", access="at-nokey"))
        with pytest.raises(ValueError):
            await store.store_client(client("client-nokey"))
        assert await store.load_session_by_id("sess-nokey") is None
        assert await store.load_client("client-nokey") is None
        # a client without a secret holds no token
        bare = client("client-nosecret", client_secret=None)
        await store.store_client(bare)
        assert await store.load_client("client-nosecret") == bare
    finally:
        await store.close()


@pytest.mark.parametrize("reader", ["ours", "mxcp"])
async def test_plaintext_reader_on_an_encrypted_database(tmp_path, reader):
    """allow_plaintext_tokens=True without a key on an encrypted mxcp database:
    mxcp hands out the Fernet ciphertext as the token; ours refuses the row."""
    path = tmp_path / "keyed.sqlite"
    s, _, _ = await mxcp_database(path, new_key())
    store = (ours if reader == "ours" else theirs)(path, None, allow_plaintext_tokens=True)
    await store.initialize()
    try:
        if reader == "mxcp":
            got = await store.load_session_by_token("at-key")
            assert got is not None and got.access_token != s.access_token
            assert got.access_token.startswith("gAAAAA")  # the ciphertext
        else:
            with pytest.raises(tokenstore.TokenStoreError):
                await store.load_session_by_token("at-key")
            with pytest.raises(tokenstore.TokenStoreError):
                await store.load_session_by_refresh_token("rt-key")
    finally:
        await store.close()
