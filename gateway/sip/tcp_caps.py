"""Per-source caps on SIP TCP connections (pj thread, once a second; Linux).

Idle TCP connections cost pjsip an ioqueue slot each and never send a request the flood guard
could see; a few dozen from one stranger would starve the listener. The kernel's own tables
(/proc/net/tcp*) say who is connected; a connection over the cap, or from a banned source (any
stranger with unknown_sources: drop), is shut down on our own socket, and pjsip sees the peer
close it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["TcpCaps", "over_cap"]

_ESTABLISHED = "01"
_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def over_cap(connections: Iterable[tuple[int, str]], per_source: int, total: int,
             allowed: Callable[[str], bool], shut_out: Callable[[str], bool]) -> list[int]:
    """Inodes to close: from strangers (addresses not allowed), beyond `per_source` each and
    `total` together, and every one from a source that is shut out.
    connections: (socket inode, remote address)."""
    counts: dict[str, int] = {}
    kept = 0
    close = []
    for inode, address in connections:
        if allowed(address):
            continue
        counts[address] = counts.get(address, 0) + 1
        if shut_out(address) or counts[address] > per_source or kept >= total:
            close.append(inode)
        else:
            kept += 1
    return close


class TcpCaps:
    def __init__(self, port: int, allowed: Callable[[str], bool], shut_out: Callable[[str], bool],
                 per_source: int = 4, total: int = 32) -> None:
        self.port = port
        self.per_source = per_source
        self.total = total
        self._allowed = allowed
        self._shut_out = shut_out
        self.enabled = _TABLES[0].exists()

    def enforce(self) -> int:
        """Close what is over the caps; returns how many connections were closed."""
        if not self.enabled:
            return 0
        inodes = over_cap(self._connections(), self.per_source, self.total, self._allowed,
                          self._shut_out)
        if not inodes:
            return 0
        fds = _socket_fds()
        closed = 0
        for inode in inodes:
            fd = fds.get(inode)
            if fd is None:
                continue
            try:
                with socket.socket(fileno=os.dup(fd)) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
                closed += 1
            except OSError:
                pass
        return closed

    def _connections(self) -> list[tuple[int, str]]:
        found = []
        for table in _TABLES:
            try:
                lines = table.read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
                if state == _ESTABLISHED and int(local.rsplit(":", 1)[1], 16) == self.port and inode:
                    found.append((inode, _address(remote.rsplit(":", 1)[0])))
        return found


def _address(hex_address: str) -> str:
    """/proc/net/tcp's address: 32-bit words in host (little-endian) byte order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(words)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _socket_fds() -> dict[int, int]:
    fds = {}
    for entry in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:["):
            fds[int(target[8:-1])] = int(entry.name)
    return fds
