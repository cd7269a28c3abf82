"""`gateway simulate SCENARIO.yaml...`: simulated callers talk to agents over real SIP, then get checked.

    gateway simulate scenarios/ --to 127.0.0.1:5060 --junit simulate.xml
    python -m gateway.caller.simulate scenarios/booking.yaml --records var/calls.jsonl

Each scenario (format: gateway/caller/scenario.py) is one call through the pjsua2 softphone: the
persona's turns are rendered with the offline voice and spoken each time the agent pauses
(or, with impatience_ms, over it); REFERs are followed. An LLM persona makes each turn live
instead, from what the agent has just said (gateway/caller/persona_call.py). Afterwards the agent's
side of the recording is transcribed offline (tiny.en) and the scenario's checks run on the
words, the turn timing and the transfer. The report shows every check with its evidence, then the
call's timeline. Exit status 0 only if every scenario passed; --junit writes one testcase
per scenario (per run with --repeat N, which also prints each scenario's pass rate). A persona
with `replies:` is played live like an LLM one, from scripted turns. With --records, the gateway's
record of each call gives the live word error rate of its recogniser on what the persona said.
A scenario that failed while this machine starved our softphone (its media clock
ran over 0.5 s late, so the agent may have heard our speech in bursts) is called once more
(--retries); a failure on a machine that kept up never is.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import itertools
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import wave
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from gateway.caller.phone_call import CallReport, Turn, format_timeline
from gateway.errors import CallError, ConfigError, GatewayError
from gateway.media.audio import with_noise
from gateway.caller.persona_call import PersonaTurn
from gateway.caller.scenario import CheckResult, Scenario, evaluate, load_scenario_checked
from gateway.sip.target import target_arg

__all__ = ["Outcome", "run_scenario", "format_outcome", "junit_xml", "build_parser", "live_wer", "main", "pass_rates"]

_ROOT = Path(__file__).resolve().parents[2]
_RATE = 8000
# Our media clock this late means the softphone was starved: our speech left in bursts that the
# far end's jitter buffer may partly drop (the timeline warns from 40 ms on, for timings alone).
_STARVED_MS = 500.0
_STT_LOCK = threading.Lock()  # one transcription at a time: the model is process-wide


@dataclass
class Outcome:
    scenario: Scenario
    report: CallReport | None = None
    results: list[CheckResult] = field(default_factory=list)
    error: str | None = None  # the scenario could not be run
    seconds: float = 0.0
    record: dict[str, Any] | None = None  # the gateway's call record, with --records
    retried: str = ""  # why an earlier attempt was not kept
    persona_turns: list[PersonaTurn] = field(default_factory=list)  # a live persona's turns
    repeat: int = 0  # which run of the scenario this is (--repeat), 1-based; 0: the only one
    wer: tuple[int, int] | None = None  # the gateway's recogniser on our words: (errors, words said)

    @property
    def passed(self) -> bool:
        answered = self.report is not None and self.report.answered
        return self.error is None and answered and all(r.status != "FAIL" for r in self.results)

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "ERROR" if self.error else "FAIL"


# --- running one scenario -------------------------------------------------------------


def run_scenario(sc: Scenario, to: str, *, records: Path | None = None,
                 cache_dir: Path = Path("var/cache/prompts"), log: TextIO | None = None) -> Outcome:
    """Place the scenario's call, transcribe the agent, run the checks (blocking)."""
    out, t0 = Outcome(sc), time.monotonic()
    user = sc.caller or f"sim-{secrets.token_hex(4)}"
    wall0 = time.time()
    try:
        with tempfile.TemporaryDirectory(prefix="gateway-simulate-") as tmp:
            both = str(Path(tmp) / "both.wav")
            if sc.llm is None and not sc.replies:
                call = _place_call(sc, to, _render(sc, Path(tmp), cache_dir), both, user, log)
                turns = list(sc.spoken_turns)
            else:
                call, turns = _place_llm_call(out, sc, to, both, user, Path(tmp), cache_dir, log)
            out.report = CallReport(sc.number, to, call, turns)
            if out.report.answered:
                _transcribe(out.report, both)
    except GatewayError as exc:
        out.error, out.seconds = str(exc), time.monotonic() - t0
        return out
    if records is not None:
        out.record = _find_record(records, user, wall0, time.time())
        out.wer = live_wer(_said_texts(sc, out), out.record)
    out.results = evaluate(sc, out.report, records=records, record=out.record)
    out.seconds = time.monotonic() - t0
    return out


def _said_texts(sc: Scenario, out: Outcome) -> list[str] | None:
    """What our persona said, as text; None when a recording was among it (its words are unknown)."""
    if out.report is None:
        return None
    turns = out.report.turns
    if any(t.kind == "play" or t.value.endswith(".wav") for t in turns):
        return None
    played = len((out.report.call.get("turns") or []))
    return [t.value for t in turns[:played] if t.kind == "say"] if played else []


def live_wer(said: Sequence[str] | None, record: dict[str, Any] | None) -> tuple[int, int] | None:
    """(word errors, words said) of what the gateway heard from the caller (its call record)
    against what the persona said; None when either is unknown."""
    if said is None or record is None or not said:
        return None
    import jiwer

    from gateway.caller.scenario import words

    heard = [str(t.get("text") or "") for t in record.get("transcript") or [] if t.get("who") == "caller"]
    reference = " ".join(w for text in said for w in words(text))
    hypothesis = " ".join(w for text in heard for w in words(text))
    if not reference:
        return None
    if not hypothesis:
        return len(reference.split()), len(reference.split())
    m = jiwer.process_words(reference, hypothesis)
    return m.substitutions + m.deletions + m.insertions, len(reference.split())


def _render(sc: Scenario, tmp: Path, cache_dir: Path) -> list[str]:
    from gateway.media.audio import load_wav, save_wav
    from gateway.speech.prompts import PromptRenderer

    renderer = PromptRenderer(cache_dir, sc.voice)
    paths: list[str] = []
    for i, turn in enumerate(sc.spoken_turns):
        if turn.kind == "play" and sc.noise_dbfs is None:
            paths.append(turn.value)
            continue
        if turn.kind == "play":
            pcm = load_wav(turn.value)
        else:
            pcm = renderer.render(turn.value) if sc.speaking_rate == 1.0 else _render_at_rate(sc, turn.value, cache_dir)
        path = tmp / f"turn-{i + 1}.wav"
        save_wav(path, _noisy(sc, pcm, i))
        paths.append(str(path))
    return paths


def _noisy(sc: Scenario, pcm: bytes, turn: int) -> bytes:
    """The persona's line noise, if it has any, under one of its turns."""
    return pcm if sc.noise_dbfs is None else with_noise(pcm, sc.noise_dbfs, seed=turn)


def _render_at_rate(sc: Scenario, text: str, cache_dir: Path) -> bytes:
    """The offline voice at another pace (piper's length scale), cached like prompts."""
    import soxr

    from gateway.media.audio import float_to_pcm16, load_wav, save_wav

    key = hashlib.sha256(f"{sc.voice}\0{sc.speaking_rate:.3f}\0{text}".encode()).hexdigest()
    path = cache_dir / "rate" / f"{key}.wav"
    if path.is_file():
        return load_wav(path)
    try:
        from piper import SynthesisConfig

        voice = _piper_voice(sc.voice)
        config = SynthesisConfig(length_scale=1.0 / sc.speaking_rate, volume=0.8)
        audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text, syn_config=config)])
    except Exception as exc:  # vendor edge: any failure is the voice's
        raise GatewayError(f"voice {sc.voice}: cannot render {text[:40]!r}: {exc}") from exc
    pcm = float_to_pcm16(soxr.resample(audio, voice.config.sample_rate, _RATE, quality="HQ"))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_wav(path, pcm)
    return pcm


@functools.cache
def _piper_voice(name: str) -> Any:
    """The offline voice's model, loaded once per process (an LLM persona renders every turn)."""
    from piper import PiperVoice

    from gateway.speech.prompts import VOICES

    pkg = importlib.import_module(VOICES[name].package)
    return PiperVoice.load(pkg.model_path(), config_path=pkg.config_path())


def _place_llm_call(out: Outcome, sc: Scenario, to: str, both: str, user: str, tmp: Path, cache_dir: Path,
                    log: TextIO | None) -> tuple[dict[str, Any], list[Turn]]:
    """The call with a live persona (an LLM, or scripted turns with replies); the softphone's JSON
    and the turns as said."""
    from gateway.caller.persona import DEFAULT_MAX_TURNS, OpenAIChat, Persona, ScriptedPersona
    from gateway.caller.persona_call import hear_agent, load_recogniser, run_live_call

    stt = load_recogniser()
    speak = _speaker(sc, cache_dir)  # both loaded now: the first turn should not wait for them
    chat = OpenAIChat(sc.llm) if sc.llm is not None else None
    persona = (Persona(sc.instructions, sc.goal, chat, where=chat.where) if chat is not None
               else ScriptedPersona(sc.spoken_turns, sc.replies))
    # Replies do not count towards max_turns; a loop of them ends at max_duration_s or here.
    most = (sc.max_turns or DEFAULT_MAX_TURNS) if chat is not None else len(sc.spoken_turns) + 2 * len(sc.replies) + 4
    cmd = [*_softphone_cmd(sc, to, [], both, user), "--live-turns", str(tmp)]
    try:
        live = run_live_call(cmd, _softphone_env(), persona,
                             hear=lambda wav: hear_agent(stt, wav, _STT_LOCK), speak=speak, workdir=tmp,
                             max_turns=most, timeout_s=sc.max_duration_s + 60, log=log)
    finally:
        if chat is not None:
            chat.close()
    out.persona_turns, out.error = live.turns, live.error
    if live.timed_out:
        raise CallError(f"softphone did not finish within {sc.max_duration_s + 60:.0f} s")
    call = _first_call(live.result, live.returncode, live.stderr)
    return call, [Turn("say", t.said) for t in live.turns if t.said]  # a recording shows as its path


def _speaker(sc: Scenario, cache_dir: Path) -> Any:
    """text, WAV path -> the persona's voice saying it (8 kHz), rendered like scripted turns."""
    from gateway.media.audio import save_wav
    from gateway.speech.prompts import PromptRenderer

    renderer = PromptRenderer(cache_dir, sc.voice)
    try:
        if sc.speaking_rate == 1.0:
            renderer.warm_up()
        else:
            _piper_voice(sc.voice)
    except Exception as exc:  # vendor edge
        raise GatewayError(f"voice {sc.voice}: cannot load: {exc}") from exc

    def speak(reply: Any, path: Path) -> None:
        from gateway.media.audio import load_wav

        text = reply.text
        try:
            if reply.play:
                pcm = load_wav(reply.play)
            else:
                pcm = renderer.render(text) if sc.speaking_rate == 1.0 else _render_at_rate(sc, text, cache_dir)
        except GatewayError:
            raise
        except Exception as exc:  # vendor edge
            raise GatewayError(f"voice {sc.voice}: cannot render {text[:40]!r}: {exc}") from exc
        save_wav(path, _noisy(sc, pcm, next(turns)))

    turns = itertools.count()
    return speak


def _softphone_cmd(sc: Scenario, to: str, wavs: list[str], both: str, user: str) -> list[str]:
    cmd = [
        sys.executable, "-m", "gateway.sip.phone.softphone", "call", "--to", to, "--number", sc.number,
        "--from-user", user, "--record-both", both, "--turn-gap-ms", str(sc.turn_gap_ms),
        "--greeting-wait", "5", "--reply-timeout", "20", "--hangup-after", str(sc.hangup_after_s),
        "--max-duration", str(sc.max_duration_s), "--listen", "--follow-refer",
    ]
    for wav in wavs:
        cmd += ["--turn", wav]
    if sc.impatience_ms is not None:
        cmd += ["--barge-in-ms", str(sc.impatience_ms)]
    return cmd


def _softphone_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    return env


def _place_call(sc: Scenario, to: str, wavs: list[str], both: str, user: str, log: TextIO | None) -> dict[str, Any]:
    cmd = _softphone_cmd(sc, to, wavs, both, user)
    try:
        proc = subprocess.run(cmd, env=_softphone_env(), capture_output=True, text=True,
                              timeout=sc.max_duration_s + 60)
    except subprocess.TimeoutExpired as exc:
        raise CallError(f"softphone did not finish within {sc.max_duration_s + 60:.0f} s") from exc
    if log is not None:
        log.write(proc.stderr)
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        result = None
    return _first_call(result, proc.returncode, proc.stderr)


def _first_call(result: dict[str, Any] | None, returncode: int | None, stderr: str) -> dict[str, Any]:
    """The call from the softphone's result object, or why there is none."""
    if not isinstance(result, dict):
        raise CallError(f"softphone failed (exit {returncode}):\n{stderr[-2000:]}")
    calls = result.get("calls") or []
    if not calls:
        raise CallError(f"softphone placed no call (exit {returncode}):\n{stderr[-2000:]}")
    return dict(calls[0])


def _transcribe(report: CallReport, stereo_wav: str) -> None:
    """Words of each agent speech segment (right channel of the recording), or why there are none."""
    segs = (report.call.get("segments") or {}).get("far_end") or []
    try:
        from gateway.speech.vendors.local import WhisperSTT, whisper_model_dir

        whisper_model_dir()
        stt = WhisperSTT(threads=max(1, min(4, os.cpu_count() or 1)), beam_size=5)
        with wave.open(stereo_wav, "rb") as w:
            right = np.frombuffer(w.readframes(w.getnframes()), "<i2")[1::2].tobytes()
        texts: list[str | None] = []
        for start, end in segs:
            a, b = max(0, int((start - 0.1) * _RATE)) * 2, int((end + 0.2) * _RATE) * 2
            with _STT_LOCK:
                texts.append(stt.transcribe(right[a:b]).text or None)
    except (ImportError, OSError, wave.Error, GatewayError) as exc:
        report.transcript_note = f"no transcript: {exc}"
        return
    report.far_end_text = texts


def _find_record(path: Path, user: str, t0: float, t1: float, wait: float = 8.0) -> dict[str, Any] | None:
    """This call's line in the gateway's call records: same From user, started during our call."""
    from gateway.worker.records import read_records

    deadline = time.monotonic() + wait
    while True:
        try:
            found = [r for r in read_records(path) if r.get("caller") == user
                     and t0 - 5 <= float(r.get("started") or 0) <= t1 + 5]
        except (OSError, ValueError):
            found = _stored_calls(path, user, t0, t1)
        if found or time.monotonic() >= deadline:
            return found[-1] if found else None
        time.sleep(0.25)


def _stored_calls(path: Path, user: str, t0: float, t1: float) -> list[dict[str, Any]]:
    """This call from the gateway's call store (an SQLite file), when the records are one."""
    from gateway.store.calls import CallStore

    try:
        store = CallStore(path)
    except Exception:  # noqa: BLE001 - not a store either: no record
        return []
    try:
        rows = [r for r in store.list_calls(since=t0 - 5, number=user) if float(r.get("started") or 0) <= t1 + 5]
        return [call for r in rows if (call := store.get_call(str(r["call_id"]))) is not None]
    except Exception:  # noqa: BLE001
        return []
    finally:
        store.close()


# --- reports ------------------------------------------------------------------------


def format_outcome(out: Outcome) -> str:
    """One scenario: verdict, goal, every check with its evidence, then the call's timeline."""
    sc = out.scenario
    run = f" #{out.repeat}" if out.repeat else ""
    lines = [f"{out.verdict}  {sc.name}{run}  ({sc.path}, {sc.number}, {out.seconds:.1f} s)"]
    if sc.goal:
        lines.append(f"  goal: {sc.goal}")
    if sc.instructions:
        lines.append(f"  persona: {sc.instructions}")
    if sc.llm is not None:
        lines.append(f"  persona LLM: {sc.llm.model} at {sc.llm.base_url}")
        lines += [f"    {_persona_turn(t)}" for t in out.persona_turns]
    elif out.persona_turns:
        lines.append("  persona: scripted, with replies")
        lines += [f"    {_persona_turn(t)}" for t in out.persona_turns]
    if out.error:
        lines.append(f"  error: {out.error}")
    rep = out.report
    if rep is not None and not rep.answered:
        why = f"{rep.call.get('status')} {rep.call.get('reason') or ''}".strip()
        lines.append(f"  FAIL  call answered: no ({why})")
    for r in out.results:
        lines.append(f"  {r.status:<5} {r.check.label} (line {r.check.line}): {r.evidence}")
    if _overload(out):
        lines.append(f"  note: {_overload(out)}")
    if out.retried:
        lines.append(f"  note: called again, the first attempt failed while {out.retried}")
    if len(sc.spoken_turns) < len(sc.turns):
        lines.append(f"  (max_turns {sc.max_turns}: {len(sc.turns) - len(sc.spoken_turns)} scripted turn(s) left out)")
    if out.record is not None:
        lines.append(f"  gateway record: call {out.record.get('call_id')}, outcome {out.record.get('outcome')}")
        heard = [t for t in out.record.get("transcript") or [] if t.get("who") == "caller"]
        lines += [f"    heard {t.get('confidence', '?')}: \"{str(t.get('text'))[:100]}\"" for t in heard]
    if out.wer is not None:
        lines.append(f"  live WER: {_rate(*out.wer)} ({out.wer[0]} error(s) in {out.wer[1]} word(s) said)")
    transfer = rep.call.get("transfer") if rep is not None else None
    if transfer:
        new = transfer.get("new_call") or {}
        followed = f"new call {new.get('status')} {new.get('reason') or ''}".rstrip() if new else "not followed"
        lines.append(f"  transfer: REFER to {transfer.get('target')}, {followed}")
    if rep is not None:
        lines.append("  timeline:")
        lines += ["  " + line for line in format_timeline(rep).splitlines()]
    return "\n".join(lines)


def _persona_turn(t: PersonaTurn) -> str:
    heard = t.heard if len(t.heard) <= 100 else t.heard[:97] + "..."
    said = "failed, ended the call" if t.failed else f'said "{t.said}"' if t.said else "said nothing"
    hung_up = ", hung up" if t.hangup and not t.failed else ""
    return f'turn {t.index} ({t.think_s:.1f} s to answer): heard "{heard}"; {said}{hung_up}'


def _overload(out: Outcome) -> str:
    """Why this call's results may say more about this machine than about the agent, if they may."""
    late = ((out.report.call.get("media_clock") or {}).get("late_max_ms") or 0.0) if out.report else 0.0
    if late <= _STARVED_MS:
        return ""
    return (f"this machine was overloaded (our media clock ran up to {late:.0f} ms late): "
            "timings, and what the agent could hear, are unreliable")


def _rate(errors: int, words: int) -> str:
    return f"{100 * errors / words:.1f} %" if words else "n/a"


def _summary(outcomes: Sequence[Outcome]) -> str:
    counts = {v: sum(o.verdict == v for o in outcomes) for v in ("PASS", "FAIL", "ERROR")}
    unchecked = sum(r.status == "NOT CHECKABLE" for o in outcomes for r in o.results)
    what = "run(s)" if any(o.repeat for o in outcomes) else "scenario(s)"
    text = f"{len(outcomes)} {what}: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['ERROR']} error(s)"
    return text + (f"; {unchecked} check(s) not checkable" if unchecked else "")


def _overall_wer(outcomes: Sequence[Outcome]) -> str:
    wers = [o.wer for o in outcomes if o.wer is not None]
    if not wers:
        return ""
    errors, said = sum(e for e, _ in wers), sum(n for _, n in wers)
    return f"live WER over {len(wers)} call(s): {_rate(errors, said)} ({errors} error(s) in {said} word(s))"


def pass_rates(outcomes: Sequence[Outcome]) -> str:
    """The task-success table of a --repeat run: each scenario's pass rate, then overall."""
    by_name: dict[str, list[Outcome]] = {}
    for out in outcomes:
        by_name.setdefault(out.scenario.name, []).append(out)
    width = max(len(name) for name in by_name)
    lines = [f"{'scenario':<{width}}  passed  rate    live WER"]
    for name, runs in by_name.items():
        passed = sum(o.passed for o in runs)
        wers = [o.wer for o in runs if o.wer is not None]
        wer = _rate(sum(e for e, _ in wers), sum(n for _, n in wers)) if wers else "-"
        lines.append(f"{name:<{width}}  {passed:>2}/{len(runs):<3}  {100 * passed / len(runs):5.1f} %  {wer}")
    total = sum(o.passed for o in outcomes)
    lines.append(f"{'overall':<{width}}  {total:>2}/{len(outcomes):<3}  {100 * total / len(outcomes):5.1f} %")
    return "\n".join(lines)


def junit_xml(outcomes: Sequence[Outcome], load_errors: Sequence[ConfigError] = (), seconds: float = 0.0) -> str:
    """One testsuite, one testcase per scenario (and per scenario file that did not load)."""
    suite = ET.Element("testsuite", name="gateway simulate", tests=str(len(outcomes) + len(load_errors)),
                       failures=str(sum(o.verdict == "FAIL" for o in outcomes)),
                       errors=str(sum(o.verdict == "ERROR" for o in outcomes) + len(load_errors)),
                       skipped="0", time=f"{seconds:.3f}",
                       timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()))
    for out in outcomes:
        name = f"{out.scenario.name} #{out.repeat}" if out.repeat else out.scenario.name
        case = ET.SubElement(suite, "testcase", name=name, classname="simulate",
                             file=str(out.scenario.path), time=f"{out.seconds:.3f}")
        text = format_outcome(out)
        if out.error:
            ET.SubElement(case, "error", message=out.error, type="ScenarioError").text = text
        elif not out.passed:
            failed = [f"{r.check.label}: {r.evidence}" for r in out.results if r.status == "FAIL"]
            if out.report is not None and not out.report.answered:
                failed.insert(0, f"call not answered: {out.report.call.get('status')}")
            failed += [_overload(out)] if _overload(out) else []
            ET.SubElement(case, "failure", message="; ".join(failed), type="AssertionError").text = text
        else:
            ET.SubElement(case, "system-out").text = text
    for err in load_errors:
        case = ET.SubElement(suite, "testcase", name=Path(err.path).stem, classname="simulate", file=err.path)
        ET.SubElement(case, "error", message=str(err), type="ConfigError").text = str(err)
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


# --- command line ---------------------------------------------------------------------


def scenario_files(paths: list[Path]) -> list[Path]:
    """Files as given; a directory stands for its *.yaml/*.yml files, sorted."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith("."))
        else:
            out.append(path)
    return out


def build_parser(prog: str = "gateway simulate") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Call agents with scripted or LLM personas and check the conversations.")
    p.add_argument("scenarios", nargs="+", type=Path, metavar="SCENARIO.yaml",
                   help="scenario files, or directories of them (format: gateway/caller/scenario.py)")
    p.add_argument("--to", metavar="TARGET", default="127.0.0.1:5060", type=target_arg,
                   help="the gateway: HOST[:PORT] or sip:[USER@]HOST[:PORT] (default: %(default)s)")
    p.add_argument("--junit", type=Path, metavar="OUT.xml", help="also write a JUnit XML report")
    p.add_argument("--records", type=Path, metavar="FILE",
                   help="the gateway's call record file (JSON lines): enables tool_called and shows the outcome")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="call each scenario N times and report its pass rate (default 1)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="scenarios called at the same time (default 1)")
    p.add_argument("--retries", type=int, default=1, metavar="N",
                   help="call a failed scenario again when this machine starved our side of it (default 1)")
    p.add_argument("--cache-dir", type=Path, default=Path("var/cache/prompts"), help="rendered persona speech cache")
    p.add_argument("--check", action="store_true", help="only load the scenarios and report mistakes")
    p.add_argument("-v", "--verbose", action="store_true", help="show the softphone's log on stderr")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "gateway simulate") -> int:
    args = build_parser(prog).parse_args(argv)
    t0 = time.monotonic()
    scenarios: list[Scenario] = []
    load_errors: list[ConfigError] = []
    for path in scenario_files(args.scenarios):
        scenario, errors = load_scenario_checked(path)
        load_errors += errors
        if scenario is not None:
            scenarios.append(scenario)
    for err in load_errors:
        print(f"{prog}: {err}", file=sys.stderr)
    if load_errors or not scenarios:
        if not load_errors:
            print(f"{prog}: no scenario files in {' '.join(map(str, args.scenarios))}", file=sys.stderr)
        if args.junit:
            args.junit.parent.mkdir(parents=True, exist_ok=True)
            args.junit.write_text(junit_xml([], load_errors, time.monotonic() - t0))
        return 2
    if args.check:
        print(f"{len(scenarios)} scenario(s) OK")
        return 0
    log = sys.stderr if args.verbose else None

    repeat = max(1, args.repeat)

    def run(job: tuple[Scenario, int]) -> Outcome:
        sc, k = job
        out = run_scenario(sc, args.to, records=args.records, cache_dir=args.cache_dir, log=log)
        for _ in range(max(0, args.retries)):
            if out.passed or not _overload(out):
                break  # a failure on a machine that kept up is the agent's: never retried
            why = _overload(out).split(":")[0]
            out = run_scenario(sc, args.to, records=args.records, cache_dir=args.cache_dir, log=log)
            out.retried = why
        out.repeat = k if repeat > 1 else 0
        print(format_outcome(out) + "\n", flush=True)
        return out

    jobs = [(sc, k) for k in range(1, repeat + 1) for sc in scenarios]  # round by round
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        outcomes = list(pool.map(run, jobs))
    if repeat > 1:
        print(pass_rates(outcomes) + "\n")
    if _overall_wer(outcomes):
        print(_overall_wer(outcomes) + "\n")
    print(_summary(outcomes))
    if args.junit:
        args.junit.parent.mkdir(parents=True, exist_ok=True)
        args.junit.write_text(junit_xml(outcomes, seconds=time.monotonic() - t0))
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main(prog="python -m gateway.caller.simulate"))
