"""Which network addresses a webhook may reach: public ones, and others only inside the networks
a script allowlists (SSRF). The check runs on the addresses a name actually resolves to, and only
those are connected to, so a second lookup (DNS rebinding) cannot swap the address afterwards.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

__all__ = ["GuardedResolver", "Network", "networks", "refusal"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# A NAT64 gateway turns these into the IPv4 address in their last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def networks(entries: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def refusal(address: str, allow: Iterable[Network] = ()) -> str | None:
    """Why `address` (an IP literal) may not be reached, or None when it may. Non-literals
    are refused: they must go through the resolver."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return f"{address!r} is not an IP address"
    # An IPv6 address that carries an IPv4 one is judged by that: it is where packets end up
    # (the wrappers themselves count as reserved, which would refuse public hosts).
    allow = tuple(allow)
    candidates = [ip] + ([v4] if (v4 := _embedded_ipv4(ip)) is not None else [])
    if any(c in net for c in candidates for net in allow if c.version == net.version):
        return None
    kind = _kind(candidates[-1])
    return None if kind is None else f"{address} is a {kind} address"


def _embedded_ipv4(ip: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo, NAT64), if any."""
    if ip.version == 4:
        return None
    assert isinstance(ip, ipaddress.IPv6Address)
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _kind(ip: Address) -> str | None:
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved or not ip.is_global:
        return "reserved"
    return None


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, keeping only the addresses `refusal` lets through. aiohttp connects
    to exactly what this returns. aiohttp skips resolvers for IP-literal hosts: check those
    with `refusal` before the request."""

    def __init__(self, allow: Iterable[Network]) -> None:
        self._allow = tuple(allow)
        self._inner = DefaultResolver()
        self.refused: str | None = None

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        reasons = [refusal(result["host"], self._allow) for result in results]
        kept = [result for result, reason in zip(results, reasons, strict=True) if reason is None]
        if not kept:
            self.refused = f"{host} resolves to refused addresses ({'; '.join(filter(None, reasons))})"
            raise OSError(self.refused)
        return kept

    async def close(self) -> None:
        await self._inner.close()
