"""Call records: the journal (a write-ahead log) and the call store behind it.

The journal stays, as the crash-safe path in front of the store: an fsynced line costs one append,
needs no lock shared with other workers and works while the database is locked, full or away. A
call's steps go to it as they happen; the finished record goes to it before the store; a `stored`
line follows once the store has it. A worker that starts writes what its predecessor left (calls
in progress become `failed`, with their dialplan, transcript and true end time; finished calls the
store never took keep their outcome) and only then compacts the journal, so a crash or a full disk
during recovery loses nothing. All methods but `submit` run on the one records thread.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.compliance.audit import AuditChain, AuditEvent
from gateway.compliance.policy import RecordPolicy
from gateway.compliance.redact import redact, redact_value
from gateway.store.calls import CallStore
from gateway.store.db import StoreCorrupt, StoreError

log = logging.getLogger("gateway.records")
COMPACT_BYTES = 8 << 20
CDR_VARIABLES = frozenset({"caller", "called"})  # journal size past which it is rewritten with only the open calls


class CallJournal:
    """Lines of {"event": start|audit|finished|end, "call_id", ...}; one worker writes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        # A line cut short (crash, full disk) must not glue itself to the next one.
        self._torn = path.is_file() and path.stat().st_size > 0 and not _ends_with_newline(path)

    def started(self, record: dict[str, Any]) -> None:
        self._append({"event": "start", "call_id": record["call_id"], "record": record})

    def audit(self, call_id: str, event: dict[str, Any]) -> None:
        self._append({"event": "audit", "call_id": call_id, "audit": event})

    def finished(self, record: dict[str, Any]) -> None:
        self._append({"event": "finished", "call_id": record["call_id"], "record": record})

    def ended(self, call_id: str) -> None:
        self._append({"event": "end", "call_id": call_id})

    def _append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            with open(self.path, "a", encoding="utf-8") as fh:
                try:
                    fh.write(("\n" if self._torn else "") + line)
                    fh.flush()
                    os.fsync(fh.fileno())
                except OSError:
                    self._torn = True
                    raise
            self._torn = False

    def entries(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not self.path.is_file():  # nothing yet (or a device: nothing to read back)
            return out
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash or a full disk
                if isinstance(entry, dict):
                    out.append(entry)
        return out

    def compact(self, keep: set[str]) -> None:
        """Rewrite the journal with only the lines of calls in keep, atomically."""
        if not self.path.is_file():
            return
        with self._lock:
            lines = [json.dumps(e, separators=(",", ":"), default=str) + "\n" for e in self.entries()
                     if _call_id(e) in keep]
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.writelines(lines)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._torn = False

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def recover(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(calls that never finished, rebuilt from their steps; finished calls never stored)."""
        starts: dict[str, dict[str, Any]] = {}
        events: dict[str, dict[int, dict[str, Any]]] = {}
        finished: dict[str, dict[str, Any]] = {}
        stored: set[str] = set()
        for entry in self.entries():
            kind, cid = entry.get("event"), _call_id(entry)
            if not cid:
                continue
            if kind == "start" and isinstance(entry.get("record"), dict):
                starts[cid] = entry["record"]
            elif kind == "audit" and isinstance(entry.get("audit"), dict):
                events.setdefault(cid, {})[int(entry["audit"].get("seq", 0))] = entry["audit"]
            elif kind == "finished" and isinstance(entry.get("record"), dict):
                finished[cid] = entry["record"]
            elif kind == "end":
                stored.add(cid)
        unstored = [r for cid, r in finished.items() if cid not in stored]
        open_calls = [_rebuilt(r, list(events.get(cid, {}).values())) for cid, r in starts.items()
                      if cid not in stored and cid not in finished]
        return open_calls, unstored


def _call_id(entry: dict[str, Any]) -> str:
    cid = entry.get("call_id") or (entry.get("record") or {}).get("call_id")
    return str(cid) if cid else ""


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def _rebuilt(record: dict[str, Any], raw_events: list[dict[str, Any]]) -> dict[str, Any]:
    """A call the worker died in: `failed`, with what its journaled steps say."""
    try:
        chain = AuditChain(AuditEvent.from_dict(e) for e in sorted(raw_events, key=lambda e: int(e["seq"])))
    except (KeyError, TypeError, ValueError):
        chain = AuditChain()
    data = dict(record)
    data["transcript"] = list(data.get("transcript") or ())
    for e in chain.events:
        d = e.data or {}
        if e.kind == "routed":
            data["dialplan"] = d.get("dialplan", data.get("dialplan", ""))
            data["retention"] = d.get("retention")
        elif e.kind == "answered":
            data["answered"] = e.at
        elif e.kind in ("caller_turn", "agent_turn", "disclosure"):
            data["transcript"].append({"who": "caller" if e.kind == "caller_turn" else "agent",
                                       "text": d.get("text", ""), "at": e.at})
    data["ended"] = chain.events[-1].at if chain.events else data.get("started")
    data["outcome"] = "failed"
    chain.append("failed", {"reason": "the worker stopped during the call"}, time.time())
    data["audit"] = [e.as_dict() for e in chain.events]
    return data


def final_record(record: Any, audit: Any, policy: RecordPolicy, **extra: Any) -> dict[str, Any]:
    """The record as stored: every text redacted by the dialplan's kinds (values gathered on
    purpose included: the tool had them, the record does not), tools apart from turns."""
    data = dataclasses.asdict(record) if dataclasses.is_dataclass(record) else dict(record)
    kinds = policy.redact
    turns, tools = [], list(audit.tools) if audit is not None else []
    for turn in data.get("transcript", ()):
        if turn.get("who") == "tool":
            if not tools:  # a tool the audit did not time (older paths): keep name and arguments
                tools.append({"kind": "tool", "name": turn.get("name"), "status": "unknown",
                              "arguments": redact_value(turn.get("arguments"), kinds)})
            continue
        turns.append({**turn, "text": redact(str(turn.get("text", "")), kinds)})
    data["transcript"] = turns
    values = data.get("variables") or {}
    # The call's own numbers (caller, called) are the CDR; what was said or gathered is redacted.
    data["variables"] = {k: v if k in CDR_VARIABLES else redact_value(v, kinds) for k, v in values.items()}
    data["digits"] = redact(data.get("digits") or "", kinds)
    data["tools"] = tools
    data["consents"] = list(audit.consents) if audit is not None else []
    data["audit"] = [e.as_dict() for e in audit.chain.events] if audit is not None else []
    data["retention"] = policy.retention.as_dict()
    data.update(extra)
    return data


class RecordWriter:
    """Journal first, then the store; what the store refuses now is retried, never dropped."""

    def __init__(self, target: str | Path, journal: Path,
                 on_failure: Callable[[str], None] = lambda stage: None) -> None:
        self.target = target
        self.journal = CallJournal(journal)
        self.store: CallStore | None = None
        self.pending: dict[str, dict[str, Any]] = {}
        self._active: set[str] = set()
        self._on_failure = on_failure
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="records")

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """Run fn on the records thread (in order: one writer)."""
        return self._executor.submit(fn, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)
        if self.store is not None:
            self.store.close()

    # ---- on the records thread ----
    def open(self) -> list[str]:
        """Open the store (a corrupt file raises StoreCorrupt) and write what the journal holds;
        returns the ids of calls a crashed predecessor left in progress."""
        self._open_store(must=True)
        return self.recover()

    def recover(self) -> list[str]:
        """Queue what the journal holds for the store, store it, then compact the journal (only
        what was stored leaves it)."""
        open_calls, unstored = self.journal.recover()
        for data in unstored + open_calls:
            self.pending[data["call_id"]] = data
        self.retry()
        self._compact()
        return [c["call_id"] for c in open_calls]

    def _open_store(self, must: bool = False) -> bool:
        if self.store is not None:
            return True
        try:
            self.store = CallStore(self.target)
            return True
        except StoreCorrupt:
            raise
        except StoreError as exc:
            if must:
                log.error("call store unavailable, records are kept in the journal: %s", exc)
            self._on_failure("store")
            return False

    def started(self, record: dict[str, Any]) -> None:
        self._active.add(record["call_id"])
        self._journal(self.journal.started, record)

    def event(self, call_id: str, event: dict[str, Any]) -> None:
        self._journal(self.journal.audit, call_id, event)

    def finished(self, record: dict[str, Any]) -> bool:
        """Journal the final record, then store it; False if it waits for the store."""
        cid = record["call_id"]
        self._active.discard(cid)
        self._journal(self.journal.finished, record)
        self.pending[cid] = record
        stored = self.retry()
        if cid in self.pending:
            return False
        if stored and self.journal.size() > COMPACT_BYTES:
            self._compact()
        return True

    def retry(self) -> int:
        """Store what waits; returns how many went in."""
        if not self.pending or not self._open_store():
            return 0
        done = 0
        for cid, data in list(self.pending.items()):
            try:
                self.store.write_call(data)  # type: ignore[union-attr]
            except StoreError as exc:
                log.error("call %s: not stored yet (kept in the journal, retried): %s", cid, exc)
                self._on_failure("store")
                return done
            self.pending.pop(cid)
            done += 1
            self._journal(self.journal.ended, cid)
        return done

    def _compact(self) -> None:
        try:
            self.journal.compact(self._active | set(self.pending))
        except OSError as exc:
            log.error("journal %s not compacted: %s", self.journal.path, exc)

    def _journal(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except OSError as exc:
            # The call goes on; its record still goes to the store (and stays in memory until it does).
            log.error("journal %s: %s", self.journal.path, exc.strerror or exc)
            self._on_failure("journal")


def read_records(target: str | Path) -> list[dict[str, Any]]:
    """Every stored call, whole, in the order stored (a legacy `.jsonl` file is read as lines)."""
    if isinstance(target, Path) and target.suffix == ".jsonl":
        if not target.exists():
            return []
        with open(target, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    if isinstance(target, Path) and not target.exists():
        return []
    store = CallStore(target)
    try:
        return store.full_calls()
    finally:
        store.close()
