"""`gateway run --workers N`: N worker processes behind a Kamailio front.

The supervisor owns no SIP itself. It renders and starts the front on the public SIP address,
starts workers on private loopback ports, restarts any that die or hang (heartbeat), drains on
SIGTERM, rolls one worker at a time on SIGHUP, and serves every worker's metrics on one endpoint
with a `worker` label.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config.settings import Settings
from gateway.ops.front import Front, FrontError, FrontSettings, FrontWorker
from gateway.ops.lifeline import with_parent
from gateway.ops.metrics_merge import MergedMetrics
from gateway.ops.ports import free_port

log = logging.getLogger("gateway.ops.supervisor")
_HEARTBEAT_STALE = 10.0  # seconds without a heartbeat before a worker counts as hung
_READY_TIMEOUT = 60.0
_MAX_BACKOFF = 30.0


@dataclass
class _Roll:
    """A rolling restart in progress, advanced one step per watch tick (the watcher never waits
    for one worker's drain)."""

    queue: list[WorkerProcess]
    current: WorkerProcess | None = None
    phase: str = ""          # draining | starting
    deadline: float = 0.0


@dataclass
class WorkerProcess:
    name: str
    sip_port: int
    metrics_port: int
    rtp_start: int
    rtp_count: int
    runtime: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = 1.0
    restart_at: float | None = None
    stopping: bool = False
    ready: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def ready_file(self) -> Path:
        return self.runtime / f"{self.name}.ready"

    @property
    def heartbeat_file(self) -> Path:
        return self.runtime / f"{self.name}.heartbeat"


class Supervisor:
    def __init__(self, settings: Settings, config_path: Path | None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.runtime = (settings.records.parent / "run").resolve()
        self.runtime.mkdir(parents=True, exist_ok=True)
        per_worker = settings.rtp_port_count // settings.workers
        self.workers = [
            WorkerProcess(name=f"w{i + 1}", sip_port=free_port(), metrics_port=free_port(),
                          rtp_start=settings.rtp_port_start + i * per_worker,
                          rtp_count=per_worker, runtime=self.runtime)
            for i in range(settings.workers)
        ]
        allow = tuple(sorted({net for trunk in settings.trunks for net in trunk.allow}))
        self.front = Front(FrontSettings(
            listen_address=settings.sip_address, listen_port=settings.sip_port,
            workers=tuple(FrontWorker(w.name, "127.0.0.1", w.sip_port, settings.calls_per_worker)
                          for w in self.workers),
            allow=allow, runtime_dir=self.runtime / "front", advertise=settings.public_address,
            unknown_sources=settings.unknown_sources, source_rate=max(1.0, settings.flood_rate),
            source_burst=settings.flood_burst, ban_seconds=math.ceil(settings.ban_seconds)))
        self.metrics = MergedMetrics(self)
        self._stop = threading.Event()
        self._roll = threading.Event()
        self._rolling: _Roll | None = None

    # ---- lifecycle ----
    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._roll.set())
        try:
            self._prepare_prompts()
            for worker in self.workers:
                self._spawn(worker)
            for worker in self.workers:
                self._wait_ready(worker)
            self.front.start()
            self.metrics.serve(self.settings.metrics_address, self.settings.metrics_port)
            if self.settings.metrics_address in ("0.0.0.0", "::", ""):
                log.warning("metrics on every interface, without authentication: bind "
                            "metrics.address to 127.0.0.1 or a private address")
            log.info("front ready: SIP %s:%s → %d workers x %d calls; metrics http://%s:%s/metrics",
                     self.settings.sip_address, self.settings.sip_port, len(self.workers),
                     self.settings.calls_per_worker, self.settings.metrics_address,
                     self.settings.metrics_port)
            while not self._stop.wait(0.5):
                self._watch()
                if self._roll.is_set():
                    self._roll.clear()
                    self._start_roll()
                self._step_roll(time.monotonic())
            self._drain()
            return 0
        except FrontError as exc:
            log.error("%s", exc)
            return 1
        finally:
            self._kill_all()
            self.front.stop()
            self.metrics.close()

    def _prepare_prompts(self) -> None:
        """Render every prompt once here, so workers start without loading the voice model."""
        done = subprocess.run([sys.executable, "-m", "gateway.cli", "warm", *self._config_args()],
                              check=False)
        if done.returncode != 0:
            log.warning("prompt pre-rendering failed; workers render on demand")

    def _config_args(self) -> list[str]:
        args = ["--dialplans", str(self.settings.dialplans)]
        if self.config_path:
            args = ["--config", str(self.config_path), *args]
        return args

    def _spawn(self, worker: WorkerProcess) -> None:
        s = self.settings
        overrides = {
            "sip_address": "127.0.0.1", "sip_port": worker.sip_port,
            "metrics_address": "127.0.0.1", "metrics_port": worker.metrics_port,
            "rtp_port_start": worker.rtp_start, "rtp_port_count": worker.rtp_count,
            "workers": 1, "worker_name": worker.name,
            # Only the front talks to workers; it has checked the source already.
            "trusted": ["127.0.0.1"],
            # One registration per trunk, sent through the front with the front as Contact.
            "register_trunks": worker is self.workers[0],
            # One HTTP server (WebRTC calls, the call page) on the configured port: the first worker's.
            "http_port": s.http_port if worker is self.workers[0] else 0,
            "outbound_proxy": f"sip:{_front_host(s)};lr",
            "contact_address": f"{s.public_address or _front_host(s)}",
            "ready_file": str(worker.ready_file), "heartbeat_file": str(worker.heartbeat_file),
        }
        worker.ready_file.unlink(missing_ok=True)
        worker.heartbeat_file.unlink(missing_ok=True)
        env = {**os.environ, "GATEWAY_WORKER": json.dumps(overrides)}
        # A supervisor that dies (even by SIGKILL) takes its workers with it: no orphans.
        worker.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", *self._config_args()], env=env,
            **with_parent())
        worker.started_at = time.monotonic()
        worker.ready = False
        worker.stopping = False
        log.info("worker %s started (pid %d, SIP 127.0.0.1:%d)", worker.name, worker.proc.pid,
                 worker.sip_port)

    def _wait_ready(self, worker: WorkerProcess, timeout: float = _READY_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if worker.ready_file.exists():
                worker.ready = True
                return True
            if worker.proc is None or worker.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    # ---- watching ----
    def _watch(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.stopping:
                continue  # a rolling restart is stopping it on purpose
            proc = worker.proc
            if proc is not None and proc.poll() is None:
                if not worker.ready and worker.ready_file.exists():
                    worker.ready = True
                    self._set_state(worker, "active")
                    log.info("worker %s ready again", worker.name)
                if worker.ready and self._hung(worker, now):
                    log.error("worker %s stopped its heartbeat: killing it", worker.name)
                    proc.kill()
                continue
            if worker.restart_at is None:
                code = proc.returncode if proc else None
                log.error("worker %s exited (%s); front routes around it, restart in %.0f s",
                          worker.name, code, worker.backoff)
                self._set_state(worker, "inactive")
                self._end_calls_of(worker)
                worker.restart_at = now + worker.backoff
                worker.backoff = min(worker.backoff * 2, _MAX_BACKOFF)
            elif now >= worker.restart_at:
                worker.restart_at = None
                worker.restarts += 1
                self._spawn(worker)
            if worker.ready and now - worker.started_at > 60:
                worker.backoff = 1.0  # stable again

    def _end_calls_of(self, worker: WorkerProcess) -> None:
        """The dead worker's callers get a BYE from the front instead of dead air."""
        try:
            ended = self.front.end_dialogs_on(worker.name)
        except FrontError as exc:
            log.warning("front: cannot end calls of %s: %s", worker.name, exc)
            return
        if ended:
            log.warning("worker %s: %d calls ended by the front", worker.name, ended)

    def _hung(self, worker: WorkerProcess, now: float) -> bool:
        try:
            age = time.time() - worker.heartbeat_file.stat().st_mtime
        except FileNotFoundError:
            age = now - worker.started_at
        return age > _HEARTBEAT_STALE

    def _set_state(self, worker: WorkerProcess, state: str) -> None:
        try:
            self.front.set_worker_state(worker.name, state)  # type: ignore[arg-type]
        except FrontError as exc:
            log.warning("front: cannot set %s %s: %s", worker.name, state, exc)

    # ---- drain and restarts ----
    def _drain(self) -> None:
        log.info("draining: the front stops sending new calls; workers finish theirs")
        for worker in self.workers:
            self._set_state(worker, "disabled")
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_timeout + 15
        for worker in self.workers:
            if worker.proc is not None:
                try:
                    worker.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.error("worker %s did not stop in time", worker.name)

    def _start_roll(self) -> None:
        if self._rolling is not None:
            log.info("rolling restart already under way: SIGHUP ignored")
            return
        log.info("rolling restart of %d workers", len(self.workers))
        self._rolling = _Roll(list(self.workers))

    def _step_roll(self, now: float) -> None:
        """One step of the rolling restart: drain a worker, start it again, wait until it is
        ready, then the next. Each step returns at once; the watcher keeps watching the others."""
        roll = self._rolling
        if roll is None:
            return
        worker = roll.current
        if worker is None:
            if not roll.queue or self._stop.is_set():
                self._rolling = None
                return
            worker = roll.current = roll.queue.pop(0)
            worker.stopping = True
            self._set_state(worker, "disabled")
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
            roll.phase, roll.deadline = "draining", now + self.settings.drain_timeout + 15
            return
        if roll.phase == "draining":
            proc = worker.proc
            if proc is not None and proc.poll() is None:
                if now < roll.deadline:
                    return
                log.error("worker %s did not drain in time: killed", worker.name)
                proc.kill()
                proc.wait()
            self._spawn(worker)   # clears `stopping`: the watcher looks after it again
            roll.phase, roll.deadline = "starting", now + _READY_TIMEOUT
            return
        if worker.ready:          # the watcher saw it ready and set it active again
            log.info("worker %s restarted", worker.name)
            roll.current = None
        elif now > roll.deadline:
            log.error("worker %s did not come back: rolling restart stopped", worker.name)
            self._rolling = None

    def _kill_all(self) -> None:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.kill()
                worker.proc.wait()


def _front_host(s: Settings) -> str:
    address = "127.0.0.1" if s.sip_address in ("0.0.0.0", "") else s.sip_address
    return f"{address}:{s.sip_port}"
