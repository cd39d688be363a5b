"""Which replica takes a query: power of two choices on outstanding requests. Pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence


def pick_replica(addresses: Sequence[str], in_flight: Mapping[str, int],
                 randint: Callable[[int, int], int]) -> str | None:
    """Of two replicas drawn at random, the one with fewer requests in flight (ties: the first drawn).

    `randint(a, b)` is random.Random.randint (inclusive bounds), passed in so tests can fix the draws.
    """
    if not addresses:
        return None
    if len(addresses) == 1:
        return addresses[0]
    first = randint(0, len(addresses) - 1)
    second = randint(0, len(addresses) - 2)
    if second >= first:
        second += 1  # two distinct replicas
    a, b = addresses[first], addresses[second]
    return b if in_flight.get(b, 0) < in_flight.get(a, 0) else a
