"""One `gateway simulate` call with an LLM persona: the softphone asks, the persona answers.

The softphone runs with `--live-turns` (protocol: gateway/sip/phone/live_turns.py). Each time the
agent has spoken and paused it writes a request with what the agent said; this side hears it
(offline recogniser), asks the persona (HTTP) and renders the reply (offline voice), then
hands the WAV back. All of that runs on the scenario's own thread in `gateway simulate`,
another process than the softphone's media clock, which keeps ticking (silent) meanwhile.
A persona that fails (server down, timeout, bad reply) ends the call; the failure is kept.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gateway.errors import GatewayError
from gateway.caller.persona import Persona, PersonaReply, ScriptedPersona

__all__ = ["PersonaTurn", "LiveCall", "run_live_call", "load_recogniser", "hear_agent"]

Hear = Callable[[str], str]  # WAV path -> what the agent said
Speak = Callable[[PersonaReply, Path], None]  # a reply, WAV path to write (8 kHz PCM16)


@dataclass(frozen=True)
class PersonaTurn:
    index: int  # 1-based, as in the call's turns
    heard: str  # the agent's words this turn answers, as transcribed
    said: str  # "" when the persona only hung up
    hangup: bool
    think_s: float  # request to WAV handed over: hearing + LLM + voice
    failed: bool = False  # no reply could be made: the call was ended (LiveCall.error says why)


@dataclass
class LiveCall:
    result: dict[str, Any] | None = None  # the softphone's final JSON (None if it printed none)
    returncode: int | None = None
    stderr: str = ""  # the softphone's log
    timed_out: bool = False  # killed after timeout_s
    turns: list[PersonaTurn] = field(default_factory=list)
    error: str | None = None  # why the persona could not go on, when it failed


def run_live_call(cmd: Sequence[str], env: dict[str, str], persona: Persona | ScriptedPersona, *, hear: Hear, speak: Speak,
                  workdir: Path, max_turns: int, timeout_s: float, log: IO[str] | None = None) -> LiveCall:
    """Run the softphone command (it must include `--live-turns`) and answer its requests."""
    out = LiveCall()
    with open(workdir / "softphone.log", "w+") as err:
        proc = subprocess.Popen(list(cmd), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                text=True, bufsize=1)

        def kill() -> None:
            out.timed_out = True
            proc.kill()

        watchdog = threading.Timer(timeout_s, kill)  # whatever happens, no hung softphone
        watchdog.start()
        try:
            assert proc.stdout is not None and proc.stdin is not None
            for line in proc.stdout:
                msg = _json(line)
                if "want_turn" in msg:
                    answer = _answer(out, msg, persona, hear, speak, workdir, max_turns)
                    _send(proc.stdin, answer)
                elif "calls" in msg:
                    out.result = msg
        finally:
            watchdog.cancel()
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                out.returncode = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                out.returncode = proc.wait()
            err.seek(0)
            out.stderr = err.read()
            if log is not None:
                log.write(out.stderr)
    return out


def _answer(out: LiveCall, msg: dict[str, Any], persona: Persona | ScriptedPersona, hear: Hear, speak: Speak,
            workdir: Path, max_turns: int) -> dict[str, Any]:
    turn = int(msg["want_turn"])
    if out.error is not None or turn > max_turns:
        return {"turn": turn, "hangup": "persona done"}
    t0 = time.monotonic()
    heard = ""
    try:
        heard = hear(str(msg["heard"]))
        reply = persona.reply(heard)
        if not reply.text and not reply.play:
            out.turns.append(PersonaTurn(turn, heard, "", True, time.monotonic() - t0))
            return {"turn": turn, "hangup": "persona hung up"}
        wav = workdir / f"turn-{turn}.wav"
        speak(reply, wav)
    except GatewayError as exc:
        out.error = f"turn {turn}: {exc}"
        out.turns.append(PersonaTurn(turn, heard, "", True, time.monotonic() - t0, failed=True))
        return {"turn": turn, "hangup": "persona failed"}
    out.turns.append(PersonaTurn(turn, heard, reply.text or str(reply.play), reply.hangup, time.monotonic() - t0))
    return {"turn": turn, "say": str(wav), "last": reply.hangup or turn >= max_turns}


def _send(stdin: IO[str], answer: dict[str, Any]) -> None:
    try:
        stdin.write(json.dumps(answer) + "\n")
        stdin.flush()
    except (BrokenPipeError, OSError):
        pass  # the softphone has gone (call over): its final JSON tells the rest


def _json(line: str) -> dict[str, Any]:
    try:
        msg = json.loads(line)
    except json.JSONDecodeError:
        return {}
    return msg if isinstance(msg, dict) else {}


# --- the persona's ears -----------------------------------------------------------------


def load_recogniser() -> Any:
    """The offline recogniser the gateway uses (tiny.en), loaded now rather than mid-call."""
    try:
        from gateway.speech.vendors.local import WhisperSTT, whisper_model_dir

        whisper_model_dir()
        stt = WhisperSTT(threads=max(1, min(4, os.cpu_count() or 1)), beam_size=5)
        stt.warm_up()
    except (ImportError, OSError) as exc:
        raise GatewayError(f"an llm persona needs the offline recogniser (faster-whisper): {exc}") from exc
    return stt


def hear_agent(stt: Any, wav_path: str, lock: AbstractContextManager[Any]) -> str:
    """What the agent said in one stretch of the call: each voiced part transcribed (silence
    alone makes tiny.en invent words), `lock` held around each transcription."""
    from gateway.media.audio import load_wav
    from gateway.sip.phone.conversation import FRAME_BYTES, FrameVad, segments, voiced_flags

    pad_before, pad_after = 1600, 3200  # bytes at 8 kHz PCM16: 0.1 s and 0.2 s, as after the call
    try:
        pcm = load_wav(Path(wav_path))
        frames = [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]
        texts: list[str] = []
        for first, last in segments(voiced_flags(frames, FrameVad()), merge_frames=25):
            a, b = max(0, first * FRAME_BYTES - pad_before), (last + 1) * FRAME_BYTES + pad_after
            with lock:
                texts.append(stt.transcribe(pcm[a:b]).text.strip())
    except GatewayError:
        raise
    except Exception as exc:  # vendor edge: the recogniser's failure is this turn's
        raise GatewayError(f"recogniser: cannot transcribe {wav_path}: {exc}") from exc
    return " ".join(t for t in texts if t)
