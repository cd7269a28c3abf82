"""Retention periods: how long transcripts, recordings and the audit trail are kept."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdwy])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_duration(text: str | int | float) -> float:
    """'30d', '12h', '90m', '1y' (or seconds as a number) -> seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("a duration is not negative")
        return float(text)
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"a duration like 30d, 12h or 90m, not {str(text)[:40]!r}")
    return float(match.group(1)) * _UNIT[match.group(2)]


@dataclass(frozen=True, slots=True)
class Retention:
    """Seconds each part of a call record is kept; None keeps it for good."""

    transcripts: float | None = None
    recordings: float | None = None
    audit: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {"transcripts": self.transcripts, "recordings": self.recordings, "audit": self.audit}

    @classmethod
    def from_dict(cls, data: dict | None) -> Retention:
        data = data or {}
        return cls(*(None if data.get(k) is None else float(data[k]) for k in ("transcripts", "recordings", "audit")))
