"""The most concurrent conversational calls one machine holds with zero failed calls.

    .venv/bin/python -m tests.bench.bench_capacity [--workers 8] [--steps 8,16,24,32] [--duration 40]

`gateway run --workers N` behind its Kamailio front, with zero-latency fake providers
(tests/bench/instant.py) so that only the gateway's own work is measured. Each step is one
`gateway loadtest` run: that many calls at once, each speaking several turns and waiting for
the agent's replies. The callers (4 calls per softphone process) run on the same machine, so
they share its cores with the gateway. Stops at the first step with a failed call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.bench_turns import INSTANT, crisp
from tests.support.gateway import REPO, GatewayProcess
from tests.support.speech import speech_wav

AGENT = """
name: capacity
disclosure: false
end_of_turn_ms: 500
steps:
  - say: "Hello, this is the capacity benchmark."
""" + "".join(f'  - gather: {{name: a{i}, prompt: "Thank you. Tell me more."}}\n' for i in range(12))


def loadtest(target: str, calls: int, turn: Path, turns: int, duration: float, pid: int, logs: Path) -> dict:
    cmd = [sys.executable, "-m", "gateway.cli", "loadtest", "--target", target, "--number", "+15550500",
           "--calls", str(calls), "--total", str(calls), "--rate", "8", "--duration", str(duration),
           "--gateway-pid", str(pid), "--workdir", str(logs), "--json"]
    cmd += [a for _ in range(turns) for a in ("--turn", str(turn))]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=duration + 180,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    if out.returncode not in (0, 1):
        raise RuntimeError(f"loadtest failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--steps", default="8,16,24,32", help="concurrent calls per step")
    parser.add_argument("--turns", type=int, default=4, help="caller turns per call")
    parser.add_argument("--duration", type=float, default=40.0, help="the most a call may last")
    parser.add_argument("--logs", help="keep the callers' logs here (default: discarded)")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"--workers {args.workers}")
    print("calls  answered  failed  turn p50/p95 ms  setup p95 ms  rtp lost  gateway CPU % of a core  peak RSS MiB")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        plans = tmp / "dialplans"
        (plans / "agents").mkdir(parents=True)
        (plans / "agents" / "capacity.yaml").write_text(AGENT)
        (plans / "capacity.yaml").write_text('numbers: ["+15550500"]\nagent: agents/capacity.yaml\n')
        (plans / "default.yaml").write_text("reject: 404\n")
        turn = crisp(speech_wav(tmp, "turn", "I am fine, thank you very much."))
        # Each worker may take every call of the largest step: the machine is the limit measured.
        extra = {**INSTANT, "calls_per_worker": max(steps)}
        with GatewayProcess(tmp, plans, extra=extra, workers=args.workers) as gw:
            assert gw.proc is not None
            time.sleep(3)
            for calls in steps:
                logs = Path(args.logs or tmp) / f"loadtest-{calls}"
                s = loadtest(gw.target, calls, turn, args.turns, args.duration, gw.proc.pid, logs)
                t, g = s["turn_latency_ms"], s["gateway"] or {}
                print(f"{calls:5d}  {s['answered']:8d}  {s['failed']:6d}  {t['p50']}/{t['p95']} (n={t['n']})"
                      f"  {s['setup_ms']['p95']}  {s['rtp']['rx_lost']}/{s['rtp']['rx_packets']}"
                      f"  {g.get('cpu_pct')}  {g.get('rss_peak_mib')}", flush=True)
                if s["failed"]:
                    print("failures:", json.dumps(s["failures"]), "; errors:", s["errors"], "; logs:", logs)
                    break
                time.sleep(3)  # let the last calls' records and ports settle


if __name__ == "__main__":
    main()
