"""Hot reload keeps the last good dialplans when an edit breaks them."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from gateway.dialplan import DialplanStore, RejectAction, TransferAction

NOW = datetime(2024, 7, 1, 16, tzinfo=UTC)


def _write(path: Path, text: str) -> None:
    # Bump mtime explicitly: two writes within one clock tick must still look different.
    old = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    stamp = max(old + 1_000_000, path.stat().st_mtime_ns)
    os.utime(path, ns=(stamp, stamp))


def _action(store: DialplanStore, number: str) -> object:
    return store.current.route(number, "+15551234", NOW).action


def test_reload_keeps_last_good_set(tmp_path: Path) -> None:
    plan = tmp_path / "sales.yaml"
    _write(plan, "numbers: ['+15550100']\nreject: 486\n")
    _write(tmp_path / "default.yaml", "reject: 404\n")
    store = DialplanStore(tmp_path)
    assert store.errors == []
    assert _action(store, "+15550100") == RejectAction(486, "Busy Here")
    assert store.poll() is None  # nothing changed

    _write(plan, "numbers: ['+15550100']\nreject: 486\nflow: oops\n")
    errors = store.poll()
    assert errors and errors[0].line == 3 and store.errors == errors
    assert _action(store, "+15550100") == RejectAction(486, "Busy Here")  # old plan still serves
    assert store.poll() is None  # the same broken file is reported once

    _write(plan, "numbers: ['+15550100']\ntransfer: operator\n")
    assert store.poll() == []
    assert _action(store, "+15550100") == TransferAction("operator")
    assert store.errors == []


def test_added_and_removed_files_are_noticed(tmp_path: Path) -> None:
    store = DialplanStore(tmp_path)
    assert _action(store, "+15550100") == RejectAction(404, "Not Found")  # nothing loaded yet

    _write(tmp_path / "a.yaml", "numbers: ['+15550100']\nreject: 603\n")
    assert store.poll() == []
    assert _action(store, "+15550100") == RejectAction(603, "Decline")

    (tmp_path / "notes.txt").write_text("not a dialplan")
    assert store.poll() is None

    (tmp_path / "a.yaml").unlink()
    assert store.poll() == []
    assert store.current.plans == {}


def test_start_with_errors_serves_the_files_that_load(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", "numbers: ['1']\nreject: 486\n")
    _write(tmp_path / "b.yaml", "numbers: ['2']\nreject: nope\n")
    store = DialplanStore(tmp_path)
    assert [e.line for e in store.errors] == [2]
    assert set(store.current.plans) == {"1"}
    assert store.poll() is None
