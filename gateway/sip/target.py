"""Where a call goes, as people write it (pure): `HOST`, `HOST:PORT`, `[v6]:PORT`, or a SIP URI
`sip:`/`sips:` with or without a user (`sip:127.0.0.1:5060`, `sip:+15550100@gw:5080;transport=tcp`).

Every command that takes a target (`gateway call --to`, `loadtest --target`, `simulate --to`, the
test softphone) reads it here, so a target is either a Request-URI pjsua accepts or a usage error
that says what was expected.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})?)$")
_USER = re.compile(r"^[A-Za-z0-9+*#._~!'()$&=,;?/%-]{1,64}$")
_PARAM = re.compile(r"^[A-Za-z0-9-]+(?:=[A-Za-z0-9.-]+)?$")
EXPECTED = "HOST[:PORT] or a SIP URI (sip:[USER@]HOST[:PORT], sips:...)"


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int | None = None
    scheme: str = "sip"
    user: str = ""
    params: tuple[str, ...] = ()

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host

    def uri(self, number: str = "", transport: str = "") -> str:
        """The Request-URI: the target's own user unless a number is given."""
        user = number or self.user
        params = list(self.params)
        if transport and transport != "udp" and not any(p.startswith("transport=") for p in params):
            params.append(f"transport={transport}")
        tail = "".join(f";{p}" for p in params)
        return f"{self.scheme}:{user + '@' if user else ''}{self.hostport}{tail}"


def parse_target(text: str) -> Target:
    """A Target, or ValueError naming what was expected."""
    raw = text.strip()
    scheme = "sip"
    user = ""
    match = re.match(r"^(sips?):", raw, re.IGNORECASE)
    if match:
        scheme = match.group(1).lower()
        raw = raw[match.end():]
    elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:[^0-9\[]", raw) and not raw.startswith("["):
        raise ValueError(f"{text!r}: only sip: and sips: URIs are targets ({EXPECTED})")
    raw, *params = raw.split(";")
    if "@" in raw:
        if not match:
            raise ValueError(f"{text!r}: a user needs a SIP URI, e.g. sip:{raw} ({EXPECTED})")
        user, _, raw = raw.rpartition("@")
        if not _USER.match(user):
            raise ValueError(f"{text!r}: {user!r} is not a SIP user part")
    host, port = _hostport(raw, text)
    for param in params:
        if not _PARAM.match(param):
            raise ValueError(f"{text!r}: {param!r} is not a URI parameter")
    return Target(host, port, scheme, user, tuple(params))


def _hostport(raw: str, text: str) -> tuple[str, int | None]:
    host, port_text = raw, ""
    if raw.startswith("["):
        end = raw.find("]")
        host, rest = raw[:end + 1], raw[end + 1:]
        if end < 0 or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected [IPv6]:PORT ({EXPECTED})")
        port_text = rest[1:]
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
    elif raw.count(":") > 1:
        try:
            ipaddress.IPv6Address(raw)
        except ValueError:
            raise ValueError(f"{text!r}: expected {EXPECTED}") from None
        host = f"[{raw}]"
    if not host or not _HOST.match(host):
        raise ValueError(f"{text!r}: no host ({EXPECTED})")
    if port_text == "" and raw.endswith(":"):
        raise ValueError(f"{text!r}: empty port ({EXPECTED})")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r}: the port must be 1-65535 ({EXPECTED})")
        return host, int(port_text)
    return host, None


def target_arg(text: str) -> str:
    """For argparse's type=: the target as given, checked (a ValueError is the usage error)."""
    import argparse

    try:
        parse_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()
