"""Who sends a request, as far as limits and usage records need to know.

Until identities land (issue 5), every request is the built-in "admin"; the router takes the caller as a
parameter everywhere, so authentication only has to supply a different one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    name: str                                # user name (email) or service principal application id
    groups: frozenset[str] = frozenset()     # the user groups it belongs to
    is_service_principal: bool = False


DEFAULT_CALLER = Caller("admin")
