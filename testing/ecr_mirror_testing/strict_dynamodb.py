"""DynamoDB's single-item writes made atomic in moto, as DynamoDB makes them.

DynamoDB evaluates a condition expression and applies the write as one step
(`PutItem`, `UpdateItem`, `DeleteItem`: "conditional writes are atomic"). moto's
server answers requests on several threads and checks the condition, then
writes, with nothing in between held: two `ADD spent :t` guarded by
`spent <= :most` can both pass. The leases and the shared pull budget rely on
DynamoDB's guarantee, so the emulator gets it: one lock around every write.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from moto.dynamodb.models import DynamoDBBackend

_lock = threading.RLock()
_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
_originals: dict[str, Any] = {}


def enable() -> None:
    """Serialise moto's DynamoDB writes in this process (idempotent)."""
    with _lock:
        for name in _WRITES:
            if name not in _originals:
                _originals[name] = original = getattr(DynamoDBBackend, name)
                setattr(DynamoDBBackend, name, _atomic(original))


def _atomic(original: Any) -> Any:
    @functools.wraps(original)
    def write(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        with _lock:
            return original(self, *args, **kwargs)

    return write
