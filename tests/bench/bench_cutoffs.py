"""False cut-offs: how often turn-taking ends the caller's turn in a pause inside a sentence.

    .venv/bin/python -m tests.bench.bench_cutoffs [--legacy]

The labelled set is tests/bench/data/pauses.yaml (40 utterances, each with one or two pauses of
300-700 ms; the label is that the caller is done only after the last part). Each is rendered by
the offline voice, μ-law encoded and decoded, and played in real time through the gateway's own
pieces: the VAD and TurnDetector as in a call session, and the offline recogniser's stream, whose
word times go to the detector exactly as the session sends them. Also prints how long after the
real end of speech each turn ended (the endpoint wait). --legacy: silence alone (500 ms), the
recogniser as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
from pathlib import Path

import yaml

from gateway.conversation.turns import TurnConfig, TurnDetector, TurnEnded
from gateway.media.audio import silence
from gateway.media.vad import Vad
from gateway.speech import mulaw
from gateway.speech.prompts import PromptRenderer
from gateway.speech.vendors.local import WhisperSTT
from tests.bench.legacy import LegacyWhisperSTT
from tests.support.gateway import REPO

DATA = Path(__file__).parent / "data" / "pauses.yaml"
FRAME = 0.02
FRAME_BYTES = 320


def trimmed(renderer: PromptRenderer, text: str) -> bytes:
    """A part as spoken, without the voice's own leading and trailing silence."""
    pcm = renderer.render(text)
    vad = Vad()
    frames = [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]
    voiced = [k for k, f in enumerate(frames) if vad.is_speech(f)]
    return b"".join(frames[voiced[0]:voiced[-1] + 1]) if voiced else pcm


def utterance(renderer: PromptRenderer, parts: list) -> tuple[bytes, float, float]:
    """PCM with 0.5 s lead-in and 2 s tail; the start of the last part and the end of speech."""
    pcm = silence(0.5)
    last_start = 0.5
    for part in parts:
        if isinstance(part, int):
            pcm += silence(part / 1000)
        else:
            last_start = len(pcm) / 16000
            pcm += trimmed(renderer, part)
    end = len(pcm) / 16000
    pcm += silence(2.0)
    return mulaw.decode(mulaw.encode(pcm)), last_start, end


async def play(stt: WhisperSTT, config: TurnConfig, item: dict, pcm: bytes) -> list[TurnEnded]:
    det = TurnDetector(config)
    det.expect(item.get("kind"), [w.lower() for w in item.get("words") or ()])
    vad = Vad()
    stream = stt.stream(keyterms=item.get("words") or ())
    stream.hint(item.get("words") or ())
    ended: list[TurnEnded] = []
    clock = {"now": 0.0}

    def act(actions: list) -> None:
        for a in actions:
            if isinstance(a, TurnEnded):
                ended.append(a)
                stream.finalize()

    async def listen() -> None:
        async for ev in stream.events():
            act(det.on_transcript(ev.text, ev.is_final, ev.speech_final, clock["now"], until=ev.end))

    listener = asyncio.create_task(listen())
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for k in range(len(pcm) // FRAME_BYTES):
        now = (k + 1) * FRAME
        await asyncio.sleep(max(0.0, t0 + now - loop.time()))
        frame = pcm[k * FRAME_BYTES:(k + 1) * FRAME_BYTES]
        stream.push_audio(frame)
        clock["now"] = now
        while (deadline := det.next_deadline()) is not None and deadline <= now:
            act(det.on_timer(deadline))
        act(det.on_vad(vad.is_speech(frame), now))
    stream.end_input()
    await listener
    return ended


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--legacy", action="store_true", help="silence alone and the recogniser as it was")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    items = yaml.safe_load(DATA.read_text())
    renderer = PromptRenderer(REPO / "var" / "test-cache" / "prompts")
    stt = LegacyWhisperSTT() if args.legacy else WhisperSTT()
    stt.warm_up()
    config = TurnConfig(complete_silence_ms=None) if args.legacy else TurnConfig()
    cut, waits, missed = [], [], 0
    for item in items:
        pcm, last_start, end = utterance(renderer, item["parts"])
        ended = asyncio.run(play(stt, config, item, pcm))
        if not ended:
            missed += 1
            continue
        if ended[0].at < last_start:
            cut.append(item["parts"])
        else:
            waits.append(ended[-1].at - end)
    print(f"{'legacy: 500 ms of silence' if args.legacy else 'semantic endpointing'}: "
          f"false cut-offs {len(cut)}/{len(items)} ({100 * len(cut) / len(items):.1f} %), no turn {missed}")
    for parts in cut:
        print(f"    cut: {parts}")
    if waits:
        print(f"    end of speech -> end of turn: median {statistics.median(waits) * 1000:.0f} ms, "
              f"max {max(waits) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
