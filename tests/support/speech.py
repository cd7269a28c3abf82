"""Caller speech for tests: text rendered by the offline voice into WAV files (cached)."""

from __future__ import annotations

from pathlib import Path

from gateway.media.audio import save_wav
from gateway.speech.prompts import PromptRenderer
from tests.support.gateway import REPO

_renderer: PromptRenderer | None = None


def speech_wav(directory: Path, name: str, text: str) -> Path:
    global _renderer
    if _renderer is None:
        _renderer = PromptRenderer(REPO / "var" / "test-cache" / "prompts")
    path = directory / f"{name}.wav"
    save_wav(path, _renderer.render(text))
    return path
