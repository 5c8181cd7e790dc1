"""API keys: made at random, stored and looked up as SHA-256 digests, never
kept in clear."""

from __future__ import annotations

import hashlib
import secrets


def new_api_key() -> str:
    """A fresh random API key (40 hex characters, like DRF's tokens)."""
    return secrets.token_hex(20)


def digest_key(key: str) -> str:
    """The SHA-256 digest under which a key is stored and looked up."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def revoked_digest() -> str:
    """What a revoked account keeps as its key digest: unique (the column is), and
    never the SHA-256 hex of any key, so nothing authenticates as it."""
    return "revoked:" + secrets.token_hex(16)
