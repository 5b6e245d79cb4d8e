"""Fixtures: the store stacks, and the throwaway PostgreSQL the postgres stacks use.

- ``store`` / ``stack``: every stack of ``stacks.STACKS`` (mxcp's own store first, as
  the baseline), built in ``tmp_path`` with a Fernet key, initialized, closed at
  teardown.
- ``our_store`` / ``our_stack``: the same over this package's stacks only.
- ``open_stack``: a factory, ``await open_stack(name, key=..., path=...)``, for tests
  that pick their stacks or open several; everything it opened is closed at teardown.
- ``pg``: the session's PostgreSQL cluster, started on first use (never skipped: when
  it cannot start, the postgres stacks fail with the reason).
"""

from __future__ import annotations

import atexit
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pg as pg_module  # noqa: E402
import stacks  # noqa: E402


class LazyCluster:
    """Starts the cluster on first use; stopped at the end of the session."""

    def __init__(self) -> None:
        self.cluster: pg_module.PgCluster | None = None
        self.error: BaseException | None = None

    def get(self) -> pg_module.PgCluster:
        if self.error is not None:
            raise pg_module.PgError(f"PostgreSQL could not start earlier: {self.error}")
        if self.cluster is None:
            try:
                self.cluster = pg_module.start_cluster()
            except BaseException as exc:
                self.error = exc
                raise
            atexit.register(self.stop)
        return self.cluster

    def new_database_url(self) -> str:
        cluster = self.get()
        return cluster.url(cluster.create_database())

    def stop(self) -> None:
        if self.cluster is not None:
            cluster, self.cluster = self.cluster, None
            cluster.stop()


@pytest.fixture(scope="session")
def pg():
    lazy = LazyCluster()
    yield lazy
    lazy.stop()


@pytest.fixture
def key() -> bytes:
    return stacks.new_key()


@pytest_asyncio.fixture
async def open_stack(tmp_path: Path, pg: LazyCluster):
    opened: list[stacks.Stack] = []
    counter = [0]

    async def factory(name: str, *, key: Any = "new", path: Path | None = None) -> stacks.Stack:
        if isinstance(key, str) and key == "new":
            key = stacks.new_key()
        if path is None:
            counter[0] += 1
            path = tmp_path / f"{name}-{counter[0]}"
            path.mkdir()
        url = pg.new_database_url() if stacks.needs_postgres(name) else None
        stack = stacks.build(name, path, key, url)
        await stack.store.initialize()
        opened.append(stack)
        stacks.OPEN[id(stack.store)] = stack
        return stack

    yield factory
    for stack in reversed(opened):
        stacks.OPEN.pop(id(stack.store), None)
        await stack.store.close()


@pytest_asyncio.fixture(params=stacks.STACKS)
async def stack(request, open_stack, key) -> stacks.Stack:
    return await open_stack(request.param, key=key)


@pytest_asyncio.fixture
async def store(stack: stacks.Stack):
    return stack.store


@pytest_asyncio.fixture(params=stacks.OUR_STACKS)
async def our_stack(request, open_stack, key) -> stacks.Stack:
    return await open_stack(request.param, key=key)


@pytest_asyncio.fixture
async def our_store(our_stack: stacks.Stack):
    return our_stack.store
