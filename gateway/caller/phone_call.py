"""`gateway call NUMBER`: place a call that holds a spoken conversation, then print its timeline.

    gateway call +15550100 --to 127.0.0.1:5060 --say "I'd like to book a table" --say "Friday at seven"
    python -m gateway.caller.phone_call +15550100 --play question.wav --dtmf 1@4 --record heard.wav --json

Each --say (rendered offline with piper, cached) or --play is one caller turn, in command-line
order. The pjsua2 softphone runs as a subprocess (`python -m gateway.sip.phone.softphone call --turn
...`): it waits for the far end to speak and pause before each turn, plays the turn once, and
hangs up once the far end has been quiet for --hangup-after seconds after the last one. All
timing comes from its media clock (frame indices, 20 or 10 ms, both directions frame-aligned), not
from wall time. The far end's speech is transcribed offline when faster-whisper and its
tiny.en model are installed; without them the timeline simply has no words.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any, TextIO

import numpy as np

from gateway.errors import CallError, GatewayError
from gateway.sip.target import target_arg

__all__ = ["CLOCK_LATE_WARN_MS", "Turn", "CallReport", "run_call", "format_timeline", "build_parser", "main"]

_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the `gateway` package
_DTMF_RE = re.compile(r"^[0-9*#A-Da-d]+(?:@\d+(?:\.\d*)?)?$")
_RATE = 8000
_PAD_BEFORE_S, _PAD_AFTER_S = 0.1, 0.2  # around a far-end segment handed to the recogniser
# A 20 ms clock tick running this late means the machine starved the softphone: the audio on
# the wire had gaps and bursts, so the timings describe the overload, not the far end.
CLOCK_LATE_WARN_MS = 40.0


@dataclass(frozen=True, slots=True)
class Turn:
    """One thing the caller says: `say` text (rendered offline) or `play` a WAV file."""

    kind: str  # "say" | "play"
    value: str

    @property
    def label(self) -> str:
        return f'"{self.value}"' if self.kind == "say" else Path(self.value).name


@dataclass
class CallReport:
    """The softphone's JSON for the call, plus what the far end said (when transcribed)."""

    number: str
    to: str
    call: dict[str, Any]
    turns: list[Turn]
    far_end_text: list[str | None] = field(default_factory=list)  # one per far_end segment
    transcript_note: str | None = None  # why there is no transcript, if there is none

    @property
    def answered(self) -> bool:
        return bool(self.call.get("answered"))

    def to_json(self) -> dict[str, Any]:
        call = dict(self.call)
        call["turns"] = [
            {**t, "said": self.turns[i].label if i < len(self.turns) else None}
            for i, t in enumerate(call.get("turns") or [])
        ]
        segs = (call.get("segments") or {}).get("far_end") or []
        return {
            "number": self.number,
            "to": self.to,
            "call": call,
            "far_end": [
                {"start_s": s, "end_s": e, "text": self.far_end_text[i] if i < len(self.far_end_text) else None}
                for i, (s, e) in enumerate(segs)
            ],
            "transcript_note": self.transcript_note,
        }


# --- running the call -----------------------------------------------------------------


def run_call(
    number: str,
    *,
    to: str = "127.0.0.1:5060",
    turns: Sequence[Turn] = (),
    dtmf: Sequence[str] = (),
    record: str | None = None,
    record_both: str | None = None,
    turn_gap_ms: float = 700.0,
    barge_in_ms: float | None = None,
    greeting_wait: float = 3.0,
    reply_timeout: float = 15.0,
    hangup_after: float = 2.0,
    max_duration: float = 60.0,
    frame_ms: int = 20,
    transport: str = "udp",
    srtp: str = "off",
    ca_file: str | None = None,
    voice: str = "joe",
    cache_dir: Path = Path("var/cache/prompts"),
    transcribe: bool = True,
    log: TextIO | None = None,
) -> CallReport:
    """Place one call through the softphone and return its report (blocking).

    `log` gets the softphone's log: sys.stderr shows it live, another stream gets it after the
    call, None drops it (it is still shown if the softphone fails).
    Raises CallError if the softphone fails, ProviderError if a --say text cannot be rendered.
    """
    for spec in dtmf:
        if not _DTMF_RE.match(spec):
            raise CallError(f"DTMF must be DIGITS[@SECONDS], got {spec!r}")
    with tempfile.TemporaryDirectory(prefix="gateway-call-") as tmp:
        wavs = _turn_wavs(turns, Path(tmp), voice, cache_dir)
        both = record_both or str(Path(tmp) / "both.wav")
        cmd = [
            sys.executable, "-m", "gateway.sip.phone.softphone", "call", "--to", to, "--number", number,
            "--transport", transport, "--srtp", srtp, "--from-user", "gateway-call",
            *(["--ca-file", ca_file] if ca_file else []),
            "--record-both", both, "--turn-gap-ms", str(turn_gap_ms), "--greeting-wait", str(greeting_wait),
            "--reply-timeout", str(reply_timeout), "--hangup-after", str(hangup_after),
            "--max-duration", str(max_duration), "--frame-ms", str(frame_ms), "--listen",
        ]
        for wav in wavs:
            cmd += ["--turn", wav]
        for spec in dtmf:
            cmd += ["--dtmf", spec]
        if record:
            cmd += ["--record", record]
        if barge_in_ms is not None:
            cmd += ["--barge-in-ms", str(barge_in_ms)]
        result = _run_softphone(cmd, max_duration + 30, log)
        calls = result.get("calls") or []
        if not calls:
            raise CallError(f"softphone reported no call: {result.get('error') or result}")
        report = CallReport(number, to, calls[0], list(turns))
        if transcribe and report.answered:
            _transcribe(report, both)
        elif not transcribe:
            report.transcript_note = "transcription off"
    return report


def _turn_wavs(turns: Sequence[Turn], tmp: Path, voice: str, cache_dir: Path) -> list[str]:
    from gateway.media.audio import save_wav
    from gateway.speech.prompts import PromptRenderer

    renderer: PromptRenderer | None = None
    out: list[str] = []
    for i, turn in enumerate(turns):
        if turn.kind == "play":
            if not Path(turn.value).is_file():
                raise CallError(f"--play {turn.value}: no such file")
            out.append(turn.value)
            continue
        if not turn.value.strip():
            raise CallError(f"turn {i + 1}: --say needs some text")
        if renderer is None:
            renderer = PromptRenderer(cache_dir, voice)
        path = tmp / f"turn-{i + 1}.wav"
        save_wav(path, renderer.render(turn.value))
        out.append(str(path))
    return out


def _run_softphone(cmd: list[str], timeout: float, log: TextIO | None) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(
            cmd, env=env, stdout=subprocess.PIPE, stderr=None if log is sys.stderr else subprocess.PIPE,
            text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise CallError(f"softphone did not finish within {timeout:.0f} s") from exc
    if log is not None and log is not sys.stderr and proc.stderr:
        log.write(proc.stderr)
    try:
        result: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        tail = (proc.stderr or "")[-2000:]
        raise CallError(f"softphone failed (exit {proc.returncode}):\n{tail}") from None
    if proc.returncode != 0 and not result.get("calls"):
        raise CallError(f"softphone failed: {result.get('error') or proc.returncode}")
    return result


def _transcribe(report: CallReport, stereo_wav: str) -> None:
    """Words for each far-end speech segment, from the right channel of the stereo recording."""
    segs = (report.call.get("segments") or {}).get("far_end") or []
    if not segs:
        return
    try:
        from gateway.speech.vendors.local import WhisperSTT, whisper_model_dir

        whisper_model_dir()  # raises if the model package is missing
        stt = WhisperSTT(threads=max(1, min(4, os.cpu_count() or 1)))
    except (ImportError, GatewayError) as exc:
        report.transcript_note = f"no transcript: {exc}"
        return
    try:
        with wave.open(stereo_wav, "rb") as w:
            raw = w.readframes(w.getnframes())
        right = np.frombuffer(raw, "<i2")[1::2].tobytes()
        texts: list[str | None] = []
        for start, end in segs:
            a = max(0, int((start - _PAD_BEFORE_S) * _RATE)) * 2
            b = int((end + _PAD_AFTER_S) * _RATE) * 2
            texts.append(stt.transcribe(right[a:b]).text or None)
    except (OSError, wave.Error, GatewayError) as exc:
        report.transcript_note = f"no transcript: {exc}"
        return
    report.far_end_text = texts


# --- the timeline -------------------------------------------------------------------


def format_timeline(report: CallReport) -> str:
    """Who spoke when (seconds on the call's media clock), each turn's latency, how it ended."""
    c = report.call
    lines: list[str] = []
    head = f"call {report.number} at {report.to}: {c.get('status')} {c.get('reason') or ''}".rstrip()
    if not report.answered:
        return head + " (not answered)"
    lines.append(f"{head}, {c.get('codec')}, answered in {c.get('setup_ms')} ms")
    clock = c.get("media_clock") or {}
    lines.append(f"  times: seconds since media started; speech found by the {clock.get('vad')} VAD")
    turns = c.get("turns") or []
    far = (c.get("segments") or {}).get("far_end") or []
    rows: list[tuple[float, str]] = []
    replies = {t["reply_start_s"]: t for t in turns if t.get("reply_start_s") is not None}
    for i, (start, end) in enumerate(far):
        text = report.far_end_text[i] if i < len(report.far_end_text) else None
        what = f'"{text}"' if text else "(speech)"
        t = replies.get(start)
        if t is not None:
            what = f"[reply to turn {t['index']} after {t['latency_ms']} ms] {what}"
        rows.append((start, f"  {_span(start, end)}  far end  {what}"))
    for t in turns:
        if t.get("sent_start_s") is None:
            continue
        said = report.turns[t["index"] - 1].label if t["index"] <= len(report.turns) else ""
        what = f"turn {t['index']} ({t['trigger']}): {said}"
        if t.get("barge_in_stop_ms") is not None:
            what += f"  [far end stopped {t['barge_in_stop_ms']} ms after we started]"
        rows.append((t["sent_start_s"], f"  {_span(t['sent_start_s'], t['sent_end_s'])}  caller   {what}"))
    offset = clock.get("start_after_invite_s") or 0.0
    for at, text in c.get("events") or []:
        if text.startswith("dtmf sent"):
            rows.append((at - offset, f"  {_span(at - offset, None)}  caller   {text}"))
    lines += [row for _, row in sorted(rows, key=lambda r: r[0])]
    disc = c.get("disconnect") or {}
    who = {"local": "we hung up", "remote": "the far end hung up"}.get(disc.get("by") or "", "ended")
    lines.append(f"  ended: {who} after {disc.get('after_s')} s (SIP {disc.get('code')})")
    lat = [t["latency_ms"] for t in turns if t.get("latency_ms") is not None]
    if turns:
        per = ", ".join(
            f"{t['index']}: {t['latency_ms']} ms" if t.get("latency_ms") is not None else f"{t['index']}: no reply"
            for t in turns
        )
        lines.append(f"  turn latency: {per}" + (f"; median {median(lat):.0f} ms" if lat else ""))
    if len(turns) < len(report.turns):
        lines.append(f"  {len(report.turns) - len(turns)} turn(s) not played (call ended first)")
    rtp = c.get("rtp") or {}
    jb = rtp.get("jb_delay_ms") or {}
    if jb:
        lines.append(f"  our receive path: jitter buffer {jb.get('min')}-{jb.get('max')} ms (avg {jb.get('avg')}), "
                     f"{rtp.get('rx_lost')} packets lost; latencies include it")
    late = clock.get("late_max_ms") or 0.0
    if late > CLOCK_LATE_WARN_MS:
        lines.append(f"  warning: our media clock ran up to {late:.0f} ms late (machine overloaded): "
                     "timings are unreliable")
    if report.transcript_note:
        lines.append(f"  ({report.transcript_note})")
    return "\n".join(lines)


def _span(start: float, end: float | None) -> str:
    text = f"{start:.2f}" if end is None else f"{start:.2f}-{end:.2f}"
    return f"{text:>12}"


# --- command line ---------------------------------------------------------------------


class _TurnAction(argparse.Action):
    """--say and --play share one ordered list of turns."""

    def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace, value: Any, opt: Any = None) -> None:
        turns: list[Turn] = list(getattr(ns, self.dest, None) or [])
        turns.append(Turn("say" if opt == "--say" else "play", str(value)))
        setattr(ns, self.dest, turns)


def build_parser(prog: str = "gateway call") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Place a call that holds a spoken conversation, then print its timeline."
    )
    p.add_argument("number", nargs="?", default="",
                   help="the number to call (Request-URI user; default: the --to URI's user, if any)")
    p.add_argument("--to", metavar="TARGET", default="127.0.0.1:5060", type=target_arg,
                   help="the gateway or peer: HOST[:PORT] or sip:[USER@]HOST[:PORT] (default: %(default)s)")
    p.add_argument("--say", dest="turns", action=_TurnAction, default=[], metavar="TEXT",
                   help="a turn spoken with the offline voice (repeatable; --say/--play keep their order)")
    p.add_argument("--play", dest="turns", action=_TurnAction, metavar="FILE", help="a turn played from a WAV file")
    p.add_argument("--dtmf", action="append", default=[], metavar="DIGITS[@S]",
                   help="send digits S seconds after answer (default 1)")
    p.add_argument("--record", metavar="OUT.wav", help="WAV of what we heard")
    p.add_argument("--record-both", metavar="OUT.wav", help="stereo WAV: left = what we sent, right = what we heard")
    p.add_argument("--json", action="store_true", help="print the full report as JSON instead of the timeline")
    p.add_argument("--turn-gap-ms", type=float, default=700.0, help="far-end pause that ends its turn (default 700)")
    p.add_argument("--barge-in-ms", type=float, help="start each turn this long after the far end starts speaking")
    p.add_argument("--greeting-wait", type=float, default=3.0,
                   help="seconds to wait for a greeting before speaking first")
    p.add_argument("--reply-timeout", type=float, default=15.0,
                   help="hang up if the far end does not start replying to a turn within this many seconds")
    p.add_argument("--hangup-after", type=float, default=2.0, help="seconds of far-end silence after the last turn")
    p.add_argument("--max-duration", type=float, default=60.0, help="hang up after this long whatever happens")
    p.add_argument("--frame-ms", type=int, choices=(10, 20), default=20,
                   help="media frame and RTP packet length, i.e. timing resolution (10 needs a gateway set to 10)")
    p.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
    p.add_argument("--srtp", choices=("off", "optional", "mandatory"), default="off",
                   help="SRTP media: off, optional (offered, plain RTP accepted) or mandatory")
    p.add_argument("--ca-file", help="PEM CAs the far end's TLS certificate must chain to (--transport tls)")
    p.add_argument("--voice", default="joe", help="offline voice for --say")
    p.add_argument("--cache-dir", type=Path, default=Path("var/cache/prompts"), help="rendered --say cache")
    p.add_argument("--no-transcript", action="store_true", help="do not transcribe the far end")
    p.add_argument("-v", "--verbose", action="store_true", help="show the softphone's log on stderr")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "gateway call") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        report = run_call(
            args.number, to=args.to, turns=args.turns, dtmf=args.dtmf, record=args.record,
            record_both=args.record_both, turn_gap_ms=args.turn_gap_ms, barge_in_ms=args.barge_in_ms,
            greeting_wait=args.greeting_wait, reply_timeout=args.reply_timeout, hangup_after=args.hangup_after,
            max_duration=args.max_duration, frame_ms=args.frame_ms,
            transport=args.transport, srtp=args.srtp, ca_file=args.ca_file, voice=args.voice, cache_dir=args.cache_dir,
            transcribe=not args.no_transcript, log=sys.stderr if args.verbose else None,
        )
    except GatewayError as exc:
        print(f"gateway call: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_timeline(report))
    return 0 if report.answered else 1


if __name__ == "__main__":
    sys.exit(main(prog="python -m gateway.caller.phone_call"))
