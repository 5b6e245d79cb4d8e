"""No token, secret, key, password or user identifier in reprs, errors, logs or stats."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

import tokenstore
from tokenstore import (
    BufferedTokenStore,
    CachingTokenStore,
    ClientRecord,
    PostgresTokenStore,
    SqliteTokenStore,
    StateRecord,
    StoredSession,
    UserInfo,
)

ACCESS = "ACCESS-9f8e7d6c5b4a"
REFRESH = "REFRESH-1a2b3c4d5e6f"
PROVIDER_TOKEN = "gho_PROVIDER-77aa88bb"
VERIFIER = "VERIFIER-0c0ffee0"
CLIENT_SECRET = "CLIENTSECRET-deadbeef"
USER_ID = "USERID-424242"
EMAIL = "octo-secret@example.com"
PASSWORD = "PGPASSWORD-s3cr3t"
SECRETS = (ACCESS, REFRESH, PROVIDER_TOKEN, VERIFIER, CLIENT_SECRET, USER_ID, EMAIL, PASSWORD)


def leaks(text: str, key: str) -> list[str]:
    return [s for s in (*SECRETS, key) if s in text]


@pytest.mark.asyncio
async def test_nothing_secret_in_reprs_errors_logs_or_stats(tmp_path: Path, caplog) -> None:
    key = Fernet.generate_key().decode()
    caplog.set_level(logging.DEBUG)
    now = round(time.time(), 6)
    texts: list[str] = []
    store = CachingTokenStore(BufferedTokenStore(SqliteTokenStore(tmp_path / "s.db", key)))
    await store.initialize()
    user = UserInfo(provider="github", user_id=USER_ID, username="octo", email=EMAIL)
    session = StoredSession(
        session_id="sid",
        provider="github",
        user_info=user,
        access_token=ACCESS,
        refresh_token=REFRESH,
        provider_access_token=PROVIDER_TOKEN,
        access_expires_at=now + 60,
        created_at=now,
    )
    await store.store_session(session)
    await store.store_state(
        StateRecord(state="st", provider_code_verifier=VERIFIER, expires_at=now + 60, created_at=now)
    )
    await store.store_client(
        ClientRecord(
            client_id="c1",
            client_secret=CLIENT_SECRET,
            redirect_uris=["https://x/cb"],
            grant_types=["authorization_code"],
            response_types=["code"],
            created_at=now,
        )
    )
    assert (await store.load_session_by_token(ACCESS)) == session.model_copy(
        update={"issued_at": now}
    )
    # Refused inputs: the messages name the field, never the value.
    bad = [
        session.model_copy(update={"access_token": ACCESS + "\x00"}),
        session.model_copy(update={"access_token": ACCESS * 2000}),
        session.model_copy(update={"session_id": ""}),
    ]
    for record in bad:
        with pytest.raises(ValueError) as err:
            await store.store_session(record)
        texts.append(str(err.value))
    with pytest.raises(ValueError) as err:
        await store.load_session_by_token(ACCESS * 2000)
    texts.append(str(err.value))
    texts += [repr(store), repr(store.inner), repr(store.inner.inner), str(store.stats())]
    await store.close()
    with pytest.raises(tokenstore.StoreClosedError) as err:
        await store.load_session_by_token(ACCESS)
    texts.append(str(err.value))

    # A PostgreSQL URL with a password: neither the repr nor the connection
    # error quotes it (nothing listens on this socket directory).
    url = f"postgresql://alice:{PASSWORD}@/db?host={tmp_path}&connect_timeout=2"
    pg = PostgresTokenStore(url, key)
    texts.append(repr(pg))
    with pytest.raises(tokenstore.TokenStoreError) as err:
        await pg.initialize()
    texts.append(str(err.value))

    texts += [r.getMessage() for r in caplog.records]
    joined = "\n".join(texts)
    assert leaks(joined, key) == [], joined
    # The checks saw real text: every refused input and the closed store said why.
    assert "the store is closed" in joined
    assert sum("access_token" in t for t in texts) >= 2


def test_our_records_hide_secrets_in_repr_without_mxcp(tmp_path: Path) -> None:
    """Without mxcp, the package's dataclasses are used; their repr hides
    tokens and user fields (run in a subprocess that cannot import mxcp)."""
    import subprocess
    import sys

    script = f"""
import sys
sys.modules["mxcp"] = None  # makes `import mxcp` fail
import tokenstore
assert tokenstore.MXCP_MODELS is False
from tokenstore import StoredSession, UserInfo, StateRecord, ClientRecord
u = UserInfo(provider="p", user_id={USER_ID!r}, username="octo", email={EMAIL!r})
s = StoredSession(session_id="sid", provider="p", user_info=u, access_token={ACCESS!r},
                  refresh_token={REFRESH!r}, access_expires_at=2e9, created_at=1e9)
st = StateRecord(state="st", provider_code_verifier={VERIFIER!r}, expires_at=2e9, created_at=1e9)
c = ClientRecord(client_id="c", client_secret={CLIENT_SECRET!r}, redirect_uris=[], grant_types=[],
                 response_types=[], created_at=1e9)
print(repr(s), repr(st), repr(c))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path
    ).stdout
    assert "session_id='sid'" in out
    assert leaks(out, "no-key") == [], out
