"""PCM helpers: WAV loading from odd formats, resampling, tones and analysis."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from gateway.errors import GatewayError
from gateway.media import audio


def _sine(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return amp * np.sin(2 * math.pi * freq * t)


def _write(path: Path, frames: bytes, rate: int, channels: int, width: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)


def _riff(fmt: bytes, data: bytes) -> bytes:
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


@pytest.mark.parametrize("freq", [350.0, 440.0, 697.0, 1000.0, 1633.0, 3000.0])
def test_tone_dominant_frequency(freq: float) -> None:
    pcm = audio.tone(freq, 0.5)
    assert len(pcm) == 2 * 4000
    assert abs(audio.dominant_frequency(pcm) - freq) < 5


def test_dominant_frequency_on_one_frame() -> None:
    assert abs(audio.dominant_frequency(audio.tone(1000, 0.02)) - 1000) < 5


def test_dominant_frequency_of_nothing_is_zero() -> None:
    assert audio.dominant_frequency(b"") == 0.0
    assert audio.dominant_frequency(audio.silence(0.1)) == 0.0


def test_tone_amplitude_and_rms() -> None:
    pcm = audio.tone(440, 1.0, amplitude=0.5)
    peak = np.abs(np.frombuffer(pcm, "<i2")).max()
    assert abs(peak - 0.5 * 32768) < 2
    # a sine's RMS is peak / sqrt(2): -6.02 - 3.01 dB
    assert audio.rms_dbfs(pcm) == pytest.approx(-9.03, abs=0.05)
    assert audio.rms_dbfs(audio.silence(0.1)) == float("-inf")
    assert audio.rms_dbfs(b"") == float("-inf")


def test_silence_length() -> None:
    assert audio.silence(0.02) == bytes(320)
    assert audio.silence(0.02, rate=16000) == bytes(640)


def test_goertzel_picks_the_tone() -> None:
    pcm = audio.tone(770, 0.1, amplitude=0.4)
    assert audio.goertzel_power(pcm, 770) == pytest.approx(0.16, rel=0.05)
    assert audio.goertzel_power(pcm, 1209) < 1e-3
    assert audio.goertzel_power(b"", 770) == 0.0


def test_band_energy_fraction() -> None:
    pcm = audio.tone(1000, 0.5)
    assert audio.band_energy_fraction(pcm, 900, 1100) > 0.99
    assert audio.band_energy_fraction(pcm, 2000, 4000) < 0.01
    assert audio.band_energy_fraction(audio.silence(0.1), 0, 4000) == 0.0


@pytest.mark.parametrize("src", [16000, 22050, 44100, 48000])
def test_resample_keeps_duration_and_pitch(src: int) -> None:
    pcm = audio.tone(1000, 1.0, rate=src)
    out = audio.resample(pcm, src, 8000)
    assert abs(len(out) // 2 - 8000) <= 2
    assert abs(audio.dominant_frequency(out) - 1000) < 5


def test_resample_identity_and_errors() -> None:
    pcm = audio.tone(500, 0.1)
    assert audio.resample(pcm, 8000, 8000) == pcm
    assert audio.resample(b"", 16000) == b""
    with pytest.raises(ValueError):
        audio.resample(b"\x00\x01\x02", 16000)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    pcm = audio.tone(600, 0.3)
    path = tmp_path / "t.wav"
    audio.save_wav(path, pcm)
    assert audio.load_wav(path) == pcm  # 8 kHz mono PCM16 passes through untouched


def test_load_16k_stereo(tmp_path: Path) -> None:
    left = _sine(440, 1.0, 16000)
    right = _sine(440, 1.0, 16000)
    frames = (np.stack([left, right], axis=1) * 32767).astype("<i2").tobytes()
    path = tmp_path / "stereo16k.wav"
    _write(path, frames, 16000, 2, 2)
    pcm = audio.load_wav(path)
    assert abs(len(pcm) // 2 - 8000) <= 2
    assert abs(audio.dominant_frequency(pcm) - 440) < 5
    assert audio.rms_dbfs(pcm) == pytest.approx(-9.03, abs=0.3)


def test_load_stereo_averages_channels(tmp_path: Path) -> None:
    left = _sine(300, 0.5, 8000, amp=0.4)
    frames = (np.stack([left, -left], axis=1) * 32767).astype("<i2").tobytes()
    path = tmp_path / "anti.wav"
    _write(path, frames, 8000, 2, 2)
    assert audio.rms_dbfs(audio.load_wav(path)) == float("-inf")  # opposite phases cancel


def test_load_8bit_unsigned(tmp_path: Path) -> None:
    frames = np.clip(np.rint(_sine(1000, 0.5, 11025) * 127 + 128), 0, 255).astype(np.uint8).tobytes()
    path = tmp_path / "u8.wav"
    _write(path, frames, 11025, 1, 1)
    pcm = audio.load_wav(path)
    assert abs(len(pcm) // 2 - 4000) <= 2
    assert abs(audio.dominant_frequency(pcm) - 1000) < 5
    assert abs(float(np.frombuffer(pcm, "<i2").mean())) < 50  # 128 is zero, not a DC offset


def test_load_24bit_and_float(tmp_path: Path) -> None:
    x = _sine(800, 0.25, 8000)
    i24 = np.rint(x * (1 << 23)).astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    p24 = tmp_path / "i24.wav"
    _write(p24, i24, 8000, 1, 3)
    pf = tmp_path / "f32.wav"
    pf.write_bytes(_riff(struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32), x.astype("<f4").tobytes()))
    for path in (p24, pf):
        pcm = audio.load_wav(path)
        assert len(pcm) == 2 * 2000
        assert abs(audio.dominant_frequency(pcm) - 800) < 5


def test_load_extensible_pcm(tmp_path: Path) -> None:
    pcm = audio.tone(1200, 0.2)
    guid_pcm = struct.pack("<H", 1) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 8000, 16000, 2, 16, 22, 16, 4) + guid_pcm
    path = tmp_path / "ext.wav"
    path.write_bytes(_riff(fmt, pcm))
    assert audio.load_wav(path) == pcm


def test_compressed_wav_is_refused_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "mulaw.wav"
    path.write_bytes(_riff(struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8), bytes(800)))
    with pytest.raises(audio.AudioFormatError) as info:
        audio.load_wav(path)
    assert isinstance(info.value, GatewayError) and isinstance(info.value, ValueError)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", [b"", b"not a wav file at all", b"RIFF\x04\x00\x00\x00WAVE"])
def test_garbage_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(audio.AudioFormatError, match="bad.wav"):
        audio.load_wav(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(audio.AudioFormatError, match="nope.wav"):
        audio.load_wav(tmp_path / "nope.wav")


def test_with_noise_mixes_white_noise_at_the_level_asked() -> None:
    quiet = audio.silence(2.0)
    noisy = audio.with_noise(quiet, -40.0)
    assert audio.rms_dbfs(noisy) == pytest.approx(-40.0, abs=0.5)
    assert audio.with_noise(quiet, -40.0) == noisy  # seeded: the same line on every run
    assert audio.with_noise(quiet, -40.0, seed=1) != noisy
    loud = audio.tone(440, 1.0, amplitude=0.99)
    assert len(audio.with_noise(loud, -20.0)) == len(loud)  # clipped, not wrapped
