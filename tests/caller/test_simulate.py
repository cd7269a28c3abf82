"""`gateway simulate`: scripted personas call the example agents over real SIP and get checked."""

from __future__ import annotations

import contextlib
import io
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.caller import simulate
from gateway.caller.phone_call import CallReport, Turn
from gateway.caller.scenario import Scenario, evaluate, load_scenario, load_scenario_checked
from tests.support.gateway import REPO, GatewayProcess

CACHE = REPO / "var" / "test-cache" / "prompts"  # persona speech is rendered once, then reused
# Two calls take ~60 s; the ceiling leaves room for the one retry a starved call gets on a busy machine.
pytestmark = pytest.mark.timeout(240)


FAILING = """\
name: must-fail
number: "+15550101"
goal: Show what failed checks look like.
persona:
  instructions: Listens to the keypad menu and says nothing.
  turns: []
hangup_after_s: 2
assert:
  - agent_said: "opening hours"
  - agent_said: "zebra"
  - transferred_to: "sip:nobody@example.invalid"
  - tool_called: check_slot
"""


@dataclass
class Simulated:
    code: int
    reports: dict[str, str]  # scenario name -> its report
    summary: str
    junit: ET.Element


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Simulated:
    """A shipped scenario and one that must fail, called one after the other on the repo's dialplans."""
    tmp = tmp_path_factory.mktemp("simulate")
    (tmp / "must-fail.yaml").write_text(FAILING)
    out = io.StringIO()
    with GatewayProcess(tmp) as gw, contextlib.redirect_stdout(out):
        code = run(str(REPO / "scenarios" / "support.yaml"), str(tmp / "must-fail.yaml"),
                   "--to", gw.target, "--junit", str(tmp / "out" / "simulate.xml"),
                   "--records", str(gw.records))
    *blocks, summary = out.getvalue().strip().split("\n\n")
    reports = {block.split()[1]: block for block in blocks}
    return Simulated(code, reports, summary, ET.parse(tmp / "out" / "simulate.xml").getroot())


def run(*args: str) -> int:
    return simulate.main([*args, "--cache-dir", str(CACHE)])


def test_shipped_support_scenario_passes(simulated: Simulated) -> None:
    out = simulated.reports["support-balance"]
    assert out.startswith("PASS  support-balance"), out
    assert 'PASS  agent_said: "billing section"' in out
    assert "PASS  hung_up_within_turns: 2" in out
    assert "outcome completed" in out  # found its own line in the gateway's call records
    case = simulated.junit.find("testcase[@name='support-balance']")
    assert case is not None and case.find("failure") is None and case.find("error") is None


def test_scenario_with_wrong_expectations_fails_with_evidence(simulated: Simulated) -> None:
    out = simulated.reports["must-fail"]
    assert simulated.code == 1 and simulated.summary == "2 scenario(s): 1 passed, 1 failed, 0 error(s)"
    assert out.startswith("FAIL  must-fail"), out
    assert 'PASS  agent_said: "opening hours" (line 9): heard "opening hours"' in out
    assert 'FAIL  agent_said: "zebra" (line 10): not heard' in out
    assert 'FAIL  transferred_to: "sip:nobody@example.invalid" (line 11): no transfer' in out
    assert 'FAIL  tool_called: "check_slot" (line 12): tools called: none' in out
    assert "far end" in out and "ended: we hung up" in out  # the timeline
    suite = simulated.junit
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    failure = suite.find("testcase[@name='must-fail']/failure")
    assert failure is not None, ET.tostring(suite, encoding="unicode")
    message = failure.get("message", "")
    assert "zebra" in message and "nobody@example.invalid" in message and "check_slot" in message
    assert 'agent_said: "opening hours"' not in message  # only what failed
    assert "timeline:" in (failure.text or "")


def test_scenario_mistakes_point_at_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('number: "+15550100"\npersona:\n  voice: jane\n  turns: ["Hello."]\n'
                   "assert:\n  - agent_says: hello\n  - max_turn_ms: fast\n")
    _, errors = load_scenario_checked(bad)
    assert [(e.line, e.message.split(" (")[0]) for e in errors] == [
        (3, "unknown voice 'jane'"), (6, "unknown key 'agent_says'"), (7, "expected a whole number, got 'fast'"),
    ]
    assert "did you mean 'agent_said'" in errors[1].message
    junit = tmp_path / "simulate.xml"
    assert run(str(bad), str(REPO / "scenarios"), "--check", "--junit", str(junit)) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3: unknown voice 'jane'" in err and f"{bad}:6: unknown key 'agent_says'" in err
    assert ET.parse(junit).getroot().get("errors") == "3"
    broken = tmp_path / "broken.yaml"
    broken.write_text('name: x\nnumber: "+1"\npersona: {turns: ["a"]\n')
    assert str(load_scenario_checked(broken)[1][0]).startswith(f"{broken}:4: invalid YAML")
    missing = tmp_path / "missing.yaml"
    missing.write_text("name: nothing-to-say\npersona: Someone.\n")
    assert [str(e) for e in load_scenario_checked(missing)[1]] == [
        f"{missing}:1: missing 'number' (the number to call)",
        f"{missing}:2: the persona needs `turns:` (what to say, in order) or `llm:`",
    ]
    # Every shipped scenario loads, the LLM persona's too; its settings are checked like the rest.
    assert run(str(REPO / "scenarios"), str(REPO / "scenarios" / "llm"), "--check") == 0
    llm = tmp_path / "llm.yaml"
    llm.write_text('number: "+15550100"\npersona:\n  llm: {base_url: "127.0.0.1:9/v1", model: m, timeout_s: 0}\n')
    assert [(e.line, e.message.split(",")[0]) for e in load_scenario_checked(llm)[1]] == [
        (3, "expected an http:// or https:// URL"), (3, "must be more than 0 and at most 600")]
    noisy = tmp_path / "noisy.yaml"
    noisy.write_text('number: "+15550100"\npersona:\n  noise_dbfs: -10\n  turns: ["Hello."]\n')
    [error] = load_scenario_checked(noisy)[1]
    assert error.line == 3 and "-70" in error.message and "-20" in error.message, error
    assert load_scenario(REPO / "scenarios" / "support.yaml").noise_dbfs is None


def test_persona_line_noise_is_under_every_turn(tmp_path: Path) -> None:
    from gateway.media.audio import load_wav, rms_dbfs

    path = tmp_path / "noisy.yaml"
    path.write_text('number: "+15550100"\npersona:\n  noise_dbfs: -40\n  turns: ["Hello.", "Yes."]\n')
    clean_path = tmp_path / "clean.yaml"
    clean_path.write_text('number: "+15550100"\npersona:\n  turns: ["Hello.", "Yes."]\n')
    noisy = [load_wav(w) for w in simulate._render(load_scenario(path), tmp_path, CACHE)]
    (tmp_path / "c").mkdir()
    clean = [load_wav(w) for w in simulate._render(load_scenario(clean_path), tmp_path / "c", CACHE)]
    for n, c in zip(noisy, clean, strict=True):
        assert len(n) == len(c)
        assert rms_dbfs(c[:160]) < -60 and rms_dbfs(n[:160]) == pytest.approx(-40, abs=3)  # the lead-in
    assert noisy[0][:160] != noisy[1][:160]  # each turn its own noise


def test_checks_on_a_recorded_call_are_fuzzy_but_not_lax(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text('number: "+1"\nturns: [a, b, c, d]\nassert:\n  - agent_said: "booked for Friday at two pm"\n'
                    '  - agent_said: zebra\n  - asked: "which day"\n  - no_loop: true\n  - max_turn_ms: 3000\n'
                    "  - hung_up_within_turns: 3\n")
    far = [[0.0, 2.0], [5.0, 6.0], [9.0, 10.0], [13.0, 14.0], [17.0, 19.0]]
    turns = [{"index": i + 1, "sent_start_s": 3.0 + 4 * i, "latency_ms": 1000.0 + 1500 * i} for i in range(4)]
    call = {"answered": True, "turns": turns, "segments": {"far_end": far}, "disconnect": {"by": "remote"}}
    texts = ["Hello. Which day suits you", "Sorry? Which day suits you?", "Sorry. Which day suits you?",
             "sorry, which day suits you", "You're book for Fryday at 2 p.m. Goodbye."]
    report = CallReport("+1", "x", call, [Turn("say", t) for t in "abcd"], far_end_text=list(texts))
    results = {r.check.label: (r.status, r.evidence) for r in evaluate(load_scenario(path), report)}
    assert results['agent_said: "booked for Friday at two pm"'][0] == "PASS"
    assert results['agent_said: "zebra"'][0] == "FAIL"
    assert results['asked: "which day"'][0] == "PASS"  # the last thing said before the caller answered
    assert results["no_loop: true"][0] == "FAIL" and "three times" in results["no_loop: true"][1]
    assert results["max_turn_ms: 3000"] == ("FAIL", "turn 3: 4000.0 ms, turn 4: 5500.0 ms")
    assert results["hung_up_within_turns: 3"][0] == "FAIL"  # the agent hung up, but after 4 turns


def test_only_a_call_starved_by_this_machine_is_called_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.yaml"
    path.write_text('name: starved\nnumber: "+1"\nturns: [a]\nassert: [{agent_said: hello}]\n')
    attempts: list[float] = []

    def fake_run(sc: Scenario, to: str, **_: object) -> simulate.Outcome:
        late = 2000.0 if not attempts else 10.0  # the first call starved, the second kept up
        attempts.append(late)
        call = {"answered": True, "status": 200, "media_clock": {"late_max_ms": late}}
        out = simulate.Outcome(sc, CallReport("+1", to, call, []))
        out.results = evaluate(sc, out.report, records=None) if out.report else []
        return out

    monkeypatch.setattr(simulate, "run_scenario", fake_run)
    assert run(str(path)) == 1  # still failing: "hello" was never heard, on either attempt
    out = capsys.readouterr().out
    assert attempts == [2000.0, 10.0]
    assert "called again, the first attempt failed while this machine was overloaded" in out
    attempts.clear()
    assert run(str(path), "--retries", "0") == 1 and attempts == [2000.0]
