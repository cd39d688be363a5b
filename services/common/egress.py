"""Which addresses an external model's provider URL may reach (the egress policy). Pure.

Providers are normally on the internet. An address on loopback, link-local, private or other non-public
ranges (people run Ollama or vLLM next to Podium, but the same ranges hold Podium's own services, cloud
metadata endpoints and every internal port) is reached only when the spec was written by an admin
(`may_reach_private`), or when it lies in a network the platform allows for everyone
(`PODIUM_EGRESS_ALLOWED_NETWORKS`). Podium's own listeners (the router's ports on a local address) are
refused for everyone, so an endpoint cannot call the router that serves it.

The control plane checks a URL whose host is an address (or `localhost`) when the spec is written; the
router checks every address it is about to connect to, after resolving the name (DNS can change).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Set on a stored served config that an admin wrote (services/control_plane/spec_external.py check_egress):
# routers let its providers be on private addresses (ExternalModelTarget.may_reach_private).
PRIVATE_EGRESS = "private_egress"
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


@dataclass(frozen=True)
class EgressPolicy:
    allowed_networks: tuple[Network, ...] = ()   # private networks every spec writer may reach
    podium_ports: frozenset[int] = field(default_factory=frozenset)   # Podium's listeners on local addresses


def parse_networks(text: str) -> tuple[Network, ...]:
    """The networks of a comma-separated CIDR list ("10.1.0.0/16, fd00::/8"); raises ValueError on a bad one."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_private(address: Address) -> bool:
    """Whether an address is anything but a public unicast one (loopback, link-local, private, reserved...),
    an IPv6 address carrying an IPv4 one (mapped, 6to4, Teredo, NAT64) judged by the IPv4 address it carries."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_private(embedded)
    return not address.is_global or address.is_multicast


def egress_refusal(host: str, port: int, may_reach_private: bool, policy: EgressPolicy) -> str | None:
    """Why connecting to `host` (an IP address) on `port` is refused; None when it is allowed."""
    try:
        address: Address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return "it is not an IP address"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if port in policy.podium_ports and (address.is_loopback or address.is_unspecified):
        return "it is one of Podium's own listeners"
    if not is_private(address) or may_reach_private:
        return None
    if any(address.version == net.version and address in net for net in policy.allowed_networks):
        return None
    return ("it is a loopback, link-local or private address, which only specs written by an admin may reach "
            "(or networks in PODIUM_EGRESS_ALLOWED_NETWORKS)")


def url_refusal(url: str, may_reach_private: bool, policy: EgressPolicy) -> str | None:
    """Why a provider base URL is refused before any lookup: its host is an address or a local name that the
    policy refuses. A host name that needs DNS returns None here (the router checks what it resolves to)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "its port is not a number"
    if host in LOCAL_NAMES or host.endswith(".localhost"):
        host = "127.0.0.1"
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    return egress_refusal(host, port, may_reach_private, policy)
