"""tokenstore against mxcp's SqliteTokenStore, per call, in one run.

    python bench.py [--sessions N] [--rounds R]

For store_session and load_session_by_token (cold: first read after the
store; warm: read again), one coroutine at a time and 64 concurrent
(asyncio.gather), on: mxcp's SqliteTokenStore as shipped, ours bare, cached,
buffered (ack="queued"), and cached over buffered. Every store has its own
fresh SQLite file in one temporary directory, the same Fernet key and the
same sessions. Prints microseconds per call (the best of R rounds, each
round a fresh file) and the ratio mxcp / ours. Also measures, on its own,
the floor any Python binding pays: a no-op ``async def`` awaited, an
awaited native call that returns at once (a negative cache hit: no record),
a bare SQLite load of an absent token (the round trip through the
connection thread and the event loop, no record), and building one
pydantic ``StoredSession`` (what every load that returns a record pays).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

# Python puts this script's folder first on sys.path, and this folder holds the
# package's uncompiled source (python/tokenstore): benchmark the installed one.
_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]

from cryptography.fernet import Fernet
from mxcp.sdk.auth.storage import SqliteTokenStore as MxcpStore

import tokenstore
from tokenstore import (
    BufferedTokenStore,
    CachingTokenStore,
    SqliteTokenStore,
    StoredSession,
    UserInfo,
)

KEY = Fernet.generate_key()
CONCURRENCY = 64


def sessions(n: int, tag: str) -> list[StoredSession]:
    now = round(time.time(), 6)
    return [
        StoredSession(
            session_id=f"{tag}-sid-{i}",
            provider="github",
            user_info=UserInfo(
                provider="github",
                user_id=f"user-{i}",
                username=f"octo{i}",
                email=f"octo{i}@example.com",
                raw_profile={"login": f"octo{i}", "id": i, "plan": {"name": "pro"}},
                provider_scopes_granted=["read:user"],
            ),
            access_token=f"{tag}-access-{i}-" + "x" * 32,
            refresh_token=f"{tag}-refresh-{i}-" + "y" * 32,
            provider_access_token=f"gho_{i}",
            access_expires_at=now + 3600,
            refresh_expires_at=now + 86400,
            created_at=now,
        )
        for i in range(n)
    ]


STACKS = {
    "mxcp": lambda p: MxcpStore(p, KEY),
    "bare": lambda p: SqliteTokenStore(p, KEY),
    "cached": lambda p: CachingTokenStore(SqliteTokenStore(p, KEY)),
    "buffered": lambda p: BufferedTokenStore(SqliteTokenStore(p, KEY)),
    "cached+buffered": lambda p: CachingTokenStore(BufferedTokenStore(SqliteTokenStore(p, KEY))),
}


async def timed_serial(fn, items) -> float:
    t = time.perf_counter()
    for item in items:
        await fn(item)
    return (time.perf_counter() - t) / len(items) * 1e6


async def timed_concurrent(fn, items) -> float:
    t = time.perf_counter()
    for start in range(0, len(items), CONCURRENCY):
        await asyncio.gather(*(fn(x) for x in items[start : start + CONCURRENCY]))
    return (time.perf_counter() - t) / len(items) * 1e6


async def one_round(name: str, directory: Path, n: int, rnd: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for mode, timer in (("1", timed_serial), ("64", timed_concurrent)):
        store = STACKS[name](directory / f"{name}-{mode}-{rnd}.db")
        await store.initialize()
        items = sessions(n, f"{name}{mode}r{rnd}")
        tokens = [s.access_token for s in items]
        out[f"store_session x{mode}"] = await timer(store.store_session, items)
        out[f"load cold x{mode}"] = await timer(store.load_session_by_token, tokens)
        out[f"load warm x{mode}"] = await timer(store.load_session_by_token, tokens)
        found = await store.load_session_by_token(tokens[-1])
        assert found is not None and found.session_id == items[-1].session_id
        await store.close()
    return out


async def overhead(rounds: int) -> dict[str, float]:
    async def noop(_x: object) -> None:
        return None

    n = 20_000
    best_noop = min([await timed_serial(noop, range(n)) for _ in range(rounds)])
    with tempfile.TemporaryDirectory() as d:
        store = CachingTokenStore(SqliteTokenStore(Path(d) / "o.db", KEY), negative_ttl=2.0)
        await store.initialize()
        # A negative hit: the cache answers in the first poll and there is no
        # record to convert, so this is the call + awaitable floor.
        await store.load_session_by_token("absent")
        best_call = min(
            [await timed_serial(store.load_session_by_token, ["absent"] * n) for _ in range(rounds)]
        )
        await store.close()
        # A bare SQLite load of an absent token: the whole round trip to the
        # connection thread and back through the loop, with no record to build.
        bare = SqliteTokenStore(Path(d) / "o2.db", KEY)
        await bare.initialize()
        best_miss = min(
            [await timed_serial(bare.load_session_by_token, [f"absent-{i}" for i in range(2000)]) for _ in range(rounds)]
        )
        await bare.close()
    return {
        "await of a no-op async def": best_noop,
        "awaited native call, answered at once": best_call,
        "bare SQLite load of an absent token": best_miss,
    }


def construct_us() -> float:
    """What converting one loaded session to mxcp's pydantic model costs."""
    s = sessions(1, "c")[0]
    fields = {k: getattr(s, k) for k in type(s).model_fields}
    user = {k: getattr(s.user_info, k) for k in type(s.user_info).model_fields}
    n = 20_000
    t = time.perf_counter()
    for _ in range(n):
        StoredSession(**{**fields, "user_info": UserInfo(**user)})
    return (time.perf_counter() - t) / n * 1e6


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=256, help="sessions per measurement (default 256)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the best is kept (default 3)")
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as d:
        for rnd in range(args.rounds):
            for name in STACKS:  # interleaved, so noise hits every stack alike
                r = await one_round(name, Path(d), args.sessions, rnd)
                best = results.setdefault(name, r)
                for k, v in r.items():
                    best[k] = min(best[k], v)
    ops = list(results["mxcp"])
    names = list(STACKS)
    print(f"tokenstore {tokenstore.__version__} vs mxcp SqliteTokenStore: us per call, best of {args.rounds} rounds, {args.sessions} sessions")
    print(f"{'operation':<22}" + "".join(f"{n:>17}" for n in names))
    for op in ops:
        row = f"{op:<22}"
        for n in names:
            v = results[n][op]
            row += f"{v:>10.1f}" + ("" if n == "mxcp" else f" {results['mxcp'][op] / v:>5.1f}x")
            row += "" if n != "mxcp" else " " * 7
        print(row)
    print()
    for what, us in (await overhead(args.rounds)).items():
        print(f"{what:<40} {us:8.2f} us")
    print(f"{'building a StoredSession (pydantic)':<40} {construct_us():8.2f} us")
    m, r = results["mxcp"], results
    print()
    print("targets (ratio mxcp / ours):")
    for label, op, stack, target in (
        ("bare store_session, 1 coroutine", "store_session x1", "bare", 4),
        ("bare load_session_by_token (cold), 1 coroutine", "load cold x1", "bare", 5),
        ("warm cached load_session_by_token, 1 coroutine", "load warm x1", "cached", 20),
        ("buffered store_session, 64 coroutines", "store_session x64", "buffered", 20),
    ):
        ratio = m[op] / r[stack][op]
        print(f"  {label:<50} {ratio:6.1f}x  (target {target}x: {'met' if ratio >= target else 'MISSED'})")


if __name__ == "__main__":
    asyncio.run(main())
