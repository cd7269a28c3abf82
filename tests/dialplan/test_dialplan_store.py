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


BOMB = """numbers: ['+15550100']
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
reject: 486
"""


def test_hostile_yaml_is_refused_without_holding_the_loop_and_reloading_goes_on(tmp_path: Path) -> None:
    import asyncio
    import time

    plan = tmp_path / "sales.yaml"
    _write(plan, "numbers: ['+15550100']\nreject: 486\n")
    store = DialplanStore(tmp_path)

    async def refresh_while_ticking() -> tuple[list, float]:
        lag = 0.0
        ticking = True

        async def tick() -> None:
            nonlocal lag
            while ticking:
                before = time.monotonic()
                await asyncio.sleep(0.005)
                lag = max(lag, time.monotonic() - before - 0.005)

        ticker = asyncio.create_task(tick())
        errors = await store.refresh()
        ticking = False
        await ticker
        return errors or [], lag

    for hostile, why in ((BOMB, "alias uses"),
                         ("numbers: ['+15550100']\nx: &x [1, *x]\nreject: 486\n", "refers to itself"),
                         ("numbers: ['+15550100']\nx: " + "[" * 200 + "]" * 200 + "\nreject: 486\n",
                          "nested deeper")):
        _write(plan, hostile)
        errors, lag = asyncio.run(refresh_while_ticking())
        assert errors and "sales.yaml" in str(errors[0]) and why in str(errors[0]), errors
        assert lag < 0.5, lag   # (a blocking reload held the loop 2 s)
        assert _action(store, "+15550100") == RejectAction(486, "Busy Here")
    _write(plan, "numbers: ['+15550100']\nreject: 603\n")   # and the next good edit still loads
    assert asyncio.run(store.refresh()) == []
    assert _action(store, "+15550100") == RejectAction(603, "Decline")


def test_agent_script_and_clip_edits_reload_all_or_nothing(tmp_path: Path) -> None:
    import wave

    agents = tmp_path / "agents"
    agents.mkdir()
    script = agents / "bot.yaml"
    _write(script, "steps:\n  - say: Hello.\n")
    _write(tmp_path / "bot.yaml", "numbers: ['+15550100']\nagent: agents/bot.yaml\n")
    store = DialplanStore(tmp_path)
    assert store.errors == []
    first = _action(store, "+15550100")

    _write(script, "steps:\n  - say: Hello again.\n")
    assert store.poll() == []                      # an agent script edit is picked up
    assert _action(store, "+15550100") != first

    clip = agents / "hi.wav"
    with wave.open(str(clip), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 800)
    _write(script, "steps:\n  - play: hi.wav\n")
    assert store.poll() == []
    good = _action(store, "+15550100")
    _write(clip, "not a wav file")                  # a broken clip: the whole set is refused
    errors = store.poll()
    assert errors and "hi.wav" in str(errors[0]), errors
    assert _action(store, "+15550100") == good
