"""The call store on a real PostgreSQL server: the same migrations, records and audit checks as
SQLite; several workers on one database; a server outage mid-call loses no record."""

from __future__ import annotations

import threading

import pytest

from gateway.store.calls import CallStore
from gateway.store.db import StoreError
from gateway.store.schema import LATEST
from gateway.worker.audit import CallAudit
from gateway.worker.records import RecordWriter
from tests.store.test_store import make_call
from tests.support import postgres

pytestmark = pytest.mark.skipif(not postgres.available(), reason="PostgreSQL is not installed (scripts/setup --test)")


@pytest.fixture(scope="module")
def server():
    with postgres.PostgresServer() as pg:
        yield pg


def test_migrations_records_and_verify_on_postgresql(server):
    store = CallStore(server.url)
    try:
        assert store.db.version() == LATEST
        CallStore(server.url).close()  # a second open applies nothing and does not fail
        assert store.write_call(make_call("pg1")) and not store.write_call(make_call("pg1"))
        back = store.get_call("pg1")
        assert back["transcript"][0]["text"] == "my card is [CARD]" and back["tools"][0]["name"] == "pay"
        assert store.verify("pg1") == []
        store.db.query("UPDATE audit_events SET data = '{\"text\":\"edited\"}' WHERE call_id = 'pg1' AND seq = 4")
        assert store.verify("pg1")[0][1].startswith("event 4 (caller_turn): content altered")
        assert "password" not in store.where
    finally:
        store.close()


def test_several_workers_write_one_database(server):
    def work(worker: int) -> None:
        store = CallStore(server.url)
        for i in range(20):
            store.write_call(make_call(f"pgw{worker}-{i}"))
        store.close()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    store = CallStore(server.url)
    try:
        ids = {c["call_id"] for c in store.list_calls()}
        assert {f"pgw{w}-{i}" for w in range(4) for i in range(20)} <= ids
        assert [c for c, _ in store.verify()] == ["pg1"]  # only the call the first test edited
    finally:
        store.close()


def test_an_outage_mid_call_loses_no_record(tmp_path):
    pg = postgres.PostgresServer().start()
    try:
        failures: list[str] = []
        writer = RecordWriter(pg.url, tmp_path / "journal", on_failure=failures.append)
        assert writer.open() == []
        writer.started({"call_id": "out1", "started": 1.0, "caller": "+1555", "dialled": "+1666"})
        pg.stop()  # the server goes away while the call is in progress
        audit = CallAudit("out1", sink=writer.event)
        audit.log("hangup", outcome="completed", code=200, by="caller")
        record = {**make_call("out1"), "audit": [e.as_dict() for e in audit.chain.events]}
        assert writer.finished(record) is False and "store" in failures
        assert "out1" in writer.pending
        assert writer.retry() == 0  # still away: kept
        pg.start()
        assert writer.retry() == 1 and not writer.pending
        store = CallStore(pg.url)
        assert store.get_call("out1")["outcome"] == "completed" and store.verify("out1") == []
        store.close()
    finally:
        pg.stop()


def test_an_unreachable_server_is_a_store_error_without_the_password():
    with pytest.raises(StoreError) as err:
        CallStore("postgresql://gateway:s3cret@127.0.0.1:1/calls")
    assert "s3cret" not in str(err.value) and "127.0.0.1:1" in str(err.value)
