"""Run the real gateway (`gateway run`) as a subprocess on free loopback ports."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from gateway.worker.records import read_records
from tests.support import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]


class StoreFile(type(Path())):  # type: ignore[misc]
    """The call store's file; read_text() gives every stored call as JSON lines, so a search of
    "the records" (for a leaked secret, say) reads what is stored, not SQLite's pages."""

    def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:  # type: ignore[override]
        return "\n".join(json.dumps(r, default=str) for r in read_records(Path(self)))


class GatewayProcess:
    def __init__(self, tmp: Path, dialplans: Path | None = None, extra: dict | None = None,
                 env: dict[str, str] | None = None, workers: int = 1) -> None:
        self.tmp = tmp
        self.sip_port = free_port()
        self.metrics_port = free_port()
        self.http_port = free_port()  # WebRTC calls and the call page
        self.records = StoreFile(tmp / "calls.db")
        self.log_path = tmp / "gateway.log"
        self.config_path = tmp / "gateway.yaml"
        self.workers = workers
        config = {
            "sip": {"address": "127.0.0.1", "port": self.sip_port,
                    "rtp_port_start": random.randrange(20000, 60000, 200), "rtp_port_count": 200},
            "metrics": {"address": "127.0.0.1", "port": self.metrics_port},
            "http": {"address": "127.0.0.1", "port": self.http_port},
            "dialplans": str(dialplans or REPO / "dialplans"),
            "records": str(self.records),
            # Prompts rendered by one test are reused by the next (same text, same voice).
            "cache_dir": str(REPO / "var" / "test-cache"),
            "drain_timeout": 5,
            "workers": workers,
            # A small worker, as the tests of busy workers and the fronts' load balancing expect
            # (and 200 RTP ports hold); a test of capacity raises it through `extra`.
            "calls_per_worker": 4,
        }
        config.update(extra or {})
        self.config_path.write_text(yaml.safe_dump(config))
        # The repo on the path: benchmarks name test-only providers as tests.bench...:Class.
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        self.env = {**os.environ, "PYTHONPATH": path, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> GatewayProcess:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "--config", str(self.config_path)],
            stdout=self._log, stderr=subprocess.STDOUT, env=self.env, cwd=self.tmp)
        if not wait_until(self._ready, timeout, 0.1):
            self.stop()
            raise RuntimeError(f"gateway did not start:\n{self.log()}")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"gateway exited {self.proc.returncode}:\n{self.log()}")
        # A single worker is ready once its engines are warm: loading them competes for CPU.
        return ("front ready" if self.workers > 1 else "engines warm") in self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a sample's values over series matching the given labels (0 when absent)."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            series, _, value = line.rpartition(" ")
            metric, _, label_text = series.partition("{")
            if metric != name:
                continue
            if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
                total += float(value)
        return total

    def records_list(self) -> list[dict]:
        """Every call in the gateway's call store, whole, in the order stored."""
        return read_records(Path(self.records))

    def wait_records(self, count: int, timeout: float = 10.0) -> list[dict]:
        wait_until(lambda: len(self.records_list()) >= count, timeout)
        return self.records_list()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_metric(gw: GatewayProcess, name: str, value: float, timeout: float = 10.0,
                **labels: str) -> bool:
    return wait_until(lambda: gw.metric(name, **labels) == value, timeout, 0.1)


def sleep(seconds: float) -> None:
    time.sleep(seconds)
