"""A pjsip module ahead of the transaction layer: every request meets the flood guard, then the
strict SIP edge (`sip/strict.py`), before pjsua creates a transaction, a dialog or media ports
for it (pj thread only). The edge's answers are sent statelessly from here.

pjsua2 has no Python hook that early, so the module is registered through pjsip's C API
(`pjsip_endpt_register_module`, exported by the pjsua2 extension). Its callback gets the raw
`pjsip_rx_data`; where the packet text and the source address sit inside it depends on how
pjproject was compiled, so `install()` first sends the endpoint one OPTIONS from loopback and
finds both in the received struct, checking each against what was sent. If that fails the
module is left out and the gateway says so (refusals then happen in onIncomingCall).
A TCP message larger than pjsip's receive buffer closes its connection (pjsip would only drop
the buffer and read on in the middle of the message).
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

from gateway.sip.strict import Answer, screen

log = logging.getLogger("gateway.sip")

_PRIORITY = 8          # PJSIP_MOD_PRIORITY_TRANSPORT_LAYER: before the transaction layer (16)
_SCAN = 70_000         # bytes of pjsip_rx_data searched while calibrating
_NAME_MAX = 46         # PJ_INET6_ADDRSTRLEN
_MAX_MESSAGE = 70_000  # no pjsip build here receives more in one message
_ERXOVERFLOW = 171062  # PJSIP_ERXOVERFLOW: a stream message over PJSIP_MAX_PKT_LEN
_PTR = ctypes.sizeof(ctypes.c_void_p)
_RxCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_DropCallback = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


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


class _Dropped(ctypes.Structure):
    """struct pjsip_tp_dropped_data (pjsip/sip_transport.h)."""

    _fields_ = [("tp", ctypes.c_void_p), ("data", ctypes.c_void_p), ("len", ctypes.c_size_t),
                ("status", ctypes.c_int)]


class _ListHead(ctypes.Structure):
    """The list links at the start of a pjsip_hdr: a header list's head needs only these."""

    _fields_ = [("prev", ctypes.c_void_p), ("next", ctypes.c_void_p), ("rest", ctypes.c_byte * 64)]


Decide = Callable[[str, str], str]   # (source IP, method) -> "pass" | "reject" | "drop"
OnDigit = Callable[[str, str], None]  # (Call-ID, digit): an INFO DTMF digit the edge accepted


class RequestFilter:
    def __init__(self, decide: Decide, on_digit: OnDigit | None = None) -> None:
        self._decide = decide
        self._on_digit = on_digit
        self._lib = ctypes.CDLL(pj._pjsua2.__file__)
        self._lib.pjsua_get_pjsip_endpt.restype = ctypes.c_void_p
        self._lib.pjsip_endpt_register_module.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._lib.pjsip_endpt_unregister_module.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._lib.pjsip_endpt_respond_stateless.argtypes = [
            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
            ctypes.c_void_p]
        lib = self._lib
        lib.pjsip_endpt_create_pool.restype = ctypes.c_void_p
        lib.pjsip_endpt_create_pool.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                                ctypes.c_size_t]
        lib.pjsip_endpt_release_pool.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.pjsip_generic_string_hdr_create.restype = ctypes.c_void_p
        lib.pjsip_generic_string_hdr_create.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                                        ctypes.c_void_p]
        lib.pjsip_ua_find_dialog.restype = ctypes.c_void_p
        lib.pjsip_ua_find_dialog.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                             ctypes.c_int]
        lib.pjsip_endpt_get_tpmgr.restype = ctypes.c_void_p
        lib.pjsip_endpt_get_tpmgr.argtypes = [ctypes.c_void_p]
        lib.pjsip_tpmgr_set_drop_data_cb.argtypes = [ctypes.c_void_p, _DropCallback]
        lib.pjsip_transport_shutdown.argtypes = [ctypes.c_void_p]
        self._callback = _RxCallback(self._on_rx_request)   # kept: pjsip holds a raw pointer
        self._drop_callback = _DropCallback(self._on_dropped)
        self._name = b"mod-gateway-flood"
        self._module = _Module(name=_PjStr(self._name, len(self._name)), id=-1,
                               priority=_PRIORITY, on_rx_request=self._callback)
        self._endpt: int | None = None
        self._packet_at = -1
        self._source_at = -1
        self._msg_at = -1      # rdata->msg_info.msg_buf (this message, also inside a TCP stream)
        self._probe: bytes | None = None
        self._probe_host = ""
        self.errors = 0
        self.answered = 0      # requests the strict edge answered itself
        self.overflows = 0     # TCP connections closed for a message over pjsip's buffer

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
        self._lib.pjsip_tpmgr_set_drop_data_cb(self._lib.pjsip_endpt_get_tpmgr(self._endpt),
                                               self._drop_callback)
        log.info("flood guard: requests checked before pjsip's transaction layer%s",
                 "" if self._msg_at >= 0 else " (strict SIP edge off: message text not found)")
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
                break
        else:
            return
        # msg_info follows pkt_info: its msg_buf points at the packet, then the message length.
        pointer = (rdata + packet_at).to_bytes(_PTR, "little")
        at = raw.find(pointer, self._source_at)
        while at >= 0:
            if at % _PTR == 0 and int.from_bytes(raw[at + _PTR:at + _PTR + 4], "little") == len(probe):
                self._msg_at = at
                return
            at = raw.find(pointer, at + 1)

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
            message = self._message(rdata)
            start = message[:16] if message is not None else ctypes.string_at(
                rdata + self._packet_at, 16)
            method = start.split(b" ", 1)[0].decode("ascii", "replace")
            verdict = self._decide(source, method)
            if verdict == "reject":
                self._lib.pjsip_endpt_respond_stateless(self._endpt, rdata, 403, None, None, None)
                return 1
            if verdict == "drop":
                return 1
            return self._strict(rdata, message) if message is not None else 0
        except Exception:  # noqa: BLE001 - an exception must never cross into pjsip's C stack
            self.errors += 1
            return 0

    def _message(self, rdata: int) -> bytes | None:
        """This request's bytes (msg_info.msg_buf, msg_info.len), once calibrated."""
        if self._msg_at < 0:
            return None
        buf = ctypes.c_void_p.from_address(rdata + self._msg_at).value
        size = ctypes.c_int.from_address(rdata + self._msg_at + _PTR).value
        if not buf or not 0 < size <= _MAX_MESSAGE:
            return None
        return ctypes.string_at(buf, size)

    def _strict(self, rdata: int, message: bytes) -> int:
        """Answer the request here when the strict edge says so (1: consumed)."""
        answer = screen(message)
        if answer is None:
            return 0
        if answer.in_dialog is not None and not self._dialog_exists(*answer.in_dialog):
            answer = Answer(481, "Call/Transaction Does Not Exist")
        self._respond(rdata, answer)
        self.answered += 1
        if answer.digit and answer.in_dialog is not None and self._on_digit is not None:
            self._on_digit(answer.in_dialog[0], answer.digit)
        return 1

    def _dialog_exists(self, call_id: str, local_tag: str, remote_tag: str) -> bool:
        texts = [t.encode("utf-8", "surrogateescape") for t in (call_id, local_tag, remote_tag)]
        strs = [_PjStr(t, len(t)) for t in texts]
        return bool(self._lib.pjsip_ua_find_dialog(*(ctypes.byref(s) for s in strs), 0))

    def _respond(self, rdata: int, answer: Answer) -> None:
        reason = answer.reason.encode()
        reason_str = _PjStr(reason, len(reason))
        if not answer.headers:
            self._lib.pjsip_endpt_respond_stateless(self._endpt, rdata, answer.code,
                                                    ctypes.byref(reason_str), None, None)
            return
        pool = self._lib.pjsip_endpt_create_pool(self._endpt, b"edge", 512, 512)
        if not pool:
            return
        try:
            head = _ListHead()
            head.prev = head.next = ctypes.addressof(head)
            for name, value in answer.headers:
                n, v = name.encode(), value.encode()
                hdr = self._lib.pjsip_generic_string_hdr_create(
                    pool, ctypes.byref(_PjStr(n, len(n))), ctypes.byref(_PjStr(v, len(v))))
                if not hdr:
                    continue
                links = (ctypes.c_void_p * 2).from_address(hdr)   # pj_list_insert_before(head)
                links[0], links[1] = head.prev, ctypes.addressof(head)
                (ctypes.c_void_p * 2).from_address(head.prev)[1] = hdr
                head.prev = hdr
            # respond_stateless copies the headers into its own message before returning.
            self._lib.pjsip_endpt_respond_stateless(self._endpt, rdata, answer.code,
                                                    ctypes.byref(reason_str), ctypes.byref(head),
                                                    None)
        finally:
            self._lib.pjsip_endpt_release_pool(self._endpt, pool)

    def _on_dropped(self, data: int) -> None:
        try:
            dropped = _Dropped.from_address(data)
            if dropped.status == _ERXOVERFLOW and dropped.tp:
                # The rest of the stream would be read from the middle of the message.
                self.overflows += 1
                self._lib.pjsip_transport_shutdown(dropped.tp)
        except Exception:  # noqa: BLE001 - never into pjsip's C stack
            self.errors += 1


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
