"""Call store writes per second with N worker processes on one SQLite file (WAL, synchronous=FULL:
each call is one fsynced transaction), and on PostgreSQL when it is installed.

    .venv/bin/python -m tests.bench.bench_store [--calls 200] [--workers 1 2 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

from gateway.store.calls import CallStore
from tests.store.test_store import make_call
from tests.support import postgres


def _writer(target: str, worker: int, calls: int, start: multiprocessing.Barrier) -> None:
    store = CallStore(target)
    start.wait()
    for i in range(calls):
        store.write_call(make_call(f"b{worker}-{i}-{time.time_ns()}"))
    store.close()


def measure(target: str, workers: int, calls: int) -> float:
    CallStore(target).close()  # migrations once, outside the timing
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(workers + 1)
    procs = [ctx.Process(target=_writer, args=(target, w, calls, start)) for w in range(workers)]
    for p in procs:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    for p in procs:
        p.join()
    return workers * calls / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200, help="calls per worker")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args()
    print("backend     workers  calls/s (each call: row, 2 turns, 1 tool, 7 audit events)")
    for n in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"sqlite      {n:7d}  {measure(str(Path(tmp) / 'calls.db'), n, args.calls):8.0f}")
    if postgres.available():
        with postgres.PostgresServer() as pg:
            for n in args.workers:
                print(f"postgresql  {n:7d}  {measure(pg.url, n, args.calls):8.0f}")


if __name__ == "__main__":
    main()
