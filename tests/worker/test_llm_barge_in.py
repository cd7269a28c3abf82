"""LLM barge-in: the caller interrupts the agent's answer. The model's stream (the real OpenAI
client against a local SSE server) is closed at once, and the history keeps only what the
caller heard, not what the model went on to generate."""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("openai", reason="pip install openai")

from gateway.script import model as sc  # noqa: E402
from gateway.speech.vendors.openai_llm import OpenAILLM  # noqa: E402
from gateway.worker.llm_step import LlmConversation  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI, Reply, ScriptedToolCall  # noqa: E402

SENTENCES = ["We have Friday at two.", " Or Monday at ten.", " Or Tuesday at nine.",
             " Which one suits you?"]


class _Audit:
    kinds: tuple[str, ...] = ()

    def tool(self, *args: object) -> None:
        pass


class _Call:
    key = 7
    audit = _Audit()


class _Session:
    """What the step reads of a session: the call, its transcript."""

    def __init__(self) -> None:
        self.call = _Call()
        self.transcript: list[dict] = []


def _step() -> sc.Llm:
    return sc.Llm("Offer appointment slots.", (sc.ToolRef("hangup"),))


async def _answer(reply: Reply, interrupt_at: int) -> tuple[LlmConversation, list[str], float, FakeOpenAI]:
    said: list[str] = []

    async def say(text: str) -> bool:
        said.append(text)
        return len(said) < interrupt_at     # the caller barges in during this sentence

    async with FakeOpenAI([reply]) as fake:
        llm = OpenAILLM(base_url=fake.base_url, model="fake")
        conversation = LlmConversation(_step(), llm, _Session(), {}, say)  # type: ignore[arg-type]
        conversation.messages.append({"role": "user", "content": "When can I come?"})
        started = time.monotonic()
        await conversation._respond(0.0)
        return conversation, said, time.monotonic() - started, fake


def test_an_interrupted_answer_stops_the_model_and_keeps_only_what_was_heard() -> None:
    # 0.3 s between pieces: the whole answer would take over a second to arrive.
    reply = Reply(text_pieces=SENTENCES, pause_seconds=0.3)
    conversation, said, took, _fake = asyncio.run(_answer(reply, interrupt_at=2))
    assert said == ["We have Friday at two.", "Or Monday at ten."]
    assert conversation.messages[-1] == {"role": "assistant", "content": "We have Friday at two."}
    assert took < 0.3 * (len(SENTENCES) + 1) - 0.3, took   # the rest of the stream was not awaited


def test_tools_of_an_interrupted_answer_are_not_run() -> None:
    reply = Reply(text_pieces=["Goodbye then.", " Take care."],
                  tool_calls=[ScriptedToolCall("hangup", "{}")])
    conversation, said, _took, _fake = asyncio.run(_answer(reply, interrupt_at=1))
    assert said == ["Goodbye then."]
    assert conversation.messages[-1]["role"] == "user"   # nothing heard: nothing in the history


def test_an_answer_heard_out_is_kept_whole() -> None:
    reply = Reply(text_pieces=SENTENCES)
    conversation, said, _took, _fake = asyncio.run(_answer(reply, interrupt_at=99))
    assert len(said) == 4
    assert conversation.messages[-1] == {"role": "assistant", "content": "".join(SENTENCES)}

