"""Who is calling, for per-address limits: the socket peer, or behind trusted proxies the
right-most untrusted address of `X-Forwarded-For`.

Why right-most: each proxy appends the address it received the request from, so entries to the
left of the last untrusted one were written by the client itself and can be anything. A peer that
is not a trusted proxy cannot forward for anyone: its `X-Forwarded-For` is ignored, so rotating
that header does not dodge a limit. uvicorn's own proxy-header rewriting is switched off
(`cozy serve` sets proxy_headers=False); `security.trusted_proxies` is the only setting.
IPv6 clients are keyed by their /64, which one host can fill with addresses at will.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

_MAX_HOPS = 32  # a longer X-Forwarded-For chain is cut there (each hop costs a parse)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientAddress:
    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self.trusted: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in trusted_proxies)

    def _trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in net for net in self.trusted)

    def __call__(self, scope: Scope) -> str | None:
        """The client's address (normalised; an IPv6 one as its /64), None when unknown."""
        client = scope.get("client")
        peer = _parse(client[0]) if client else None
        if peer is None:
            return client[0][:64] if client and client[0] else None
        if not self.trusted or not self._trusted(peer):
            return _key(peer)
        hops: list[str] = []
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-for":
                hops += [h.strip() for h in value.decode("latin-1").split(",")]
        found = peer
        for hop in reversed(hops[-_MAX_HOPS:]):
            address = _parse(hop)
            if address is None:
                break  # garbage where a proxy's entry should be: stop at the last good one
            found = address
            if not self._trusted(address):
                break
        return _key(found)


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[v6]:port"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "v4:port"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _key(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
