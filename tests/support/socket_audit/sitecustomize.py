"""Loaded by every Python process started with this folder on PYTHONPATH and
GATEWAY_TEST_SOCKET_LOG set: an audit hook (sys.addaudithook) appends each socket destination the
process connects or sends to, and each host it looks up, to that file as JSON lines."""

import json
import os
import sys

_LOG = os.environ.get("GATEWAY_TEST_SOCKET_LOG")


def _hook(event, args):
    if event not in ("socket.connect", "socket.sendto", "socket.getaddrinfo"):
        return
    try:
        if event == "socket.getaddrinfo":
            where = [str(args[0]), str(args[1])]
        else:
            address = args[1]
            where = list(address) if isinstance(address, tuple) else str(address)
        line = json.dumps({"pid": os.getpid(), "event": event, "to": where}, default=str)
        fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    except Exception:  # noqa: BLE001 - an audit hook must never break the process it watches
        pass


if _LOG:
    sys.addaudithook(_hook)
