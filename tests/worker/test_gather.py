"""The runner's gathers with typed slots: read back only when unsure, corrections in the answer
to a read-back. The caller's side is a scripted session (answers as the recogniser gives them);
the runner, the slot parsers and the fallback policy are the real ones."""

from __future__ import annotations

import asyncio
from collections import deque
from types import SimpleNamespace

from gateway.conversation.turns import TurnState
from gateway.script.model import AgentScript, Gather, Slot
from gateway.worker.runner import ScriptRunner
from gateway.worker.session import Answer

OFFERED = {"9 am": ("9 am",), "11 am": ("11 am",), "2 pm": ("2 pm", "afternoon"), "4 pm": ("4 pm",)}


class ScriptedCaller:
    """What CallSession offers the runner, with the caller's answers given in advance."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = deque(answers)
        self.said: list[str] = []
        self.turns = SimpleNamespace(state=TurnState.IDLE)
        self.call = SimpleNamespace(key="t", record=SimpleNamespace(steps=[]), pending_digit=lambda: False)

    async def say(self, text: str, **_: object) -> bool:
        self.said.append(text)
        return True

    def expect(self, *_: object, **__: object) -> None:
        pass  # a hint for turn-taking; nothing listens here

    def has_answer(self) -> bool:
        return False

    def flush_answers(self) -> None:
        pass

    async def next_answer(self, timeout: float, dtmf: bool = True, max_digits: int = 1) -> Answer:
        return self.answers.popleft() if self.answers else Answer()


def gather(g: Gather, *answers: Answer, variables: dict[str, str] | None = None) -> tuple[ScriptRunner, list[str]]:
    caller = ScriptedCaller(*answers)
    runner = ScriptRunner(AgentScript("t", "t.yaml", disclosure=None), caller, "sip:op@127.0.0.1",  # type: ignore[arg-type]
                          dict(variables or {}))
    runner._spoken.update(variables or {})
    asyncio.run(runner.gather(g))
    return runner, caller.said


def heard(text: str, confidence: float = 0.9) -> Answer:
    return Answer(text=text, confidence=confidence)


TIME = Gather("time", "What time?", slot=Slot("time"), expect=OFFERED, read_back="{day} at {time}")


def test_a_sure_answer_is_taken_without_a_read_back() -> None:
    runner, said = gather(Gather("caller_name", "Your name?", slot=Slot("name")), heard("My name is John Smith."))
    assert runner.variables["caller_name"] == "John Smith" and said == ["Your name?"]


def test_an_unsure_recogniser_gets_the_normalised_read_back() -> None:
    runner, said = gather(TIME, heard("Two pm.", 0.3), heard("Yes, that's right."), variables={"day": "Friday"})
    assert said == ["What time?", "Friday at 2 pm, is that right?"]
    assert runner.variables["time"] == "2 pm"


def test_a_correction_in_the_answer_to_the_read_back_is_taken() -> None:
    g = Gather("day", "Which day?", slot=Slot("day"), confirm="always")
    runner, said = gather(g, heard("Friday."), heard("No, Thursday."))
    assert said == ["Which day?", "Friday, is that right?", "Thursday, got it."]
    assert runner.variables["day"] == "thursday" and runner.speakable["day"] == "Thursday"


def test_a_bare_no_asks_the_question_again() -> None:
    g = Gather("day", "Which day?", slot=Slot("day"), confirm="always")
    runner, said = gather(g, heard("Friday."), heard("No."), heard("Monday."), heard("Yes."))
    assert said[:2] == ["Which day?", "Friday, is that right?"]
    assert said[2].endswith("Which day?") and said[3] == "Monday, is that right?"
    assert runner.variables["day"] == "monday"


def test_an_ambiguous_slot_is_read_back_even_when_the_recogniser_is_sure() -> None:
    g = Gather("size", "How many?", slot=Slot("number"))
    runner, said = gather(g, heard("twenty or thirty", 0.95), heard("Thirty."))
    assert said == ["How many?", "20, is that right?", "30, got it."]
    assert runner.variables["size"] == "30"


def test_confirm_never_takes_an_unsure_answer() -> None:
    g = Gather("note", "Anything else?", confirm="never")
    runner, said = gather(g, heard("the blue one", 0.2))
    assert runner.variables["note"] == "the blue one" and said == ["Anything else?"]


def test_the_rest_of_a_yes_to_a_read_back_is_not_the_next_answer() -> None:
    caller = ScriptedCaller(heard("Friday."), heard("Yes,"), heard("that's right."), heard("Two pm."))
    runner = ScriptRunner(AgentScript("t", "t.yaml", disclosure=None), caller, "sip:op@127.0.0.1", {})  # type: ignore[arg-type]
    asyncio.run(runner.gather(Gather("day", "Which day?", slot=Slot("day"), confirm="always")))
    asyncio.run(runner.gather(TIME))
    assert caller.said == ["Which day?", "Friday, is that right?", "What time?"]
    assert (runner.variables["day"], runner.variables["time"]) == ("friday", "2 pm")
