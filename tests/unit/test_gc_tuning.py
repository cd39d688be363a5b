"""freeze_startup_objects: what exists when a service is ready is left out of later collections, and
garbage from start-up is collected first, not frozen."""

from __future__ import annotations

import gc
import weakref

from services.common.gc_tuning import freeze_startup_objects


class _Node:
    def __init__(self):
        self.me = self   # a cycle: only the collector frees it


def test_startup_objects_are_frozen_and_startup_garbage_is_not():
    kept = [_Node() for _ in range(1000)]
    garbage = _Node()
    collected = weakref.ref(garbage)
    del garbage
    try:
        freeze_startup_objects()
        assert collected() is None                       # collected before the freeze
        assert gc.get_freeze_count() >= len(kept)
        assert all(not any(o is k for o in gc.get_objects(generation=2)) for k in kept[:3])
    finally:
        gc.unfreeze()
