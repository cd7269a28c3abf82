"""An LLM that plays the caller in `gateway simulate`: its prompt, its memory, its replies.

The persona is one chat with an OpenAI-compatible chat completions endpoint. The system prompt
is the scenario's instructions and goal plus the house rules below; everything the agent said
between two persona turns is one "user" message (as transcribed from the line); each persona
reply is an "assistant" message. A reply ends the call when it contains HANGUP_MARKER: the
words before the marker are still said, then the caller hangs up. A text marker rather than a
`hangup` tool: every OpenAI-compatible server and small local model can write it, and a reply
can say goodbye and hang up in one go.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError
from gateway.speech.vendors.openai_llm import PLACEHOLDER_KEY, is_openai_host
from gateway.caller.phone_call import Turn
from gateway.caller.scenario import LlmPersona, Reply, heard_in

__all__ = [
    "DEFAULT_MAX_TURNS", "HANGUP_MARKER", "OpenAIChat", "Persona", "PersonaError", "PersonaReply",
    "ScriptedPersona", "parse_reply", "system_prompt",
]

HANGUP_MARKER = "[HANGUP]"
DEFAULT_MAX_TURNS = 10  # an llm persona without max_turns says at most this many turns
SILENCE = "(silence)"  # the user message when the agent said nothing we could transcribe
_MARKER = re.compile(r"\[\s*hang[\s_-]*up\s*\]", re.IGNORECASE)  # models bend the case and spacing
_ACTION = re.compile(r"\*[^*]*\*")  # "*smiles*": a stage direction, not words to say
_LABEL = re.compile(r"^\s*(caller|me|you|assistant)\s*:\s*", re.IGNORECASE)  # "Caller: Hi" -> "Hi"

Messages = list[dict[str, str]]
Complete = Callable[[Messages], str]  # messages -> the reply's text


class PersonaError(GatewayError):
    """The persona could not produce a turn (its LLM was down, slow, or said nothing)."""


@dataclass(frozen=True, slots=True)
class PersonaReply:
    text: str  # what to say; "" when the reply only hangs up
    hangup: bool
    play: str | None = None  # a recording to play instead of saying text


class ScriptedPersona:
    """A scripted caller who reacts: before each scripted turn, a reply whose `when` the agent has
    just said (fuzzy, like `asked:`) is said instead; the scripted turn waits for the next pause.
    After the last turn only replies are said; anything else hangs up."""

    def __init__(self, turns: tuple[Turn, ...], replies: tuple[Reply, ...]) -> None:
        self._turns = list(turns)
        self._replies = replies
        self.said: list[str] = []  # the texts said, in order (recordings as their path)

    def reply(self, heard: str) -> PersonaReply:
        for reply in self._replies:
            if heard_in(reply.when, _last_sentences(heard)):
                self.said.append(reply.say)
                return PersonaReply(reply.say, False)
        if not self._turns:
            return PersonaReply("", True)
        turn = self._turns.pop(0)
        self.said.append(turn.value)
        if turn.kind == "play":
            return PersonaReply("", False, play=turn.value)
        return PersonaReply(turn.value, False)


def _last_sentences(text: str, n: int = 2) -> str:
    """What the agent just asked: the end of what it said (a long greeting may name a topic)."""
    parts = [p for p in re.split(r"(?<=[.?!])\s+", text.strip()) if p]
    return " ".join(parts[-n:])


def system_prompt(instructions: str, goal: str) -> str:
    who = instructions.strip() or "A caller who answers briefly."
    lines = [
        "You are role-playing a person who has phoned an automated voice agent. Stay in character.",
        f"Who you are: {who}",
    ]
    if goal.strip():
        lines.append(f"Your goal for this call: {goal.strip()}")
    lines += [
        "Each user message is what the agent just said, transcribed from the phone line, so it may "
        f"contain recognition mistakes; {SILENCE} means it said nothing.",
        "Reply with only the words you say next, as you would say them aloud: usually one short "
        "sentence, no stage directions, no lists, no emoji.",
        f"When your goal is reached, the agent has said goodbye, or the call cannot get anywhere, "
        f"end your reply with {HANGUP_MARKER} to hang up (you may say goodbye before it).",
    ]
    return "\n".join(lines)


def parse_reply(content: str) -> PersonaReply:
    """The words to say and whether to hang up, from the model's raw reply."""
    hangup = bool(_MARKER.search(content))
    text = _MARKER.split(content)[0] if hangup else content  # nothing after the hangup is said
    text = _LABEL.sub("", _ACTION.sub(" ", text).replace("*", " "))
    text = " ".join(text.split()).strip(" \"'")
    return PersonaReply(text, hangup)


class Persona:
    """The conversation so far; `reply()` adds what the agent said and what the persona answers."""

    def __init__(self, instructions: str, goal: str, complete: Complete, *, where: str = "persona LLM") -> None:
        self.messages: Messages = [{"role": "system", "content": system_prompt(instructions, goal)}]
        self._complete = complete
        self._where = where  # names the endpoint in errors

    def reply(self, heard: str) -> PersonaReply:
        """Blocking (HTTP): run it off any media or event-loop thread."""
        self.messages.append({"role": "user", "content": heard.strip() or SILENCE})
        content = self._complete(list(self.messages))
        reply = parse_reply(content)
        if not reply.text and not reply.hangup:
            raise PersonaError(f"{self._where}: the reply had nothing to say: {content[:80]!r}")
        self.messages.append({"role": "assistant", "content": content.strip()})
        return reply


class OpenAIChat:
    """Chat completions at the scenario's base_url (non-streaming: a turn is said whole anyway).
    OPENAI_API_KEY goes to api.openai.com only; local servers (Ollama, llama.cpp, vLLM) get none."""

    def __init__(self, llm: LlmPersona) -> None:
        from openai import OpenAI

        self.llm = llm
        self.where = f"persona LLM {llm.base_url} (model {llm.model})"
        key = os.environ.get("OPENAI_API_KEY", "") if is_openai_host(llm.base_url) else ""
        self._client = OpenAI(base_url=llm.base_url, api_key=key or PLACEHOLDER_KEY,
                              timeout=llm.timeout_s, max_retries=0)  # a retry would only hide a slow server

    def __call__(self, messages: Messages) -> str:
        extra: dict[str, Any] = {} if self.llm.temperature is None else {"temperature": self.llm.temperature}
        try:
            resp = self._client.chat.completions.create(
                model=self.llm.model, messages=messages, **extra)  # type: ignore[arg-type]
        except Exception as exc:  # vendor edge: every failure becomes one clear line
            raise PersonaError(f"{self.where}: {_describe(exc, self.llm.timeout_s)}") from exc
        content = resp.choices[0].message.content if resp.choices else None
        if not content:
            raise PersonaError(f"{self.where}: the reply had no text")
        return content

    def close(self) -> None:
        self._client.close()


def _describe(exc: Exception, timeout_s: float) -> str:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return f"no reply within {timeout_s:g} s (timeout_s)"
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot connect: {exc.__cause__ or exc}"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
