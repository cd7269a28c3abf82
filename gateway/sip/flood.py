"""Who gets past the SIP door, decided per request before pjsip builds anything for it (pure).

Allowlisted sources (trunks, the front) always pass: a carrier sends many calls from one
address. Any other source is a stranger: its INVITEs are refused (403, or dropped silently),
and a stranger sending faster than `rate` requests per second (after a burst) is banned for
`ban_seconds`, during which everything it sends is dropped unread.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["FloodConfig", "FloodGuard", "Verdict"]

Verdict = Literal["pass", "reject", "drop"]
_MAX_SOURCES = 10_000  # strangers remembered at once; the longest-quiet are forgotten first


@dataclass(frozen=True, slots=True)
class FloodConfig:
    rate: float = 10.0          # requests per second a stranger may send on average
    burst: int = 20             # requests a stranger may send at once
    ban_seconds: float = 300.0
    unknown_sources: Literal["reject", "drop"] = "reject"


@dataclass(slots=True)
class _Source:
    tokens: float
    seen: float
    banned_until: float = 0.0


@dataclass(slots=True)
class Counters:
    bans: list[str] = field(default_factory=list)   # addresses banned since the last take
    dropped: int = 0
    rejected: int = 0


class FloodGuard:
    def __init__(self, config: FloodConfig, trusted: Callable[[str], bool]) -> None:
        self.config = config
        self._trusted = trusted
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self._counters = Counters()

    def verdict(self, address: str, method: str, now: float) -> Verdict:
        """What to do with one request from address (an IP, no port)."""
        if self._trusted(address):
            return "pass"
        source = self._source(address, now)
        if source.banned_until > now:
            return self._drop()
        source.tokens = min(self.config.burst, source.tokens + (now - source.seen) * self.config.rate)
        source.seen = now
        if source.tokens < 1.0:
            source.banned_until = now + self.config.ban_seconds
            self._counters.bans.append(address)
            return self._drop()
        source.tokens -= 1.0
        if method == "ACK" or self.config.unknown_sources == "drop":
            return self._drop()
        if method == "INVITE":
            self._counters.rejected += 1
            return "reject"
        return "pass"

    def banned(self, address: str, now: float) -> bool:
        source = self._sources.get(address)
        return source is not None and source.banned_until > now

    def take_counters(self) -> Counters:
        counters, self._counters = self._counters, Counters()
        return counters

    def _drop(self) -> Verdict:
        self._counters.dropped += 1
        return "drop"

    def _source(self, address: str, now: float) -> _Source:
        source = self._sources.get(address)
        if source is None:
            source = _Source(tokens=float(self.config.burst), seen=now)
            self._sources[address] = source
            if len(self._sources) > _MAX_SOURCES:
                self._forget_one(now)
        else:
            self._sources.move_to_end(address)
        return source

    def _forget_one(self, now: float) -> None:
        # The oldest entry, unless it is a ban still running (then the next unbanned one).
        for address, source in self._sources.items():
            if source.banned_until <= now:
                del self._sources[address]
                return
        self._sources.popitem(last=False)
