"""Call setup time, CPU per active call and worker memory of one `gateway run` worker.

    .venv/bin/python -m tests.bench.bench_calls [--rounds 25]

Places rounds x 4 calls with the pjsua2 softphone (4 concurrent per round: the wheel's limit),
then holds 4 calls with audio both ways for 10 s while sampling the worker's CPU and RSS.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from gateway.media.audio import save_wav, tone
from tests.support.gateway import GatewayProcess
from tests.support.phones import call, result, start_call

PLAN = 'numbers: ["+15550300"]\nflow:\n  - play: long.wav\n  - play: long.wav\n'


def write_plans(tmp: Path) -> Path:
    """The benchmark's dialplans: +15550300 plays a 30 s tone twice; everything else is refused."""
    plans = tmp / "dialplans"
    plans.mkdir()
    (plans / "bench.yaml").write_text(PLAN)
    (plans / "default.yaml").write_text("reject: 404\n")
    save_wav(plans / "long.wav", tone(440, 30.0))
    return plans


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_share(pid: int, seconds: float) -> float:
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        plans = write_plans(tmp)
        with GatewayProcess(tmp, plans) as gw:
            assert gw.proc is not None
            pid = gw.proc.pid
            time.sleep(2)
            idle_rss = rss_mib(pid)
            idle_cpu = cpu_share(pid, 5)
            caller_ms: list[float] = []
            failed = 0
            for _ in range(args.rounds):
                out = call(gw.target, "+15550300", "--calls", "4", "--hangup-after", "0.5")
                for c in out["calls"]:
                    if c["status"] == 200:
                        caller_ms.append(c["setup_ms"])
                    else:
                        failed += 1
            records = gw.wait_records(len(caller_ms) + failed, 20)
            inside_ms = [r["setup_ms"] for r in records if r.get("setup_ms") is not None]
            held = start_call(gw.target, "+15550300", "--calls", "4", "--play", "tone:300",
                              "--hangup-after", "14")
            time.sleep(3)
            busy_cpu = cpu_share(pid, 10)
            busy_rss = rss_mib(pid)
            result(held)
    per_call = (busy_cpu - idle_cpu) / 4 * 100
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"calls: {len(caller_ms) + failed} placed, {failed} failed")
    print(f"setup INVITE→200 at the caller: p50 {statistics.median(caller_ms):.1f} ms, "
          f"p95 {pct(caller_ms, 0.95):.1f} ms")
    print(f"setup inside the gateway:       p50 {statistics.median(inside_ms):.1f} ms, "
          f"p95 {pct(inside_ms, 0.95):.1f} ms")
    print(f"CPU: idle {idle_cpu * 100:.1f} % of a core, 4 calls {busy_cpu * 100:.1f} %, "
          f"per active call {per_call:.2f} %")
    print(f"memory: worker RSS idle {idle_rss:.0f} MiB, with 4 calls {busy_rss:.0f} MiB "
          f"({(busy_rss - idle_rss) / 4:.1f} MiB per call)")


if __name__ == "__main__":
    main()
