"""Where a call may be transferred to: one pure allowlist for every path that moves a call.

A transfer dials a number on somebody's bill, so nothing moves a call to a destination the
dialplan did not name: not a caller's REFER or INVITE with Replaces, not a language model's tool
call. The destinations a dialplan or its agent script names in its own transfer steps are
allowed by construction; `transfers: {allow: [...]}` adds patterns; callers may move a call
themselves only with `transfers: {caller_refer: true}`, and only to an allowed destination.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["OPERATOR", "TransferPolicy", "is_pattern", "normalize_target"]

OPERATOR = "operator"
# scheme:user@host[:port] and nothing else: no URI headers (`?Replaces=`), no parameters that
# change where the request goes (`;maddr=`), no spaces or controls.
_SIP = re.compile(r"^(sips?):(?:([A-Za-z0-9+*#._~!$&'()=,-]{1,64})@)?"
                  r"([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::(\d{1,5}))?$")
_TEL = re.compile(r"^tel:(\+?[0-9*#]{1,32})$")
_VISUAL = re.compile(r"[\s().-]")
_PATTERN = re.compile(r"^(?:sips?|tel):[^\s?;<>\"]{1,300}$", re.IGNORECASE)


def normalize_target(uri: str) -> str | None:
    """`sip:user@host[:port]`, `sips:...` or `tel:+digits` in one comparable form, or None when the
    text is not a plain destination (parameters other than transport/user, URI headers, junk)."""
    text = uri.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    scheme = text.split(":", 1)[0].lower()
    if scheme == "tel":
        number = _VISUAL.sub("", text[4:].split(";", 1)[0])
        return f"tel:{number}" if _TEL.match(f"tel:{number}") else None
    if scheme not in ("sip", "sips") or "?" in text:
        return None
    core, *params = text.split(";")
    for param in params:
        name = param.split("=", 1)[0].strip().lower()
        if name not in ("transport", "user"):
            return None
    match = _SIP.match(core)
    if match is None:
        return None
    scheme, user, host, port = match.groups()
    user = _VISUAL.sub("", user) if user and user.lstrip("+").replace("-", "").isdigit() else user
    target = f"{scheme.lower()}:{user + '@' if user else ''}{host.lower()}"
    return f"{target}:{port}" if port else target


def is_pattern(text: str) -> bool:
    """A destination or a glob (only `*` is special) the allowlist can hold."""
    return bool(_PATTERN.match(text)) and (normalize_target(text) is not None or "*" in text)


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


@dataclass(frozen=True, slots=True)
class TransferPolicy:
    """allow: normalised destinations or glob patterns (`sip:*@pbx.example.com`, `tel:+1555*`);
    `operator` stands for the configured operator URI until `resolve()` replaces it."""

    allow: tuple[str, ...] = ()
    caller_refer: bool = False

    def resolve(self, operator_uri: str) -> TransferPolicy:
        """The policy with `operator` replaced by the configured operator URI."""
        allow = tuple(dict.fromkeys(
            (normalize_target(operator_uri) or "") if entry == OPERATOR else entry
            for entry in self.allow))
        return TransferPolicy(tuple(a for a in allow if a), self.caller_refer)

    def with_targets(self, targets: tuple[str, ...]) -> TransferPolicy:
        extra = tuple(t if t == OPERATOR else (normalize_target(t) or "") for t in targets)
        allow = tuple(dict.fromkeys(a for a in (*self.allow, *extra) if a))
        return TransferPolicy(allow, self.caller_refer)

    def allows(self, uri: str) -> bool:
        """Whether an agent (script or model) may send the call to uri."""
        target = normalize_target(uri)
        if target is None:
            return False
        return any(_glob(pattern).fullmatch(target) for pattern in self.allow)

    def allows_caller(self, uri: str) -> bool:
        """Whether the far end itself may move the call to uri (REFER, INVITE with Replaces)."""
        return self.caller_refer and self.allows(uri)
