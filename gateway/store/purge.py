"""Retention, applied: what a call's policy (kept in its row, from its dialplan) says is past its
time is removed, and the removal is written into the call's audit chain as a `purged` tombstone,
so `gateway calls verify` still passes. Time comes in as an argument (tests inject a clock)."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field

from gateway.compliance.audit import TOMBSTONE, AuditChain
from gateway.compliance.retention import Retention
from gateway.store.calls import CallStore

# Audit events whose data is conversation content: they go with the transcripts.
CONTENT_KINDS = frozenset({"caller_turn", "agent_turn", "tool_call", "webhook", "values"})


@dataclass(slots=True)
class Purged:
    transcripts: list[str] = field(default_factory=list)
    recordings: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.transcripts or self.recordings or self.calls)


def purge(store: CallStore, now: float, default: Retention | None = None) -> Purged:
    """Apply every call's retention at time now; default: the policy of calls that have none."""
    done = Purged()
    for row in store.db.query("SELECT call_id, started, ended, retention, purged, recording, "
                              "audit_head, audit_count FROM calls"):
        policy = Retention.from_dict(json.loads(row["retention"])) if row["retention"] not in (None, "null") \
            else (default or Retention())
        ended = row["ended"] or row["started"] or now
        already = set(json.loads(row["purged"] or "[]"))
        if policy.audit is not None and ended + policy.audit <= now:
            _forget(store, row, now, policy)
            done.calls.append(row["call_id"])
            continue
        if policy.transcripts is not None and ended + policy.transcripts <= now and "transcripts" not in already:
            _purge_transcript(store, row["call_id"], now, policy.transcripts)
            done.transcripts.append(row["call_id"])
        if (policy.recordings is not None and ended + policy.recordings <= now and row["recording"]
                and "recording" not in already):
            _purge_recording(store, row["call_id"], row["recording"], now, policy.recordings)
            done.recordings.append(row["call_id"])
    return done


def _tombstone(tx, call_id: str, now: float, what: str, **data: object) -> None:  # type: ignore[no-untyped-def]
    chain = AuditChain(store_events(tx, call_id))
    event = chain.append(TOMBSTONE, {"what": what, **data}, now)
    tx.execute("INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (call_id, event.seq, event.at, event.kind, json.dumps(event.data, separators=(",", ":")),
                event.data_hash, event.prev_hash, event.hash))
    purged = json.loads(tx.query("SELECT purged FROM calls WHERE call_id = ?", (call_id,))[0]["purged"] or "[]")
    tx.execute("UPDATE calls SET audit_head = ?, audit_count = ?, purged = ? WHERE call_id = ?",
               (event.hash, event.seq, json.dumps(sorted({*purged, what})), call_id))


def store_events(tx, call_id: str):  # type: ignore[no-untyped-def]
    from gateway.compliance.audit import AuditEvent

    rows = tx.query("SELECT * FROM audit_events WHERE call_id = ? ORDER BY seq", (call_id,))
    return [AuditEvent(r["seq"], r["at"], r["kind"], None if r["data"] is None else json.loads(r["data"]),
                       r["data_hash"], r["prev_hash"], r["hash"]) for r in rows]


def _purge_transcript(store: CallStore, call_id: str, now: float, period: float) -> None:
    with store.db.transaction() as tx:
        seqs = [r["seq"] for r in tx.query(
            f"SELECT seq FROM audit_events WHERE call_id = ? AND data IS NOT NULL AND kind IN "
            f"({', '.join('?' * len(CONTENT_KINDS))})", (call_id, *sorted(CONTENT_KINDS)))]
        tx.execute("UPDATE turns SET text = NULL WHERE call_id = ?", (call_id,))
        tx.execute("UPDATE tools SET arguments = NULL WHERE call_id = ?", (call_id,))
        tx.execute("UPDATE calls SET variables = '{}', digits = '' WHERE call_id = ?", (call_id,))
        if seqs:
            tx.execute(f"UPDATE audit_events SET data = NULL WHERE call_id = ? AND seq IN "
                       f"({', '.join('?' * len(seqs))})", (call_id, *seqs))
        _tombstone(tx, call_id, now, "transcripts", seqs=seqs, retention_s=period)


def _purge_recording(store: CallStore, call_id: str, path: str, now: float, period: float) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    with store.db.transaction() as tx:
        tx.execute("UPDATE calls SET recording = NULL WHERE call_id = ?", (call_id,))
        _tombstone(tx, call_id, now, "recording", retention_s=period)


def _forget(store: CallStore, row: dict, now: float, policy: Retention) -> None:
    """The audit period is over: the whole call goes, a row in purged_calls says it existed."""
    if row["recording"]:
        with contextlib.suppress(FileNotFoundError):
            os.remove(row["recording"])
    call_id = row["call_id"]
    with store.db.transaction() as tx:
        for table in ("turns", "tools", "consents", "audit_events", "calls"):
            tx.execute(f"DELETE FROM {table} WHERE call_id = ?", (call_id,))
        tx.execute("INSERT INTO purged_calls VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (call_id) DO NOTHING",
                   (call_id, now, row["started"], row["audit_head"], row["audit_count"],
                    f"audit retention {policy.audit:.0f} s"))
