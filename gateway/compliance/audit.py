"""The audit trail's hash chain: each event carries the hash of the one before it.

An event is (seq, at, kind, data). Its `data_hash` covers the data alone, its `hash` covers the
previous hash, seq, time, kind and data_hash. So editing data breaks data_hash, editing anything
else breaks the chain, deleting an event leaves a gap, and retention may drop an event's data (not
its data_hash) when a later `purged` tombstone in the same chain says so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
TOMBSTONE = "purged"


def canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def data_hash(data: Any) -> str:
    return hashlib.sha256(canonical(data).encode()).hexdigest()


def chain_hash(prev: str, seq: int, at: float, kind: str, digest: str) -> str:
    # Times are kept to the millisecond, as stored; the text form is the same on every backend.
    text = f"{prev}|{seq}|{at:.3f}|{kind}|{digest}"
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEvent:
    seq: int
    at: float
    kind: str
    data: dict[str, Any] | None
    data_hash: str
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "kind": self.kind, "data": self.data,
                "data_hash": self.data_hash, "prev_hash": self.prev_hash, "hash": self.hash}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditEvent:
        return cls(int(d["seq"]), float(d["at"]), str(d["kind"]), d.get("data"), str(d["data_hash"]),
                   str(d["prev_hash"]), str(d["hash"]))


class AuditChain:
    """One call's chain, appended to in order (not thread-safe: one call, one loop)."""

    def __init__(self, events: Iterable[AuditEvent] = ()) -> None:
        self.events: list[AuditEvent] = list(events)

    @property
    def head(self) -> str:
        return self.events[-1].hash if self.events else GENESIS

    def append(self, kind: str, data: Mapping[str, Any], at: float) -> AuditEvent:
        at = round(at, 3)
        plain = json.loads(canonical(dict(data)))  # what is stored is what was hashed
        digest = data_hash(plain)
        seq = len(self.events) + 1
        event = AuditEvent(seq, at, kind, plain, digest, self.head,
                           chain_hash(self.head, seq, at, kind, digest))
        self.events.append(event)
        return event


def verify(events: Iterable[AuditEvent], head: str | None = None, count: int | None = None) -> str | None:
    """None if the chain holds; else the first broken event, in words. head/count: what the call's
    row says the chain ends with (so cutting events off the end is seen too)."""
    ordered = sorted(events, key=lambda e: e.seq)
    purged: set[int] = set()
    for event in ordered:
        if event.kind == TOMBSTONE and event.data:
            purged |= {int(s) for s in event.data.get("seqs", ())}
    prev = GENESIS
    for expected, event in enumerate(ordered, start=1):
        if event.seq != expected:
            return f"event {expected}: missing (next stored is {event.seq})"
        if event.prev_hash != prev:
            return f"event {event.seq} ({event.kind}): does not follow event {event.seq - 1}"
        if chain_hash(prev, event.seq, event.at, event.kind, event.data_hash) != event.hash:
            return f"event {event.seq} ({event.kind}): altered (hash does not match)"
        if event.data is None:
            if event.seq not in purged:
                return f"event {event.seq} ({event.kind}): content removed without a purge tombstone"
        elif data_hash(event.data) != event.data_hash:
            return f"event {event.seq} ({event.kind}): content altered"
        prev = event.hash
    if count is not None and len(ordered) != count:
        return f"event {len(ordered) + 1}: missing ({count} recorded, {len(ordered)} stored)"
    if head is not None and prev != head:
        return f"event {len(ordered)}: the chain does not end where the call record says"
    return None
