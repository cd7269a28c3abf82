"""Pure reading of a received INVITE's text: who is called, who calls, is it well formed.

pjsip's parser accepts some malformed requests (RFC 4475); `problems()` lists what the
gateway refuses on top of it, with the status code to answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

_COMPACT = {"i": "call-id", "t": "to", "f": "from", "l": "content-length", "c": "content-type",
            "m": "contact", "v": "via", "e": "content-encoding"}
_USER = re.compile(r"^(?:sips?|tel):([^@;>?]*)", re.IGNORECASE)
_SINGLE = ("call-id", "to", "from", "cseq", "max-forwards", "content-length")
_SDP_RANGES = ("application/sdp", "application/*", "*/*")
# A number keeps only what a keypad can dial; any other user part keeps RFC 3261's unreserved
# characters. Nothing else from a caller reaches a log, a record, a prompt or a dial string.
_NUMBER = re.compile(r"^\+?[0-9*#().\s-]{1,64}$")
_NOT_NUMBER_CHAR = re.compile(r"[^+0-9*#]")
_NOT_USER_CHAR = re.compile(r"[^A-Za-z0-9._~!*'()+-]")
_MAX_USER = 64
_PRINTABLE_MAX = 120


@dataclass(frozen=True, slots=True)
class InviteInfo:
    dialled: str
    caller: str
    call_id: str
    headers: tuple[tuple[str, str], ...]
    to_user: str = ""

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None


def parse_invite(text: str) -> InviteInfo:
    """Dialled number (Request-URI user, else To user), caller (From user) and headers."""
    head, _, _ = _split(text)
    lines = _unfold(head)
    request_line = lines[0] if lines else ""
    headers = tuple(_headers(lines[1:]))
    parts = request_line.split(" ")
    ruri_user = _uri_user(parts[1]) if len(parts) >= 2 else ""
    to_user = _uri_user(_addr(dict(headers).get("to", "")))
    dialled = ruri_user or to_user
    caller = _uri_user(_addr(dict(headers).get("from", "")))
    call_id = printable(dict(headers).get("call-id", ""))
    return InviteInfo(dialled=dialled, caller=caller, call_id=call_id,
                      headers=headers, to_user=to_user)


def problems(text: str, datagram: bool = True) -> tuple[int, str] | None:
    """(status, reason) when the INVITE must be refused although pjsip parsed it.

    pjsip answers some malformed INVITEs itself before the gateway sees them: a body that is
    neither SDP nor multipart (415, with Accept) and unsupported Require extensions (420).
    """
    head, body, _ = _split(text)
    headers = list(_headers(_unfold(head)[1:]))
    counts: dict[str, int] = {}
    for name, _value in headers:
        counts[name] = counts.get(name, 0) + 1
    for name in _SINGLE:
        if counts.get(name, 0) > 1:
            return 400, f"Multiple {name.title()} headers"
    values = dict(headers)
    content = body.encode("utf-8", "surrogateescape")
    length = values.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            return 400, "Bad Content-Length"
        if datagram and int(length) > len(content):
            return 400, "Content-Length larger than message"
        content = content[:int(length)]
    if content.strip() and "content-type" in values:
        codings = [c.strip().lower() for name, value in headers if name == "content-encoding"
                   for c in value.split(",")]
        if any(c and c != "identity" for c in codings):
            return 415, "Unsupported Media Type"
    accept = ",".join(value for name, value in headers if name == "accept")
    if accept.strip(" ,") and not _accepts_sdp(accept):
        return 406, "Not Acceptable"
    return None


def split_message(text: str) -> tuple[str, list[tuple[str, str]], str]:
    """(start line, headers as (lower-case full name, value) with folding undone, body)."""
    head, body, _ = _split(text)
    lines = _unfold(head)
    return (lines[0] if lines else ""), list(_headers(lines[1:])), body


def _media_type(value: str) -> str:
    return "".join(value.split(";", 1)[0].split()).lower()


def _accepts_sdp(accept: str) -> bool:
    """Whether an Accept value admits application/sdp (ranges, q-values: RFC 3261 20.1)."""
    for item in accept.split(","):
        media, *params = item.split(";")
        if _media_type(media) not in _SDP_RANGES:
            continue
        q = 1.0
        for param in params:
            key, _, val = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(val.strip())
                except ValueError:
                    q = 1.0
        if q > 0:
            return True
    return False


def _split(text: str) -> tuple[str, str, str]:
    for sep in ("\r\n\r\n", "\n\n"):
        if sep in text:
            head, body = text.split(sep, 1)
            return head, body, sep
    return text, "", ""


def _unfold(head: str) -> list[str]:
    lines: list[str] = []
    for raw in re.split(r"\r?\n", head):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += " " + raw.strip()
        else:
            lines.append(raw)
    return lines


def _headers(lines: list[str]):
    for line in lines:
        if ":" not in line:
            continue
        name, value = line.split(":", 1)
        name = name.strip().lower()
        yield _COMPACT.get(name, name), value.strip()


def _addr(value: str) -> str:
    """The URI inside a name-addr (`"Bob" <sip:bob@x>;tag=1`) or an addr-spec."""
    if "<" in value and ">" in value:
        return value[value.index("<") + 1 : value.index(">")]
    return value.split(";", 1)[0].strip()


def _uri_user(uri: str) -> str:
    match = _USER.match(uri.strip())
    if not match:
        return ""
    user = clean_user(unquote(match.group(1)))
    if uri.lower().startswith("tel:"):
        return user
    return user if "@" in uri else ""


def clean_user(user: str) -> str:
    """A URI user part restricted to its grammar: numbers to [+0-9*#], names to unreserved
    characters, at most 64 of them (a `%0D%0A` in a From user never forges a log line)."""
    if _NUMBER.match(user) and any(c.isdigit() for c in user):
        return _NOT_NUMBER_CHAR.sub("", user)[:_MAX_USER]
    return _NOT_USER_CHAR.sub("", user)[:_MAX_USER]


def printable(text: str) -> str:
    """Untrusted text bounded and with every control or non-ASCII character escaped, for a log
    line or a record."""
    clipped = text[:_PRINTABLE_MAX]
    escaped = clipped.encode("unicode_escape", "backslashreplace").decode("ascii")
    return escaped + ("..." if len(text) > _PRINTABLE_MAX else "")
