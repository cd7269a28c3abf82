"""Which addresses a WebRTC leg offers as ICE host candidates, and its STUN/TURN servers.

aioice gathers a candidate on every interface address except 127.0.0.1 and has no option to
choose them (aiortc/aioice#2). Its one lookup, `aioice.ice.get_host_addresses`, is wrapped here so
that gathering inside `configured_hosts(...)` offers exactly the configured addresses, loopback
included; anywhere else it behaves as aioice does.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import logging
from collections.abc import Iterator, Sequence

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

from gateway.config.settings import IceServer

_HOSTS: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("webrtc_hosts", default=None)
_aioice_hosts = aioice.ice.get_host_addresses


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    hosts = _HOSTS.get()
    if hosts is None:
        return _aioice_hosts(use_ipv4, use_ipv6)
    return [h for h in hosts if (ipaddress.ip_address(h).version == 4 and use_ipv4)
            or (ipaddress.ip_address(h).version == 6 and use_ipv6)]


aioice.ice.get_host_addresses = _host_addresses
# aioice logs every candidate pair's state change at INFO: per call, a dozen lines of nothing.
logging.getLogger("aioice").setLevel(logging.WARNING)


@contextlib.contextmanager
def configured_hosts(addresses: Sequence[str]) -> Iterator[None]:
    """ICE gathering started in this block (this task and those it creates) offers `addresses`."""
    for address in addresses:
        ipaddress.ip_address(address)  # a name or a typo fails here, not as a call without media
    token = _HOSTS.set(tuple(addresses))
    try:
        yield
    finally:
        _HOSTS.reset(token)


def ice_configuration(servers: Sequence[IceServer]) -> RTCConfiguration:
    """No servers unless configured: aiortc's default would ask a public STUN server."""
    return RTCConfiguration(iceServers=[
        RTCIceServer(urls=list(s.urls), username=s.username or None,
                     credential=s.credential.read() if s.credential is not None else None)
        for s in servers])
