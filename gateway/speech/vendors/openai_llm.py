"""Chat completions with tools over the OpenAI API, or any OpenAI-compatible server
(vLLM, llama.cpp, Ollama, LM Studio) reached through `base_url`.

Text is passed on token by token so TTS can start on the first sentence; a tool call is passed
on only when complete, because half a JSON argument string is of no use to anyone.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import openai

from gateway.errors import ProviderError
from gateway.speech.base import LanguageModel
from gateway.speech.frames import LLMDelta, ToolCall, ToolSpec
from gateway.speech.keys import PLACEHOLDER_KEY, own_host, vendor_key

__all__ = ["OpenAILLM", "PLACEHOLDER_KEY", "is_openai_host"]

PROVIDER = "openai"
DEFAULT_MODEL = "gpt-4o-mini"
OPENAI_HOST = "api.openai.com"
_RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: str = ""

    def done(self, index: int) -> ToolCall:
        return ToolCall(id=self.id or f"call_{index}", name=self.name, arguments=self.arguments or "{}")


class OpenAILLM(LanguageModel):
    name = PROVIDER

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        api_key: str | None = None,
        base_url: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_retries: int = 0,
    ) -> None:
        """`max_retries` is 0 because on a live call the caller's fallback policy, not a silent
        SDK back-off, decides whether waiting is better than apologising."""
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        # OPENAI_API_KEY is for api.openai.com: any other server gets it only when it is named
        # for it (api_key_env), so a local or third-party endpoint never sees it.
        key = vendor_key(PROVIDER, api_key, own=is_openai_host(base_url), env="OPENAI_API_KEY",
                         missing="or base_url to a local OpenAI-compatible server")
        self.model = model
        self.base_url = base_url
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._client = openai.AsyncOpenAI(
            api_key=key,
            base_url=base_url,
            timeout=openai.Timeout(read_timeout, connect=connect_timeout),
            max_retries=max_retries,
        )

    async def _chat(self, messages: list[dict], tools: Sequence[ToolSpec]) -> AsyncIterator[LLMDelta]:
        params: dict = {"model": self.model, "messages": messages, "stream": True}
        if tools:
            params["tools"] = [_tool_param(t) for t in tools]
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        try:
            stream = await self._client.chat.completions.create(**params)
            # `async with` closes the HTTP response when the consumer stops early (barge-in).
            async with stream:
                async for delta in _deltas(stream):
                    yield delta
        except openai.APIStatusError as exc:
            retryable = exc.status_code in _RETRYABLE_STATUS
            raise ProviderError(PROVIDER, f"HTTP {exc.status_code}: {_message(exc)}", retryable) from exc
        except openai.APIConnectionError as exc:  # includes timeouts
            raise ProviderError(PROVIDER, f"{type(exc).__name__}: {exc}", retryable=True) from exc
        except openai.OpenAIError as exc:
            raise ProviderError(PROVIDER, f"{type(exc).__name__}: {exc}", retryable=False) from exc

    async def aclose(self) -> None:
        await self._client.close()


async def _deltas(stream: AsyncIterator) -> AsyncIterator[LLMDelta]:
    """Chunks -> LLMDelta: text as it comes, each tool call once its fragments are all in."""
    pending: dict[int, _PartialCall] = {}
    finish: str | None = None
    async for chunk in stream:
        if not chunk.choices:  # e.g. the trailing usage-only chunk
            continue
        choice = chunk.choices[0]
        delta = choice.delta
        if delta is not None:
            if delta.content:
                yield LLMDelta(text=delta.content)
            for frag in delta.tool_calls or ():
                if frag.index not in pending:
                    # Calls stream one after another: a new index means the earlier ones are whole.
                    for index in sorted(i for i in pending if i < frag.index):
                        yield LLMDelta(tool_call=pending.pop(index).done(index))
                    pending[frag.index] = _PartialCall()
                part = pending[frag.index]
                if frag.id:
                    part.id = frag.id
                if frag.function is not None:
                    if frag.function.name and not part.name:
                        part.name = frag.function.name
                    if frag.function.arguments:
                        part.arguments += frag.function.arguments
        if choice.finish_reason:
            finish = choice.finish_reason
    for index in sorted(pending):
        yield LLMDelta(tool_call=pending[index].done(index))
    yield LLMDelta(finish_reason=finish or "stop")


def _tool_param(tool: ToolSpec) -> dict:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }


def is_openai_host(base_url: str | None) -> bool:
    """OpenAI's own API over TLS: the only place OPENAI_API_KEY is sent."""
    return own_host(base_url, OPENAI_HOST)


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return exc.message
