"""LLM personas without SIP: replies and hangups, the chat sent, live turns in the caller's script."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from gateway.caller.persona import (
    HANGUP_MARKER, SILENCE, OpenAIChat, Persona, PersonaError, PersonaReply, parse_reply, system_prompt,
)
from gateway.caller.scenario import LlmPersona, load_scenario
from gateway.sip.phone.conversation import CallerScript, TurnRequest
from gateway.sip.phone.live_turns import LiveAnswer, LiveTurns
from tests.fakes.openai_persona import PersonaServer
from tests.support import free_port

pytestmark = pytest.mark.timeout(30)


def test_a_reply_says_its_words_and_may_hang_up() -> None:
    assert parse_reply("It's about my invoice.") == PersonaReply("It's about my invoice.", False)
    assert parse_reply("Thanks, goodbye! [HANGUP]") == PersonaReply("Thanks, goodbye!", True)
    assert parse_reply("  [hang up]  ") == PersonaReply("", True)  # models bend the marker's case and spacing
    assert parse_reply("Caller: *smiles* Yes please. [Hang_Up] ignored") == PersonaReply("Yes please.", True)
    assert parse_reply('"Friday, please."') == PersonaReply("Friday, please.", False)


def test_the_agent_speaks_as_user_and_the_persona_as_assistant() -> None:
    sent: list[list[dict[str, str]]] = []
    replies = iter(["My name is Jo.", "Bye. [HANGUP]"])

    def complete(messages: list[dict[str, str]]) -> str:
        sent.append(messages)
        return next(replies)

    persona = Persona("A patient who answers briefly.", "Book a check-up.", complete)
    assert persona.reply("What is your name?") == PersonaReply("My name is Jo.", False)
    assert persona.reply("") == PersonaReply("Bye.", True)
    system = sent[0][0]
    assert system["role"] == "system" and "A patient who answers briefly." in system["content"]
    assert "Book a check-up." in system["content"] and HANGUP_MARKER in system["content"]
    assert [(m["role"], m["content"]) for m in sent[1][1:]] == [
        ("user", "What is your name?"), ("assistant", "My name is Jo."), ("user", SILENCE)]
    with pytest.raises(PersonaError, match="nothing to say"):
        Persona("x", "", lambda _m: "  ** ").reply("Hello?")
    assert "Your goal" not in system_prompt("Someone.", "")


def test_the_chat_goes_to_the_scenario_endpoint_and_failures_name_it(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text('number: "+1"\npersona:\n  instructions: A customer.\n'
                    '  llm: {base_url: "http://127.0.0.1:1/v1", model: m, timeout_s: 0.5, temperature: 0.2}\n')
    llm = load_scenario(path).llm
    assert llm == LlmPersona("http://127.0.0.1:1/v1", "m", timeout_s=0.5, temperature=0.2)
    with PersonaServer({"m": [("billing", "Billing, please.")]}) as server:
        chat = OpenAIChat(LlmPersona(server.base_url, "m", timeout_s=5, temperature=0.2))
        assert chat([{"role": "user", "content": "Billing or shipping?"}]) == "Billing, please."
        chat.close()
        body = server.requests[0].body
        assert body["model"] == "m" and body["temperature"] == 0.2 and not body.get("stream")
    down = LlmPersona(f"http://127.0.0.1:{free_port()}/v1", "m")
    with pytest.raises(PersonaError, match=rf"persona LLM {down.base_url} \(model m\): cannot connect"):
        OpenAIChat(down)([{"role": "user", "content": "Hello"}])
    with PersonaServer({}, stall=True) as server:
        t0 = time.monotonic()
        with pytest.raises(PersonaError, match=r"no reply within 0.5 s"):
            OpenAIChat(LlmPersona(server.base_url, "m", timeout_s=0.5))([{"role": "user", "content": "Hello"}])
        assert time.monotonic() - t0 < 3


def _run(script: CallerScript[str], start: int, end: int, voiced: set[int]) -> list[str | None]:
    """Ticks [start, end): what the script sends, while the far end speaks on `voiced` ticks."""
    out = []
    for k in range(start, end):
        out.append(script.tx(k))
        script.on_rx(k, k in voiced)
    return out


def test_a_live_turn_is_asked_for_and_played_once_supplied() -> None:
    script: CallerScript[str] = CallerScript([], gap_frames=5, hangup_frames=10, live=True)
    greeting = set(range(0, 20))
    assert _run(script, 0, 25, greeting) == [None] * 25 and script.wanted is None
    assert _run(script, 25, 26, set()) == [None]
    assert script.wanted == TurnRequest(0, 0, 25, "pause")  # far end spoke 0-19, quiet 20-24
    assert _run(script, 26, 40, {30, 31}) == [None] * 14  # silent while the turn is produced
    script.supply(["a", "b"])
    assert _run(script, 40, 43, set()) == ["a", "b", None]
    assert script.records[0].start == 40 and script.records[0].trigger == "pause"
    assert _run(script, 43, 60, set(range(45, 50))) == [None] * 17
    want = script.wanted
    assert want is not None and want.index == 1 and want.heard_from == 25  # includes 30-31, heard while thinking
    script.supply(["c"], last=True)
    assert _run(script, 60, 62, set()) == ["c", None]
    _run(script, 62, 85, set(range(65, 70)))  # the reply, then quiet for hangup_frames
    assert script.finished == "done" and script.wanted is None


def test_closing_a_live_script_ends_the_call_without_a_turn() -> None:
    script: CallerScript[str] = CallerScript([], gap_frames=3, hangup_frames=10, live=True, greeting_frames=5)
    _run(script, 0, 7, set())
    assert script.wanted is not None and script.wanted.trigger == "no-greeting"
    script.close("persona hung up")
    assert _run(script, 7, 9, set()) == [None, None]
    assert script.finished == "persona hung up" and script.records == []


def test_live_turns_speak_json_lines_and_decode_answers_off_the_pj_thread(tmp_path: Path) -> None:
    out_r, out_w = os.pipe()
    in_r, in_w = os.pipe()
    loaded: list[str] = []

    def write_wav(path: str, frames: list[bytes]) -> None:
        Path(path).write_bytes(b"".join(frames))

    def load(path: str) -> list[bytes]:
        loaded.append(threading.current_thread().name)
        return [Path(path).read_bytes()]

    live = LiveTurns(out_w, tmp_path, in_r, write_wav, load)
    live.ask(1, [b"ab", b"cd"], "pause")
    live.close()
    request = json.loads(os.read(out_r, 4096))
    assert request == {"want_turn": 1, "heard": str(tmp_path / "heard-1.wav"), "trigger": "pause"}
    assert Path(request["heard"]).read_bytes() == b"abcd"
    (tmp_path / "t.wav").write_bytes(b"xy")
    os.write(in_w, json.dumps({"turn": 1, "say": str(tmp_path / "t.wav"), "last": True}).encode() + b"\n")
    os.write(in_w, b'{"turn": 2, "hangup": "bye"}\n{not json\n')
    os.close(in_w)
    answers: list[LiveAnswer] = []
    deadline = time.monotonic() + 5
    while len(answers) < 4 and time.monotonic() < deadline:
        answers += live.ready()
        time.sleep(0.01)
    assert answers[0] == LiveAnswer(1, [b"xy"], last=True) and loaded == ["live-turns-in"]
    assert answers[1] == LiveAnswer(2, hangup="bye")
    assert answers[2].frames is None and "bad answer" in answers[2].hangup
    assert answers[3] == LiveAnswer(0, hangup="live turns: stdin closed")


def test_a_scripted_persona_answers_what_it_was_just_asked_then_goes_on() -> None:
    from gateway.caller.persona import ScriptedPersona
    from gateway.caller.phone_call import Turn
    from gateway.caller.scenario import Reply

    persona = ScriptedPersona((Turn("say", "Friday, please."), Turn("say", "Two pm.")),
                              (Reply("is that right", "Yes."),))
    assert persona.reply("Which day suits you?") == PersonaReply("Friday, please.", False)
    assert persona.reply("So that's Friday, is that rite?") == PersonaReply("Yes.", False)  # fuzzy
    assert persona.reply("And what time?") == PersonaReply("Two pm.", False)
    assert persona.reply("Friday at 2 pm, is that right?") == PersonaReply("Yes.", False)
    assert persona.reply("Thanks. Goodbye.") == PersonaReply("", True)  # nothing left to say
    assert persona.said == ["Friday, please.", "Yes.", "Two pm.", "Yes."]


def test_live_word_error_rate_and_pass_rates() -> None:
    from gateway.caller import simulate
    from gateway.caller.scenario import Scenario

    record = {"transcript": [{"who": "agent", "text": "Which day?"},
                             {"who": "caller", "text": "Friday please."},
                             {"who": "caller", "text": "Two p.m."}]}
    assert simulate.live_wer(["Friday, please.", "Two pm."], record) == (0, 4)
    assert simulate.live_wer(["Friday, please.", "Two pm."], {"transcript": [
        {"who": "caller", "text": "Fried A please."}]}) == (4, 4)  # friday -> fried, + a, - 2, - pm
    assert simulate.live_wer(None, record) is None and simulate.live_wer(["Hi."], None) is None
    sc = Scenario(Path("a.yaml"), "a", "+1")
    runs = [simulate.Outcome(sc, error="x", repeat=1), simulate.Outcome(sc, error="y", repeat=2)]
    table = simulate.pass_rates(runs)
    row, overall = table.splitlines()[1:]
    assert row.split() == ["a", "0/2", "0.0", "%", "-"] and overall.split()[:2] == ["overall", "0/2"]
