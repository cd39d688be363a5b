"""Which served entity answers a query: the traffic split, as a pure function of a uniform draw."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar


class Weighted(Protocol):
    traffic_percentage: int


R = TypeVar("R", bound=Weighted)


def pick_served_entity(routes: Sequence[R], draw: float) -> R | None:
    """The route whose share of [0, 100) holds draw*100 (draw in [0, 1)); None when nothing takes traffic.

    Routes with 0 % never win. Shares are laid out in the given order, so route i takes
    [sum of earlier percentages, that + its own).
    """
    point = draw * 100.0
    edge = 0
    for route in routes:
        if route.traffic_percentage <= 0:
            continue
        edge += route.traffic_percentage
        if point < edge:
            return route
    # draw*100 can round up to 100.0 for draws just below 1: give it to the last route with traffic.
    return next((r for r in reversed(routes) if r.traffic_percentage > 0), None)
