"""The Kamailio front for multi-worker mode: runs it and drives it with kamcmd.

Callers and carriers talk to the front; the front dispatches each INVITE to the worker with the
fewest calls (dispatcher algorithm 10), fails over on busy/dead workers, probes workers with
OPTIONS, and stays in the signalling path (Record-Route) so in-dialog requests follow the call.
Dispatched calls are tracked as Kamailio dialogs tagged with their worker, so the calls of a
worker that died can be hung up from the front (`Front.end_dialogs_on`).
Workers send their trunk REGISTERs (and outbound requests) out through the front.
Every other source is screened first (route SCREEN): pike counts its requests, one that floods is
banned for `ban_seconds` (an htable entry that expires by itself) and dropped silently meanwhile;
a source in no trunk's allow list gets 403, or nothing with unknown_sources="drop".
Its config is rendered from one template (gateway.ops.kamailio_config), parsing kamcmd's answers
is gateway.ops.kamcmd; this module is process control. Nothing here imports pjsua2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Literal

from gateway.ops.kamailio_config import (
    WORKER_SET,
    FrontError,
    FrontSettings,
    FrontWorker,
    configmap_with,
    ctl_path,
    host,
    render_config,
    render_deploy_config,
    validate,
)
from gateway.ops.kamcmd import (
    Destination,
    FrontDialog,
    ScreeningStats,
    parse_destinations,
    parse_dialogs,
    parse_screening,
)
from gateway.ops.lifeline import with_parent

__all__ = ["Destination", "Front", "FrontDialog", "FrontError", "FrontSettings", "FrontWorker",
           "ScreeningStats", "options_ping", "render_config", "stop_kamailio"]

KAMAILIO = "kamailio"
KAMCMD = "kamcmd"

State = Literal["active", "inactive", "disabled", "probing"]
# Kamailio state letters. 'd' for drain: 'i' would be undone by the next good OPTIONS ping.
_STATE_CODES: dict[str, str] = {"active": "ap", "inactive": "ip", "disabled": "d", "probing": "tp"}
# Dialog states whose calls can be hung up with a BYE (they have both tags).
_ANSWERED_STATES = (3, 4)


def options_ping(address: str, port: int, timeout: float = 0.5) -> int | None:
    """Send one SIP OPTIONS over UDP; the status code of the reply, or None on silence."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))
        me, my_port = sock.getsockname()[:2]
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        msg = (
            f"OPTIONS sip:{host(address)}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host(me)}:{my_port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{host(me)}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{host(address)}:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(msg.encode(), (address, port))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65535)
            except (TimeoutError, ConnectionRefusedError):
                return None
            m = re.match(rb"SIP/2\.0 (\d{3}) ", data)
            if m and branch.encode() in data:
                return int(m.group(1))
    return None


def stop_kamailio(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a Kamailio started in the foreground (-DD) as the leader of its own process group
    (start_new_session): SIGTERM to the main process, which stops its children and waits for
    them. A child that misses the SIGTERM (seen with TCP processes, which then spin on their
    closed pipes, logging without end) keeps the main process waiting: after `timeout` it is
    killed, and whatever is left of the group with it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # children outliving the main process, if any



class Front:
    """Runs Kamailio as the SIP front for the workers in `settings`."""

    def __init__(self, settings: FrontSettings) -> None:
        validate(settings)
        self.settings = settings
        self.runtime_dir = settings.runtime_dir.resolve()
        self.log_path = self.runtime_dir / "kamailio.log"
        self.pid_path = self.runtime_dir / "kamailio.pid"  # absolute: kamailio chdirs to /
        self._ctl = ctl_path(self.runtime_dir)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            raise FrontError("front already running")
        binary = shutil.which(KAMAILIO) or shutil.which(KAMAILIO, path="/usr/sbin:/sbin")
        if binary is None:
            raise FrontError("kamailio not found (Debian package 'kamailio')")
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        cfg_text, ds_text = render_config(self.settings, ctl_socket=self._ctl)
        cfg = self.runtime_dir / "kamailio.cfg"
        cfg.write_text(cfg_text)
        (self.runtime_dir / "dispatcher.list").write_text(ds_text)
        self._ctl.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [
                    binary, "-f", str(cfg), "-P", str(self.pid_path), "-DD", "-E",
                    "-m", "256", "-M", "8",
                    "-Y", str(self.runtime_dir), "-w", str(self.runtime_dir),
                ],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() can end all of it
                **with_parent(),         # and it stops when its starter dies, however that dies
            )
        address = self.settings.listen_address
        deadline = time.monotonic() + timeout
        while options_ping(address, self.settings.listen_port, timeout=0.2) != 200:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
                raise FrontError(
                    f"kamailio front did not start; {self.log_path} ends with:\n" + "\n".join(tail)
                )

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        stop_kamailio(proc, timeout)
        if self._ctl.parent != self.runtime_dir:
            self._ctl.unlink(missing_ok=True)

    def __enter__(self) -> Front:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kamcmd(self, *args: str) -> str:
        binary = shutil.which(KAMCMD) or shutil.which(KAMCMD, path="/usr/sbin:/sbin") or KAMCMD
        out = subprocess.run(
            [binary, "-s", f"unix:{self._ctl}", *args],
            capture_output=True, text=True, timeout=5, check=False,
        )
        if out.returncode != 0 or out.stdout.startswith("error:"):
            raise FrontError(f"kamcmd {' '.join(args)}: {(out.stdout + out.stderr).strip()}")
        return out.stdout

    def _worker(self, worker: str | FrontWorker) -> FrontWorker:
        key = worker.uid if isinstance(worker, FrontWorker) else worker
        for w in self.settings.workers:
            if key in (w.uid, w.uri):
                return w
        raise FrontError(f"unknown worker {key!r}")

    def set_worker_state(self, worker: str | FrontWorker, state: State) -> None:
        """active: takes calls. inactive: none until its next good ping. probing: still takes
        calls, out at its next failed ping. disabled (drain): no new calls and no pings until
        set active again. Calls in progress are never touched. Kept only until a restart."""
        w = self._worker(worker)
        if state not in _STATE_CODES:
            raise FrontError(f"unknown worker state {state!r}")
        self.kamcmd("dispatcher.set_state", _STATE_CODES[state], str(WORKER_SET), w.uri)

    def destinations(self) -> list[Destination]:
        """One dict per worker, in Kamailio's order."""
        return parse_destinations(self.kamcmd("dispatcher.list"))

    def destination(self, worker: str | FrontWorker) -> Destination:
        uri = self._worker(worker).uri
        for d in self.destinations():
            if d["uri"] == uri:
                return d
        raise FrontError(f"worker {uri} not in the dispatcher list")

    def dialogs(self) -> list[FrontDialog]:
        """The calls the front tracks: every INVITE it dispatched to a worker, until its BYE
        (an ended one may linger in state 5 for a moment). Calls the workers place out through
        the front are not tracked."""
        return parse_dialogs(self.kamcmd("dlg.list"))

    def screening(self) -> ScreeningStats:
        """Flood and scanner counters since the front started (two kamcmd calls)."""
        return parse_screening(self.kamcmd("cnt.grp_get_all", "script"),
                               self.kamcmd("htable.stats"))

    def end_dialogs_on(self, worker: str | FrontWorker) -> int:
        """Hang up every answered call the front dispatched to `worker` (call it once the worker
        died): the front sends BYE to the caller (and to the worker's address, which may be gone)
        and releases the call's dispatcher load, so a restarted worker starts empty.
        Returns how many calls it ended; calls whose BYEs it already sent are not ended again.
        Calls still ringing on a dead worker are not touched: their INVITE times out and fails
        over to another worker.
        The caller's BYE goes first and is reliable. The worker's is best effort: Kamailio < 6.1
        skips it when the caller's 200 to the first BYE comes back before it is sent (kamailio
        issues #4169/#4268), which only matters when ending calls on a worker that is alive."""
        uid = self._worker(worker).uid
        ended = 0
        for d in self.dialogs():
            if d["worker"] != uid or d["state"] not in _ANSWERED_STATES or d["ended"]:
                continue
            try:
                self.kamcmd("dlg.end_dlg", str(d["h_entry"]), str(d["h_id"]))
            except FrontError:
                continue  # gone meanwhile: a BYE from either side crossed ours
            ended += 1
        return ended


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.ops.front",
                                     description="The Kamailio front's config.")
    parser.add_argument("--render-deploy", metavar="DEPLOY", nargs="?", const="deploy",
                        type=Path, help="rewrite DEPLOY/kamailio/kamailio.cfg (default: deploy) "
                        "and its copy in DEPLOY/k8s/front.yaml from the template")
    args = parser.parse_args(argv)
    if args.render_deploy is None:
        parser.print_help()
        return 2
    for path in write_deploy(args.render_deploy):
        print(f"wrote {path}")
    return 0


def write_deploy(deploy: Path) -> list[Path]:
    """The deploy kit's kamailio.cfg, and the verbatim copy its Kubernetes ConfigMap carries."""
    cfg = render_deploy_config()
    written = [deploy / "kamailio" / "kamailio.cfg"]
    written[0].write_text(cfg)
    manifest = deploy / "k8s" / "front.yaml"
    if manifest.exists():
        manifest.write_text(configmap_with(manifest.read_text(), cfg))
        written.append(manifest)
    return written


if __name__ == "__main__":
    sys.exit(main())
