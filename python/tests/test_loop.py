"""The event loop stays responsive while 1,000 store calls are in flight.

A ticker coroutine sleeps 1 ms in a loop and records when it wakes. While it
runs, 1,000 calls (200 store_session of new sessions, 800 load_session_by_token
of 100 sessions stored beforehand, interleaved) are started and awaited with
asyncio.gather. (Writes are the minority because each bare SQLite commit is an
fsync, ~4 ms here; 500 of them per burst would make the test slow, not better.) The
largest interval between two ticks, minus the 1 ms asked for, is how long the
loop was kept from running the ticker.

Measuring it meaningfully:

- The calls are started in waves of 10 per loop iteration (all 1,000 are started
  within a few iterations and awaited together, so about 1,000 are in flight at
  once). Creating 1,000 coroutines and tasks in one go costs asyncio itself ~10 ms
  on this 2-core machine with no store involved at all (the ``control`` line shows
  the harness with a no-op awaitable): that would measure asyncio, not the store.
- Only ticks inside the burst window count (from the first call started to the
  last result), and the ticker runs for a while before the burst so it is in step.
- Before each burst the heap is collected and frozen (``gc.freeze``): a full
  collection of this process's heap takes ~100 ms here, whoever triggers it.
- The burst is run three times, each printed, and the largest gap of all three
  must stay under 5 ms plus twice the control's gap, measured just before in the
  same process. On a quiet machine (as in .ci/run, whose steps run one at a
  time) every gap, ours and the control's, is about 1-2.5 ms, so the bound is
  about 7-10 ms; with a cargo build beside the tests the harness alone has shown
  6-8 ms, ours 7-16 ms and mxcp's own store 12-17 ms. The slack follows the
  machine because the machines are shared: with a fixed 5 ms bound this test
  failed once at a load average of 1.3 from other work. A store that blocked
  the loop would still fail it by far: its 200 commits of a burst, each an fsync
  of ~4 ms, would hold the loop for the time of them all.
"""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from stacks import MXCP, session

pytestmark = pytest.mark.asyncio

CALLS = 1000
WRITES = 200  # store_session calls per burst; the rest are loads
PRESTORED = 100  # sessions the loads read (each 8 times)
WAVE = 10
SLEEP = 0.001
BUDGET = 0.005
BURSTS = 3


async def ticker(stop: asyncio.Event, ticks: list[float]) -> None:
    while not stop.is_set():
        await asyncio.sleep(SLEEP)
        ticks.append(time.perf_counter())


async def measure(burst) -> tuple[float, object]:
    """Runs ``burst()`` beside the ticker; (max gap minus the sleep, burst's result)."""
    # A full collection over this process's large heap (thousands of records from
    # the other tests) takes ~100 ms here, whoever triggers it: collect now and
    # freeze the survivors, so the young collections that remain are what a
    # store's own allocations cost.
    gc.collect()
    gc.freeze()
    try:
        return await _measure(burst)
    finally:
        gc.unfreeze()


async def _measure(burst) -> tuple[float, object]:
    stop = asyncio.Event()
    ticks: list[float] = []
    tick_task = asyncio.create_task(ticker(stop, ticks))
    while len(ticks) < 20:  # in step
        await asyncio.sleep(SLEEP)
    start = time.perf_counter()
    result = await burst()
    end = time.perf_counter()
    # one more tick after the burst closes the last interval
    seen = len(ticks)
    deadline = time.perf_counter() + 1.0
    while len(ticks) == seen and time.perf_counter() < deadline:
        await asyncio.sleep(SLEEP)
    stop.set()
    await tick_task
    after = [t for t in ticks if t > start]
    inside = [t for t in after if t <= end]
    closing = [t for t in after if t > end][:1]
    window = [start, *inside, *closing]
    assert len(window) >= 2, "the ticker never ran during the burst"
    gap = max(b - a for a, b in zip(window, window[1:]))
    return gap - SLEEP, result


async def launch(make_calls) -> list:
    """Starts the calls WAVE per loop iteration, then gathers them all."""
    futures = []
    for i, make in enumerate(make_calls):
        futures.append(asyncio.ensure_future(make()))
        if (i + 1) % WAVE == 0:
            await asyncio.sleep(0)
    return await asyncio.gather(*futures)


async def control_gap() -> float:
    """The harness alone: the same launch of awaitables the loop resolves itself."""
    loop = asyncio.get_running_loop()

    async def noop(i):
        future = loop.create_future()
        loop.call_later((i % 10) / 1000, future.set_result, i)
        return await future

    gap, result = await measure(lambda: launch([lambda i=i: noop(i) for i in range(CALLS)]))
    assert result == list(range(CALLS))
    return gap


async def store_burst(store, stored: list, round_no: int) -> float:
    """One burst: WRITES new sessions stored, CALLS - WRITES loads of ``stored``."""
    new = [session(f"new-{round_no}-{i}", access=f"at-new-{round_no}-{i}") for i in range(WRITES)]
    loads = CALLS - WRITES
    expected = [stored[i % len(stored)] for i in range(loads)]
    calls = [lambda s=s: store.store_session(s) for s in new]
    calls += [lambda s=s: store.load_session_by_token(s.access_token) for s in expected]
    # interleave the writes among the loads
    order = sorted(range(CALLS), key=lambda i: (i * 7919) % CALLS)
    gap, results = await measure(lambda: launch([calls[i] for i in order]))
    by_call = dict(zip(order, results))
    assert len(by_call) == CALLS
    assert [by_call[i] for i in range(WRITES)] == [None] * WRITES
    assert [by_call[i] for i in range(WRITES, CALLS)] == expected
    for s in new:
        assert await store.load_session_by_token(s.access_token) == s
    return gap


@pytest.mark.parametrize("stack_name", ["sqlite", "cached_buffered", MXCP])
async def test_loop_stays_responsive(open_stack, stack_name):
    store = (await open_stack(stack_name)).store
    stored = [session(f"pre-{i}", access=f"at-pre-{i}") for i in range(PRESTORED)]
    for s in stored:
        await store.store_session(s)
    control = await control_gap()
    bursts = 1 if stack_name == MXCP else BURSTS  # mxcp commits slowly; one is enough to show
    gaps = [await store_burst(store, stored, r) for r in range(bursts)]
    print(
        f"\nmax loop gap [{stack_name}]: "
        + ", ".join(f"{g * 1000:.2f} ms" for g in gaps)
        + f" (largest {max(gaps) * 1000:.2f} ms; beyond the {SLEEP * 1000:.0f} ms sleep;"
        f" control, no store: {control * 1000:.2f} ms)"
    )
    if stack_name == MXCP:
        return  # mxcp's own store: printed for comparison only (its records were checked)
    bound = BUDGET + 2 * control
    assert max(gaps) < bound, f"loop blocked {max(gaps) * 1000:.2f} ms (> {bound * 1000:.2f} ms)"
