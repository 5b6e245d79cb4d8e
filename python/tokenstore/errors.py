"""The exceptions tokenstore raises besides ``ValueError`` and ``TypeError``."""

from __future__ import annotations


class TokenStoreError(Exception):
    """A store operation failed: the backend failed, a stored row is corrupt,
    or buffered writes could not be applied. Messages never hold a token,
    secret or user identifier."""


class StoreClosedError(TokenStoreError, RuntimeError):
    """The store was closed; call ``await store.initialize()`` to reopen it."""


class StoreNotInitializedError(TokenStoreError, RuntimeError):
    """The store was used before ``await store.initialize()``."""
