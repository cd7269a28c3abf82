"""The conversational caller: frame-clock turn-taking and wire-level timing.

Pure tests drive CallerScript/Replier tick by tick; integration tests place real SIP/RTP
calls on 127.0.0.1 between two softphone processes, the far end being the reference replier
(`answer --reply FILE --reply-delay-ms 300`), whose own gap is exact by construction.

Expected latency on loopback: the replier starts exactly 300 ms (15 frames) after the end of
the last voiced frame it received. The caller measures that plus the media path both ways.
Each direction costs the phase between the two processes' 20 ms clocks plus what the jitter
buffer holds; the two phases always add up to one frame, so the caller sees 300 + 20 ms plus
0 or 1 frame of jitter-buffer hold: 320 or 340 ms (measured: 320 in 13 of 16 turns).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from gateway.caller.phone_call import CLOCK_LATE_WARN_MS, Turn, build_parser, format_timeline, main
from gateway.sip.phone.conversation import CallerScript, FrameVad, Replier, analyse_turns, segments, voiced_flags

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
RATE = 8000
REPLY_DELAY_MS = 300
EXPECTED_LATENCY_MS = REPLY_DELAY_MS + 20  # + one frame: the two clocks' phases (see above)
# 25 ms as asked of the measurement, plus one frame a jitter buffer may hold on a busy machine.
TOLERANCE_MS = 45
HEALTHY_JB_MAX_MS = 40  # on idle loopback a jitter buffer holds 1-2 frames
T = TypeVar("T")


def _tone(hz: float, seconds: float) -> bytes:
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def _frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + 320] for i in range(0, len(pcm), 320)]


def _write(path: Path, pcm: bytes) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)
    return path


# --- pure: VAD, script, replier, analysis ---------------------------------------------


@pytest.mark.parametrize("kind", ["energy", "webrtc"])
def test_vad_edges_are_frame_exact(kind: str) -> None:
    frames = _frames(bytes(3200) + _tone(660, 0.8) + bytes(3200))
    vad = FrameVad(kind)
    flags = voiced_flags(frames, vad)
    assert segments(flags) == [(10, 49)]  # webrtcvad alone gives up on a steady tone after ~100 ms
    assert not any(voiced_flags([bytes(320)] * 5 + [_tone(440, 0.02)[:200]], vad))  # short frame: unvoiced


def test_vad_falls_back_to_energy_without_webrtcvad(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "webrtcvad", None)  # import webrtcvad -> ImportError
    vad = FrameVad("auto")
    assert vad.kind == "energy"
    assert vad.is_voiced(_tone(440, 0.02)) and not vad.is_voiced(bytes(320))


def _converse(
    script: CallerScript[int], replier: Replier[int], *, fwd: int, back: int, ticks: int
) -> tuple[list[bool], list[bool]]:
    """Run both sides on one clock; fwd/back = frames of delay each way. Frame value 1 = voiced."""
    sent: list[bool] = []
    far_sent: list[bool] = []
    received: list[bool] = []
    for k in range(ticks):
        sent.append(script.tx(k) == 1)
        far_sent.append(replier.tx(k) == 1)
        replier.on_rx(k, k - fwd >= 0 and sent[k - fwd])
        received.append(k - back >= 0 and far_sent[k - back])
        script.on_rx(k, received[k])
        if script.finished:
            break
    return sent, received


@pytest.mark.parametrize(("fwd", "back"), [(0, 0), (1, 1), (2, 0), (0, 3)])
def test_script_and_replier_on_one_clock(fwd: int, back: int) -> None:
    turn = [1] * 40  # 0.8 s of speech
    script = CallerScript([turn, turn], gap_frames=35, hangup_frames=50, greeting_frames=50)
    replier = Replier([1] * 25, delay_frames=15, greeting=[1] * 10)
    sent, received = _converse(script, replier, fwd=fwd, back=back, ticks=2000)
    assert script.finished == "done"
    g = 10 + back  # greeting heard up to here, then 35 quiet frames
    assert [(r.start, r.end, r.trigger) for r in script.records] == [
        (g + 35, g + 75, "pause"),
        (g + 75 + fwd + 15 + back + 25 + 35, g + 75 + fwd + 15 + back + 25 + 75, "pause"),
    ]
    assert [r.to_json()["gap_ms"] for r in replier.records] == [300, 300]
    timing = analyse_turns(sent, received, script.records, merge_frames=35)
    assert [t["latency_ms"] for t in timing["turns"]] == [300 + 20 * (fwd + back)] * 2
    assert [t["barge_in_stop_ms"] for t in timing["turns"]] == [None, None]
    assert timing["segments"]["caller"] == [[(g + 35) / 50, (g + 75) / 50], [r / 50 for r in (
        script.records[1].start, script.records[1].end)]]


def test_barge_in_and_stop() -> None:
    turn = [1] * 40
    script = CallerScript([turn, turn], gap_frames=35, hangup_frames=50, barge_frames=20, greeting_frames=50)
    replier = Replier([1] * 100, delay_frames=15, greeting=[1] * 100, stop_frames=5)
    sent, received = _converse(script, replier, fwd=1, back=1, ticks=2000)
    assert [r.trigger for r in script.records] == ["barge-in", "barge-in"]
    assert script.records[0].start == 1 + 20  # greeting heard from frame 1 (one frame on the way)
    assert [r.stopped for r in replier.records] == [True, False]
    timing = analyse_turns(sent, received, script.records, merge_frames=35)
    # the replier stops after 5 voiced frames; +1 frame each way on the wire
    assert [t["barge_in_stop_ms"] for t in timing["turns"]] == [140, 140]


def test_script_without_reply_or_greeting() -> None:
    script: CallerScript[int] = CallerScript(
        [[1] * 10], gap_frames=10, hangup_frames=5, greeting_frames=30, reply_frames=20
    )
    out = [script.tx(k) for k in range(80)]
    assert script.records[0].start == 30 and script.records[0].trigger == "no-greeting"
    assert out[30:40] == [1] * 10 and script.finished == "no reply"
    assert [script.tx(k) for k in range(80, 90)] == [None] * 10
    listen: CallerScript[int] = CallerScript([], gap_frames=10, hangup_frames=20, greeting_frames=0, not_before=50)
    for k in range(60):
        listen.tx(k)
        listen.on_rx(k, 5 <= k < 15)
        if listen.finished:
            break
    assert (k, listen.finished) == (50, "done")  # quiet since 15, but held until not_before


def test_analysis_reply_and_barge_rules() -> None:
    from gateway.sip.phone.conversation import TurnRecord

    sent = [False] * 300
    received = [False] * 300
    for k in range(100, 140):
        sent[k] = True  # turn 1
    for k in range(160, 200):
        received[k] = True  # reply 1 (latency 20 x 20 = 400 ms)
    for k in range(180, 220):
        sent[k] = True  # turn 2 starts inside reply 1
    for k in range(240, 250):
        received[k] = True  # far end talks again; stops in a pause, before turn 3 begins
    for k in range(255, 265):
        sent[k] = True  # turn 3: inside the far end's 100 ms pause (shorter than the merge gap)
    recs = [TurnRecord(0, 95, 140, "pause"), TurnRecord(1, 180, 220, "barge-in"), TurnRecord(2, 255, 265, "barge-in")]
    turns = analyse_turns(sent, received, recs, merge_frames=10)["turns"]
    assert turns[0]["latency_ms"] == 400 and turns[0]["barge_in_stop_ms"] is None
    assert turns[0]["sent_start_s"] == 2.0 and turns[0]["sent_end_s"] == 2.8
    assert turns[1]["latency_ms"] == 400 and turns[1]["barge_in_stop_ms"] == 400
    assert turns[2]["latency_ms"] is None and turns[2]["barge_in_stop_ms"] == 0
    late = analyse_turns(sent, received, recs, merge_frames=5)["turns"]  # a 5-frame pause ends a turn
    assert late[2]["barge_in_stop_ms"] is None


def test_cli_keeps_say_and_play_in_order() -> None:
    args = build_parser().parse_args(["+1555", "--play", "a.wav", "--say", "hi there", "--play", "b.wav"])
    assert args.turns == [Turn("play", "a.wav"), Turn("say", "hi there"), Turn("play", "b.wav")]
    assert args.to == "127.0.0.1:5060"


# --- real calls ---------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class _Answerer:
    def __init__(self, ready: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.sip.phone.softphone", "answer", "--bind", LOOPBACK, "--port", "0",
             "--ready-file", str(ready), "--max-calls", "1", "--max-duration", "60", *args],
            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert self.proc.poll() is None, self.proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "answerer did not become ready"
            time.sleep(0.02)
        self.port = int(ready.read_text())

    def result(self) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err[-3000:]
        (call,) = json.loads(out)["calls"]
        return call  # type: ignore[no-any-return]


@pytest.fixture
def answerer(tmp_path: Path) -> Iterator[Any]:
    pytest.importorskip("pjsua2")  # every real-call test starts a far end; the pure tests need none
    started: list[_Answerer] = []

    def start(*args: str) -> _Answerer:
        a = _Answerer(tmp_path / f"answer-{len(started)}.port", *args)
        started.append(a)
        return a

    yield start
    for a in started:
        if a.proc.poll() is None:
            a.proc.kill()
            a.proc.communicate()


def _call(*args: str, timeout: float = 60) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.sip.phone.softphone", "call", "--number", "+15550100", *args],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (call,) = json.loads(proc.stdout)["calls"]
    return call  # type: ignore[no-any-return]


def _one_way_delays_ms(call: dict[str, Any], seen: dict[str, Any]) -> list[tuple[float, float]]:
    """Per turn (caller -> far end, far end -> caller) from both media clocks' tick-0 times
    (same host, same CLOCK_MONOTONIC). Both must be causal and small."""
    dt = seen["media_clock"]["t0_monotonic"] - call["media_clock"]["t0_monotonic"]
    out = []
    for turn, reply in zip(call["turns"], seen["replies"], strict=True):
        fwd = dt + reply["heard_end_s"] - turn["sent_end_s"]
        back = turn["reply_start_s"] - reply["start_s"] - dt
        out.append((round(fwd * 1000, 1), round(back * 1000, 1)))
    return out


def _disturbance(results: list[dict[str, Any]]) -> str | None:
    """Why a call's media path was disturbed by the machine (not by what is measured), or None."""
    for r in results:
        late = r["media_clock"]["late_max_ms"]
        jb_max = ((r.get("rtp") or {}).get("jb_delay_ms") or {}).get("max") or 0
        if late > CLOCK_LATE_WARN_MS or jb_max > HEALTHY_JB_MAX_MS:
            return f"clock {late} ms late, jitter buffer up to {jb_max} ms"
    return None


def _undisturbed(attempt: Callable[[], tuple[T, list[dict[str, Any]]]], tries: int = 4) -> T:
    """Run a call until neither softphone's media path was disturbed by CPU starvation.

    A starved clock thread sends its frames late and in a burst; a starved receive thread
    lets packets pile up. The far end then hears gaps (and may reply in the middle of a
    turn) and jitter buffers grow, so the timing describes the machine's overload. Both
    phones report how late their clock ran and how deep their jitter buffer got, which is
    independent of what is measured; only undisturbed calls are judged."""
    seen: list[str] = []
    for _ in range(tries):
        out, results = attempt()
        why = _disturbance(results)
        if why is None:
            return out
        seen.append(why)
    pytest.skip(f"machine too loaded to time calls; media paths: {seen}")


def test_turn_latency_against_reference_answerer(answerer: Any, tmp_path: Path) -> None:
    turn = _write(tmp_path / "turn.wav", _tone(440, 0.8))
    hello = _write(tmp_path / "hello.wav", _tone(550, 0.5))
    reply = _write(tmp_path / "reply.wav", _tone(660, 0.5))
    both = tmp_path / "both.wav"

    def attempt() -> tuple[tuple[dict[str, Any], dict[str, Any]], list[dict[str, Any]]]:
        b = answerer("--greeting", str(hello), "--reply", str(reply), "--reply-delay-ms", str(REPLY_DELAY_MS))
        call = _call(
            "--to", f"{LOOPBACK}:{b.port}", "--turn", str(turn), "--turn", str(turn), "--turn-gap-ms", "400",
            "--hangup-after", "1", "--record-both", str(both), "--record", str(tmp_path / "heard.wav"),
        )
        seen = b.result()
        return (call, seen), [call, seen]

    call, seen = _undisturbed(attempt)
    assert call["answered"] and call["disconnect"]["by"] == "local"
    assert any(text == "hangup (done)" for _, text in call["events"])
    turns = call["turns"]
    assert [t["index"] for t in turns] == [1, 2] and {t["trigger"] for t in turns} == {"pause"}
    assert [r["gap_ms"] for r in seen["replies"]] == [REPLY_DELAY_MS] * 2  # the reference is exact
    for t in turns:
        assert t["sent_end_s"] - t["sent_start_s"] == pytest.approx(0.8, abs=1e-6)
        assert abs(t["latency_ms"] - EXPECTED_LATENCY_MS) <= TOLERANCE_MS, (turns, call["rtp"], seen["rtp"])
        assert t["reply_start_s"] - t["sent_end_s"] == pytest.approx(t["latency_ms"] / 1000, abs=1e-6)
        assert t["barge_in_stop_ms"] is None
    for fwd, back in _one_way_delays_ms(call, seen):
        assert -2 <= fwd <= 45 and -2 <= back <= 45, (fwd, back)
    # greeting, reply 1, reply 2 as the caller heard them
    far = call["segments"]["far_end"]
    assert len(far) == 3 and [round(e - s, 2) for s, e in far] == pytest.approx([0.5] * 3, abs=0.061)
    # stereo recording: frame-aligned, left = sent, right = received
    with wave.open(str(both), "rb") as w:
        assert (w.getnchannels(), w.getframerate()) == (2, RATE)
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    assert len(x) == call["media_clock"]["frames"] * 160
    left_on = np.flatnonzero(np.abs(x[:, 0]) > 500)
    assert left_on[0] // 160 * 0.02 == pytest.approx(turns[0]["sent_start_s"])
    right = x[round(turns[0]["reply_start_s"] * RATE) :, 1][: RATE // 2].astype(float)
    assert abs(np.argmax(np.abs(np.fft.rfft(right))) * RATE / len(right) - 660) < 10
    with wave.open(str(tmp_path / "heard.wav"), "rb") as w:
        heard = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert len(x) - 160 <= len(heard) <= len(x) and np.array_equal(heard, x[: len(heard), 1])


def test_barge_in_stop_time(answerer: Any, tmp_path: Path) -> None:
    turn = _write(tmp_path / "turn.wav", _tone(440, 0.8))
    long = str(_write(tmp_path / "long.wav", _tone(660, 2.0)))

    def attempt() -> tuple[tuple[dict[str, Any], dict[str, Any]], list[dict[str, Any]]]:
        b = answerer("--greeting", long, "--reply", long, "--reply-stop-ms", "100")
        call = _call(
            "--to", f"{LOOPBACK}:{b.port}", "--turn", str(turn), "--turn", str(turn), "--barge-in-ms", "400",
            "--hangup-after", "0.5",
        )
        seen = b.result()
        return (call, seen), [call, seen]

    call, seen = _undisturbed(attempt)
    turns = call["turns"]
    far = call["segments"]["far_end"]
    assert [t["trigger"] for t in turns] == ["barge-in", "barge-in"]
    assert turns[0]["sent_start_s"] - far[0][0] == pytest.approx(0.4, abs=1e-6)  # by frame count
    assert turns[1]["sent_start_s"] - turns[0]["reply_start_s"] == pytest.approx(0.4, abs=1e-6)
    # the far end stops after 100 ms of caller speech; + 20 ms of clock phases, + jitter buffer
    for t in turns:
        assert abs(t["barge_in_stop_ms"] - (100 + 20)) <= TOLERANCE_MS, turns
    assert [r["stopped"] for r in seen["replies"]] == [True, False]


def test_gateway_caller_prints_a_timeline(answerer: Any, tmp_path: Path) -> None:
    turn = _write(tmp_path / "turn.wav", _tone(440, 0.8))
    hello = _write(tmp_path / "hello.wav", _tone(550, 0.5))
    reply = _write(tmp_path / "reply.wav", _tone(660, 0.5))

    def attempt() -> tuple[tuple[list[str], int], list[dict[str, Any]]]:
        b = answerer("--greeting", str(hello), "--reply", str(reply))
        proc = subprocess.run(
            [sys.executable, "-m", "gateway.caller.phone_call", "+15550100", "--to", f"{LOOPBACK}:{b.port}",
             "--play", str(turn), "--play", str(turn), "--turn-gap-ms", "400", "--hangup-after", "1",
             "--no-transcript"],
            cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=90,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        seen = b.result()
        assert seen["answered"]
        lines = proc.stdout.splitlines()
        late = 1000.0 if any("warning: our media clock" in ln for ln in lines) else 0.0
        (jb,) = [re.search(r"jitter buffer (\d+)-(\d+) ms", ln) for ln in lines if "our receive path" in ln]
        assert jb is not None
        ours = {"media_clock": {"late_max_ms": late}, "rtp": {"jb_delay_ms": {"max": int(jb.group(2))}}}
        return (lines, b.port), [seen, ours]

    lines, port = _undisturbed(attempt)
    assert lines[0].startswith(f"call +15550100 at {LOOPBACK}:{port}: 200 OK, PCMU/8000")
    assert [ln.split("caller")[1].split(":")[0].strip() for ln in lines if " caller " in ln] == [
        "turn 1 (pause)", "turn 2 (pause)",
    ]
    assert sum(" far end " in ln for ln in lines) == 3
    assert sum("[reply to turn" in ln for ln in lines) == 2
    (summary,) = [ln for ln in lines if "turn latency:" in ln]
    latencies = [int(part.split(": ")[-1].split()[0]) for part in summary.split(";")[0].split(", ")]
    assert len(latencies) == 2 and all(abs(v - EXPECTED_LATENCY_MS) <= TOLERANCE_MS for v in latencies), lines


def test_gateway_caller_says_text_and_transcribes_the_reply(
    answerer: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("piper")
    from gateway.errors import ProviderError
    from gateway.media.audio import save_wav
    from gateway.speech.prompts import PromptRenderer

    cache = tmp_path / "prompts"
    try:
        pcm = PromptRenderer(cache).render("We are open until ten tonight.")
    except ProviderError as exc:
        pytest.skip(f"offline voice unavailable: {exc}")
    save_wav(tmp_path / "reply.wav", pcm)

    def attempt() -> tuple[tuple[dict[str, Any], dict[str, Any]], list[dict[str, Any]]]:
        b = answerer("--reply", str(tmp_path / "reply.wav"))
        code = main([
            "+15550100", "--to", f"{LOOPBACK}:{b.port}", "--say", "When do you close?", "--greeting-wait", "0.5",
            "--turn-gap-ms", "400", "--hangup-after", "1", "--dtmf", "5@0.2", "--cache-dir", str(cache), "--json",
        ])
        out = json.loads(capsys.readouterr().out)
        assert code == 0
        seen = b.result()
        return (out, seen), [out["call"], seen]

    out, seen = _undisturbed(attempt)
    call = out["call"]
    (turn,) = call["turns"]
    assert turn["said"] == '"When do you close?"' and turn["trigger"] == "no-greeting"
    # the reply file itself opens with a little silence before its first voiced frame
    lead_ms = 20 * voiced_flags(_frames(pcm), FrameVad()).index(True)
    assert abs(turn["latency_ms"] - (EXPECTED_LATENCY_MS + lead_ms)) <= TOLERANCE_MS, (turn, lead_ms)
    (far,) = out["far_end"]
    assert far["start_s"] == turn["reply_start_s"]
    if out["transcript_note"] is None:  # faster-whisper and its model are installed
        assert "ten" in far["text"].lower() or "10" in far["text"], far
    assert seen["dtmf"] == "5" and len(seen["replies"]) == 1


def test_timeline_of_an_unanswered_call() -> None:
    from gateway.caller.phone_call import CallReport

    report = CallReport("+1555", "h:1", {"status": 486, "reason": "Busy Here", "answered": False}, [])
    assert format_timeline(report) == "call +1555 at h:1: 486 Busy Here (not answered)"


@pytest.mark.parametrize("to,number", [("sip:{host}:{port}", ""), ("sip:+15550177@{host}:{port}", "")])
def test_gateway_call_takes_a_sip_uri(answerer: Any, to: str, number: str) -> None:
    b = answerer()
    target = to.format(host=LOOPBACK, port=b.port)
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.caller.phone_call", *([number] if number else []), "--to", target,
         "--hangup-after", "0.5", "--greeting-wait", "0", "--no-transcript", "--json"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "PJSIP_EINVALIDREQURI" not in proc.stderr
    assert b.result()["answered"]


def test_gateway_call_refuses_a_bad_target_with_usage() -> None:
    proc = subprocess.run([sys.executable, "-m", "gateway.caller.phone_call", "+1555", "--to", "tel:+1555x"],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "only sip: and sips: URIs" in proc.stderr and "Traceback" not in proc.stderr
