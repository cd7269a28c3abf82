"""The records path: journal first, then the store. A worker that dies mid-call, a torn journal
line, a full store, a journal on a full disk: the call record is kept, and written once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.compliance.audit import verify, AuditEvent
from gateway.compliance.policy import RecordPolicy
from gateway.store.calls import CallStore
from gateway.worker.audit import CallAudit
from gateway.worker.records import RecordWriter, final_record


def _start(writer: RecordWriter, call_id: str) -> CallAudit:
    writer.started({"call_id": call_id, "dialled": "+15550100", "caller": "+15551234", "source": "127.0.0.1",
                    "trunk": "local", "started": 1000.0, "transcript": []})
    audit = CallAudit(call_id, sink=writer.event, clock=iter([1000.5, 1001.0, 1004.0, 1006.0, 1009.0]).__next__)
    audit.log("routed", dialplan="+15550100", retention={"transcripts": None, "recordings": None, "audit": None})
    audit.log("answered")
    audit.log("caller_turn", text="my card is 4111 1111 1111 1111", confidence=0.9)
    audit.log("agent_turn", text="Thank you.", clip=None)
    return audit


def _final(call_id: str, audit: CallAudit) -> dict:
    record = {"call_id": call_id, "dialled": "+15550100", "caller": "+15551234", "source": "127.0.0.1",
              "trunk": "local", "started": 1000.0, "ended": 1009.0, "outcome": "completed",
              "transcript": [{"who": "caller", "text": "my card is 4111 1111 1111 1111"}],
              "variables": {"card": "4111111111111111"}, "digits": "4111111111111111"}
    audit.log("hangup", outcome="completed", code=200, by="caller")
    return final_record(record, audit, RecordPolicy())


def test_a_call_the_worker_died_in_is_stored_failed_with_its_steps(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path / "calls.db", tmp_path / "calls.db.journal")
    _start(writer, "dead")
    with open(writer.journal.path, "a") as fh:
        fh.write('{"event":"audit","call_id":"dead","aud')  # the crash cut this line short
    # The successor worker:
    successor = RecordWriter(tmp_path / "calls.db", tmp_path / "calls.db.journal")
    assert successor.open() == ["dead"]
    call = CallStore(tmp_path / "calls.db").get_call("dead")
    assert call["outcome"] == "failed" and call["dialplan"] == "+15550100"
    assert call["ended"] == 1006.0  # the last step it took, not the time of recovery
    assert call["transcript"][0] == {"who": "caller", "text": "my card is [CARD]", "at": 1004.0}
    assert [e["kind"] for e in call["audit"]][-1] == "failed"
    assert verify([AuditEvent.from_dict(e) for e in call["audit"]]) is None
    assert successor.journal.entries() == []  # compacted only once stored
    assert successor.open() == []  # and never stored twice


def test_recovery_keeps_the_journal_while_the_store_is_full(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    writer = RecordWriter(db, tmp_path / "j")
    writer.open()
    audit = _start(writer, "c1")
    audit._clock = lambda: 1005.0
    for _ in range(40):  # a long call: its record needs pages the full disk does not have
        audit.log("caller_turn", text="and then " * 200, confidence=0.5)
    writer.store.close()
    with sqlite3.connect(db) as conn:  # the disk fills up: no page more for the store
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    full = RecordWriter(db, tmp_path / "j")
    full.store = CallStore(db)
    full.store.db._conn.execute(f"PRAGMA max_page_count = {pages}")
    assert full.recover() == ["c1"] and set(full.pending) == {"c1"}
    assert not full.finished(_final("c2", CallAudit("c2"))) and set(full.pending) == {"c1", "c2"}
    assert {e["call_id"] for e in full.journal.entries()} >= {"c1", "c2"}  # nothing truncated
    full.store.db._conn.execute("PRAGMA max_page_count = 1073741823")  # space again
    assert full.retry() == 2 and not full.pending
    store = CallStore(db)
    assert {c["call_id"]: c["outcome"] for c in store.list_calls()} == {"c1": "failed", "c2": "completed"}


def test_a_finished_call_the_store_never_took_keeps_its_outcome(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path / "calls.db", tmp_path / "j")
    audit = _start(writer, "c1")
    writer.journal.finished(_final("c1", audit))  # then the worker died before the store write
    successor = RecordWriter(tmp_path / "calls.db", tmp_path / "j")
    assert successor.open() == []
    call = CallStore(tmp_path / "calls.db").get_call("c1")
    assert call["outcome"] == "completed" and call["ended"] == 1009.0
    assert call["variables"] == {"card": "[CARD]"} and call["digits"] == "[CARD]"


def test_a_journal_on_a_full_disk_loses_no_record(tmp_path: Path) -> None:
    failures: list[str] = []
    journal = tmp_path / "journal"
    journal.symlink_to("/dev/full")  # every write: ENOSPC
    writer = RecordWriter(tmp_path / "calls.db", journal, on_failure=failures.append)
    writer.open()
    audit = _start(writer, "c1")
    assert writer.finished(_final("c1", audit))
    assert "journal" in failures
    call = CallStore(tmp_path / "calls.db").get_call("c1")
    assert call["outcome"] == "completed" and len(call["audit"]) == 5


def test_a_torn_line_does_not_glue_to_the_next(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_text('{"event":"start","call_id":"x"')  # no newline: cut short
    writer = RecordWriter(tmp_path / "calls.db", path)
    _start(writer, "c2")
    assert [e["call_id"] for e in writer.journal.entries()][:1] == ["c2"]
