"""The strict SIP edge: what a request must be before pjsip's transaction layer sees it (pure).

pjsip's core answers some requests wrongly for a carrier-facing UA (RFC 4475 and RFC 3261
§8.2): it drops unknown methods instead of answering 501, lets a second Content-Length or a
CSeq naming another method through, ignores Require outside INVITE, answers an in-dialog
OPTIONS with 500 and knows only `application/dtmf-relay` INFO. `screen()` reads the raw request
text and says what to answer instead; `gateway/sip/pjfilter.py` sends it from its module ahead
of the transaction layer. ACK is never answered (RFC 3261 §17.2.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.sip.message import split_message

# What this UA implements (pjsua's usages plus the edge's own answers), for Allow.
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, REFER, NOTIFY, MESSAGE"
_HANDLED = frozenset(ALLOW.replace(",", " ").split()) | {"SUBSCRIBE"}
# Methods a gateway is no server for: a carrier registering here is answered, not ignored.
_NOT_ALLOWED = frozenset({"REGISTER", "PUBLISH"})
# Require option tags pjsua implements (its Supported header).
SUPPORTED = frozenset({"100rel", "replaces", "timer", "norefersub"})
# Request-URI schemes pjsua serves (RFC 3261 §8.2.2.1: anything else is 416).
_SCHEMES = ("sip:", "sips:", "tel:")
_SINGLE = ("call-id", "to", "from", "cseq", "max-forwards", "content-length", "content-type")
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_CSEQ = re.compile(r"^\s*(\d{1,10})\s+(\S+)\s*$")
_TAG = re.compile(r";\s*tag\s*=\s*([^;>\s]+)", re.IGNORECASE)
# SIP INFO DTMF: application/dtmf-relay is pjsua's own; these are answered here.
DTMF_DIGITS = "0123456789*#ABCD"
_INFO_TYPES_PJSUA = ("application/dtmf-relay", "application/media_control+xml",
                     "application/trickle-ice-sdpfrag")
INFO_ACCEPT = "application/dtmf-relay, application/dtmf"
MAX_CSEQ = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Answer:
    """What the edge answers for a request (statelessly), instead of pjsip."""

    code: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    # Only inside an existing dialog (Call-ID + tags): else 481. The filter checks.
    in_dialog: tuple[str, str, str] | None = None   # (call id, local tag, remote tag)
    digit: str = ""                                 # an INFO DTMF digit to report


def screen(raw: bytes) -> Answer | None:
    """The answer the edge gives to one received request, or None to let pjsip handle it."""
    text = raw.decode("utf-8", "surrogateescape")
    start, headers, body = split_message(text)
    parts = start.split(" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]):
        return None  # pjsip's parser judges the request line
    method, uri = parts[0], parts[1]
    if method == "ACK":
        return None
    values: dict[str, str] = {}
    counts: dict[str, int] = {}
    for name, value in headers:
        counts[name] = counts.get(name, 0) + 1
        values.setdefault(name, value)
    for name in _SINGLE:
        if counts.get(name, 0) > 1:
            return Answer(400, f"Multiple {name.title()} headers")
    content = body.encode("utf-8", "surrogateescape")
    length = values.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            return Answer(400, "Bad Content-Length")
        if int(length) > len(content):
            return Answer(400, "Content-Length larger than message")
        content = content[:int(length)]
    cseq = _CSEQ.match(values.get("cseq", ""))
    if cseq is None or int(cseq.group(1)) > MAX_CSEQ:
        return Answer(400, "Bad CSeq")
    if cseq.group(2) != method:
        return Answer(400, "CSeq method does not match the request")
    if method in _NOT_ALLOWED:
        return Answer(405, "Method Not Allowed", (("Allow", ALLOW),))
    if method not in _HANDLED:
        return Answer(501, "Not Implemented", (("Allow", ALLOW),))
    if not uri.lower().startswith(_SCHEMES):
        return Answer(416, "Unsupported URI Scheme")
    if method != "CANCEL":
        required = [t.strip() for name, value in headers if name == "require"
                    for t in value.split(",") if t.strip()]
        unknown = [t for t in required if t.lower() not in SUPPORTED]
        if unknown:
            return Answer(420, "Bad Extension", (("Unsupported", ", ".join(unknown)[:200]),))
    to_tag = _tag(values.get("to", ""))
    from_tag = _tag(values.get("from", ""))
    dialog = (values.get("call-id", ""), to_tag, from_tag) if to_tag else None
    if method == "OPTIONS" and dialog:
        return Answer(200, "OK", (("Allow", ALLOW), ("Accept", "application/sdp"),
                                  ("Supported", ", ".join(sorted(SUPPORTED)))), in_dialog=dialog)
    if method == "INFO":
        return _info(values, content, dialog)
    return None


def _info(values: dict[str, str], content: bytes, dialog: tuple[str, str, str] | None) -> Answer | None:
    """SIP INFO (RFC 6086 and the legacy DTMF bodies carriers send)."""
    if dialog is None:
        return Answer(481, "Call/Transaction Does Not Exist")
    if "info-package" in values:
        # The gateway announces no Info Package (its Recv-Info is empty).
        return Answer(469, "Bad Info Package", (("Recv-Info", ""),), in_dialog=dialog)
    ctype = "".join(values.get("content-type", "").split(";", 1)[0].split()).lower()
    if not content.strip():
        return Answer(200, "OK", in_dialog=dialog)   # a keep-alive INFO
    if ctype in _INFO_TYPES_PJSUA:
        return None
    if ctype == "application/dtmf":
        digit = content.decode("ascii", "replace").strip().upper()
        if len(digit) != 1 or digit not in DTMF_DIGITS:
            return Answer(400, "Bad DTMF digit", in_dialog=dialog)
        return Answer(200, "OK", in_dialog=dialog, digit=digit)
    return Answer(415, "Unsupported Media Type", (("Accept", INFO_ACCEPT),), in_dialog=dialog)


def _tag(value: str) -> str:
    """The tag parameter of a From/To value (outside its <uri>)."""
    rest = value[value.index(">") + 1:] if ">" in value else value
    match = _TAG.search(rest)
    return match.group(1) if match else ""
