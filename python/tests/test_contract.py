"""The contract's key cases, on every stack (mxcp's own store is the baseline)."""

from __future__ import annotations

import asyncio
import time

import pytest
import tokenstore
from mxcp.sdk.auth.storage import AuthCodeRecord, ClientRecord, StateRecord, StoredSession

from stacks import MXCP, OUR_STACKS, auth_code, client, new_key, now, session, settle, state

pytestmark = pytest.mark.asyncio


# ── States ─────────────────────────────────────────────────────────────────────


async def test_state_is_returned_once(store):
    record = state("state-once")
    await store.store_state(record)
    got = await store.consume_state("state-once")
    assert isinstance(got, StateRecord)
    assert got == record
    assert await store.consume_state("state-once") is None


async def test_unknown_state_is_none(store):
    assert await store.consume_state("never-stored") is None


async def test_state_with_empty_and_absent_optionals(store):
    record = StateRecord(state="bare", expires_at=round(now() + 60, 6), created_at=now())
    await store.store_state(record)
    got = await store.consume_state("bare")
    assert got == record
    assert got.provider_scopes_requested == []
    assert got.client_id is None


async def test_storing_a_state_again_replaces_it(store):
    await store.store_state(state("same", client_state="first"))
    second = state("same", client_state="second")
    await store.store_state(second)
    assert await store.consume_state("same") == second
    assert await store.consume_state("same") is None


async def test_state_consumed_by_exactly_one_of_100_coroutines(store):
    record = state("contended")
    await store.store_state(record)
    results = await asyncio.gather(*(store.consume_state("contended") for _ in range(100)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert winners[0] == record
    assert results.count(None) == 99


async def test_expired_state_is_not_returned(store):
    t = now()
    await store.store_state(state("stale", ttl=-5.0, t=t))
    assert await store.consume_state("stale") is None
    # and it is gone, not merely hidden
    assert (await store.cleanup_expired())["states"] == 0


# ── Authorization codes ────────────────────────────────────────────────────────


async def test_auth_code_loads_without_being_consumed(store):
    record = auth_code("code-load")
    await store.store_auth_code(record)
    first = await store.load_auth_code("code-load")
    second = await store.load_auth_code("code-load")
    assert isinstance(first, AuthCodeRecord)
    assert first == record
    assert second == record


async def test_delete_auth_code(store):
    await store.store_auth_code(auth_code("code-del"))
    await store.delete_auth_code("code-del")
    assert await store.load_auth_code("code-del") is None
    assert await store.try_delete_auth_code("code-del") is False
    # deleting an absent code is not an error
    await store.delete_auth_code("code-del")
    await store.delete_auth_code("never-stored")


async def test_try_delete_auth_code_is_true_once(store):
    await store.store_auth_code(auth_code("code-once"))
    assert await store.try_delete_auth_code("code-once") is True
    assert await store.try_delete_auth_code("code-once") is False
    assert await store.load_auth_code("code-once") is None


async def test_auth_code_deleted_by_exactly_one_of_100_coroutines(store):
    await store.store_auth_code(auth_code("code-contended"))
    results = await asyncio.gather(*(store.try_delete_auth_code("code-contended") for _ in range(100)))
    assert results.count(True) == 1
    assert results.count(False) == 99
    assert all(type(r) is bool for r in results)
    assert await store.load_auth_code("code-contended") is None


async def test_expired_auth_code_is_not_returned(stack):
    store = stack.store
    await store.store_auth_code(auth_code("code-stale", ttl=-5.0))
    assert await store.load_auth_code("code-stale") is None
    await store.store_auth_code(auth_code("code-stale-2", ttl=-5.0))
    # try_delete on an expired code removes it. Ours reports False (an expired code
    # was never usable); mxcp 0.12.3 reports True (it counts any deleted row).
    assert await store.try_delete_auth_code("code-stale-2") is (stack.name == MXCP)
    assert await store.load_auth_code("code-stale-2") is None
    assert await store.try_delete_auth_code("code-stale-2") is False


async def test_auth_code_with_absent_optionals(store):
    record = AuthCodeRecord(
        code="bare-code", session_id="s", expires_at=round(now() + 60, 6), created_at=now()
    )
    await store.store_auth_code(record)
    assert await store.load_auth_code("bare-code") == record


# ── Sessions ───────────────────────────────────────────────────────────────────


async def test_session_by_token_id_and_refresh_token(store):
    record = session("sess-a", access="at-a", refresh="rt-a")
    await store.store_session(record)
    by_token = await store.load_session_by_token("at-a")
    by_id = await store.load_session_by_id("sess-a")
    by_refresh = await store.load_session_by_refresh_token("rt-a")
    assert isinstance(by_token, StoredSession)
    assert by_token == record
    assert by_id == record
    assert by_refresh == record
    # the refresh token is not an access token and vice versa
    assert await store.load_session_by_token("rt-a") is None
    assert await store.load_session_by_refresh_token("at-a") is None
    assert await store.load_session_by_id("at-a") is None


async def test_session_without_refresh_token_or_provider_tokens(store):
    record = session(
        "sess-min",
        access="at-min",
        refresh=None,
        provider_access_token=None,
        provider_refresh_token=None,
        provider_expires_at=None,
    )
    await store.store_session(record)
    assert await store.load_session_by_token("at-min") == record
    assert await store.load_session_by_id("sess-min") == record


async def test_unknown_sessions_are_none(store):
    assert await store.load_session_by_token("nope") is None
    assert await store.load_session_by_id("nope") is None
    assert await store.load_session_by_refresh_token("nope") is None


async def test_rotation_leaves_no_way_to_the_old_tokens(store):
    old = session("sess-rot", access="at-old", refresh="rt-old")
    await store.store_session(old)
    # warm any cache with the old tokens
    assert await store.load_session_by_token("at-old") == old
    assert await store.load_session_by_refresh_token("rt-old") == old
    assert await store.load_session_by_id("sess-rot") == old

    new = session("sess-rot", access="at-new", refresh="rt-new", user_info=old.user_info)
    await store.store_session(new)
    assert await store.load_session_by_token("at-old") is None
    assert await store.load_session_by_refresh_token("rt-old") is None
    assert await store.load_session_by_token("at-new") == new
    assert await store.load_session_by_refresh_token("rt-new") == new
    assert await store.load_session_by_id("sess-rot") == new
    await settle(store)
    assert await store.load_session_by_token("at-old") is None
    assert await store.load_session_by_refresh_token("rt-old") is None
    assert await store.load_session_by_id("sess-rot") == new


async def test_sessions_are_independent(store):
    a = session("sess-1", access="at-1", refresh="rt-1")
    b = session("sess-2", access="at-2", refresh="rt-2")
    await store.store_session(a)
    await store.store_session(b)
    await store.delete_session_by_token("at-1")
    assert await store.load_session_by_token("at-1") is None
    assert await store.load_session_by_token("at-2") == b
    assert await store.load_session_by_refresh_token("rt-2") == b


async def test_expired_access_hides_session_by_token_and_id_not_by_refresh(store):
    record = session("sess-exp", access="at-exp", refresh="rt-exp", access_ttl=-5.0, refresh_ttl=3600.0)
    await store.store_session(record)
    assert await store.load_session_by_token("at-exp") is None
    assert await store.load_session_by_id("sess-exp") is None
    # the refresh token is still live: the session can still be refreshed
    assert await store.load_session_by_refresh_token("rt-exp") == record


async def test_expired_refresh_hides_session_by_refresh_only(store):
    record = session("sess-rexp", access="at-rexp", refresh="rt-rexp", access_ttl=3600.0, refresh_ttl=-5.0)
    await store.store_session(record)
    assert await store.load_session_by_refresh_token("rt-rexp") is None
    assert await store.load_session_by_token("at-rexp") == record
    assert await store.load_session_by_id("sess-rexp") == record


async def test_fully_expired_session_is_gone(store):
    await store.store_session(
        session("sess-dead", access="at-dead", refresh="rt-dead", access_ttl=-10.0, refresh_ttl=-5.0)
    )
    assert await store.load_session_by_token("at-dead") is None
    assert await store.load_session_by_refresh_token("rt-dead") is None
    assert await store.load_session_by_id("sess-dead") is None
    # deleted on read, so cleanup finds nothing
    assert (await store.cleanup_expired())["sessions"] == 0


async def test_delete_session_by_token(store):
    record = session("sess-del", access="at-del", refresh="rt-del")
    await store.store_session(record)
    assert await store.load_session_by_token("at-del") == record  # cache it
    await store.delete_session_by_token("at-del")
    assert await store.load_session_by_token("at-del") is None
    assert await store.load_session_by_id("sess-del") is None
    assert await store.load_session_by_refresh_token("rt-del") is None
    await store.delete_session_by_token("at-del")  # absent: not an error


@pytest.mark.parametrize("stack_name", OUR_STACKS)
async def test_delete_session_by_id(open_stack, stack_name):
    """Ours only: mxcp's store has no delete_session_by_id."""
    store = (await open_stack(stack_name)).store
    record = session("sess-delid", access="at-delid", refresh="rt-delid")
    other = session("sess-keep", access="at-keep", refresh="rt-keep")
    await store.store_session(record)
    await store.store_session(other)
    assert await store.load_session_by_refresh_token("rt-delid") == record  # cache it
    await store.delete_session_by_id("sess-delid")
    assert await store.load_session_by_token("at-delid") is None
    assert await store.load_session_by_id("sess-delid") is None
    assert await store.load_session_by_refresh_token("rt-delid") is None
    assert await store.load_session_by_id("sess-keep") == other
    await store.delete_session_by_id("sess-delid")  # absent: not an error


async def test_session_without_access_expiry_is_refused(store):
    with pytest.raises(ValueError):
        await store.store_session(session("sess-noexp", access="at-noexp", access_ttl=None))
    await settle(store)
    assert await store.load_session_by_id("sess-noexp") is None
    assert await store.load_session_by_token("at-noexp") is None


# ── Clients ────────────────────────────────────────────────────────────────────


async def test_clients_store_load_list_delete(store):
    assert await store.list_clients() == []
    c = client("client-c")
    a = client("client-a", client_secret=None, token_endpoint_auth_method="none")
    b = ClientRecord(
        client_id="client-b",
        redirect_uris=["https://b.example/cb"],
        grant_types=["authorization_code"],
        response_types=["code"],
        created_at=now(),
    )
    for record in (c, a, b):
        await store.store_client(record)
    got = await store.load_client("client-a")
    assert isinstance(got, ClientRecord)
    assert got == a
    assert await store.load_client("client-b") == b
    assert await store.load_client("client-c") == c
    assert await store.load_client("client-z") is None
    listed = await store.list_clients()
    # mxcp's protocol leaves the order open; ours promises client_id order.
    if type(store).__module__.startswith("mxcp"):
        listed = sorted(listed, key=lambda r: r.client_id)
    assert [r.client_id for r in listed] == ["client-a", "client-b", "client-c"]
    assert listed == [a, b, c]

    replaced = client("client-a", client_name="Renamed", redirect_uris=["https://new.example/cb"])
    await store.store_client(replaced)
    assert await store.load_client("client-a") == replaced

    await store.delete_client("client-b")
    assert await store.load_client("client-b") is None
    assert [r.client_id for r in sorted(await store.list_clients(), key=lambda r: r.client_id)] == [
        "client-a",
        "client-c",
    ]
    await store.delete_client("client-b")  # absent: not an error


@pytest.mark.parametrize("stack_name", OUR_STACKS)
async def test_list_clients_is_ordered_by_client_id(open_stack, stack_name):
    store = (await open_stack(stack_name)).store
    ids = ["m", "b", "z", "a", "B", "client-10", "client-9", "ä"]
    for client_id in ids:
        await store.store_client(client(client_id))
    assert [r.client_id for r in await store.list_clients()] == sorted(ids)


# ── Cleanup ────────────────────────────────────────────────────────────────────


async def test_cleanup_expired_counts(store):
    t = now()
    for i in range(3):
        await store.store_state(state(f"st-dead-{i}", ttl=-5.0, t=t))
    for i in range(2):
        await store.store_state(state(f"st-live-{i}", ttl=600.0, t=t))
    for i in range(4):
        await store.store_auth_code(auth_code(f"cd-dead-{i}", ttl=-5.0, t=t))
    await store.store_auth_code(auth_code("cd-live", ttl=600.0, t=t))
    # dead: access expired and no refresh token; or both expired
    await store.store_session(session("se-dead-0", refresh=None, access_ttl=-5.0, t=t))
    await store.store_session(session("se-dead-1", access_ttl=-10.0, refresh_ttl=-5.0, t=t))
    # hidden by access but refreshable: kept
    await store.store_session(session("se-refreshable", access_ttl=-5.0, refresh_ttl=600.0, t=t))
    # live
    await store.store_session(session("se-live", t=t))
    await store.store_client(client("cl-kept", t=t - 10_000))

    assert await store.cleanup_expired() == {"states": 3, "auth_codes": 4, "sessions": 2}
    assert await store.cleanup_expired() == {"states": 0, "auth_codes": 0, "sessions": 0}

    for i in range(2):
        assert await store.consume_state(f"st-live-{i}") is not None
    assert await store.load_auth_code("cd-live") is not None
    assert await store.load_session_by_refresh_token("refresh-se-refreshable") is not None
    assert await store.load_session_by_token("access-se-live") is not None
    assert await store.load_client("cl-kept") is not None


async def test_cleanup_of_sessions_mxcp_gets_wrong(stack):
    """Two sessions whose fate differs from mxcp 0.12.3's cleanup SQL.

    A: access expired, a refresh token that never expires: still refreshable.
    mxcp deletes it (its SQL treats a NULL refresh expiry as expired); ours keeps it.
    B: access expired, no refresh token (but a refresh expiry in the future): no
    lookup can return it. mxcp keeps it; ours deletes it.
    """
    store = stack.store
    await store.store_session(session("A", access="at-A", refresh="rt-A", access_ttl=-5.0, refresh_ttl=None))
    await store.store_session(
        session("B", access="at-B", refresh=None, access_ttl=-5.0, refresh_expires_at=round(now() + 600, 6))
    )
    assert await store.cleanup_expired() == {"states": 0, "auth_codes": 0, "sessions": 1}
    refreshable = await store.load_session_by_refresh_token("rt-A")
    if stack.name == MXCP:
        assert refreshable is None
    else:
        assert refreshable is not None and refreshable.session_id == "A"
        assert await store.cleanup_expired() == {"states": 0, "auth_codes": 0, "sessions": 0}


async def test_cleanup_on_an_empty_store(store):
    assert await store.cleanup_expired() == {"states": 0, "auth_codes": 0, "sessions": 0}


# ── Times ──────────────────────────────────────────────────────────────────────


async def test_raw_float_times_read_back_within_a_microsecond(store):
    t = time.time()
    created = t - 0.123456789
    await store.store_state(state("raw-time", t=created, expires_at=t + 600.123456789))
    got = await store.consume_state("raw-time")
    assert abs(got.created_at - created) <= 1e-6
    assert abs(got.expires_at - (t + 600.123456789)) <= 1e-6
    await store.store_session(session("raw-sess", t=created, access_expires_at=t + 3600.987654321))
    got_session = await store.load_session_by_id("raw-sess")
    assert abs(got_session.created_at - created) <= 1e-6
    assert abs(got_session.access_expires_at - (t + 3600.987654321)) <= 1e-6


# ── After close ────────────────────────────────────────────────────────────────


def every_call():
    """Every protocol call, as (name, thunk)."""
    return [
        ("store_state", lambda s: s.store_state(state("after-close"))),
        ("consume_state", lambda s: s.consume_state("live-state")),
        ("store_auth_code", lambda s: s.store_auth_code(auth_code("after-close"))),
        ("load_auth_code", lambda s: s.load_auth_code("live-code")),
        ("delete_auth_code", lambda s: s.delete_auth_code("live-code")),
        ("try_delete_auth_code", lambda s: s.try_delete_auth_code("live-code")),
        ("store_session", lambda s: s.store_session(session("after-close"))),
        ("load_session_by_token", lambda s: s.load_session_by_token("access-live-session")),
        ("load_session_by_id", lambda s: s.load_session_by_id("live-session")),
        ("load_session_by_refresh_token", lambda s: s.load_session_by_refresh_token("refresh-live-session")),
        ("delete_session_by_token", lambda s: s.delete_session_by_token("access-live-session")),
        ("cleanup_expired", lambda s: s.cleanup_expired()),
        ("store_client", lambda s: s.store_client(client("after-close"))),
        ("load_client", lambda s: s.load_client("live-client")),
        ("list_clients", lambda s: s.list_clients()),
        ("delete_client", lambda s: s.delete_client("live-client")),
    ]


async def seed_live(store):
    await store.store_state(state("live-state"))
    await store.store_auth_code(auth_code("live-code"))
    await store.store_session(session("live-session"))
    await store.store_client(client("live-client"))
    # warm the caches
    assert await store.load_auth_code("live-code") is not None
    assert await store.load_session_by_token("access-live-session") is not None
    assert await store.load_client("live-client") is not None


async def test_every_call_after_close_raises(stack):
    store = stack.store
    await seed_live(store)
    await store.close()
    await store.close()  # close is idempotent
    if stack.name == MXCP:
        # mxcp's baseline: after close its connection is gone and every call fails
        # (an AssertionError from its `assert self._conn is not None`).
        for name, call in every_call():
            with pytest.raises(AssertionError):
                await call(store)
        return

    assert issubclass(tokenstore.StoreClosedError, tokenstore.TokenStoreError)
    assert issubclass(tokenstore.StoreClosedError, RuntimeError)
    calls = every_call() + [
        ("delete_session_by_id", lambda s: s.delete_session_by_id("live-session")),
    ]
    seen, expected = {}, {}
    for depth, layer in enumerate(stack.layers):  # closing the outermost closed every layer
        layer_calls = calls + ([("flush", lambda s: s.flush())] if hasattr(layer, "flush") else [])
        for name, call in layer_calls:
            where = f"{type(layer).__name__}[{depth}].{name}"
            expected[where] = "StoreClosedError"
            try:
                await call(layer)
            except Exception as exc:  # noqa: BLE001 - the type is what is compared
                seen[where] = type(exc).__name__
            else:
                seen[where] = "no exception"
    assert seen == expected


@pytest.mark.parametrize("stack_name", [MXCP, *[n for n in OUR_STACKS if "postgres" not in n]])
async def test_close_keeps_what_was_written(open_stack, tmp_path, stack_name):
    """Writes acknowledged before close are in the file a new store then opens."""
    key = new_key()
    first = await open_stack(stack_name, key=key, path=tmp_path)
    await first.store.store_session(session("kept", access="at-kept"))
    await first.store.store_client(client("kept-client"))
    await first.store.close()
    second = await open_stack(MXCP if stack_name == MXCP else "sqlite", key=key, path=tmp_path)
    got = await second.store.load_session_by_token("at-kept")
    assert got is not None and got.session_id == "kept"
    assert await second.store.load_client("kept-client") is not None


# ── Ours: stats, initialize ────────────────────────────────────────────────────


@pytest.mark.parametrize("stack_name", OUR_STACKS)
async def test_stats_per_layer(open_stack, stack_name):
    """stats() is a dict per layer, outermost first, each wrapper's inner under "inner"."""
    stack = await open_stack(stack_name)
    store = stack.store
    await store.store_session(session("stats"))
    assert await store.load_session_by_token("access-stats") is not None
    assert await store.load_session_by_token("access-stats") is not None
    stats = store.stats()
    assert "access-stats" not in repr(stats)  # never a token
    for layer in stack.layers:
        assert isinstance(stats, dict)
        if isinstance(layer, tokenstore.CachingTokenStore):
            assert stats["sessions"]["lookups"] == 2
            assert stats["sessions"]["hits"] == 1
            assert stats["session_entries"] == 1
        elif isinstance(layer, tokenstore.BufferedTokenStore):
            assert stats["accepted"] == 1
            assert stats["refused_full"] == 0
        elif isinstance(layer, tokenstore.SqliteTokenStore):
            assert stats["commits"] >= 1
            assert stats["rollbacks"] == 0
        else:
            assert isinstance(layer, tokenstore.PostgresTokenStore)
            assert stats == {}  # no counters (yet)
        stats = stats.get("inner")
    assert stats is None


@pytest.mark.parametrize("stack_name", OUR_STACKS)
async def test_initialize_twice_is_harmless(open_stack, stack_name):
    store = (await open_stack(stack_name)).store
    await store.store_client(client("init-twice"))
    await store.initialize()
    assert await store.load_client("init-twice") is not None


async def test_initialize_after_close_reopens(store):
    """mxcp's store reopens on initialize() after close(); so does ours."""
    record = client("reopened")
    await store.store_client(record)
    await store.close()
    await store.initialize()
    assert await store.load_client("reopened") == record
    await store.store_session(session("after-reopen"))
    assert await store.load_session_by_token("access-after-reopen") is not None


@pytest.mark.parametrize("readers", [0, 1, 3])
@pytest.mark.parametrize("shards", [1, 4, 16])
async def test_sqlite_readers_and_cache_shards_keep_the_contract(tmp_path, readers, shards):
    """Every SQLite reader count and cache shard count: stores, rotations and
    deletes are seen at once by every key, through the cache and bare."""
    bare = tokenstore.SqliteTokenStore(tmp_path / "k.sqlite", new_key(), readers=readers)
    cached = tokenstore.CachingTokenStore(bare, shards=shards)
    await cached.initialize()
    try:
        for i in range(20):
            old = session(f"sess-{i}", access=f"at-{i}", refresh=f"rt-{i}")
            await cached.store_session(old)
            for store in (cached, bare):
                assert await store.load_session_by_token(f"at-{i}") == old
                assert await store.load_session_by_id(f"sess-{i}") == old
                assert await store.load_session_by_refresh_token(f"rt-{i}") == old
            new = session(f"sess-{i}", access=f"at2-{i}", refresh=f"rt2-{i}")
            await cached.store_session(new)
            assert await cached.load_session_by_token(f"at-{i}") is None
            assert await cached.load_session_by_refresh_token(f"rt-{i}") is None
            assert await cached.load_session_by_id(f"sess-{i}") == new
            assert await cached.load_session_by_token(f"at2-{i}") == new
            await cached.delete_session_by_token(f"at2-{i}")
            for store in (cached, bare):
                assert await store.load_session_by_id(f"sess-{i}") is None
                assert await store.load_session_by_refresh_token(f"rt2-{i}") is None
        stats = cached.stats()
        assert stats["sessions"]["hits"] > 0
    finally:
        await cached.close()
