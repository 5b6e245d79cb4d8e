"""Bad input on our stacks: always a Python exception, never a crash, and the store
keeps working (a good call after each bad one succeeds)."""

from __future__ import annotations

import pytest
import tokenstore
import stacks
from stacks import OUR_STACKS, auth_code, client, new_key, session, state, user_info

pytestmark = pytest.mark.asyncio


async def good_call_works(store, tag: str) -> None:
    """A full round trip, after a bad call."""
    record = session(f"good-{tag}", access=f"at-good-{tag}", refresh=f"rt-good-{tag}")
    await store.store_session(record)
    assert await store.load_session_by_token(f"at-good-{tag}") == record
    assert await store.load_session_by_refresh_token(f"rt-good-{tag}") == record
    s = state(f"good-state-{tag}")
    await store.store_state(s)
    assert await store.consume_state(f"good-state-{tag}") == s


async def raises(exc_type, call, message: str | None = None):
    """Awaits ``call()``; it must raise ``exc_type`` (at the call or at the await)."""
    with pytest.raises(exc_type) as info:
        await call()
    if message is not None:
        assert message in str(info.value), str(info.value)
    return info.value


A_STATE = state("a-state")
A_SESSION = session("a-session")

WRONG_TYPES = [
    ("int_state", lambda s: s.consume_state(123)),
    ("int_token", lambda s: s.load_session_by_token(123)),
    ("int_refresh", lambda s: s.load_session_by_refresh_token(123)),
    ("int_session_id", lambda s: s.load_session_by_id(123)),
    ("int_code", lambda s: s.load_auth_code(123)),
    ("int_try_delete", lambda s: s.try_delete_auth_code(123)),
    ("float_client_id", lambda s: s.load_client(1.5)),
    ("bytes_token", lambda s: s.load_session_by_token(b"at-bytes")),
    ("list_token", lambda s: s.delete_session_by_token(["at"])),
    ("dict_state_record", lambda s: s.store_state(A_STATE.model_dump())),
    ("dict_session_record", lambda s: s.store_session(A_SESSION.model_dump())),
    ("state_as_session", lambda s: s.store_session(A_STATE)),
    ("session_as_state", lambda s: s.store_state(A_SESSION)),
    ("session_as_client", lambda s: s.store_client(A_SESSION)),
    ("state_as_code", lambda s: s.store_auth_code(A_STATE)),
    ("str_as_record", lambda s: s.store_client("client-1")),
    ("int_as_record", lambda s: s.store_auth_code(7)),
]

NONES = [
    ("consume_state", lambda s: s.consume_state(None)),
    ("load_auth_code", lambda s: s.load_auth_code(None)),
    ("delete_auth_code", lambda s: s.delete_auth_code(None)),
    ("try_delete_auth_code", lambda s: s.try_delete_auth_code(None)),
    ("load_session_by_token", lambda s: s.load_session_by_token(None)),
    ("load_session_by_id", lambda s: s.load_session_by_id(None)),
    ("load_session_by_refresh_token", lambda s: s.load_session_by_refresh_token(None)),
    ("delete_session_by_token", lambda s: s.delete_session_by_token(None)),
    ("delete_session_by_id", lambda s: s.delete_session_by_id(None)),
    ("load_client", lambda s: s.load_client(None)),
    ("delete_client", lambda s: s.delete_client(None)),
    ("store_state", lambda s: s.store_state(None)),
    ("store_auth_code", lambda s: s.store_auth_code(None)),
    ("store_session", lambda s: s.store_session(None)),
    ("store_client", lambda s: s.store_client(None)),
]


def forged(record, **changes):
    """A copy of ``record`` with ``changes``, skipping pydantic's validation."""
    fields = {name: getattr(record, name) for name in type(record).model_fields}
    return type(record).model_construct(**{**fields, **changes})


BAD_VALUES = [
    # refused by the contract with ValueError, changing nothing
    ("empty_state", lambda s: s.store_state(state(""))),
    ("empty_access_token", lambda s: s.store_session(session("empty-at", access=""))),
    ("empty_session_id", lambda s: s.store_session(session("", access="at-empty-sid"))),
    ("empty_client_id", lambda s: s.store_client(client(""))),
    ("empty_lookup", lambda s: s.load_session_by_token("")),
    ("nul_in_state", lambda s: s.store_state(state("nul\x00state"))),
    ("nul_in_token_lookup", lambda s: s.load_session_by_token("at\x00x")),
    ("nul_in_redirect_uri", lambda s: s.store_auth_code(auth_code("nul-uri", redirect_uri="a\x00b"))),
    ("nul_in_secret", lambda s: s.store_client(client("nul-secret", client_secret="s\x00s"))),
    ("long_key_lookup", lambda s: s.consume_state("k" * (8 * 1024 + 1))),
    ("time_before_4713_bc", lambda s: s.store_state(state("ancient", t=-1e12, expires_at=-1e12))),
    ("nan_time", lambda s: s.store_state(state("nan-time", expires_at=float("nan")))),
    ("inf_time", lambda s: s.store_state(state("inf-time", expires_at=float("inf")))),
    ("no_access_expiry", lambda s: s.store_session(session("no-exp", access="at-no-exp", access_ttl=None))),
    (
        "profile_too_deep",
        lambda s: s.store_session(
            session("deep", access="at-deep", user_info=user_info(raw_profile=deep_profile(200)))
        ),
    ),
]


def deep_profile(depth: int) -> dict:
    profile: dict = {"leaf": 1}
    for _ in range(depth):
        profile = {"d": profile}
    return profile


async def call_outcomes(store, cases, tag: str) -> dict[str, str]:
    """What each bad call raised, a good call after each (so a failure lists all)."""
    seen = {}
    for name, call in cases:
        try:
            await call(store)
        except Exception as exc:  # noqa: BLE001 - the type is what is compared
            seen[name] = type(exc).__name__
        else:
            seen[name] = "no exception"
        await good_call_works(store, f"{tag}-{name}")
    return seen


async def test_wrong_types_raise_type_error(our_store):
    assert await call_outcomes(our_store, WRONG_TYPES, "wrong") == {n: "TypeError" for n, _ in WRONG_TYPES}


async def test_none_where_a_string_or_record_is_required(our_store):
    assert await call_outcomes(our_store, NONES, "none") == {n: "TypeError" for n, _ in NONES}


async def test_bad_values_raise_value_error_and_change_nothing(our_store):
    await our_store.store_session(session("keep", access="at-keep"))
    assert await call_outcomes(our_store, BAD_VALUES, "bad") == {n: "ValueError" for n, _ in BAD_VALUES}
    assert await our_store.load_session_by_id("no-exp") is None
    assert await our_store.load_session_by_id("deep") is None
    assert await our_store.load_session_by_token("at-keep") is not None
    assert await our_store.list_clients() == []
    assert (await our_store.cleanup_expired())["states"] == 0


async def test_forged_records_raise(our_store):
    """Records whose fields have wrong types (built without pydantic's validation)."""
    bad = [
        ("int_state_field", forged(A_STATE, state=5), "store_state"),
        ("str_expires_at", forged(A_STATE, expires_at="soon"), "store_state"),
        ("str_scopes", forged(A_STATE, provider_scopes_requested="openid"), "store_state"),
        ("none_created_at", forged(A_STATE, created_at=None), "store_state"),
        ("int_access_token", forged(A_SESSION, access_token=9), "store_session"),
        ("dict_user_info", forged(A_SESSION, user_info={"user_id": "1"}), "store_session"),
        ("set_redirect_uris", forged(client("forged"), redirect_uris={"a"}), "store_client"),
    ]
    cases = [(name, lambda s, r=record, m=method: getattr(s, m)(r)) for name, record, method in bad]
    assert await call_outcomes(our_store, cases, "forged") == {n: "TypeError" for n, _, _ in bad}


async def test_a_1mb_token(our_store):
    """A 1 MB access token is refused with ValueError (keys are at most 8 KiB)."""
    big = "t" * (1 << 20)
    await raises(ValueError, lambda: our_store.store_session(session("big-token", access=big)))
    await raises(ValueError, lambda: our_store.load_session_by_token(big))
    await raises(ValueError, lambda: our_store.store_session(session("big-refresh", refresh=big)))
    await raises(ValueError, lambda: our_store.store_session(session(big, access="at-big-sid")))
    await raises(ValueError, lambda: our_store.store_state(state(big)))
    await raises(ValueError, lambda: our_store.store_auth_code(auth_code(big)))
    await raises(ValueError, lambda: our_store.store_client(client(big)))
    await raises(ValueError, lambda: our_store.consume_state(big))
    await raises(ValueError, lambda: our_store.try_delete_auth_code(big))
    assert await our_store.load_session_by_token("at-big-sid") is None
    assert await our_store.list_clients() == []
    assert await our_store.load_session_by_id("big-token") is None
    assert await our_store.load_session_by_id("big-refresh") is None
    # the largest key allowed works
    edge = "e" * (8 * 1024)
    record = session("edge-token", access=edge, refresh=edge[:-1] + "r")
    await our_store.store_session(record)
    assert await our_store.load_session_by_token(edge) == record
    await good_call_works(our_store, "big")


async def test_a_1mb_provider_token_and_secret_round_trip(our_store):
    """Values that are not keys may be large."""
    big = "p" * (1 << 20)
    record = session("big-provider", provider_access_token=big)
    await our_store.store_session(record)
    assert await our_store.load_session_by_token(record.access_token) == record
    c = client("big-secret", client_secret=big)
    await our_store.store_client(c)
    assert await our_store.load_client("big-secret") == c


async def test_closed_store_raises_store_closed_error(our_stack):
    store = our_stack.store
    await store.store_client(client("before-close"))
    await store.close()
    error = await raises(tokenstore.StoreClosedError, lambda: store.load_client("before-close"))
    assert isinstance(error, tokenstore.TokenStoreError)
    assert isinstance(error, RuntimeError)
    await raises(tokenstore.StoreClosedError, lambda: store.store_session(session("after")))
    # bad input on a closed store: still an exception, whichever check comes first
    with pytest.raises((tokenstore.StoreClosedError, TypeError)):
        await store.load_client(None)
    await store.close()


@pytest.mark.parametrize("stack_name", OUR_STACKS)
async def test_use_before_initialize(stack_name, tmp_path, pg):
    url = pg.new_database_url() if stacks.needs_postgres(stack_name) else None
    stack = stacks.build(stack_name, tmp_path, new_key(), url)
    store = stack.store
    try:
        error = await raises(tokenstore.StoreNotInitializedError, lambda: store.load_session_by_token("at"))
        assert isinstance(error, tokenstore.TokenStoreError) and isinstance(error, RuntimeError)
        assert "initialize" in str(error)
        await raises(tokenstore.StoreNotInitializedError, lambda: store.store_state(state("early")))
        await store.initialize()
        await good_call_works(store, "after-initialize")
    finally:
        await store.close()


async def test_close_before_initialize(tmp_path):
    store = tokenstore.SqliteTokenStore(tmp_path / "never.sqlite", new_key())
    await store.close()
    await raises(tokenstore.StoreClosedError, lambda: store.load_client("x"))


def outcomes(cases) -> dict[str, str]:
    """What each construction raised (every case is tried, so a failure lists all)."""
    seen = {}
    for name, make in cases:
        try:
            make()
        except Exception as exc:  # noqa: BLE001 - the type is what is compared
            seen[name] = type(exc).__name__
        else:
            seen[name] = "no exception"
    return seen


BAD_KEYS = [
    ("not_base64", "not-a-fernet-key"),
    ("short", "c2hvcnQ="),
    ("33_bytes", "A" * 44 + "A="),
    ("bytes_garbage", b"\xff\xfe garbage"),
]


@pytest.mark.parametrize("case", [c[0] for c in BAD_KEYS])
async def test_invalid_fernet_key_at_construction(tmp_path, case, pg):
    key = dict(BAD_KEYS)[case]
    with pytest.raises(ValueError):
        tokenstore.SqliteTokenStore(tmp_path / "k.sqlite", key)
    with pytest.raises(ValueError):
        tokenstore.PostgresTokenStore(pg.new_database_url(), key)
    # a good key right after works
    store = tokenstore.SqliteTokenStore(tmp_path / "k.sqlite", new_key())
    await store.initialize()
    try:
        await good_call_works(store, case)
    finally:
        await store.close()


async def test_constructor_wrong_types(tmp_path):
    path = tmp_path / "c.sqlite"
    good = tokenstore.SqliteTokenStore(path, new_key())
    bad_constructions = [
        ("sqlite_int_path", lambda: tokenstore.SqliteTokenStore(123, new_key())),
        ("sqlite_none_path", lambda: tokenstore.SqliteTokenStore(None, new_key())),
        ("sqlite_int_key", lambda: tokenstore.SqliteTokenStore(path, 42)),
        ("sqlite_list_key", lambda: tokenstore.SqliteTokenStore(path, [1, 2])),
        ("sqlite_str_plaintext_flag", lambda: tokenstore.SqliteTokenStore(path, None, allow_plaintext_tokens="yes")),
        ("sqlite_str_readers", lambda: tokenstore.SqliteTokenStore(path, new_key(), readers="2")),
        ("sqlite_float_readers", lambda: tokenstore.SqliteTokenStore(path, new_key(), readers=2.0)),
        ("postgres_int_url", lambda: tokenstore.PostgresTokenStore(123, new_key())),
        ("postgres_int_pool", lambda: tokenstore.PostgresTokenStore("postgresql://x@/y", new_key(), pool_size="4")),
        ("caching_over_str", lambda: tokenstore.CachingTokenStore("not a store")),
        ("caching_over_mxcp", lambda: tokenstore.CachingTokenStore(object())),
        ("caching_str_ttl", lambda: tokenstore.CachingTokenStore(good, ttl_cap="30")),
        ("caching_str_capacity", lambda: tokenstore.CachingTokenStore(good, session_capacity="many")),
        ("caching_none_shards", lambda: tokenstore.CachingTokenStore(good, shards=None)),
        ("buffered_over_none", lambda: tokenstore.BufferedTokenStore(None)),
        ("buffered_str_batch", lambda: tokenstore.BufferedTokenStore(good, max_batch_size="256")),
        ("buffered_int_ack", lambda: tokenstore.BufferedTokenStore(good, ack=1)),
        ("sqlite_unknown_kwarg", lambda: tokenstore.SqliteTokenStore(path, new_key(), nonsense=True)),
    ]
    assert outcomes(bad_constructions) == {name: "TypeError" for name, _ in bad_constructions}
    await good.initialize()
    try:
        await good_call_works(good, "constructors")
    finally:
        await good.close()


async def test_constructor_bad_values(tmp_path):
    path = tmp_path / "v.sqlite"
    good = tokenstore.SqliteTokenStore(path, new_key())
    bad_values = [
        ("buffered_unknown_ack", lambda: tokenstore.BufferedTokenStore(good, ack="eventually")),
        ("buffered_negative_delay", lambda: tokenstore.BufferedTokenStore(good, max_delay=-1.0)),
        ("caching_negative_ttl", lambda: tokenstore.CachingTokenStore(good, ttl_cap=-1.0)),
        ("caching_nan_ttl", lambda: tokenstore.CachingTokenStore(good, ttl_cap=float("nan"))),
        ("caching_negative_shards", lambda: tokenstore.CachingTokenStore(good, shards=-1)),
        ("sqlite_negative_readers", lambda: tokenstore.SqliteTokenStore(path, new_key(), readers=-1)),
        ("sqlite_65_readers", lambda: tokenstore.SqliteTokenStore(path, new_key(), readers=65)),
        ("postgres_zero_pool", lambda: tokenstore.PostgresTokenStore("postgresql://x@/y", new_key(), pool_size=0)),
    ]
    assert outcomes(bad_values) == {name: "ValueError" for name, _ in bad_values}
    await good.initialize()
    try:
        await good_call_works(good, "constructor-values")
    finally:
        await good.close()


async def test_postgres_url_and_schema_are_checked_at_initialize(pg):
    """Construction only stores them; initialize refuses them with ValueError."""
    url = pg.new_database_url()
    for store in (
        tokenstore.PostgresTokenStore("not a url at all ::", new_key()),
        tokenstore.PostgresTokenStore(url, new_key(), schema="a; DROP"),
        tokenstore.PostgresTokenStore(url, new_key(), schema="pg_reserved"),
    ):
        with pytest.raises(ValueError):
            await store.initialize()
        await store.close()
    good = tokenstore.PostgresTokenStore(url, new_key(), schema="fine_schema")
    await good.initialize()
    try:
        await good_call_works(good, "pg-config")
    finally:
        await good.close()


async def test_postgres_unreachable_is_a_token_store_error(tmp_path):
    url = f"postgresql://postgres@/nodb?host={tmp_path / 'no-server-here'}"
    store = tokenstore.PostgresTokenStore(url, new_key())
    with pytest.raises(tokenstore.TokenStoreError) as info:
        await store.initialize()
    assert not isinstance(info.value, tokenstore.StoreClosedError)
    await store.close()


async def test_messages_say_what_is_wrong(our_store):
    """The exceptions name the field and the rule, so a caller can fix the call."""
    wrong = await raises(TypeError, lambda: our_store.load_session_by_token(42))
    assert "str" in str(wrong) and "int" in str(wrong), str(wrong)
    wrong = await raises(TypeError, lambda: our_store.store_session(state("s")))
    assert "expected a StoredSession, got StateRecord" in str(wrong), str(wrong)
    forged_time = forged(session("f", access="at-f"), created_at="soon")
    wrong = await raises(TypeError, lambda: our_store.store_session(forged_time))
    assert "created_at must be float, got str" in str(wrong), str(wrong)
    big = await raises(ValueError, lambda: our_store.load_session_by_token("t" * (1 << 20)))
    assert "access_token is 1048576 bytes, longer than the limit of 8192" in str(big), str(big)
    empty = await raises(ValueError, lambda: our_store.consume_state(""))
    assert "state must not be empty" in str(empty), str(empty)
    await our_store.close()
    closed = await raises(tokenstore.StoreClosedError, lambda: our_store.load_client("c"))
    assert str(closed) == "the store is closed"
