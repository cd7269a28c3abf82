"""The call store on SQLite: migrations, records in and out, the audit chain, retention with an
injected clock, several writer processes on one file, and a corrupt file named at start."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.compliance.audit import AuditChain
from gateway.compliance.retention import Retention
from gateway.store.calls import CallStore
from gateway.store.db import StoreCorrupt
from gateway.store.purge import purge
from gateway.store.schema import LATEST
from tests.support import free_port
from tests.support.gateway import REPO

DAY = 86400.0


def make_call(call_id: str, started: float = 1_000_000.0, retention: Retention | None = None,
              recording: str | None = None) -> dict:
    chain = AuditChain()
    chain.append("routed", {"dialplan": "+15550100"}, started)
    chain.append("answered", {}, started + 0.1)
    chain.append("disclosure", {"text": "You're speaking with an automated assistant."}, started + 0.2)
    chain.append("caller_turn", {"text": "my card is [CARD]", "confidence": 0.9}, started + 3.0)
    chain.append("agent_turn", {"text": "Thank you.", "clip": None}, started + 4.0)
    chain.append("tool_call", {"name": "pay", "arguments": {"card": "[CARD]"}, "status": "ok",
                               "duration_ms": 12.5}, started + 4.5)
    chain.append("hangup", {"outcome": "completed", "code": 200, "by": "caller"}, started + 6.0)
    return {"call_id": call_id, "dialled": "+15550100", "caller": "+15551234", "source": "127.0.0.1",
            "trunk": "local", "started": started, "answered": started + 0.1, "ended": started + 6.0,
            "dialplan": "+15550100", "outcome": "completed", "end_code": 200, "digits": "",
            "transfer": {}, "steps": ["say", "gather"], "variables": {"card": "[CARD]"},
            "transcript": [{"who": "caller", "text": "my card is [CARD]", "confidence": 0.9, "at": started + 3},
                           {"who": "agent", "text": "Thank you.", "at": started + 4}],
            "tools": [{"kind": "tool", "name": "pay", "arguments": {"card": "[CARD]"}, "status": "ok",
                       "duration_ms": 12.5, "at": started + 4.5}],
            "consents": [], "turn_latencies_ms": [480.0], "recording": recording,
            "retention": (retention or Retention()).as_dict(), "audit": [e.as_dict() for e in chain.events]}


@pytest.fixture
def store(tmp_path: Path):
    s = CallStore(tmp_path / "calls.db")
    yield s
    s.close()


def test_migrations_are_applied_once_and_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "calls.db"
    CallStore(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [v for (v,) in db.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == list(range(1, LATEST + 1))
    CallStore(path).close()  # opening again applies nothing
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM schema_version").fetchone()[0] == LATEST
        db.execute("INSERT INTO schema_version VALUES (?, 'future', 0)", (LATEST + 1,))
    with pytest.raises(StoreCorrupt, match="newer gateway"):
        CallStore(path)


def test_a_corrupt_file_is_a_clear_error_naming_it(tmp_path):
    path = tmp_path / "calls.db"
    path.write_bytes(b"this is not a database at all\n" * 200)
    with pytest.raises(StoreCorrupt) as err:
        CallStore(path)
    assert str(path) in str(err.value) and "not a call store" in str(err.value)
    # The worker refuses to start on it, naming the file.
    config = tmp_path / "gateway.yaml"
    config.write_text(f"records: {path}\nmetrics: {{port: {free_port()}}}\nsip: {{port: {free_port()}}}\n"
                      f"dialplans: {REPO / 'dialplans'}\n")
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "--config", str(config)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 1 and f"{path}: not a call store" in run.stderr, run.stderr[-2000:]


def test_a_call_goes_in_once_and_comes_back_whole(store):
    call = make_call("c1")
    assert store.write_call(call) is True
    assert store.write_call(call) is False  # a journal replay stores nothing twice
    back = store.get_call("c1")
    assert back["transcript"] == call["transcript"] and back["tools"] == call["tools"]
    assert back["variables"] == {"card": "[CARD]"} and back["turn_latencies_ms"] == [480.0]
    assert [e["kind"] for e in back["audit"]] == [e["kind"] for e in call["audit"]]
    assert store.verify() == []
    assert [c["call_id"] for c in store.list_calls(number="+15551234", outcome=["completed"])] == ["c1"]
    assert store.list_calls(outcome=["failed"]) == []
    assert store.list_calls(since=call["started"] + 1) == []


@pytest.mark.parametrize("tamper, broken", [
    ("UPDATE audit_events SET data = '{\"text\":\"my card is 4111\",\"confidence\":0.9}' WHERE seq = 4",
     "event 4 (caller_turn): content altered"),
    ("UPDATE audit_events SET data = NULL WHERE seq = 3", "event 3 (disclosure): content removed without a purge"),
    ("UPDATE audit_events SET kind = 'agent_turn' WHERE seq = 4", "event 4 (agent_turn): altered"),
    ("UPDATE audit_events SET at = at + 60 WHERE seq = 2", "event 2 (answered): altered"),
    ("DELETE FROM audit_events WHERE seq = 5", "event 5: missing"),
    ("DELETE FROM audit_events WHERE seq = 7", "event 7: missing (7 recorded, 6 stored)"),
    ("UPDATE audit_events SET data_hash = 'x', hash = 'y' WHERE seq = 7", "event 7 (hangup): altered"),
])
def test_editing_or_deleting_any_event_fails_verify(tmp_path, store, tamper, broken):
    store.write_call(make_call("c1"))
    store.write_call(make_call("c2"))
    with sqlite3.connect(store.db.target) as db:
        db.execute(tamper.replace("WHERE", "WHERE call_id = 'c1' AND"))
    problems = store.verify()
    assert [c for c, _ in problems] == ["c1"], problems
    assert problems[0][1].startswith(broken), problems
    cli = subprocess.run([sys.executable, "-m", "gateway.cli", "calls", "verify", "--records", str(store.db.target)],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert cli.returncode == 1 and f"BROKEN c1: {broken}" in cli.stdout, cli.stdout + cli.stderr


def test_retention_purges_each_part_on_time_and_the_chain_still_verifies(tmp_path, store):
    recording = tmp_path / "c1.wav"
    recording.write_bytes(b"RIFF")
    policy = Retention(transcripts=30 * DAY, recordings=7 * DAY, audit=365 * DAY)
    call = make_call("c1", retention=policy, recording=str(recording))
    store.write_call(call)
    store.write_call(make_call("kept"))  # no policy: kept for good
    ended = call["ended"]

    assert not purge(store, ended + 6 * DAY)
    assert purge(store, ended + 7 * DAY).recordings == ["c1"]
    assert not recording.exists() and store.get_call("c1")["recording"] is None
    assert store.get_call("c1")["transcript"][0]["text"] == "my card is [CARD]"

    assert purge(store, ended + 30 * DAY).transcripts == ["c1"]
    purged = store.get_call("c1")
    assert [t["text"] for t in purged["transcript"]] == [None, None]
    assert purged["variables"] == {} and purged["tools"][0]["arguments"] is None
    kinds = {e["kind"]: e for e in purged["audit"]}
    assert kinds["caller_turn"]["data"] is None and kinds["disclosure"]["data"] is not None
    assert [e["data"]["what"] for e in purged["audit"] if e["kind"] == "purged"] == ["recording", "transcripts"]
    assert purged["purged"] == ["recording", "transcripts"]
    assert store.verify() == []
    assert not purge(store, ended + 31 * DAY)  # nothing twice

    assert purge(store, ended + 365 * DAY).calls == ["c1"]
    assert store.get_call("c1") is None and store.verify("c1") == []
    assert [c["call_id"] for c in store.list_calls()] == ["kept"] and store.verify() == []


def _write_many(path: str, worker: int, count: int) -> None:
    store = CallStore(path)
    for i in range(count):
        store.write_call(make_call(f"w{worker}-{i}", started=1_000_000.0 + i))
    store.close()


def test_several_worker_processes_write_one_file(tmp_path):
    path = str(tmp_path / "calls.db")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(path, w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = CallStore(path)
    try:
        assert len(store.list_calls()) == 100 and store.verify() == []
    finally:
        store.close()


def test_gateway_calls_list_show_export_and_purge(tmp_path, store):
    store.write_call(make_call("c1"))
    records = str(store.db.target)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway.cli", "calls", *args, "--records", records],
                              capture_output=True, text=True, timeout=60, cwd=REPO)

    listed = cli("list", "--outcome", "completed")
    assert listed.returncode == 0 and "c1" in listed.stdout and "1 calls" in listed.stdout
    assert json.loads(cli("list", "--json").stdout)[0]["call_id"] == "c1"
    shown = cli("show", "c1").stdout
    assert 'disclosure "You\'re speaking with an automated assistant."' in shown
    assert "pay({\"card\": \"[CARD]\"}) ok 12.5 ms" in shown and "turn latency" in shown
    assert cli("show", "nope").returncode == 1
    lines = cli("export", "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line)["call_id"] for line in lines] == ["c1"]
    csv_lines = cli("export", "--format", "csv").stdout.splitlines()
    assert csv_lines[0].startswith("call_id,started") and csv_lines[1].startswith("c1,")
    assert "ok: 1 audit chain intact" in cli("verify", "c1").stdout
    assert "purged: 0 transcripts" in cli("purge").stdout
    missing = subprocess.run([sys.executable, "-m", "gateway.cli", "calls", "list", "--records", str(tmp_path / "none.db")],
                             capture_output=True, text=True, timeout=60, cwd=REPO)
    assert missing.returncode == 2 and "no call store there" in missing.stderr
    assert not (tmp_path / "none.db").exists()
