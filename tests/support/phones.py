"""Drive the pjsua2 softphone (`python -m gateway.sip.phone.softphone`) from tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import wait_until


def call(target: str, number: str, *args: str, timeout: float = 60.0) -> dict:
    """Place call(s) and return the softphone's JSON result."""
    cmd = [sys.executable, "-m", "gateway.sip.phone.softphone", "call", "--to", target, "--number", number,
           *args]
    done = subprocess.run(cmd, capture_output=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"softphone failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}")
    return json.loads(done.stdout)


def start_call(target: str, number: str, *args: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "gateway.sip.phone.softphone", "call", "--to", target, "--number", number,
           *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def result(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> dict:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"softphone failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    return json.loads(out)


class Answerer:
    """A second UA that answers every call (e.g. the transfer target)."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.ready = tmp / f"answerer-{id(self)}.port"
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> Answerer:
        cmd = [sys.executable, "-m", "gateway.sip.phone.softphone", "answer", "--bind", "127.0.0.1",
               "--port", "0", "--ready-file", str(self.ready), *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if not wait_until(lambda: self.ready.exists() and self.ready.read_text().strip() != "", 20):
            self.proc.kill()
            raise RuntimeError("answering softphone did not start")
        self.port = int(self.ready.read_text().strip())
        return self

    @property
    def uri(self) -> str:
        return f"sip:operator@127.0.0.1:{self.port}"

    def finish(self) -> dict:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        try:
            return json.loads(out)
        except json.JSONDecodeError:
            raise RuntimeError(f"answerer output unreadable:\n{err.decode()[-3000:]}") from None

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
