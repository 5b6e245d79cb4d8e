"""Make a stock mxcp server use tokenstore, without editing mxcp.

mxcp 0.12.3 builds its token store itself: its server module
``mxcp.server.interfaces.server.mcp`` imports ``SqliteTokenStore`` from
``mxcp.sdk.auth.storage`` and, when issuer-mode OAuth is configured, calls
``SqliteTokenStore(db_path, encryption_key=..., allow_plaintext_tokens=True)``.

:func:`install` replaces exactly one thing: the global name
``SqliteTokenStore`` in ``mxcp.server.interfaces.server.mcp``, with a
factory that takes the same arguments and returns tokenstore's
:class:`~tokenstore.SqliteTokenStore` on the same file and key, wrapped in a
:class:`~tokenstore.CachingTokenStore` and/or
:class:`~tokenstore.BufferedTokenStore` as asked. mxcp's own class in
``mxcp.sdk.auth.storage`` is left alone, as is everything else.
:func:`uninstall` puts the original name back.

Call it before the server is built, e.g. at the top of the script that
starts it::

    import tokenstore.mxcp
    tokenstore.mxcp.install(cache=True)              # reads from memory
    # tokenstore.mxcp.install(cache=True, buffer={"ack": "durable"})

    from mxcp.__main__ import cli  # the `mxcp` command (e.g. `python serve.py serve`)
    cli()
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from ._stores import BufferedTokenStore, CachingTokenStore, SqliteTokenStore, _Store

__all__ = ["TARGET_MODULE", "factory", "install", "installed", "uninstall"]

TARGET_MODULE = "mxcp.server.interfaces.server.mcp"
"""The module whose ``SqliteTokenStore`` name :func:`install` replaces."""

_NAME = "SqliteTokenStore"
_original: Any = None


def _options(value: bool | dict[str, Any] | None, what: str) -> dict[str, Any] | None:
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, dict):
        return dict(value)
    raise TypeError(f"{what} must be True, False, None or a dict of keyword arguments")


def factory(
    *, cache: bool | dict[str, Any] | None = True, buffer: bool | dict[str, Any] | None = None
) -> Callable[..., _Store]:
    """A callable with mxcp's ``SqliteTokenStore`` signature that builds our
    stack: SQLite, then a buffer (``buffer``: True or BufferedTokenStore
    keyword arguments), then a cache (``cache``: True or CachingTokenStore
    keyword arguments) on top."""
    cache_kw = _options(cache, "cache")
    buffer_kw = _options(buffer, "buffer")
    # Bad keyword arguments fail here, at install time, not at server start.
    if cache_kw is not None:
        CachingTokenStore(_Store(), **cache_kw)
    if buffer_kw is not None:
        BufferedTokenStore(_Store(), **buffer_kw)

    def make(
        db_path: Any,
        encryption_key: str | bytes | None = None,
        *,
        allow_plaintext_tokens: bool = False,
    ) -> _Store:
        store: _Store = SqliteTokenStore(
            db_path, encryption_key, allow_plaintext_tokens=allow_plaintext_tokens
        )
        if buffer_kw is not None:
            store = BufferedTokenStore(store, **buffer_kw)
        if cache_kw is not None:
            store = CachingTokenStore(store, **cache_kw)
        return store

    return make


def install(
    *, cache: bool | dict[str, Any] | None = True, buffer: bool | dict[str, Any] | None = None
) -> None:
    """Makes mxcp's server build tokenstore's stack instead of its own
    ``SqliteTokenStore`` (see the module docs for exactly what is patched).
    Calling it again replaces the previous installation."""
    global _original
    module = importlib.import_module(TARGET_MODULE)
    make = factory(cache=cache, buffer=buffer)
    if _original is None:
        _original = getattr(module, _NAME)
    setattr(module, _NAME, make)


def uninstall() -> None:
    """Restores mxcp's own ``SqliteTokenStore`` in the server module."""
    global _original
    if _original is None:
        return
    module = importlib.import_module(TARGET_MODULE)
    setattr(module, _NAME, _original)
    _original = None


def installed() -> bool:
    """Whether :func:`install` is in effect."""
    return _original is not None
