"""DynamoDB seam: moto 5.2.5 applies a write (condition check, then the change) with no lock, so two threads can
both pass the same condition; DynamoDB applies a conditional write atomically ("Condition expressions", DynamoDB
developer guide: the condition is evaluated and the write made as one operation). The seam serializes moto's item
writes with one lock, which is what the one-release lock's conditional write relies on.

Checked by tests/canary/test_dynamodb_conditions.py (conditions as the lock uses them, with and without the seam).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from deployflow.local._patching import AttributePatch, PatchSet, Seam

WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")


class AtomicItemWrites(Seam):
    """Installs one lock around moto's DynamoDB item writes."""

    def __init__(self) -> None:
        # Re-entrant: moto's transact_write_items applies its items through put_item / delete_item.
        self.lock = threading.RLock()

    def install(self) -> None:
        from moto.dynamodb.models import DynamoDBBackend

        def serialized(original: Any) -> Any:
            @functools.wraps(original)
            def write(backend: Any, *args: Any, **kwargs: Any) -> Any:
                with self.lock:
                    return original(backend, *args, **kwargs)

            return write

        self._apply_patches(
            PatchSet(
                "dynamodb-atomic-writes",
                [AttributePatch(DynamoDBBackend, name, serialized(getattr(DynamoDBBackend, name))) for name in WRITES],
            )
        )
