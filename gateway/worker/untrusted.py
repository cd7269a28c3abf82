"""Text from outside the script (webhook replies, model output) made safe to speak or to log."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_SPOKEN", "brief", "spoken"]

MAX_SPOKEN = 200
# Tags (SSML or HTML) and a dangling "<..." at the end.
_MARKUP = re.compile(r"<[^>]*(?:>|$)")
# Control, format (bidi overrides, zero-width), private-use, unassigned; line/paragraph separators.
_UNSAFE = ("Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp")


def spoken(value: object) -> str | None:
    """A scalar value as plain text fit for the voice: no control characters, no markup, at most
    MAX_SPOKEN characters. Objects and lists are not speakable: None."""
    if value is None or isinstance(value, dict | list | tuple):
        return None
    text = "".join(" " if unicodedata.category(c) in _UNSAFE else c for c in str(value))
    text = _MARKUP.sub(" ", text).replace(">", " ").replace("&", " and ")
    return " ".join(text.split())[:MAX_SPOKEN].rstrip()


def brief(value: object, limit: int = 80) -> str:
    """A bounded repr for log lines: escapes control characters, so no forged lines."""
    text = value if isinstance(value, str) else str(value)
    return repr(text[:limit]) + ("..." if len(text) > limit else "")
