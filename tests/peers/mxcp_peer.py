"""Times mxcp 0.12.3's SqliteTokenStore on the records peer_ops.rs times here.

One caller, one call at a time: store_session for N login sessions, then
load_session_by_token for each. Prints one JSON object: microseconds per call,
for mxcp as it ships (SQLite's default rollback journal, synchronous FULL) and
on a file switched to WAL beforehand (the journal mode persists in the file;
synchronous stays FULL), since tokenstore's files are WAL.

Run through tests/peers/mxcp_peer.sh, which makes the virtualenv.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from cryptography.fernet import Fernet
from mxcp.sdk.auth.contracts import UserInfo
from mxcp.sdk.auth.storage import SqliteTokenStore, StoredSession

MIX = 0x9E3779B97F4A7C15


def session(n: int, now: float) -> StoredSession:
    """The session peer_ops.rs's `session(n, now)` builds."""
    return StoredSession(
        session_id=f"sid-{n:010d}",
        provider="github",
        user_info=UserInfo(
            provider="github",
            user_id=f"user-{n}",
            username=f"login-{n}",
            email=f"user{n}@example.com",
            provider_scopes_granted=["openid", "email"],
        ),
        access_token=f"at-{n:010d}-{(n * MIX) % 2**128:032x}",
        refresh_token=f"rt-{n:010d}",
        access_expires_at=now + 3600,
        refresh_expires_at=now + 86400,
        created_at=now,
    )


async def measure(path: Path, n: int) -> dict[str, float]:
    store = SqliteTokenStore(path, encryption_key=Fernet.generate_key().decode())
    await store.initialize()
    now = time.time()
    sessions = [session(i, now) for i in range(n)]
    start = time.perf_counter()
    for s in sessions:
        await store.store_session(s)
    stored = time.perf_counter() - start
    start = time.perf_counter()
    for s in sessions:
        found = await store.load_session_by_token(s.access_token)
        assert found is not None and found.session_id == s.session_id
    loaded = time.perf_counter() - start
    await store.close()
    return {
        "store_session_us": stored * 1e6 / n,
        "load_session_by_token_us": loaded * 1e6 / n,
    }


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        shipped = await measure(Path(tmp) / "shipped.sqlite", n)
        wal_path = Path(tmp) / "wal.sqlite"
        conn = sqlite3.connect(wal_path)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        conn.close()
        assert mode == "wal", mode
        wal = await measure(wal_path, n)
    print(json.dumps({"sessions": n, "mxcp": shipped, "mxcp_wal": wal}))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
