"""Durable call records: one JSON line per call, flushed and fsynced before it is forgotten."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path
from typing import Any


class CallRecords:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: Any) -> None:
        """Append one record (a dataclass or dict). Blocking: call from a worker thread."""
        data = dataclasses.asdict(record) if dataclasses.is_dataclass(record) else dict(record)
        line = json.dumps(data, separators=(",", ":"), default=str) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


class CallJournal:
    """Calls in progress, on disk: if the worker dies, its successor writes them as failed.

    One line per event ("start" with the partial record, "end" with the call id); rewritten
    empty on recovery. Only this worker's process writes it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def started(self, record: Any) -> None:
        self._append({"event": "start", "record": dataclasses.asdict(record)})

    def ended(self, call_id: str) -> None:
        self._append({"event": "end", "call_id": call_id})

    def _append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":"), default=str) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def recover(self) -> list[dict[str, Any]]:
        """Records of calls that started but never ended; clears the journal."""
        open_calls: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            with open(self.path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by the crash
                    if entry.get("event") == "start":
                        record = entry["record"]
                        open_calls[record["call_id"]] = record
                    elif entry.get("event") == "end":
                        open_calls.pop(entry.get("call_id"), None)
        with self._lock:
            self.path.write_text("")
        return list(open_calls.values())
