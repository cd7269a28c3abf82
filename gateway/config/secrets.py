"""Secrets (trunk passwords, API keys) are named in gateway.yaml, never written there.

A secret comes from an environment variable (`*_env: NAME`) or a file (`*_file: PATH`, the
Docker/Kubernetes secrets convention: the file holds the value, a trailing newline is dropped).
Settings keep only the reference; the value is read when it is used, and every value read is
masked in log records from then on (a library logging its request headers at DEBUG leaks nothing).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import ProviderError

__all__ = ["SecretRef", "forbidden_key", "mask", "resolve_api_key"]

MASK = "********"
_MIN_MASKED = 4  # shorter values would mask ordinary words in every log line


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a secret is: an environment variable or a file. Its repr names only that."""

    env: str | None = None
    file: Path | None = None

    def __str__(self) -> str:
        return f"${self.env}" if self.env else str(self.file)

    def problem(self) -> str | None:
        """Why reading it would fail (never the value), or None."""
        if self.env:
            if self.env not in os.environ:
                return f"environment variable {self.env} is not set"
            return None if os.environ[self.env] else f"environment variable {self.env} is empty"
        assert self.file is not None
        try:
            text = self.file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return f"cannot read secret file {self.file}: {getattr(exc, 'strerror', None) or exc}"
        return None if text.rstrip("\r\n") else f"secret file {self.file} is empty"

    def read(self) -> str:
        if self.env:
            value = os.environ.get(self.env, "")
        else:
            assert self.file is not None
            value = self.file.read_text(encoding="utf-8").rstrip("\r\n")
        mask(value)
        return value


# -- YAML keys that would hold a secret -----------------------------------------------------------

_SECRET_NAMES = ("api_key", "key", "token", "secret", "password", "password_ha1")
_SECRET_SUFFIXES = ("_key", "_token", "_secret", "_password")


def forbidden_key(name: str) -> bool:
    """A key whose value would be a secret written in the file (`api_key`, `auth_token`...)."""
    if name.endswith(("_env", "_file")):
        return False
    return name in _SECRET_NAMES or name.endswith(_SECRET_SUFFIXES)


def resolve_api_key(provider: str, options: dict) -> dict:
    """Provider options with `api_key_env` / `api_key_file` replaced by `api_key` (the value)."""
    env, file = options.get("api_key_env"), options.get("api_key_file")
    if env is None and file is None:
        return options
    rest = {k: v for k, v in options.items() if k not in ("api_key_env", "api_key_file")}
    ref = SecretRef(env=str(env)) if env is not None else SecretRef(file=Path(str(file)))
    if (problem := ref.problem()) is not None:
        raise ProviderError(provider, f"no API key: {problem}")
    return {**rest, "api_key": ref.read()}


# -- masking in logs ------------------------------------------------------------------------------

_values: set[str] = set()
_lock = threading.Lock()
_installed = False


def mask(value: str) -> None:
    """From now on, replace value with a mask wherever it appears in a log record."""
    global _installed
    if len(value) < _MIN_MASKED:
        return
    with _lock:
        _values.add(value)
        if not _installed:
            _installed = True
            _install()


def _install() -> None:
    make_record = logging.getLogRecordFactory()

    def masked_record(*args, **kwargs):  # type: ignore[no-untyped-def]
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report
            return record
        masked = _masked(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _masked(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(masked_record)


def _masked(text: str) -> str:
    for value in tuple(_values):
        if value in text:
            text = text.replace(value, MASK)
    return text
