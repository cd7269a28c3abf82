"""`gateway simulate` with LLM personas: a live caller over real SIP, its LLM faked on loopback."""

from __future__ import annotations

import contextlib
import io
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path

import pytest

from gateway.caller import simulate
from gateway.caller.scenario import load_scenario
from tests.fakes.openai_persona import PersonaServer
from tests.support import free_port
from tests.support.gateway import REPO, GatewayProcess

CACHE = REPO / "var" / "test-cache" / "prompts"
pytestmark = pytest.mark.timeout(180)

DESK = """\
name: desk
disclosure: false
language: en
end_of_turn_ms: 600
steps:
  - gather:
      name: topic
      prompt: "Hello, this is the help desk. Is your question about billing or shipping?"
      expect:
        billing: [billing, bill, invoice, payment]
        shipping: [shipping, delivery, parcel]
  - branch:
      variable: topic
      cases:
        billing:
          - say: "Your invoices are in the billing section. Goodbye."
        shipping:
          - say: "Your parcel is on its way. Goodbye."
  - hangup: true
"""
PROMPT = "Is your question about billing or shipping?"

# What the fake LLM answers, by model: (words in the agent's last turn, reply).
PERSONAS = {
    "invoice-caller": [("billing", "I have a question about billing."), ("", "Thank you, goodbye. [HANGUP]")],
    "quitter": [("", "[HANGUP]")],
}


def scenario(name: str, llm: str, asserts: str) -> str:
    return f"""\
name: {name}
number: "+15550177"
goal: Find out where the invoices are.
persona:
  instructions: A customer with a question about an invoice, who answers in a few words.
  {llm}
turn_gap_ms: 1000
hangup_after_s: 2
max_turns: 3
max_duration_s: 40
assert:
{asserts}"""


@dataclass
class Simulated:
    code: int
    reports: dict[str, str]
    summary: str
    junit: ET.Element
    seconds: float


def simulate_all(gw: GatewayProcess, tmp: Path, *files: Path) -> Simulated:
    out, t0 = io.StringIO(), time.monotonic()
    with contextlib.redirect_stdout(out):
        code = simulate.main([*map(str, files), "--to", gw.target, "--junit", str(tmp / "simulate.xml"),
                              "--cache-dir", str(CACHE), "--retries", "0"])
    *blocks, summary = out.getvalue().strip().split("\n\n")
    reports = {block.split()[1]: block for block in blocks}
    return Simulated(code, reports, summary, ET.parse(tmp / "simulate.xml").getroot(), time.monotonic() - t0)


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path]]:
    """The gateway answering +15550177 with a one-question help desk."""
    tmp = tmp_path_factory.mktemp("simulate-llm")
    plans = tmp / "dialplans"
    (plans / "agents").mkdir(parents=True)
    (plans / "default.yaml").write_text("reject: 404\n")
    (plans / "agents" / "desk.yaml").write_text(DESK)
    (plans / "desk.yaml").write_text('numbers: ["+15550177"]\nagent: agents/desk.yaml\n')
    with GatewayProcess(tmp, plans) as gw:
        yield gw, tmp


@pytest.fixture(scope="module")
def conversations(desk: tuple[GatewayProcess, Path]) -> tuple[Simulated, PersonaServer]:
    """A persona that gets its answer, and one that hangs up at once under a wrong expectation."""
    gw, tmp = desk
    with PersonaServer(PERSONAS) as llm:
        llm_line = f'llm: {{base_url: "{llm.base_url}", model: MODEL, timeout_s: 10}}'
        good = tmp / "good.yaml"
        good.write_text(scenario("llm-invoice", llm_line.replace("MODEL", "invoice-caller"),
                                 f'  - asked: "{PROMPT}"\n  - agent_said: "billing section"\n'
                                 "  - hung_up_within_turns: 1\n"))
        wrong = tmp / "wrong.yaml"
        wrong.write_text(scenario("llm-quits", llm_line.replace("MODEL", "quitter"),
                                  '  - agent_said: "help desk"\n  - agent_said: "zebra crossing"\n'))
        return simulate_all(gw, tmp, good, wrong), llm


def similar(a: str, b: str) -> float:
    return SequenceMatcher(None, a.lower(), b.lower()).ratio()


def test_llm_persona_hears_the_agent_and_is_understood(conversations: tuple[Simulated, PersonaServer]) -> None:
    sim, llm = conversations
    out = sim.reports["llm-invoice"]
    assert out.startswith("PASS  llm-invoice"), out
    # The persona's LLM got the agent's question, transcribed from the line, as the user's words.
    heard = llm.heard("invoice-caller")
    assert heard and max(similar(PROMPT, h[-len(PROMPT):]) for h in heard[:1]) >= 0.8, heard
    first = next(r.body for r in llm.requests if r.body.get("model") == "invoice-caller")
    assert first["messages"][0]["role"] == "system" and "invoice" in first["messages"][0]["content"]
    # Its reply was spoken, and the agent understood it: the billing branch ran, then the agent hung up.
    assert 'persona LLM: invoice-caller at http://127.0.0.1:' in out
    assert 'said "I have a question about billing."' in out
    assert 'turn 1 (pause): "I have a question about billing."' in out  # the timeline
    assert 'PASS  agent_said: "billing section"' in out and "PASS  hung_up_within_turns: 1" in out
    case = sim.junit.find("testcase[@name='llm-invoice']")
    assert case is not None and case.find("failure") is None and case.find("error") is None


def test_llm_persona_with_a_wrong_expectation_fails_with_evidence(
        conversations: tuple[Simulated, PersonaServer]) -> None:
    sim, _ = conversations
    out = sim.reports["llm-quits"]
    assert sim.code == 1 and sim.summary == "2 scenario(s): 1 passed, 1 failed, 0 error(s)", sim.summary
    assert out.startswith("FAIL  llm-quits"), out
    assert 'PASS  agent_said: "help desk"' in out
    assert 'FAIL  agent_said: "zebra crossing" (line 13): not heard' in out
    assert "said nothing, hung up" in out and "ended: we hung up" in out  # the persona's [HANGUP]
    failure = sim.junit.find("testcase[@name='llm-quits']/failure")
    assert failure is not None and "zebra crossing" in failure.get("message", "")


def test_llm_persona_whose_server_is_down_or_hung_errors_clearly(desk: tuple[GatewayProcess, Path]) -> None:
    gw, tmp = desk
    down_url = f"http://127.0.0.1:{free_port()}/v1"
    with PersonaServer({}, stall=True) as hung:
        down, slow = tmp / "down.yaml", tmp / "slow.yaml"
        down.write_text(scenario("llm-down", f'llm: {{base_url: "{down_url}", model: m}}',
                                 '  - agent_said: "help desk"\n'))
        slow.write_text(scenario("llm-slow", f'llm: {{base_url: "{hung.base_url}", model: m, timeout_s: 1}}',
                                 '  - agent_said: "help desk"\n'))
        sim = simulate_all(gw, tmp, down, slow)
        assert len(hung.requests) == 1  # asked once, then gave up on it
    assert sim.code == 1 and sim.summary == "2 scenario(s): 0 passed, 0 failed, 2 error(s)", sim.summary
    down_out, slow_out = sim.reports["llm-down"], sim.reports["llm-slow"]
    assert down_out.startswith("ERROR  llm-down"), down_out
    assert f"error: turn 1: persona LLM {down_url} (model m): cannot connect: " in down_out
    assert "Connection refused" in down_out
    assert f"error: turn 1: persona LLM {hung.base_url} (model m): no reply within 1 s" in slow_out
    for out in (down_out, slow_out):
        assert "ended: we hung up" in out  # the call was ended, not left to run to max_duration_s
    assert sim.seconds < 40
    errors = [e.get("message", "") for e in sim.junit.iter("error")]
    assert len(errors) == 2 and all("persona LLM" in e for e in errors)


def test_shipped_llm_scenario_loads_and_points_at_a_local_server() -> None:
    sc = load_scenario(REPO / "scenarios" / "llm" / "booking.yaml")
    assert sc.llm is not None and sc.llm.base_url.startswith("http://127.0.0.1:")
    assert not sc.turns and sc.checks
