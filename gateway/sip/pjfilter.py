"""A pjsip module ahead of the transaction layer: every request meets the flood guard before
pjsua creates a transaction, a dialog or media ports for it (pj thread only).

pjsua2 has no Python hook that early, so the module is registered through pjsip's C API
(`pjsip_endpt_register_module`, exported by the pjsua2 extension). Its callback gets the raw
`pjsip_rx_data`; where the packet text and the source address sit inside it depends on how
pjproject was compiled, so `install()` first sends the endpoint one OPTIONS from loopback and
finds both in the received struct, checking each against what was sent. If that fails the
module is left out and the gateway says so (refusals then happen in onIncomingCall).
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import socket
import time
import uuid
from collections.abc import Callable

import pjsua2 as pj

log = logging.getLogger("gateway.sip")

_PRIORITY = 8          # PJSIP_MOD_PRIORITY_TRANSPORT_LAYER: before the transaction layer (16)
_SCAN = 70_000         # bytes of pjsip_rx_data searched while calibrating
_NAME_MAX = 46         # PJ_INET6_ADDRSTRLEN
_RxCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


class _PjStr(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_char_p), ("slen", ctypes.c_ssize_t)]


class _Module(ctypes.Structure):
    """struct pjsip_module (pjsip/sip_module.h)."""

    _fields_ = [
        ("prev", ctypes.c_void_p), ("next", ctypes.c_void_p), ("name", _PjStr),
        ("id", ctypes.c_int), ("priority", ctypes.c_int),
        ("load", ctypes.c_void_p), ("start", ctypes.c_void_p), ("stop", ctypes.c_void_p),
        ("unload", ctypes.c_void_p), ("on_rx_request", _RxCallback),
        ("on_rx_response", ctypes.c_void_p), ("on_tx_request", ctypes.c_void_p),
        ("on_tx_response", ctypes.c_void_p), ("on_tsx_state", ctypes.c_void_p),
    ]


Decide = Callable[[str, str], str]   # (source IP, method) -> "pass" | "reject" | "drop"


class RequestFilter:
    def __init__(self, decide: Decide) -> None:
        self._decide = decide
        self._lib = ctypes.CDLL(pj._pjsua2.__file__)
        self._lib.pjsua_get_pjsip_endpt.restype = ctypes.c_void_p
        self._lib.pjsip_endpt_register_module.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._lib.pjsip_endpt_unregister_module.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._lib.pjsip_endpt_respond_stateless.argtypes = [
            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
            ctypes.c_void_p]
        self._callback = _RxCallback(self._on_rx_request)   # kept: pjsip holds a raw pointer
        self._name = b"mod-gateway-flood"
        self._module = _Module(name=_PjStr(self._name, len(self._name)), id=-1,
                               priority=_PRIORITY, on_rx_request=self._callback)
        self._endpt: int | None = None
        self._packet_at = -1
        self._source_at = -1
        self._probe: bytes | None = None
        self._probe_host = ""
        self.errors = 0

    # ---- setup (pj thread, before libStart returns control to callers) ----
    def install(self, ep: pj.Endpoint, address: str, port: int) -> bool:
        """Register the module and calibrate it on one OPTIONS sent to address:port."""
        self._endpt = self._lib.pjsua_get_pjsip_endpt()
        if self._lib.pjsip_endpt_register_module(self._endpt, ctypes.byref(self._module)) != 0:
            log.error("flood guard: pjsip refused the module; refusals happen after pjsua")
            return False
        host = "127.0.0.1" if address in ("", "0.0.0.0") else address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((host, 0))
            me = sock.getsockname()
            self._probe_host = me[0]
            tag = uuid.uuid4().hex
            self._probe = (f"OPTIONS sip:probe@{host}:{port} SIP/2.0\r\n"
                           f"Via: SIP/2.0/UDP {host}:{me[1]};branch=z9hG4bK{tag}\r\n"
                           f"From: <sip:probe@{host}>;tag={tag[:8]}\r\nTo: <sip:probe@{host}>\r\n"
                           f"Call-ID: {tag}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                           "Content-Length: 0\r\n\r\n").encode()
            sock.sendto(self._probe, (host, port))
            deadline = time.monotonic() + 2.0
            while self._probe is not None and time.monotonic() < deadline:
                ep.libHandleEvents(10)
        if self._source_at < 0:
            self._lib.pjsip_endpt_unregister_module(self._endpt, ctypes.byref(self._module))
            log.error("flood guard: could not find the source address in pjsip's rx data; "
                      "refusals happen after pjsua")
            return False
        log.info("flood guard: requests checked before pjsip's transaction layer")
        return True

    def _calibrate(self, rdata: int) -> None:
        probe, self._probe = self._probe, None
        assert probe is not None
        raw = ctypes.string_at(rdata, _SCAN)
        packet_at = raw.find(probe)
        if packet_at < 0:
            return
        # Behind the packet buffer: its length (pj_ssize_t), the source sockaddr, then the
        # source as text. Take the first text that is our own address after the length field.
        length = len(probe).to_bytes(ctypes.sizeof(ctypes.c_ssize_t), "little")
        length_at = raw.find(length, packet_at + len(probe))
        while length_at >= 0 and length_at % ctypes.sizeof(ctypes.c_ssize_t):
            length_at = raw.find(length, length_at + 1)
        if length_at < 0:
            return
        for offset in range(length_at, min(length_at + 256, _SCAN - _NAME_MAX)):
            if _address_at(raw, offset) == self._probe_host:
                self._packet_at, self._source_at = packet_at, offset
                return

    # ---- per request (pj thread) ----
    def _on_rx_request(self, rdata: int) -> int:
        try:
            if self._probe is not None:
                self._calibrate(rdata)
                return 1  # our own probe: consumed
            if self._source_at < 0:
                return 0
            source = _address_at(ctypes.string_at(rdata + self._source_at, _NAME_MAX), 0)
            if source is None:
                return 0
            method = ctypes.string_at(rdata + self._packet_at, 16).split(b" ", 1)[0].decode(
                "ascii", "replace")
            verdict = self._decide(source, method)
            if verdict == "reject":
                self._lib.pjsip_endpt_respond_stateless(self._endpt, rdata, 403, None, None, None)
                return 1
            return 1 if verdict == "drop" else 0
        except Exception:  # noqa: BLE001 - an exception must never cross into pjsip's C stack
            self.errors += 1
            return 0


def _address_at(raw: bytes, offset: int) -> str | None:
    """The NUL-terminated IP address text at offset, or None."""
    end = raw.find(b"\0", offset, offset + _NAME_MAX)
    if end <= offset:
        return None
    try:
        text = raw[offset:end].decode("ascii")
        ipaddress.ip_address(text)
    except (UnicodeDecodeError, ValueError):
        return None
    return text
