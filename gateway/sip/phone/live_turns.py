"""The softphone's side of live turns (`call --live-turns DIR`): turns made while the call runs.

When the caller's script wants a turn it has not got, the softphone writes what the far end
said since the caller last took the floor to DIR/heard-N.wav and one JSON line on stdout:

    {"want_turn": N, "heard": "DIR/heard-N.wav", "trigger": "pause"}

and the process that started it answers on stdin with one JSON line per request:

    {"turn": N, "say": "/path/turn-N.wav", "last": false}   # speak this (8 kHz WAV)
    {"turn": N, "hangup": "why"}                           # no more turns: end the call now

The final line on stdout is the softphone's usual result object. Writing the WAV and reading
the answer (WAV decoding included) happen on two helper threads, so the pj thread only hands
over a list of frames and picks up ready ones. Closed stdin ends the call.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LiveAnswer", "LiveTurns"]


@dataclass(frozen=True)
class LiveAnswer:
    turn: int  # 1-based, as in the request; 0 when stdin closed
    frames: list[bytes] | None = None  # the turn to speak, or None to hang up
    last: bool = False
    hangup: str = ""


class LiveTurns:
    def __init__(self, out_fd: int, directory: Path, in_fd: int,
                 write_wav: Callable[[str, list[bytes]], None],
                 load_frames: Callable[[str], list[bytes]]) -> None:
        self._out_fd = out_fd
        self._dir = directory
        self._write_wav = write_wav
        self._load_frames = load_frames
        self._asks: queue.SimpleQueue[tuple[int, list[bytes], str] | None] = queue.SimpleQueue()
        self._ready: queue.SimpleQueue[LiveAnswer] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_asks, name="live-turns-out", daemon=True)
        # Daemon, reading the raw fd: a read still blocked at exit neither keeps the process
        # alive nor holds sys.stdin's buffer lock while the interpreter shuts down.
        self._reader = threading.Thread(target=self._read_answers, args=(in_fd,), name="live-turns-in", daemon=True)
        self._writer.start()
        self._reader.start()

    def ask(self, turn: int, heard: list[bytes], trigger: str) -> None:
        """Request turn `turn` (1-based), answering `heard` (pj thread: only queues)."""
        self._asks.put((turn, heard, trigger))

    def ready(self) -> list[LiveAnswer]:
        """Answers that have arrived since the last call (pj thread: never blocks)."""
        out: list[LiveAnswer] = []
        while True:
            try:
                out.append(self._ready.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        """Flush pending requests, so that the final result line comes after them."""
        self._asks.put(None)
        self._writer.join(timeout=5)

    def _write_asks(self) -> None:
        while (item := self._asks.get()) is not None:
            turn, heard, trigger = item
            path = self._dir / f"heard-{turn}.wav"
            try:
                self._write_wav(str(path), heard)
                line = json.dumps({"want_turn": turn, "heard": str(path), "trigger": trigger}) + "\n"
                os.write(self._out_fd, line.encode())
            except OSError as exc:
                self._ready.put(LiveAnswer(turn, hangup=f"live turn {turn}: {exc}"))

    def _read_answers(self, in_fd: int) -> None:
        pending = b""
        try:
            while chunk := os.read(in_fd, 65536):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if line.strip():
                        self._ready.put(self._answer(line.decode(errors="replace")))
        except OSError:
            pass
        self._ready.put(LiveAnswer(0, hangup="live turns: stdin closed"))

    def _answer(self, line: str) -> LiveAnswer:
        try:
            msg = json.loads(line)
            turn = int(msg.get("turn") or 0)
            if "say" in msg:
                return LiveAnswer(turn, self._load_frames(str(msg["say"])), last=bool(msg.get("last")))
            return LiveAnswer(turn, hangup=str(msg.get("hangup") or "hangup"))
        except Exception as exc:  # a bad answer ends the call, never the process
            return LiveAnswer(0, hangup=f"live turns: bad answer {line.strip()[:80]!r}: {exc}")
