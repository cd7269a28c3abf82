"""Helpers shared by integration tests: free ports, real peers (Kamailio, sipp)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from gateway.ops.ports import free_port

__all__ = ["free_port", "free_udp_port", "udp_port_is_free", "wait_until"]


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port the kernel says is free right now (bind to port 0, read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def udp_port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
