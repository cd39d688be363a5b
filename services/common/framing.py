"""How a PredictStream frame (protos/podium_api/v1/worker.proto) is filled, the same on both sides."""

from __future__ import annotations

MAX_FRAME_BYTES = 4 << 20   # a frame takes queued items up to this size, or one larger item alone
_ITEM_OVERHEAD_BYTES = 64   # an item's fields besides its body, roughly


def take_frame(queue: list) -> list:
    """Removes and returns the items at the front of `queue` (each with a `body`) that fit one frame."""
    size, count = 0, 0
    for item in queue:
        size += len(item.body) + _ITEM_OVERHEAD_BYTES
        if count and size > MAX_FRAME_BYTES:
            break
        count += 1
    taken = queue[:count]
    del queue[:count]
    return taken
