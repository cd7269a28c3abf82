"""webrtcvad wrapper and the sans-IO segmenter, on synthetic and real (piper) audio."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from gateway.media import audio
from gateway.speech.prompts import PromptRenderer
from gateway.media.vad import FRAME_BYTES, FRAME_SECONDS, Segmenter, Vad


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def noise(seconds: float, amplitude: float = 0.3, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return audio.float_to_pcm16(rng.uniform(-amplitude, amplitude, round(seconds * audio.SAMPLE_RATE)))


def voiced_share(vad: Vad, pcm: bytes) -> float:
    flags = [vad.is_speech(f) for f in frames(pcm)]
    return sum(flags) / len(flags)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    renderer = PromptRenderer(tmp_path_factory.mktemp("vad-prompts"))
    return renderer.render("Good morning, I am calling about the invoice you sent me last week.")


def test_frame_geometry() -> None:
    assert FRAME_BYTES == 320 and FRAME_SECONDS == 0.02


def test_silence_is_not_speech() -> None:
    vad = Vad()
    assert voiced_share(vad, audio.silence(1.0)) == 0.0


def test_tone_and_noise_are_speech_like() -> None:
    # webrtcvad is an energy/spectrum detector: loud in-band signals count as voice.
    vad = Vad()
    assert voiced_share(vad, audio.tone(440, 1.0)) > 0.9
    assert voiced_share(vad, noise(1.0)) > 0.9


def test_piper_speech_is_mostly_speech(speech: bytes) -> None:
    for aggressiveness in (0, 2, 3):
        share = voiced_share(Vad(aggressiveness), speech)
        assert share > 0.6, (aggressiveness, share)


def test_speech_ends_with_the_sound(speech: bytes) -> None:
    # webrtcvad alone holds "voiced" for a few frames after a sound stops; the energy floor
    # ends speech with the last audible frame, so an end of turn is not delayed.
    vad = Vad()
    flags = [vad.is_speech(f) for f in frames(speech + audio.silence(0.5))]
    assert not any(flags[len(frames(speech)):])


def test_sound_below_the_floor_is_not_speech(speech: bytes) -> None:
    x = np.frombuffer(speech, "<i2").astype(np.float32) * 10 ** (-45 / 20)  # RMS about -67 dBFS
    faint = x.astype("<i2").tobytes()
    assert voiced_share(Vad(), faint) < 0.05
    assert voiced_share(Vad(floor_dbfs=-90), faint) > 0.2  # webrtcvad alone calls it speech


def test_rejects_wrong_frame_size_and_mode() -> None:
    vad = Vad()
    with pytest.raises(ValueError):
        vad.is_speech(bytes(160))
    with pytest.raises(ValueError):
        Vad(4)


def test_is_speech_is_cheap(speech: bytes) -> None:
    vad = Vad()
    fs = frames(speech) * 10
    t0 = time.perf_counter()
    for f in fs:
        vad.is_speech(f)
    per_frame = (time.perf_counter() - t0) / len(fs)
    print(f"\nVAD: {per_frame * 1e6:.1f} us per 20 ms frame")
    assert per_frame < 200e-6  # generous: other tests share the CPU


def run(seg: Segmenter, pcm: bytes):
    out = []
    for f in frames(pcm):
        s = seg.push(f)
        if s is not None:
            out.append(s)
    return out


def test_segmenter_finds_one_utterance_with_timing(speech: bytes) -> None:
    seg = Segmenter(preroll=0.2, hangover=0.36)
    pcm = audio.silence(1.0) + speech + audio.silence(1.0)
    found = run(seg, pcm)
    assert len(found) == 1
    s = found[0]
    speech_end = 1.0 + len(speech) / 16000
    assert 0.9 <= s.start <= 1.3  # piper leaves a little silence at the start
    assert speech_end - 0.5 <= s.end <= speech_end + 0.05
    assert s.ended_by_silence
    # pre-roll + speech + the hangover that ended it
    assert len(s.pcm) / 16000 == pytest.approx(s.end - s.start + 0.2 + 0.36, abs=0.1)
    assert not seg.in_speech


def test_segmenter_ignores_silence_and_clicks() -> None:
    seg = Segmenter(min_speech=0.2)
    click = audio.silence(0.5) + noise(0.08) + audio.silence(1.0)
    assert run(seg, audio.silence(2.0) + click) == []


def test_segmenter_splits_long_speech_without_losing_audio() -> None:
    seg = Segmenter(max_length=1.0, hangover=0.3)
    found = run(seg, audio.silence(0.2) + noise(2.5) + audio.silence(0.6))
    assert len(found) == 3
    assert [s.ended_by_silence for s in found] == [False, False, True]
    assert found[1].start == pytest.approx(found[0].start + 1.0)
    # webrtcvad keeps reporting voice for ~80-120 ms after the sound stops
    assert 2.7 <= found[2].end <= 2.85


def test_segmenter_separates_two_utterances_and_flushes(speech: bytes) -> None:
    seg = Segmenter()
    found = run(seg, speech + audio.silence(1.0) + speech)
    assert len(found) == 1  # the second is still open: no silence after it yet
    assert seg.in_speech
    last = seg.flush()
    assert last is not None and last.start > found[0].end + 0.9
    assert seg.flush() is None
