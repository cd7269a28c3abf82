"""Values that flow through a conversation: frozen, slotted, plain."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TranscriptEvent:
    """What the recogniser heard. Interim results may change; a final one will not."""

    text: str
    is_final: bool
    confidence: float = 1.0
    start: float = 0.0          # seconds since the stream began
    end: float = 0.0
    speech_final: bool = False  # the recogniser itself thinks the caller finished the turn


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it


@dataclass(frozen=True, slots=True)
class LLMDelta:
    """One piece of a streamed model answer: text, a complete tool call, or the finish."""

    text: str = ""
    tool_call: ToolCall | None = None
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class VadEvent:
    speaking: bool
    at: float  # seconds, on the call's audio clock
