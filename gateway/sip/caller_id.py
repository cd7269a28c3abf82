"""The caller's number as a carrier asserts it: P-Asserted-Identity (RFC 3325), else
Remote-Party-ID (the older draft many carriers still send), else the From user; "anonymous" when
the caller withheld it (Privacy: id, user or header, RFC 3323; Remote-Party-ID privacy=full|uri|name).

Only INVITEs the gateway accepts (from a trunk, or the front) get this far, and the carrier is
the party that vouches for the asserted identity. Header values are untrusted text: users are
cut to their grammar by clean_user.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from gateway.sip.message import InviteInfo, clean_user

__all__ = ["ANONYMOUS", "caller_number"]

ANONYMOUS = "anonymous"
_URI = re.compile(r"<([^>]*)>|^\s*((?:sips?|tel):[^;,\s]*)", re.IGNORECASE)
_USER = re.compile(r"^(?:sips?|tel):([^@;?]+)", re.IGNORECASE)
_PRIVATE = {"id", "user", "header"}


def caller_number(info: InviteInfo) -> str:
    if _withheld(info):
        return ANONYMOUS
    for name in ("p-asserted-identity", "remote-party-id"):
        value = info.header(name)
        if value:
            users = [user for part in _entries(value) if (user := _user(part))]
            if users:
                # A tel: URI (or a number) is the E.164 identity; prefer it over a name.
                numbers = [u for u in users if any(c.isdigit() for c in u) and u != ANONYMOUS]
                return (numbers or users)[0]
    return info.caller


def _withheld(info: InviteInfo) -> bool:
    privacy = {p.strip().lower() for p in (info.header("privacy") or "").split(";")}
    if privacy & _PRIVATE:
        return True
    rpid = (info.header("remote-party-id") or "").lower()
    return re.search(r";\s*privacy\s*=\s*\"?(full|uri|name)\b", rpid) is not None


def _entries(value: str) -> list[str]:
    """The comma-separated name-addrs of one header value (commas inside <...> kept)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(value):
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "," and depth <= 0:
            out.append(value[start:i])
            start = i + 1
    out.append(value[start:])
    return [part.strip() for part in out[:4] if part.strip()]  # a carrier sends one or two


def _user(entry: str) -> str:
    match = _URI.search(entry)
    uri = (match.group(1) or match.group(2)) if match else ""
    user = _USER.match(uri.strip())
    return clean_user(unquote(user.group(1))) if user else ""
