"""Which served entities a query may go to, in which order, when the endpoint falls back. Pure.

As Databricks does with `ai_gateway.fallback_config`: the served entity the traffic split picked first, then
the endpoint's other served entities round-robin in the order the config lists them, until one answers.
A 429, a 5xx or a timeout moves on to the next; any other answer (a success, a 4xx such as a refused
request) is the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar


class Named(Protocol):
    served_entity_name: str


R = TypeVar("R", bound=Named)


def fallback_routes(routes: Sequence[R], first: R, order: Sequence[str]) -> list[R]:
    """`first`, then the routes named in `order` from the one after `first`, wrapping round; only `first`
    when fallback is off (empty `order`) or `first` is not in it."""
    by_name = {r.served_entity_name: r for r in routes}
    if first.served_entity_name not in order:
        return [first]
    at = list(order).index(first.served_entity_name)
    rest = [by_name[name] for name in [*order[at + 1:], *order[:at]] if name in by_name]
    return [first, *rest]


def is_fallback_status(http_status: int) -> bool:
    """Whether a served entity's failure with this status sends the query on to the next one."""
    return http_status == 429 or http_status >= 500
