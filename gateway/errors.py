"""Errors that say whose fault they are."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A user-written file is wrong: points at the file and line."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


class CallError(GatewayError):
    """A SIP/RTP operation on a call failed (the peer or the network, not the config)."""


class ProviderError(GatewayError):
    """A speech or language provider failed."""

    def __init__(self, provider: str, message: str, retryable: bool = False) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.retryable = retryable
