"""Turn latency and barge-in stop time, measured on the wire at the caller.

    .venv/bin/python -m tests.bench.bench_turns [--calls 8] [--rounds 4] [--engines offline|instant|both]
                                                [--frame-ms 20|10]

offline: the embedded engines (faster-whisper tiny.en, piper). instant: zero-latency fake
providers (tests/bench/instant.py), so what remains is the gateway's own media path plus the
end-of-turn silence, which is subtracted to give the gateway's share. --frame-ms runs both the
gateway (media: {frame_ms: ...}) and the caller with that frame and RTP packet length.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from gateway.media.audio import load_wav, save_wav, tone
from gateway.sip.phone.conversation import FRAME_BYTES, FrameVad, voiced_flags
from tests.bench.bench_calls import cpu_seconds, pct
from tests.support.gateway import GatewayProcess
from tests.support.phones import Answerer, call
from tests.support.speech import speech_wav

END_OF_TURN_MS = 500
AGENT = f"""
name: bench
disclosure: false
end_of_turn_ms: {END_OF_TURN_MS}
steps:
  - say: "Hello. This is the turn latency benchmark. How are you today?"
"""
LOOP = """  - gather: {name: a%d, prompt: "Thank you. And what else would you like to tell me?"}
"""
BARGE = """
name: barge
disclosure: false
steps:
  - say: "This is a long sentence for the barge in benchmark. It keeps going so that the caller can interrupt it. And it still goes on a little longer."
  - gather: {name: a, prompt: "Go on."}
"""

INSTANT = {"stt": ["tests.bench.instant:InstantSTT"], "tts": "tests.bench.instant:InstantTTS"}


def crisp(path: Path) -> Path:
    """The caller's turn with digital silence before its first and after its last voiced frame
    (by the caller's own VAD), so that where speech starts and ends does not depend on which
    detector listens: a fading tail would otherwise count as speech for one and not the other."""
    pcm = load_wav(path)
    frames = [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]
    voiced = [k for k, v in enumerate(voiced_flags(frames, FrameVad())) if v]
    keep = b"".join(frames[voiced[0]:voiced[-1] + 1])
    # Edges exact to 10 ms as well, for 10 ms callers: a quiet half of an edge frame goes silent.
    half = len(frames[0]) // 2
    loud = FrameVad("energy", frame_ms=10).loud
    if not loud(keep[:half]):
        keep = bytes(half) + keep[half:]
    if not loud(keep[-half:]):
        keep = keep[:-half] + bytes(half)
    save_wav(path, bytes(len(b"".join(frames[:voiced[0]]))) + keep + bytes(FRAME_BYTES * 10))
    return path


def run(engines: str, rounds: int, calls: int, tmp: Path, frame_ms: int = 20) -> dict[str, list[float]]:
    tmp = tmp / f"{frame_ms}ms"
    plans = tmp / engines / "dialplans"
    (plans / "agents").mkdir(parents=True)
    (plans / "agents" / "bench.yaml").write_text(AGENT + "".join(LOOP % i for i in range(rounds)))
    (plans / "agents" / "barge.yaml").write_text(BARGE)
    (plans / "bench.yaml").write_text('numbers: ["+15550400"]\nagent: agents/bench.yaml\n')
    (plans / "barge.yaml").write_text('numbers: ["+15550401"]\nagent: agents/barge.yaml\n')
    (plans / "default.yaml").write_text("reject: 404\n")
    turn = crisp(speech_wav(tmp, "turn", "I am fine, thank you very much."))
    extra = {**(INSTANT if engines == "instant" else {}), "media": {"frame_ms": frame_ms}}
    frames = ("--frame-ms", str(frame_ms))
    results: dict[str, list[float]] = {"turn": [], "barge": [], "inside": []}
    with GatewayProcess(tmp / engines, plans, extra=extra) as gw:
        assert gw.proc is not None
        time.sleep(3)  # let the worker warm its engines
        cpu0, t0 = cpu_seconds(gw.proc.pid), time.monotonic()
        # Several calls, because each call's media clock has its own phase against the
        # caller's: within one call every turn is quantised the same way.
        for _ in range(calls):
            out = call(gw.target, "+15550400", *frames, *[a for _ in range(rounds) for a in ("--turn", str(turn))],
                       "--hangup-after", "3", "--max-duration", str(30 + rounds * 15),
                       timeout=60 + rounds * 20)["calls"][0]
            results["turn"] += [t["latency_ms"] for t in out.get("turns", []) if t.get("latency_ms")]
        results["cpu"] = [(cpu_seconds(gw.proc.pid) - cpu0) / (time.monotonic() - t0)]
        for record in gw.wait_records(calls):
            results["inside"] += record.get("turn_latencies_ms", [])
        for _ in range(max(3, calls)):
            barge = call(gw.target, "+15550401", *frames, "--turn", str(turn), "--barge-in-ms", "1500",
                         "--hangup-after", "2", "--max-duration", "30")["calls"][0]
            results["barge"] += [t["barge_in_stop_ms"] for t in barge.get("turns", [])
                                 if t.get("barge_in_stop_ms") is not None]
    if engines == "instant":
        results["floor"] = reference_floor(tmp, turn, rounds, calls, frames)
    return results


def reference_floor(tmp: Path, turn: Path, rounds: int, calls: int, frames: tuple[str, str]) -> list[float]:
    """The same calls against the reference far end (a pjsua2 softphone that replies exactly
    END_OF_TURN_MS after the caller's last voiced frame, with no work at all): what two pjsua2
    media stacks cost on the wire, the floor under the gateway's share."""
    reply = tmp / "reply.wav"
    save_wav(reply, tone(440, 1.0))
    floor: list[float] = []
    with Answerer(tmp, *frames, "--reply", str(reply), "--reply-delay-ms", str(END_OF_TURN_MS)) as ref:
        for _ in range(calls):
            out = call(f"127.0.0.1:{ref.port}", "+15550400", *frames,
                       *[a for _ in range(rounds) for a in ("--turn", str(turn))],
                       "--hangup-after", "3", "--max-duration", str(30 + rounds * 15),
                       timeout=60 + rounds * 20)["calls"][0]
            floor += [t["latency_ms"] - END_OF_TURN_MS for t in out.get("turns", []) if t.get("latency_ms")]
        ref.finish()
    return floor


def show(name: str, values: list[float], minus: float = 0.0) -> str:
    if not values:
        return f"{name}: no samples"
    values = [v - minus for v in values]
    return (f"{name}: p50 {statistics.median(values):.0f} ms, p95 {pct(values, 0.95):.0f} ms "
            f"(n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4, help="caller turns per call")
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--engines", choices=("offline", "instant", "both"), default="both")
    parser.add_argument("--frame-ms", type=int, choices=(10, 20), action="append",
                        help="media frame of gateway and caller; repeat to compare (default 20)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as name:
        for frame_ms, engines in ((f, e) for f in args.frame_ms or [20]
                                  for e in (("offline", "instant") if args.engines == "both" else (args.engines,))):
            r = run(engines, args.rounds, args.calls, Path(name), frame_ms)
            print(f"[{engines}, {frame_ms} ms frames]")
            print("  " + show("turn latency on the wire (caller's last voiced frame → agent's first)", r["turn"]))
            print("  " + show("  inside the gateway (end of speech → first frame to RTP)", r["inside"]))
            if engines == "instant":
                print("  " + show(f"  gateway's own share (wire − {END_OF_TURN_MS} ms end-of-turn silence)",
                                  r["turn"], END_OF_TURN_MS))
                print("  " + show("  the floor: a pjsua2 far end replying with no work, same measure", r["floor"]))
            print("  " + show("barge-in: caller onset → agent silent on the wire", r["barge"]))
            print(f"  CPU of the worker during the conversation: {r['cpu'][0] * 100:.1f} % of a core")


if __name__ == "__main__":
    main()
