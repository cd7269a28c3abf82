"""The call store: write a finished call (its row, turns, tools, consent, audit events) in one
transaction, read calls back, verify their audit chains. Writing a call twice is harmless (the
journal may replay one whose write was cut short)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from gateway.compliance.audit import AuditEvent, verify
from gateway.store.db import Database

# Columns of `calls` filled straight from the record's keys of the same name.
_PLAIN = ("call_id", "dialled", "caller", "source", "trunk", "dialplan", "started", "answered", "ended",
          "setup_ms", "outcome", "end_code", "digits", "barge_ins", "referred_by", "recording", "worker")
_JSON = ("transfer", "steps", "variables", "retention")
# Record keys kept in their own tables (or derived), not in `extra`.
_TABLES = ("transcript", "tools", "consents", "audit")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _loads(text: str | None, default: Any) -> Any:
    return default if text is None else json.loads(text)


class CallStore:
    def __init__(self, target: str | Path) -> None:
        self.db = Database(target)
        self.where = self.db.where

    def close(self) -> None:
        self.db.close()

    # ---- writing ----
    def write_call(self, record: Mapping[str, Any]) -> bool:
        """Store one call; False if it was already stored (or purged)."""
        events = [AuditEvent.from_dict(e) for e in record.get("audit", ())]
        extra = {k: v for k, v in record.items() if k not in _PLAIN + _JSON + _TABLES}
        transfer = record.get("transfer") or {}
        row = [record.get(k) for k in _PLAIN] + [_dumps(record.get(k)) for k in _JSON]
        row += [transfer.get("target") or None, events[-1].hash if events else None, len(events),
                _dumps([]), _dumps(extra), time.time()]
        columns = _PLAIN + _JSON + ("transfer_target", "audit_head", "audit_count", "purged", "extra", "stored_at")
        with self.db.transaction() as tx:
            if tx.query("SELECT 1 AS x FROM purged_calls WHERE call_id = ?", (record["call_id"],)):
                return False
            added = tx.execute(f"INSERT INTO calls ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
                               "ON CONFLICT (call_id) DO NOTHING", row)
            if not added:
                return False
            cid = record["call_id"]
            for seq, turn in enumerate(record.get("transcript", ()), start=1):
                tx.execute("INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (cid, seq, turn.get("who"), turn.get("text"), turn.get("confidence"),
                            turn.get("at"), turn.get("latency_ms")))
            for seq, tool in enumerate(record.get("tools", ()), start=1):
                tx.execute("INSERT INTO tools VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (cid, seq, tool.get("kind"), tool.get("name"), _dumps(tool.get("arguments")),
                            tool.get("status"), tool.get("duration_ms"), tool.get("at")))
            for seq, consent in enumerate(record.get("consents", ()), start=1):
                tx.execute("INSERT INTO consents VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (cid, seq, consent.get("topic"), consent.get("question"), consent.get("answer"),
                            consent.get("via"), consent.get("at")))
            for e in events:
                tx.execute("INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (cid, e.seq, e.at, e.kind, None if e.data is None else _dumps(e.data),
                            e.data_hash, e.prev_hash, e.hash))
        return True

    # ---- reading ----
    def list_calls(self, *, since: float | None = None, number: str | None = None,
                   outcome: Iterable[str] = (), limit: int | None = None) -> list[dict[str, Any]]:
        """Call rows (no turns), in the order they were stored."""
        where, params = [], []
        if since is not None:
            where.append("started >= ?")
            params.append(since)
        if number:
            where.append("(caller = ? OR dialled = ?)")
            params += [number, number]
        outcomes = list(outcome)
        if outcomes:
            where.append(f"outcome IN ({', '.join('?' * len(outcomes))})")
            params += outcomes
        sql = "SELECT * FROM calls" + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY stored_at, call_id" + (f" LIMIT {int(limit)}" if limit else "")
        return [self._row(r) for r in self.db.query(sql, params)]

    def get_call(self, call_id: str) -> dict[str, Any] | None:
        """The whole call: its row's fields plus transcript, tools, consents and audit events."""
        rows = self.db.query("SELECT * FROM calls WHERE call_id = ?", (call_id,))
        if not rows:
            return None
        call = self._row(rows[0])
        turns = self.db.query("SELECT * FROM turns WHERE call_id = ? ORDER BY seq", (call_id,))
        call["transcript"] = [{k: t[k] for k in ("who", "text", "confidence", "at", "latency_ms")
                               if t[k] is not None or k == "text"} for t in turns]
        tools = self.db.query("SELECT * FROM tools WHERE call_id = ? ORDER BY seq", (call_id,))
        call["tools"] = [{**{k: t[k] for k in ("kind", "name", "status", "duration_ms", "at")},
                          "arguments": _loads(t["arguments"], None)} for t in tools]
        consents = self.db.query("SELECT * FROM consents WHERE call_id = ? ORDER BY seq", (call_id,))
        call["consents"] = [{k: c[k] for k in ("topic", "question", "answer", "via", "at")} for c in consents]
        call["audit"] = [e.as_dict() for e in self.events(call_id)]
        return call

    def full_calls(self, **filters: Any) -> list[dict[str, Any]]:
        return [c for r in self.list_calls(**filters) if (c := self.get_call(r["call_id"])) is not None]

    def events(self, call_id: str) -> list[AuditEvent]:
        rows = self.db.query("SELECT * FROM audit_events WHERE call_id = ? ORDER BY seq", (call_id,))
        return [AuditEvent(r["seq"], r["at"], r["kind"], _loads(r["data"], None), r["data_hash"],
                           r["prev_hash"], r["hash"]) for r in rows]

    def verify(self, call_id: str | None = None) -> list[tuple[str, str]]:
        """(call_id, the first broken event) for each call whose audit chain does not hold."""
        if call_id is not None:
            rows = self.db.query("SELECT call_id, audit_head, audit_count FROM calls WHERE call_id = ?", (call_id,))
            if not rows:
                purged = self.db.query("SELECT 1 AS x FROM purged_calls WHERE call_id = ?", (call_id,))
                return [] if purged else [(call_id, "no such call")]
        else:
            rows = self.db.query("SELECT call_id, audit_head, audit_count FROM calls ORDER BY stored_at")
        broken = []
        for row in rows:
            problem = verify(self.events(row["call_id"]), row["audit_head"], row["audit_count"])
            if problem:
                broken.append((row["call_id"], problem))
        return broken

    @staticmethod
    def _row(r: Mapping[str, Any]) -> dict[str, Any]:
        call = {k: r[k] for k in _PLAIN}
        call.update({k: _loads(r[k], None) for k in _JSON})
        call["transfer"] = call["transfer"] or {}
        call["steps"] = call["steps"] or []
        call["variables"] = call["variables"] or {}
        call["purged"] = _loads(r["purged"], [])
        call["audit_head"], call["audit_count"] = r["audit_head"], r["audit_count"]
        call.update(_loads(r["extra"], {}))
        return call
