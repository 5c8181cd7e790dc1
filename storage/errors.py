"""The two ways storage fails that the layers above tell apart."""

from __future__ import annotations


class StorageUnavailable(Exception):
    """The database cannot be reached or answered too slowly; retry later."""


class StorageMisconfigured(Exception):
    """The database cannot keep this contract at all (e.g. a MongoDB without
    transactions); raised by ``setup`` so the server refuses to start."""
