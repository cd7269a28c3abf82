"""Voice-to-voice latency of a booking conversation on the offline engines, on the wire from
the caller's seat, before (tests/bench/legacy.py: whole-utterance recognition after 0.36 s of
its own silence) and after (streaming decoding, semantic endpointing), in the same run.

    .venv/bin/python -m tests.bench.bench_conversation [--calls 8]

Each call answers four questions as a person would ("I would like to book an appointment.",
"My name is John Smith.", "Friday, please.", "Two pm."): 32 turns per engine set. The agent's
replies are fixed prompts. Prints p50/p95/max on the wire, the gateway's own per-stage medians
(call records' turn_stages) and the ratio after/before.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from tests.bench.bench_calls import pct
from tests.bench.bench_turns import crisp
from tests.support.gateway import GatewayProcess
from tests.support.phones import call
from tests.support.speech import speech_wav

AGENT = """
name: booking-bench
disclosure: false
vocabulary: [appointment]
steps:
  - say: "Thanks for calling. Would you like to book an appointment?"
  - gather: {name: intent, prompt: "How can I help?", expect: {book: [book, appointment, booking]}}
  - gather: {name: caller_name, prompt: "May I have your name, please?", type: name, confirm: never}
  - gather:
      name: day
      prompt: "Which day suits you?"
      expect: {monday: [monday], tuesday: [tuesday], wednesday: [wednesday], thursday: [thursday], friday: [friday]}
  - gather: {name: time, prompt: "And what time?", type: time}
  - say: "You're booked. Goodbye."
  - hangup: true
"""
TURNS = ["I would like to book an appointment.", "My name is John Smith.", "Friday, please.", "Two pm."]
ENGINES = {"before": {"stt": ["tests.bench.legacy:LegacyWhisperSTT"]}, "after": {}}


def run(label: str, calls: int, tmp: Path) -> dict[str, list]:
    plans = tmp / label / "dialplans"
    (plans / "agents").mkdir(parents=True)
    (plans / "agents" / "booking.yaml").write_text(AGENT)
    (plans / "booking.yaml").write_text('numbers: ["+15550600"]\nagent: agents/booking.yaml\n')
    (plans / "default.yaml").write_text("reject: 404\n")
    wavs = [crisp(speech_wav(tmp, f"turn{i}", text)) for i, text in enumerate(TURNS)]
    out: dict[str, list] = {"wire": [], "stages": [], "answers": []}
    with GatewayProcess(tmp / label, plans, extra=ENGINES[label]) as gw:
        time.sleep(3)
        for _ in range(calls):
            got = call(gw.target, "+15550600", *[a for w in wavs for a in ("--turn", str(w))],
                       "--hangup-after", "3", "--max-duration", "60", timeout=120)["calls"][0]
            out["wire"] += [t["latency_ms"] for t in got.get("turns", []) if t.get("latency_ms")]
        for record in gw.wait_records(calls):
            out["stages"] += record.get("turn_stages", [])
            out["answers"].append({k: record["variables"].get(k) for k in ("intent", "caller_name", "day", "time")})
    return out


def summary(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (f"p50 {statistics.median(values):.0f} ms, p95 {pct(values, 0.95):.0f} ms, "
            f"max {max(values):.0f} ms (n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=8)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    results = {}
    with tempfile.TemporaryDirectory() as name:
        for label in ("before", "after"):
            results[label] = r = run(label, args.calls, Path(name))
            print(f"[{label}] voice to voice on the wire: {summary(r['wire'])}")
            for key in ("endpoint_ms", "asr_tail_ms", "tts_first_audio_ms", "reply_ms", "total_ms"):
                values = [s[key] for s in r["stages"] if key in s]
                if values:
                    print(f"    inside, {key}: median {statistics.median(values):.0f}, max {max(values):.0f}")
            ends = [s.get("endpoint") for s in r["stages"]]
            print(f"    turns ended by: {', '.join(f'{k} {ends.count(k)}' for k in sorted(set(ends), key=str))}")
            right = sum(a == {"intent": "book", "caller_name": a.get("caller_name"), "day": "friday", "time": a.get("time")}
                        and "john" in (a.get("caller_name") or "").lower() for a in r["answers"])
            print(f"    calls that gathered intent, name and day right: {right}/{len(r['answers'])}; answers: {r['answers'][:2]}")
    b, a = results["before"]["wire"], results["after"]["wire"]
    if a and b:
        print(f"after/before, p50: {statistics.median(a) / statistics.median(b):.2f}, "
              f"p95: {pct(a, 0.95) / pct(b, 0.95):.2f}")


if __name__ == "__main__":
    main()
