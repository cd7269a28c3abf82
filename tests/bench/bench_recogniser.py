"""Offline recogniser accuracy and cost through G.711: word error rate and time per utterance,
faster-whisper's 30 s pass (before) against the short window (after), and with the script's
words as a prompt (hints) against without.

    .venv/bin/python -m tests.bench.bench_recogniser [--noise -35]

The clips are the project's own test phrases, spoken by the offline voice (piper) and by
espeak-ng (a second, quite different synthetic voice, when installed), each clean and with line
hiss, then μ-law encoded and decoded as on the wire. No human recordings ship with the project.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import jiwer

from gateway.media.audio import load_wav, with_noise
from gateway.speech import mulaw
from gateway.speech.prompts import PromptRenderer
from gateway.speech.vendors.local import WhisperSTT
from tests.support.gateway import REPO

PHRASES = [
    "I would like to book an appointment.",
    "My name is John Smith.",
    "Yes.",
    "Friday, please.",
    "Two pm.",
    "Can you transfer me to the billing department please?",
    "I would like to book an appointment on Tuesday at two pm",
    "Hello, I am calling because my internet connection keeps dropping every evening.",
    "I am fine, thank you very much.",
    "No, Thursday.",
    "About twenty people.",
    "My number is five five five, one two three four.",
]
# Domain words of the shipped agents, and phrases that use them (the hints' test).
HINTS = ["Springfield", "appointment", "cleaning", "check-up", "receptionist", "invoice", "router"]
DOMAIN = [
    "I need a cleaning and a check-up.",
    "Is this Springfield Dental?",
    "Put me through to the receptionist.",
    "My router keeps rebooting.",
    "I have a question about my invoice.",
]

_norm = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(),
                       jiwer.Strip(), jiwer.ReduceToListOfListOfWords()])


def wer(refs: list[str], hyps: list[str]) -> float:
    return jiwer.wer(refs, hyps, reference_transform=_norm, hypothesis_transform=_norm)


def voices(tmp: Path) -> dict[str, callable]:
    renderer = PromptRenderer(REPO / "var" / "test-cache" / "prompts")
    out = {"piper": renderer.render}
    if shutil.which("espeak-ng"):
        def espeak(text: str) -> bytes:
            path = tmp / "espeak.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(path), text], check=True)
            return load_wav(path)
        out["espeak-ng"] = espeak
    return out


def line(pcm: bytes, noise: float | None) -> bytes:
    if noise is not None:
        pcm = with_noise(pcm, noise)
    return mulaw.decode(mulaw.encode(pcm))


def measure(stt: WhisperSTT, clips: list[tuple[str, bytes]], prompt: str | None = None) -> tuple[float, list[float], list[str]]:
    hyps, times = [], []
    for _, pcm in clips:
        t0 = time.perf_counter()
        hyps.append(stt.transcribe(pcm, prompt).text)
        times.append(time.perf_counter() - t0)
    return wer([r for r, _ in clips], hyps), times, hyps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--noise", type=float, default=-35.0, help="hiss level for the noisy copies, dBFS")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    before = WhisperSTT(threads=args.threads, window=None)
    after = WhisperSTT(threads=args.threads)
    after.warm_up()
    with tempfile.TemporaryDirectory() as name:
        speak = voices(Path(name))
        clips = [(text, line(say(text), noise)) for say in speak.values() for text in PHRASES
                 for noise in (None, args.noise)]
        domain = [(text, line(say(text), noise)) for say in speak.values() for text in DOMAIN
                  for noise in (None, args.noise)]
    print(f"{len(clips)} clips: {len(PHRASES)} phrases x {', '.join(speak)} x clean / {args.noise:g} dBFS hiss, G.711 μ-law")
    measure(after, clips[:2])  # warm both paths
    measure(before, clips[:2])
    for label, stt in (("faster-whisper 30 s pass (before)", before), ("10 s window (after)", after)):
        w, times, hyps = measure(stt, clips)
        print(f"  {label}: WER {w * 100:.1f} %, median {statistics.median(times) * 1000:.0f} ms, "
              f"max {max(times) * 1000:.0f} ms per utterance")
        for (ref, _), hyp in zip(clips, hyps):
            if _norm(ref) != _norm(hyp):
                print(f"      {ref!r} -> {hyp!r}")
    prompt = ", ".join(HINTS) + "."
    print(f"domain words ({len(domain)} clips), 10 s window:")
    for label, p in (("without hints", None), ("with the words as prompt", prompt)):
        w, times, hyps = measure(after, domain, p)
        print(f"  {label}: WER {w * 100:.1f} %, median {statistics.median(times) * 1000:.0f} ms")
        for (ref, _), hyp in zip(domain, hyps):
            if _norm(ref) != _norm(hyp):
                print(f"      {ref!r} -> {hyp!r}")
    w, _, hyps = measure(after, clips, prompt)
    print(f"  the general clips with the same prompt: WER {w * 100:.1f} %")


if __name__ == "__main__":
    main()
