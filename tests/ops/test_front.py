"""The Kamailio front, for real: sipp UAS processes stand in for workers, sipp UACs for callers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from gateway.ops.front import Front, FrontError, FrontSettings, FrontWorker, render_config
from tests.support import wait_until
from tests.support.kamailio import KamailioRegistrar, UdpSipClient
from tests.support.sipp import CallOutcome, SippUac, SippUas, call, unassigned_port

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not shutil.which("sipp"), reason="sipp (Debian sip-tester) not installed"),
]


@dataclass
class Held:
    """Calls held until release(), then hung up by their callers (see Rig.hold)."""

    callers: list[SippUac]

    def release(self) -> None:
        for caller in self.callers:
            caller.release()

    def wait(self) -> CallOutcome:
        """All callers' outcomes as one: ok if all are, codes in call order."""
        outcomes = [caller.wait() for caller in self.callers]
        worst = max(outcomes, key=lambda o: o.returncode != 0)
        return CallOutcome(returncode=worst.returncode, messages_log=worst.messages_log,
                           codes=[code for o in outcomes for code in o.codes])


@dataclass
class Rig:
    front: Front
    workers: list[SippUas]
    workdir: Path
    stack: ExitStack  # the fixture's: what is on it is stopped after the test

    @property
    def port(self) -> int:
        return self.front.settings.listen_port

    def counts(self) -> list[int]:
        return [w.call_count for w in self.workers]

    def hold(self, calls: int) -> Held:
        """Place `calls` calls that stay up until the test is done with them: release(), then
        wait(). Each INVITE goes out once the call before was answered: the front picks a
        worker from the loads it counts, and INVITEs it handles at the same time in different
        processes can see the same loads (and put more than max_load on one worker)."""
        held = Held([])
        for _ in range(calls):
            caller = SippUac("127.0.0.1", self.port, "+14155550100", workdir=self.workdir,
                             hold_ms=None)
            self.stack.callback(caller.stop)  # a test failing before release() leaves none
            held.callers.append(caller.start())
            caller.wait_answered()
        return held

    def call(self, expect: int = 200, *, info: bool = False, cancel: bool = False,
             transport: str = "u1") -> list[int | None]:
        """One call; its final codes, once sipp has seen the whole scenario go as expected
        (ACK, INFO and BYE answered too), else the test fails with sipp's errors."""
        outcome = call("127.0.0.1", self.port, "+14155550100", workdir=self.workdir,
                       expect=expect, info=info, cancel=cancel, transport=transport)
        assert outcome.ok, outcome
        return outcome.codes


class MakeRig(Protocol):
    def __call__(
        self,
        answers: tuple[int, ...] = ...,
        *,
        max_load: int = ...,
        ping_interval: int = ...,
        extra: tuple[FrontWorker, ...] = ...,
        hangup_after_ms: int | None = ...,
    ) -> Rig: ...


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[MakeRig]:
    with ExitStack() as stack:

        def make(
            answers: tuple[int, ...] = (200, 200, 200),
            *,
            max_load: int = 2,
            ping_interval: int = 1,
            extra: tuple[FrontWorker, ...] = (),
            hangup_after_ms: int | None = None,
        ) -> Rig:
            workers = [
                stack.enter_context(SippUas(tmp_path, name=f"w{i}", answer=code,
                                            hangup_after_ms=hangup_after_ms))
                for i, code in enumerate(answers)
            ]
            settings = FrontSettings(
                listen_address="127.0.0.1",
                listen_port=unassigned_port(tcp=True),
                workers=tuple(FrontWorker(f"w{i}", "127.0.0.1", w.port, max_load)
                              for i, w in enumerate(workers)) + extra,
                allow=("127.0.0.1",),
                runtime_dir=tmp_path / "front",
                ping_interval=ping_interval,
                worker_timeout_ms=1000,
            )
            front = stack.enter_context(Front(settings))
            return Rig(front, workers, tmp_path, stack)

        yield make


def _settings(tmp_path: Path, **kw: object) -> FrontSettings:
    base: dict[str, object] = dict(
        listen_address="127.0.0.1", listen_port=5060,
        workers=(FrontWorker("w1", "127.0.0.1", 5071, 4), FrontWorker("w2", "127.0.0.1", 5072, 4)),
        allow=("10.0.0.0/8", "192.0.2.7"), runtime_dir=tmp_path,
    )
    base.update(kw)
    return FrontSettings(**base)  # type: ignore[arg-type]


def test_rendered_config_is_valid_kamailio(tmp_path: Path) -> None:
    cfg, dispatcher_list = render_config(_settings(tmp_path))
    assert "1 sip:127.0.0.1:5071 8 0 duid=w1;maxload=4" in dispatcher_list
    assert "listen=udp:127.0.0.1:5060" in cfg and "listen=tcp:127.0.0.1:5060" in cfg
    assert 'is_in_subnet("$si", "10.0.0.0/8")' in cfg
    assert 'is_in_subnet("$si", "192.0.2.7/32")' in cfg
    assert 'ds_select_dst("1", "10", "2")' in cfg
    assert "t_set_fr(30000, 2000)" in cfg
    assert "dlg_manage();" in cfg and "event_route[tm:local-request]" in cfg
    # Screening: pike + an expiring ban table, before anything else in request_route.
    assert cfg.index("route(SCREEN);") < cfg.index("mf_process_maxfwd_header")
    assert 'modparam("pike", "reqs_density_per_unit", 20)' in cfg
    assert '"ipban=>size=10;autoexpire=300;"' in cfg
    assert 'sl_send_reply("403", "Forbidden");' in cfg
    assert "tcp_max_connections=2048" in cfg and "tcp_connection_lifetime=20" in cfg
    (tmp_path / "kamailio.cfg").write_text(cfg)
    (tmp_path / "dispatcher.list").write_text(dispatcher_list)
    check = subprocess.run(["kamailio", "-c", "-f", str(tmp_path / "kamailio.cfg")],
                           capture_output=True, text=True, timeout=20)
    assert check.returncode == 0, check.stderr[-2000:]


def test_drop_mode_renders_no_answer_for_unknown_sources(tmp_path: Path) -> None:
    cfg, _ = render_config(_settings(tmp_path, unknown_sources="drop", ban_seconds=60,
                                     source_rate=5, source_burst=10))
    screen = cfg[cfg.index("route[SCREEN]"):cfg.index("route[SILENCE]")]
    unknown = screen.split('cnt_inc("unknown_source");', 1)[1]
    assert "403" not in screen and unknown.lstrip().startswith("route(SILENCE);\n}")
    assert "autoexpire=60;" in cfg and 'reqs_density_per_unit", 10)' in cfg


@pytest.mark.parametrize("bad", [
    dict(unknown_sources="ignore"),
    dict(ban_seconds=0),
    dict(tcp_max_connections=1),
    dict(workers=(FrontWorker('w"1', "127.0.0.1", 5071, 4),)),
    dict(workers=(FrontWorker("w1", "127.0.0.1", 5071, 4),) * 2),
    dict(workers=(FrontWorker("w1", "127.0.0.1", 5071, 0),)),
    dict(workers=()),
])
def test_bad_settings_are_refused(tmp_path: Path, bad: dict[str, object]) -> None:
    with pytest.raises(FrontError):
        render_config(_settings(tmp_path, **bad))


@pytest.mark.parametrize("bad", [
    dict(allow=('1.2.3.4"); exit; #',)),
    dict(listen_address="x"),
    dict(runtime_dir=Path('/tmp/a"b')),
])
def test_values_that_could_inject_script_are_refused(
    tmp_path: Path, bad: dict[str, object]
) -> None:
    with pytest.raises(FrontError):
        render_config(_settings(tmp_path, **bad))


def test_calls_spread_by_load_and_overflow_gets_503(make_rig: MakeRig) -> None:
    rig = make_rig()
    held = rig.hold(6)
    assert sum(w.active_calls for w in rig.workers) == 6
    assert rig.counts() == [2, 2, 2]
    assert [d["load"] for d in rig.front.destinations()] == [2, 2, 2]
    # Every worker is at max_load: the front answers for them.
    assert rig.call(expect=503) == [503]
    held.release()
    outcome = held.wait()
    assert outcome.ok and outcome.codes == [200] * 6, outcome
    # BYEs released the load: calls are accepted again.
    assert wait_until(lambda: all(d["load"] == 0 for d in rig.front.destinations()), timeout=5)
    assert rig.call() == [200]


def test_in_dialog_requests_follow_the_call(make_rig: MakeRig) -> None:
    rig = make_rig((200,))
    assert rig.call(info=True) == [200]  # ACK, INFO and BYE through the front's Record-Route
    assert rig.call(transport="t1") == [200]  # TCP caller, UDP worker
    assert rig.workers[0].active_calls == 0


def test_worker_hangup_reaches_the_caller(make_rig: MakeRig) -> None:
    rig = make_rig((200,), hangup_after_ms=300)
    outcome = call("127.0.0.1", rig.port, "100", workdir=rig.workdir, remote_hangup=True)
    assert outcome.ok and outcome.codes == [200], outcome
    assert wait_until(lambda: rig.front.destinations()[0]["load"] == 0, timeout=5)


def test_cancel_while_ringing_releases_the_load(make_rig: MakeRig) -> None:
    rig = make_rig((180,), max_load=1)
    for _ in range(2):  # with max_load 1, a leaked load would turn the second call into 503
        assert rig.call(cancel=True) == [487]
        assert wait_until(lambda: rig.front.destinations()[0]["load"] == 0, timeout=5)
    assert rig.workers[0].call_count == 2
    # The worker's call ends with the front's ACK to its 487, which may land after the caller's.
    assert wait_until(lambda: rig.workers[0].active_calls == 0, timeout=5)


def test_source_outside_allow_list_gets_403(make_rig: MakeRig) -> None:
    rig = make_rig((200,))
    outcome = call("127.0.0.1", rig.port, "100", workdir=rig.workdir, expect=403,
                   local_address="127.0.0.2")
    assert outcome.ok and outcome.codes == [403], outcome
    assert rig.counts() == [0]


def test_disabled_worker_gets_no_new_calls(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.front.set_worker_state("w0", "disabled")
    assert rig.front.destination("w0")["state"] == "disabled"
    # Two ping rounds later a good OPTIONS ping has not re-enabled it (it would with state 'i').
    pings = rig.workers[1].options_count
    assert wait_until(lambda: rig.workers[1].options_count >= pings + 2, timeout=20)
    assert rig.front.destination("w0")["state"] == "disabled"
    held = rig.hold(4)
    assert sum(w.active_calls for w in rig.workers) == 4
    assert rig.counts() == [0, 2, 2]
    assert rig.call(expect=503) == [503]
    held.release()
    outcome = held.wait()
    assert outcome.ok, outcome
    rig.front.set_worker_state(rig.workers[0].uri, "active")
    assert rig.front.destination("w0")["state"] == "active"


def test_dead_worker_is_marked_down_and_revived_one_rejoins(make_rig: MakeRig) -> None:
    rig = make_rig()
    dead = rig.workers[2]
    dead.stop(crash=True)
    # ping_interval 1 s + probe timeout (worker_timeout_ms) 1 s: down within ~2 s.
    assert wait_until(lambda: rig.front.destination("w2")["state"] == "inactive", timeout=8)
    held = rig.hold(4)
    held.release()
    outcome = held.wait()
    assert outcome.ok and outcome.codes == [200] * 4, outcome
    assert rig.counts() == [2, 2, 0]
    revived = SippUas(rig.workdir, name="w2b", port=dead.port).start()
    try:
        assert wait_until(lambda: rig.front.destination("w2")["state"] == "active", timeout=8)
        assert rig.call() == [200]
    finally:
        revived.stop()


def test_calls_of_a_dead_worker_are_ended_by_the_front_and_its_load_released(
    make_rig: MakeRig,
) -> None:
    rig = make_rig((200, 200))
    callers: list[SippUac] = []
    try:
        for n in (1, 2):  # one caller each, so each caller's fate can be read on its own
            callers.append(SippUac("127.0.0.1", rig.port, "100", workdir=rig.workdir,
                                   remote_hangup=True, timeout_s=10).start())
            assert wait_until(lambda n=n: sum(w.active_calls for w in rig.workers) == n,
                              timeout=5)
            if n == 1:  # the worker that took the first caller's call is the one to die
                dead = next(i for i, w in enumerate(rig.workers) if w.active_calls)
        alive = 1 - dead
        # Both calls answered and ACKed as far as the front knows (state 4, confirmed).
        assert wait_until(lambda: [d["state"] for d in rig.front.dialogs()] == [4, 4], timeout=5)
        assert rig.counts() == [1, 1]  # algorithm 10: one call per worker
        assert [d["load"] for d in rig.front.destinations()] == [1, 1]
        dead_uid, alive_uid = f"w{dead}", f"w{alive}"
        assert {d["worker"] for d in rig.front.dialogs()} == {"w0", "w1"}

        rig.workers[dead].stop(crash=True)
        assert rig.front.end_dialogs_on(dead_uid) == 1
        first = callers[0].wait(timeout=5)  # the front's BYE ended it
        assert first.ok and first.codes == [200], first
        assert rig.front.destination(dead_uid)["load"] == 0
        assert rig.front.end_dialogs_on(dead_uid) == 0  # its BYEs are out: not ended twice
        # The caller's 200 to the BYE ends the dialog at the front (the dead worker's BYE only
        # times out); once it has, only the other worker's call is left in progress.
        assert wait_until(lambda: [d["worker"] for d in rig.front.dialogs() if d["state"] == 4]
                          == [alive_uid], timeout=5)
        # The other worker's call goes on (a BYE to its caller would have ended its dialog).
        time.sleep(0.3)
        assert rig.workers[alive].active_calls == 1
        assert rig.front.destination(alive_uid)["load"] == 1
        assert [d["worker"] for d in rig.front.dialogs() if d["state"] == 4] == [alive_uid]

        # Then the other worker dies as well (passed as a FrontWorker this time).
        rig.workers[alive].stop(crash=True)
        assert rig.front.end_dialogs_on(rig.front.settings.workers[alive]) == 1
        second = callers[1].wait(timeout=5)
        assert second.ok and second.codes == [200], second
        assert [d["load"] for d in rig.front.destinations()] == [0, 0]
    finally:
        for caller in callers:
            caller.stop()


def test_busy_worker_fails_over_and_exhaustion_gets_503(make_rig: MakeRig) -> None:
    rig = make_rig((486, 200), max_load=3)
    busy, good = rig.workers
    held = rig.hold(2)
    held.release()
    outcome = held.wait()
    assert outcome.ok and outcome.codes == [200, 200], outcome
    assert good.call_count == 2 and busy.call_count >= 1
    rig.front.set_worker_state("w1", "disabled")
    seen = busy.call_count
    assert rig.call(expect=503) == [503]  # the busy worker's 486 is not passed on
    assert busy.call_count == seen + 1


def test_silent_worker_times_out_and_the_call_fails_over(make_rig: MakeRig) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        # A long ping interval keeps the silent worker "active", so only the branch timer saves us.
        rig = make_rig((200,), ping_interval=30,
                       extra=(FrontWorker("silent", "127.0.0.1", port, 3),))
        started = time.monotonic()
        held = rig.hold(2)
        held.release()
        outcome = held.wait()
        assert outcome.ok and outcome.codes == [200, 200], outcome
        silent.settimeout(0.1)
        assert silent.recv(65535).startswith(b"INVITE ")
        assert time.monotonic() - started >= 1.0  # worker_timeout_ms


def test_trunk_registers_through_the_front_and_carrier_calls_are_dispatched(
    make_rig: MakeRig,
) -> None:
    trunk_user, trunk_password = "trunk1", "t-secret"
    with KamailioRegistrar(trunk_user, trunk_password) as carrier, UdpSipClient() as worker_sip:
        # worker_sip plays a worker's SIP stack: it sits in the dispatcher list, so the front
        # trusts its REGISTER; disabled so that calls go to the sipp worker only.
        rig = make_rig((200,), extra=(FrontWorker("reg", "127.0.0.1", worker_sip.port, 4),))
        rig.front.set_worker_state("reg", "disabled")
        front_contact = f"sip:{trunk_user}@127.0.0.1:{rig.port}"
        codes = worker_sip.register(
            ("127.0.0.1", rig.port), trunk_user, trunk_password, "127.0.0.1",
            request_uri=carrier.uri, contact=f"<{front_contact}>",
        )
        assert codes == [401, 200]
        assert carrier.registered_contacts(trunk_user) == [front_contact]
        path = carrier.events()[-2].fields.get("path", "")  # the REGISTER that was accepted
        assert f"127.0.0.1:{rig.port}" in path
        # The carrier calls the trunk: registrar → front (the Contact) → a worker, and back.
        outcome = call("127.0.0.1", carrier.port, trunk_user, workdir=rig.workdir)
        assert outcome.ok and outcome.codes == [200], outcome
        assert rig.counts() == [1]
        assert carrier.register_count(trunk_user, kind="ok") == 1
