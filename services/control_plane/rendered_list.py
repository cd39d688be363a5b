"""The endpoint list answer, rendered once per change: 10,000 endpoints make 4 MB of JSON."""

from __future__ import annotations

import orjson

from services.common.principals import CAN_VIEW, rank
from services.control_plane import permissions, views


class RenderedList:
    """Each summary is rendered once per change of its endpoint, the whole answer once per change of any
    endpoint for callers who see them all (admins); other callers pay one set check per endpoint to filter
    the rendered parts by the principal ids that may view each."""

    def __init__(self):
        self._summaries: dict[str, tuple[dict, bytes, frozenset[str]]] = {}   # (rendered from, JSON, viewers)
        self._version = 0
        self._everything: tuple[int, bytes] = (-1, b"")

    def changed(self) -> None:
        """Called on every write to the endpoints (the dicts are replaced, never mutated)."""
        self._version += 1

    def render(self, endpoints: dict[str, dict], viewer_ids: set[str] | None) -> bytes:
        """The answer for a caller who may view endpoints granted to `viewer_ids` (None: every endpoint)."""
        if viewer_ids is None and self._everything[0] == self._version:
            return self._everything[1]
        version, cache, parts = self._version, self._summaries, []
        for name, endpoint in endpoints.items():
            cached = cache.get(name)
            if cached is None or cached[0] is not endpoint:
                cached = cache[name] = (endpoint, orjson.dumps(views.summary(endpoint)), frozenset(
                    p for p, level in permissions.acl_pairs(endpoint) if rank(level) >= rank(CAN_VIEW)))
            if viewer_ids is None or not viewer_ids.isdisjoint(cached[2]):
                parts.append(cached[1])
        if len(cache) > len(endpoints):   # deleted endpoints leave the cache
            for name in [n for n in cache if n not in endpoints]:
                del cache[name]
        answer = b'{"endpoints":[' + b",".join(parts) + b"]}"
        if viewer_ids is None:
            self._everything = (version, answer)
        return answer
