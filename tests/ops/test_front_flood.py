"""Flood and scanner screening in the Kamailio front, for real: sipp floods from 127.0.0.2 (a
stranger: the allow list is 127.0.0.1) beside legitimate callers on 127.0.0.1, with sipp UAS
processes standing in for the workers and counting every INVITE that reaches them."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Protocol

import pytest

from gateway.ops.front import Front, FrontSettings, FrontWorker
from tests.support import wait_until
from tests.support.kamailio import UdpSipClient
from tests.support.sipp import SippFlood, SippUac, SippUas, call, unassigned_port

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not shutil.which("sipp"), reason="sipp (Debian sip-tester) not installed"),
]

STRANGER = "127.0.0.2"


class MakeFront(Protocol):
    def __call__(self, **settings: object) -> tuple[Front, list[SippUas]]: ...


@pytest.fixture
def make_front(tmp_path: Path) -> Iterator[MakeFront]:
    with ExitStack() as stack:

        def make(**settings: object) -> tuple[Front, list[SippUas]]:
            workers = [stack.enter_context(SippUas(tmp_path, name=f"w{i}")) for i in range(2)]
            front = Front(FrontSettings(
                listen_address="127.0.0.1", listen_port=unassigned_port(tcp=True),
                workers=tuple(FrontWorker(f"w{i}", "127.0.0.1", w.port, 20)
                              for i, w in enumerate(workers)),
                allow=("127.0.0.1/32",), runtime_dir=tmp_path / "front", ping_interval=1,
                **settings))  # type: ignore[arg-type]
            stack.enter_context(front)
            return front, workers

        yield make


def ban_lines(front: Front) -> list[str]:
    return [line for line in front.log_path.read_text(errors="replace").splitlines()
            if "FRONT ban " in line]


def options(source: str, front: Front, timeout: float = 0.5) -> int | None:
    """Status of one OPTIONS from `source` to the front; None when nothing came back."""
    with UdpSipClient(source) as client:
        try:
            return client.options("127.0.0.1", front.settings.listen_port, timeout=timeout).code
        except TimeoutError:
            return None


def test_invite_flood_is_banned_and_legitimate_calls_all_complete(
    make_front: MakeFront, tmp_path: Path
) -> None:
    front, workers = make_front()
    port = front.settings.listen_port
    legit = SippUac("127.0.0.1", port, "+14155550100", workdir=tmp_path, calls=30,
                    concurrent=4, rate=5, hold_ms=200)
    with SippFlood("127.0.0.1", port, workdir=tmp_path, local_address=STRANGER,
                   rate=300, count=1800) as flood:
        legit.start()
        outcome = legit.wait()
        flood.wait()
    assert outcome.ok and outcome.codes == [200] * 30, outcome
    # The flood never reached a worker: they saw exactly the legitimate INVITEs.
    assert sum(w.call_count for w in workers) == 30
    sent, answered = flood.sent(), flood.replies()
    assert sent == 1800
    # A few 403s while pike measured the rate, then silence (no reply to amplify).
    assert 0 < answered <= 60, answered
    stats = front.screening()
    assert stats["bans"] == 1 and stats["banned_now"] == 1
    assert stats["unknown_source"] == answered
    assert stats["dropped_banned"] == sent - answered
    assert ban_lines(front) == [ban_lines(front)[0]]
    assert ban_lines(front)[0].endswith(f"FRONT ban src={STRANGER} seconds=300")
    # Still banned: even a single quiet OPTIONS gets nothing now.
    assert options(STRANGER, front) is None
    assert call("127.0.0.1", port, "100", workdir=tmp_path).codes == [200]


def test_drop_mode_answers_unknown_sources_nothing(make_front: MakeFront, tmp_path: Path) -> None:
    front, workers = make_front(unknown_sources="drop")
    assert options(STRANGER, front) is None
    out = call("127.0.0.1", front.settings.listen_port, "100", workdir=tmp_path, expect=403,
               local_address=STRANGER, timeout_s=2)
    assert out.codes == [None]  # no answer at all (sipp gives up)
    assert sum(w.call_count for w in workers) == 0
    assert front.screening()["unknown_source"] >= 2
    assert options("127.0.0.1", front) == 200
    assert call("127.0.0.1", front.settings.listen_port, "100", workdir=tmp_path).codes == [200]


def test_ban_expires(make_front: MakeFront, tmp_path: Path) -> None:
    front, _ = make_front(ban_seconds=2)
    with SippFlood("127.0.0.1", front.settings.listen_port, workdir=tmp_path,
                   local_address=STRANGER, rate=200, count=100, method="OPTIONS") as flood:
        flood.wait()
    assert front.screening()["bans"] == 1
    assert options(STRANGER, front) is None
    # Back to a plain 403 once the ban has expired (and pike has forgotten the burst).
    assert wait_until(lambda: options(STRANGER, front) == 403, timeout=20, interval=1)


def test_stranger_tcp_connections_neither_pile_up_nor_block_callers(
    make_front: MakeFront, tmp_path: Path
) -> None:
    front, _ = make_front(unknown_sources="drop", tcp_idle_seconds=2)
    port = front.settings.listen_port
    idle: list[socket.socket] = []
    try:
        for _ in range(300):  # silent connections, as a scanner leaves them
            conn = socket.create_connection(("127.0.0.1", port), source_address=(STRANGER, 0))
            idle.append(conn)
        with socket.create_connection(("127.0.0.1", port), source_address=(STRANGER, 0)) as talk:
            talk.sendall(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.2;branch="
                         b"z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\n"
                         b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
            talk.settimeout(5)
            assert talk.recv(100) == b""  # dropped: closed without a reply
        # A caller over TCP gets through beside them.
        out = call("127.0.0.1", port, "100", workdir=tmp_path, transport="t1")
        assert out.ok and out.codes == [200], out
        # The idle ones are closed by the front after tcp_idle_seconds (+ its timer tick).
        started = time.monotonic()
        for conn in idle:
            conn.settimeout(max(0.1, 15 - (time.monotonic() - started)))
            assert conn.recv(100) == b""
    finally:
        for conn in idle:
            conn.close()
