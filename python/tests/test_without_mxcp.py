"""Without mxcp installed, the package's own dataclasses go in and out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = r'''
import asyncio, sys, time
sys.modules["mxcp"] = None  # makes `import mxcp` fail, as if it were not installed
from cryptography.fernet import Fernet
import tokenstore
from tokenstore import (AuthCodeRecord, BufferedTokenStore, CachingTokenStore, ClientRecord,
                        SqliteTokenStore, StateRecord, StoredSession, UserInfo)
import dataclasses

assert tokenstore.MXCP_MODELS is False
assert dataclasses.is_dataclass(StoredSession)

async def main(path):
    key = Fernet.generate_key()
    now = round(time.time(), 6)
    store = CachingTokenStore(BufferedTokenStore(SqliteTokenStore(path, key)))
    await store.initialize()
    user = UserInfo(provider="p", user_id="u", username="n", raw_profile={"k": ["v", 1, None, 2.5]})
    s = StoredSession(session_id="sid", provider="p", user_info=user, access_token="tok",
                      refresh_token="ref", access_expires_at=now + 60, refresh_expires_at=now + 120,
                      created_at=now, issued_at=now)
    st = StateRecord(state="st", client_id="c", provider_scopes_requested=["a"], expires_at=now + 60, created_at=now)
    code = AuthCodeRecord(code="code", session_id="sid", mxcp_scopes=["x"], expires_at=now + 60, created_at=now)
    c = ClientRecord(client_id="c", redirect_uris=["https://x/cb"], grant_types=["authorization_code"],
                     response_types=["code"], token_endpoint_auth_method="none", created_at=now)
    await store.store_session(s)
    await store.store_state(st)
    await store.store_auth_code(code)
    await store.store_client(c)
    assert await store.load_session_by_token("tok") == s
    assert await store.load_session_by_refresh_token("ref") == s
    assert await store.consume_state("st") == st
    assert await store.consume_state("st") is None
    assert await store.load_auth_code("code") == code
    assert await store.try_delete_auth_code("code") is True
    assert await store.list_clients() == [c]
    try:
        await store.store_session(st)
    except TypeError as e:
        assert "StoredSession" in str(e), e
    else:
        raise AssertionError("a StateRecord was stored as a session")
    await store.close()
    print("ok")

asyncio.run(main(sys.argv[1]))
'''


def test_own_dataclasses_round_trip_without_mxcp(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "no-mxcp.db")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # not python/, where `tokenstore` is the uncompiled source
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
