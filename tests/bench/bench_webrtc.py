"""WebRTC calls: turn latency at the caller and concurrent conversations per worker.

    .venv/bin/python -m tests.bench.bench_webrtc [--calls 6] [--rounds 3] [--engines offline|instant|both]
                                                 [--steps 10,20,40]

Callers are aiortc peers in this process, calling /whip/<number> over loopback with Opus, each
speaking through the same paced 48 kHz track the gateway uses. A turn is timed as bench_turns
times SIP turns: the caller's last voiced frame handed to its encoder → the agent's first voiced
frame decoded at the caller. --steps holds that many conversations at once (instant providers,
so the gateway's media path is what is measured) and reports answered turns, their latency, and
the worker's CPU and memory; the callers share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from gateway.media.audio import load_wav, rms_dbfs
from gateway.media.playout import PlayoutBuffer
from tests.bench.bench_calls import cpu_seconds, pct, rss_mib
from tests.bench.bench_turns import AGENT, INSTANT, LOOP, crisp
from tests.support.gateway import GatewayProcess
from tests.support.speech import speech_wav
from tests.support.webrtc import FRAME, VOICED_DBFS, WhipCaller


class Mouth(PlayoutBuffer):
    """The caller's outgoing audio, noting when its last voiced frame left."""

    last_voiced = 0.0

    def read_frame(self) -> bytes | None:
        frame = super().read_frame()
        if frame is not None and rms_dbfs(frame) > VOICED_DBFS:
            self.last_voiced = time.monotonic()
        return frame


async def conversation(base: str, http: aiohttp.ClientSession, turn: bytes, rounds: int) -> list[float]:
    caller = WhipCaller(base)
    caller.mouth = Mouth(FRAME)
    caller.pc.getSenders()[0].track._playout = caller.mouth  # type: ignore[union-attr]
    latencies: list[float] = []
    try:
        start = time.monotonic()
        if await caller.call("+15550400", http) != 201 or not await caller.connected(20):
            return []
        since = start
        for _ in range(rounds):
            await caller.agent_turn(since, quiet=0.8, timeout=30)
            caller.speak(turn)
            await caller.spoken()
            await asyncio.sleep(0.25)  # the trailing silence leaves too
            spoke = caller.mouth.last_voiced
            deadline = time.monotonic() + 20
            while not caller.voiced(spoke) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            voiced = caller.voiced(spoke)
            if not voiced:
                break
            latencies.append((voiced[0][0] - spoke) * 1000)
            since = voiced[0][0]
        await caller.hangup(http)
    except TimeoutError:
        pass
    finally:
        await caller.close()
    return latencies


def plans(tmp: Path, rounds: int) -> Path:
    root = tmp / "dialplans"
    (root / "agents").mkdir(parents=True)
    (root / "agents" / "bench.yaml").write_text(AGENT + "".join(LOOP % i for i in range(rounds + 1)))
    (root / "bench.yaml").write_text('numbers: ["+15550400"]\nagent: agents/bench.yaml\n')
    (root / "default.yaml").write_text("reject: 404\n")
    return root


async def calls_at_once(base: str, turn: bytes, rounds: int, count: int) -> list[list[float]]:
    async with aiohttp.ClientSession() as http:
        async def one(i: int) -> list[float]:
            await asyncio.sleep(i * 0.1)  # a ramp, not one burst of DTLS handshakes
            return await conversation(base, http, turn, rounds)
        return list(await asyncio.gather(*(one(i) for i in range(count))))


def show(values: list[float]) -> str:
    if not values:
        return "no turns"
    return f"p50 {statistics.median(values):.0f} ms, p95 {pct(values, 0.95):.0f} ms (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", choices=("offline", "instant", "both"), default="both")
    parser.add_argument("--steps", default="10,20,40")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp_text:
        tmp = Path(tmp_text)
        turn = load_wav(crisp(speech_wav(tmp, "turn", "I am fine, thank you very much.")))
        for engines in (("offline", "instant") if args.engines == "both" else (args.engines,)):
            extra = {**(INSTANT if engines == "instant" else {}), "webrtc": {"max_calls": 500}}
            with GatewayProcess(tmp / engines, plans(tmp / engines, args.rounds), extra=extra) as gw:
                assert gw.proc is not None
                base = f"http://127.0.0.1:{gw.http_port}"
                time.sleep(3)
                cpu0, t0 = cpu_seconds(gw.proc.pid), time.monotonic()
                turns = [t for _ in range(args.calls)
                         for t in asyncio.run(calls_at_once(base, turn, args.rounds, 1))[0]]
                cpu = (cpu_seconds(gw.proc.pid) - cpu0) / (time.monotonic() - t0)
                inside = [ms for r in gw.wait_records(args.calls) for ms in r.get("turn_latencies_ms", [])]
                print(f"{engines}: one call at a time, {args.calls} calls x {args.rounds} turns: turn {show(turns)}; "
                      f"inside the gateway {show(inside)}; worker CPU {cpu * 100:.1f} % of a core")
                if engines != "instant":
                    continue
                idle = rss_mib(gw.proc.pid)
                for count in (int(s) for s in args.steps.split(",")):
                    cpu0, t0 = cpu_seconds(gw.proc.pid), time.monotonic()
                    results = asyncio.run(calls_at_once(base, turn, args.rounds, count))
                    cpu = (cpu_seconds(gw.proc.pid) - cpu0) / (time.monotonic() - t0)
                    full = sum(1 for r in results if len(r) == args.rounds)
                    print(f"  {count} at once: {full}/{count} calls answered every turn; turn "
                          f"{show([t for r in results for t in r])}; worker CPU {cpu * 100:.0f} % of a core, "
                          f"RSS {rss_mib(gw.proc.pid):.0f} MiB (idle {idle:.0f})")


if __name__ == "__main__":
    main()
