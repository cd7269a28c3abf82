"""Legitimate calls through the Kamailio front beside a stranger's INVITE flood.

    .venv/bin/python -m tests.bench.bench_flood [--workers 2] [--rate 500] [--seconds 10]
                                                [--unknown-sources reject|drop]

`gateway run --workers N` with its trunk allow list at 127.0.0.1/32. Two phases of the same
legitimate load (sipp on 127.0.0.1, 4 calls at a time, each answered and held 1 s): alone, then
beside sipp on 127.0.0.2 sending INVITEs at --rate per second, each with its own Call-ID.
Prints legitimate calls completed/failed, what the stranger got back, the front's ban counters,
INVITEs that reached the workers, and CPU of the workers and of the front in each phase.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from tests.bench.bench_calls import write_plans
from tests.bench.bench_workers import cpu, tree
from tests.support.gateway import GatewayProcess
from tests.support.sipp import SippFlood, SippUac

NUMBER = "+15550300"  # bench_calls' plans: answers and plays a tone


def invites_at_workers(gw: GatewayProcess) -> float:
    """INVITEs the workers handled: finished calls, active ones and every rejection."""
    return sum(gw.metric(name) for name in (
        "gateway_calls_total", "gateway_calls_active", "gateway_invites_rejected_total"))


def phase(gw: GatewayProcess, tmp: Path, args: argparse.Namespace, flood: bool) -> dict:
    run = tmp / "run"
    workers = [int((run / f"w{i + 1}.ready").read_text()) for i in range(args.workers)]
    front = tree(int((run / "front" / "kamailio.pid").read_text()))
    calls = 4 * int(args.seconds)  # 4 per second, 4 at a time, held 1 s each
    legit = SippUac("127.0.0.1", gw.sip_port, NUMBER, workdir=tmp, calls=calls, concurrent=4,
                    rate=4, hold_ms=1000, timeout_s=20)
    stranger = SippFlood("127.0.0.1", gw.sip_port, workdir=tmp, local_address="127.0.0.2",
                         rate=args.rate, count=int(args.rate * args.seconds)) if flood else None
    seen = invites_at_workers(gw)
    w0, f0, t0 = cpu(workers), cpu(front), time.monotonic()
    if stranger:
        stranger.start()
    legit.start()
    flood_s = 0.0
    if stranger:
        stranger.wait()
        flood_s = time.monotonic() - t0
    outcome = legit.wait()
    elapsed = time.monotonic() - t0
    w1, f1 = cpu(workers), cpu(front)
    time.sleep(1.5)  # the merged /metrics page is cached for a second
    return {
        "calls": calls,
        "ok": sum(code == 200 for code in outcome.codes),
        "rc": outcome.returncode,
        "elapsed": elapsed,
        "flood_s": flood_s,
        "worker_cpu": (w1 - w0) / elapsed,
        "front_cpu": (f1 - f0) / elapsed,
        "invites_at_workers": invites_at_workers(gw) - seen,
        "flood_sent": stranger.sent() if stranger else 0,
        "flood_replies": stranger.replies() if stranger else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=int, default=500, help="stranger's INVITEs per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--unknown-sources", choices=("reject", "drop"), default="reject")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        plans = write_plans(tmp)
        extra = {"trunks": [{"name": "local", "allow": ["127.0.0.1/32"]}],
                 "security": {"unknown_sources": args.unknown_sources}}
        with GatewayProcess(tmp, plans, workers=args.workers, extra=extra) as gw:
            time.sleep(3)
            alone = phase(gw, tmp, args, flood=False)
            flooded = phase(gw, tmp, args, flood=True)
            bans = gw.metric("gateway_front_bans_total")
            refused = {reason: gw.metric("gateway_front_requests_refused_total", reason=reason)
                       for reason in ("banned", "unknown_source")}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; {args.workers} workers, "
          f"unknown_sources: {args.unknown_sources}")
    print(f"flood: {flooded['flood_sent']} INVITEs from 127.0.0.2 in {flooded['flood_s']:.1f} s "
          f"({flooded['flood_sent'] / flooded['flood_s']:.0f}/s); answered "
          f"{flooded['flood_replies']} times; bans {bans:.0f}; refused at the front: "
          f"banned {refused['banned']:.0f}, unknown_source {refused['unknown_source']:.0f}")
    for name, p in (("alone", alone), ("beside the flood", flooded)):
        print(f"legitimate calls {name}: {p['ok']}/{p['calls']} completed, "
              f"{p['calls'] - p['ok']} failed (sipp rc {p['rc']}); INVITEs at the workers "
              f"{p['invites_at_workers']:.0f}; worker CPU {p['worker_cpu'] * 100:.1f} % of a core, "
              f"front CPU {p['front_cpu'] * 100:.1f} %")


if __name__ == "__main__":
    main()
