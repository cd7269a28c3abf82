"""Pure PCM helpers: WAV in/out, resampling, test tones and simple analysis.

Everything inside the gateway is PCM16 little-endian mono; 8 kHz unless a
function says otherwise.
"""

from __future__ import annotations

import math
import os
import struct
import wave
from pathlib import Path

import numpy as np
import soxr

from gateway.errors import GatewayError

__all__ = [
    "SAMPLE_RATE",
    "AudioFormatError",
    "load_wav",
    "save_wav",
    "resample",
    "float_to_pcm16",
    "tone",
    "silence",
    "rms_dbfs",
    "dominant_frequency",
    "goertzel_power",
    "band_energy_fraction",
]

SAMPLE_RATE = 8000

_FMT_PCM = 0x0001
_FMT_FLOAT = 0x0003
_FMT_EXTENSIBLE = 0xFFFE


class AudioFormatError(GatewayError, ValueError):
    """An audio file or buffer the gateway cannot use; names the file when there is one."""


# -- WAV ------------------------------------------------------------------------


def load_wav(path: str | os.PathLike[str], rate: int = SAMPLE_RATE) -> bytes:
    """Read a PCM (or float) WAV of any rate/width/channel count as PCM16 mono at `rate`.

    Channels are averaged. Resampling uses soxr HQ: this is for offline assets,
    where quality matters more than the ~66 ms of filter delay.
    """
    samples, src_rate = _read_wav(Path(path))
    if src_rate != rate and samples.size:
        samples = soxr.resample(samples, src_rate, rate, quality="HQ")
    return float_to_pcm16(samples)


def save_wav(path: str | os.PathLike[str], pcm: bytes, rate: int = SAMPLE_RATE) -> None:
    """Write PCM16 mono as a plain WAV file."""
    _check_pcm16(pcm)
    with wave.open(os.fspath(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Parse RIFF chunks ourselves: `wave` rejects WAVE_FORMAT_EXTENSIBLE and float on 3.11."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AudioFormatError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioFormatError(f"{path}: not a RIFF/WAVE file")
    fmt: bytes | None = None
    body: bytes | None = None
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        chunk = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            fmt = chunk
        elif cid == b"data":
            body = chunk  # a truncated file keeps what is there
        pos += 8 + size + (size & 1)  # chunks are word-aligned
    if fmt is None or len(fmt) < 16 or body is None:
        raise AudioFormatError(f"{path}: missing fmt or data chunk")
    tag, channels, src_rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _FMT_EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]  # first two bytes of the SubFormat GUID
    if channels < 1 or src_rate < 1 or block_align != channels * ((bits + 7) // 8):
        raise AudioFormatError(f"{path}: inconsistent fmt chunk")
    samples = _decode(body[: len(body) - len(body) % block_align], tag, bits)
    if samples is None:
        raise AudioFormatError(f"{path}: unsupported WAV encoding (format tag {tag:#06x}, {bits} bits)")
    return samples.reshape(-1, channels).mean(axis=1, dtype=np.float32), src_rate


def _decode(body: bytes, tag: int, bits: int) -> np.ndarray | None:
    """Interleaved samples as float32 in [-1, 1), or None if the encoding is not PCM/float."""
    if tag == _FMT_PCM:
        if bits == 8:  # 8-bit WAV is unsigned
            return (np.frombuffer(body, np.uint8).astype(np.float32) - 128.0) / 128.0
        if bits == 16:
            return np.frombuffer(body, "<i2").astype(np.float32) / 32768.0
        if bits == 24:
            raw = np.frombuffer(body, np.uint8).reshape(-1, 3).astype(np.int32)
            val = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
            val = np.where(val >= 1 << 23, val - (1 << 24), val)
            return val.astype(np.float32) / float(1 << 23)
        if bits == 32:
            return (np.frombuffer(body, "<i4").astype(np.float64) / 2**31).astype(np.float32)
    if tag == _FMT_FLOAT and bits in (32, 64):
        return np.frombuffer(body, "<f4" if bits == 32 else "<f8").astype(np.float32)
    return None


# -- conversion ------------------------------------------------------------------


def resample(pcm: bytes, src_rate: int, dst_rate: int = SAMPLE_RATE, quality: str = "HQ") -> bytes:
    """Resample PCM16 mono. One-shot: for live streams use soxr.ResampleStream (and "QQ")."""
    _check_pcm16(pcm)
    if src_rate == dst_rate or not pcm:
        return bytes(pcm)
    out = soxr.resample(_pcm16_to_float(pcm), src_rate, dst_rate, quality=quality)
    return float_to_pcm16(out)


def _check_pcm16(pcm: bytes) -> None:
    if len(pcm) % 2:
        raise AudioFormatError(f"PCM16 buffer has odd length {len(pcm)}")


def _pcm16_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1) to PCM16 bytes."""
    # Clip: resampling filters can overshoot full-scale input.
    scaled = np.clip(np.rint(samples * 32768.0), -32768, 32767)
    return scaled.astype("<i2").tobytes()


# -- generation ------------------------------------------------------------------


def tone(freq_hz: float, seconds: float, rate: int = SAMPLE_RATE, amplitude: float = 0.3) -> bytes:
    """A sine tone; amplitude is relative to full scale."""
    n = max(0, round(seconds * rate))
    t = np.arange(n, dtype=np.float64) / rate
    return float_to_pcm16(amplitude * np.sin(2.0 * math.pi * freq_hz * t))


def with_noise(pcm: bytes, dbfs: float, seed: int = 0) -> bytes:
    """PCM16 with white noise of RMS `dbfs` mixed in (clipped at full scale); seeded, so a
    simulated caller's noisy line is the same on every run."""
    x = np.frombuffer(pcm, "<i2").astype(np.float64) / 32768.0
    noise = np.random.default_rng(seed).standard_normal(len(x)) * 10 ** (dbfs / 20)
    return float_to_pcm16(np.clip(x + noise, -1.0, 1.0))


def silence(seconds: float, rate: int = SAMPLE_RATE) -> bytes:
    return bytes(2 * max(0, round(seconds * rate)))


# -- analysis --------------------------------------------------------------------


def rms_dbfs(pcm: bytes) -> float:
    """RMS level in dBFS (a full-scale square wave is 0); -inf for silence or no samples."""
    _check_pcm16(pcm)
    if not pcm:
        return float("-inf")
    x = _pcm16_to_float(pcm).astype(np.float64)
    rms = math.sqrt(float(np.mean(x * x)))
    return 20.0 * math.log10(rms) if rms > 0 else float("-inf")


def dominant_frequency(pcm: bytes, rate: int = SAMPLE_RATE) -> float:
    """Frequency of the strongest spectral peak (Hann window, zero-padded FFT,
    parabolic peak interpolation): accurate to a few Hz even on short buffers.
    Returns 0.0 for empty or silent input."""
    _check_pcm16(pcm)
    x = _pcm16_to_float(pcm).astype(np.float64)
    if x.size < 4:
        return 0.0
    x -= x.mean()
    n_fft = max(8192, 1 << (x.size - 1).bit_length())
    mag = np.abs(np.fft.rfft(x * np.hanning(x.size), n_fft))
    mag[0] = 0.0  # ignore what is left of DC
    k = int(np.argmax(mag))
    if mag[k] <= 0.0:
        return 0.0
    shift = 0.0
    if 0 < k < mag.size - 1:
        a, b, c = np.log(mag[k - 1 : k + 2] + 1e-300)
        denom = a - 2.0 * b + c
        if denom != 0.0:
            shift = 0.5 * (a - c) / denom
    return float((k + shift) * rate / n_fft)


def goertzel_power(pcm: bytes, freq: float, rate: int = SAMPLE_RATE) -> float:
    """Power of one frequency (what a Goertzel filter measures, evaluated exactly at
    `freq`). Scaled so a sine of amplitude A (relative to full scale) gives ~A**2."""
    _check_pcm16(pcm)
    x = _pcm16_to_float(pcm).astype(np.float64)
    if x.size == 0:
        return 0.0
    phase = np.exp(-2j * math.pi * freq / rate * np.arange(x.size))
    amp = 2.0 * abs(np.dot(x, phase)) / x.size
    return float(amp * amp)


def band_energy_fraction(pcm: bytes, low_hz: float, high_hz: float, rate: int = SAMPLE_RATE) -> float:
    """Share of the signal's energy between low_hz and high_hz (0.0 for silence)."""
    _check_pcm16(pcm)
    x = _pcm16_to_float(pcm).astype(np.float64)
    if x.size == 0:
        return 0.0
    power = np.abs(np.fft.rfft(x - x.mean())) ** 2
    total = float(power.sum())
    if total <= 0.0:
        return 0.0
    freqs = np.fft.rfftfreq(x.size, 1.0 / rate)
    return float(power[(freqs >= low_hz) & (freqs <= high_hz)].sum() / total)
