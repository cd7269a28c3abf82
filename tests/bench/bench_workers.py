"""`gateway run --workers 4` holding 16 concurrent calls behind the Kamailio front.

    .venv/bin/python -m tests.bench.bench_workers [--workers 4] [--hold 20]

Four softphone processes place 4 calls each (audio both ways) and hold them; reports setup time
at the caller, failed calls, CPU and memory of the whole deployment (supervisor, workers, front).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from tests.bench.bench_calls import pct, write_plans
from tests.support.gateway import GatewayProcess
from tests.support.phones import result, start_call


def tree(root: int) -> list[int]:
    """root and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--hold", type=float, default=20.0)
    args = parser.parse_args()
    calls = 4 * args.workers
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        plans = write_plans(tmp)
        with GatewayProcess(tmp, plans, workers=args.workers) as gw:
            assert gw.proc is not None
            time.sleep(3)
            pids = tree(gw.proc.pid)
            idle_rss = rss_mib(pids)
            c0, t0 = cpu(pids), time.monotonic()
            time.sleep(5)
            idle_cpu = (cpu(pids) - c0) / (time.monotonic() - t0)
            callers = [start_call(gw.target, "+15550300", "--calls", "4", "--play", "tone:300",
                                  "--hangup-after", str(args.hold))
                       for _ in range(args.workers)]
            time.sleep(4)
            per_worker = [gw.metric("gateway_calls_active", worker=f"w{i + 1}")
                          for i in range(args.workers)]
            busy_rss = rss_mib(pids)
            c0, t0 = cpu(pids), time.monotonic()
            time.sleep(max(1.0, args.hold - 8))
            busy_cpu = (cpu(pids) - c0) / (time.monotonic() - t0)
            out = [c for proc in callers for c in result(proc, args.hold + 60)["calls"]]
    ok = [c for c in out if c["status"] == 200 and c["disconnect"]["by"] == "local"]
    setup = [c["setup_ms"] for c in ok]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"workers: {args.workers}; calls held per worker: {per_worker}")
    print(f"calls: {len(out)} placed, {len(out) - len(ok)} failed or cut short")
    print(f"setup INVITE→200 at the caller through the front: p50 {statistics.median(setup):.1f} ms, "
          f"p95 {pct(setup, 0.95):.1f} ms")
    print(f"CPU (supervisor + workers + front): idle {idle_cpu * 100:.1f} % of a core, "
          f"{calls} calls {busy_cpu * 100:.1f} %, per call {(busy_cpu - idle_cpu) / calls * 100:.2f} %")
    print(f"memory: deployment idle {idle_rss:.0f} MiB, with {calls} calls {busy_rss:.0f} MiB "
          f"({(busy_rss - idle_rss) / calls:.1f} MiB per call)")


if __name__ == "__main__":
    main()
