"""`gateway loadtest`: many concurrent calls against a gateway, then one summary table.

    gateway loadtest --target 127.0.0.1:5060 --number +15550100 --calls 20 --rate 2 --duration 30
    python -m gateway.caller.loadtest --target 127.0.0.1:5060 --number 100 --calls 4 --total 200 --rate 10 --sipp

Keeps up to --calls calls up, starting new ones at --rate calls/s until --total (default --calls)
have been placed. Media calls run in pjsua2 softphone subprocesses of at most the module's call limit each
(PJSUA_MAX_CALLS): each batch is one process whose calls start together, so the rate holds per
batch. --sipp places signalling-only calls with sipp instead. --gateway-pid samples the gateway's
whole process tree for CPU and RSS. Exit status 0 only if every call was answered.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.ops.ports import free_port
from gateway.sip.phone.cli import MAX_CALLS
from gateway.sip.target import parse_target, target_arg

__all__ = ["TreeMonitor", "percentiles", "summarise", "format_table", "sipp_scenario", "build_parser", "main"]

_ROOT = Path(__file__).resolve().parents[2]
Call = dict[str, Any]  # status, reason, answered, setup_ms, turns, rtp: as the softphone reports a call
_STATE_RE = re.compile(r"^softphone call (\d+): (CONNECTING|CONFIRMED|DISCONN\w*)\b")
# final answers the scenario ACKs and ends on; any other one still shows in the trace, sipp aborting the call
_FAIL_CODES = (400, 401, 403, 404, 407, 408, 410, 415, 480, 481, 484, 486, 487, 488, 500, 501, 502, 503, 504, 600, 603)
_TRACE_HEAD = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n", re.M)
_SIPP_BIND_ERROR = 254  # sipp's exit status when one of its ports was taken meanwhile


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


class TreeMonitor:
    """CPU and RSS of a process and all its descendants, sampled from /proc."""

    def __init__(self, pid: int) -> None:
        if _stat(pid) is None:
            raise ValueError(f"no process {pid}")
        self.pid, self.t0 = pid, time.monotonic()
        self.cpu0 = self._cpu(self._tree())
        self.rss_peak, self.procs_max, self.cpu_pct = 0, 0, 0.0

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for name in os.listdir("/proc"):
            st = _stat(int(name)) if name.isdigit() else None
            if st is not None:
                children.setdefault(int(st[1]), []).append(int(name))
        tree, todo = [], [self.pid]
        while todo:
            tree.append(todo.pop())
            todo += children.get(tree[-1], [])
        return tree

    @staticmethod
    def _cpu(pids: list[int]) -> int:
        # with cutime/cstime: a child reaped during the run has moved its ticks into its parent's
        return sum(sum(int(v) for v in st[11:15]) for st in map(_stat, pids) if st)

    def sample(self) -> None:
        pids, rss = self._tree(), 0
        for pid in pids:
            try:
                rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, IndexError, ValueError):
                pass  # it exited meanwhile
        self.rss_peak, self.procs_max = max(self.rss_peak, rss), max(self.procs_max, len(pids))
        wall = time.monotonic() - self.t0
        if wall > 0:
            self.cpu_pct = (self._cpu(pids) - self.cpu0) / os.sysconf("SC_CLK_TCK") / wall * 100

    def result(self) -> dict[str, Any]:
        return {"pid": self.pid, "cpu_pct": round(self.cpu_pct, 1), "rss_peak_mib": round(self.rss_peak / 2**20, 1),
                "processes_max": self.procs_max, "seconds": round(time.monotonic() - self.t0, 1)}


class _Progress:
    """A stderr line per second; the monitor sampled twice a second."""

    def __init__(self, monitor: TreeMonitor | None) -> None:
        self.t0 = self._printed = self._sampled = time.monotonic()
        self.monitor = monitor

    def tick(self, active: int, answered: int, failed: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if self.monitor is not None and (final or now - self._sampled >= 0.5):
            self._sampled = now
            self.monitor.sample()
        if final or now - self._printed >= 1.0:
            self._printed = now
            print(f"loadtest {now - self.t0:6.1f} s  active {active:4d}  answered {answered:5d}  failed {failed:5d}",
                  file=sys.stderr, flush=True)


class _Phone:
    """One softphone subprocess placing `n` calls; its log is followed for live call states."""

    def __init__(self, cmd: list[str], n: int, work: Path, index: int, cap: float) -> None:
        self.n, self.deadline, self.terminated_at = n, time.monotonic() + cap + 20, 0.0
        self.out, self.err = work / f"phone-{index}.json", work / f"phone-{index}.log"
        self._offset, self._partial = 0, ""
        self.answered, self.ended = set[int](), set[int]()  # call indices seen answered / ended in the log
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
        # files, not pipes: a report bigger than a pipe buffer must never stall the phone
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)

    def follow(self, now: float) -> None:
        with open(self.err, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        *lines, self._partial = (self._partial + data.decode(errors="replace")).split("\n")
        for m in filter(None, map(_STATE_RE.match, lines)):
            (self.ended if m.group(2).startswith("DISCONN") else self.answered).add(int(m.group(1)))
        if not self.terminated_at and now > self.deadline:
            self.proc.send_signal(signal.SIGTERM)  # it hangs up and still reports
            self.terminated_at = now
        elif self.terminated_at and now - self.terminated_at > 10:
            self.proc.kill()

    def result(self, errors: list[str]) -> list[Call]:
        try:
            calls = [c for c in json.loads(self.out.read_text())["calls"] if isinstance(c, dict)][: self.n]
        except (OSError, ValueError, KeyError, TypeError):
            tail = self.err.read_text(errors="replace")[-500:].strip() if self.err.exists() else ""
            errors.append(f"softphone exited {self.proc.returncode} without a report: {tail}")
            calls = []
        return calls + [{"status": None, "reason": "softphone failed", "answered": False}] * (self.n - len(calls))


def run_softphones(args: argparse.Namespace, turns: list[str], work: Path, progress: _Progress,
                   stop: threading.Event) -> tuple[list[Call], list[str]]:
    cap = args.duration if turns else args.duration + 30  # each process's --max-duration
    base = [sys.executable, "-m", "gateway.sip.phone.softphone", "call", "--to", args.target, "--number", args.number,
            "--from-user", "loadtest", "--max-duration", str(cap)]
    base += [a for t in turns for a in ("--turn", t)] if turns else ["--hangup-after", str(args.duration)]
    if turns and args.barge_in_ms is not None:
        base += ["--barge-in-ms", str(args.barge_in_ms)]
    batch = max(1, min(MAX_CALLS, int(args.rate)))
    running: list[_Phone] = []
    done: list[Call] = []
    errors: list[str] = []
    started, next_at = 0, time.monotonic()
    hard_end = next_at + args.total / args.rate + math.ceil(args.total / args.calls) * (cap + 30) + 30
    while running or (started < args.total and not stop.is_set()):
        now = time.monotonic()
        for phone in list(running):
            phone.follow(now)
            if phone.proc.poll() is not None:
                running.remove(phone)
                done += phone.result(errors)
        active = sum(p.n - len(p.ended) for p in running)
        for _ in range(16):  # bounded catch-up when the rate outruns this loop
            n = min(batch, args.calls - active, args.total - started)
            if stop.is_set() or n <= 0 or now < next_at:
                break
            running.append(_Phone([*base, "--calls", str(n)], n, work, started, cap))
            started, active = started + n, active + n
            next_at = max(next_at, now - 1.0) + n / args.rate  # no burst after waiting for capacity
        if now > hard_end or stop.is_set():
            for p in running:
                p.deadline = min(p.deadline, now)  # SIGTERM now, SIGKILL 10 s later
        answered = sum(bool(c.get("answered")) for c in done) + sum(len(p.answered) for p in running)
        failed = sum(not c.get("answered") for c in done) + sum(len(p.ended - p.answered) for p in running)
        progress.tick(active, answered, failed)
        time.sleep(0.05)
    progress.tick(0, sum(bool(c.get("answered")) for c in done), sum(not c.get("answered") for c in done), final=True)
    return done, errors


_SDP = """v=0
o=loadtest 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 8"""
_FROM = "From: <sip:loadtest@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]"
_VIA = "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]"
_DIALOG = f"{_VIA}\n[routes]\n{_FROM}\n[last_To:]\nCall-ID: [call_id]\nMax-Forwards: 70"


def _send(text: str, retrans: bool = False) -> str:
    attr = ' retrans="500"' if retrans else ""
    return f"  <send{attr}>\n    <![CDATA[\n\n{text}\n\n    ]]>\n  </send>\n"


def sipp_scenario() -> str:
    """sipp's `-sn uac` call (INVITE, ACK, hold for -d ms, BYE), ACKing and ending on any failure code."""
    invite = (f"INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n{_VIA}\n{_FROM}\n"
              "To: <sip:[service]@[remote_ip]:[remote_port]>\nCall-ID: [call_id]\nCSeq: 1 INVITE\n"
              "Contact: <sip:loadtest@[local_ip]:[local_port]>\nMax-Forwards: 70\n"
              f"Content-Type: application/sdp\nContent-Length: [len]\n\n{_SDP}")
    fail_ack = (f"ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n[last_Via:]\n{_FROM}\n[last_To:]\n"
                "Call-ID: [call_id]\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0")
    return ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="gateway loadtest">\n'
            + _send(invite, retrans=True)
            + "".join(f'  <recv response="{c}" optional="true"/>\n' for c in (100, 180, 183))
            + "".join(f'  <recv response="{c}" optional="true" next="failed"/>\n' for c in _FAIL_CODES)
            + '  <recv response="200" rrs="true"/>\n'
            + _send(f"ACK [next_url] SIP/2.0\n{_DIALOG}\nCSeq: 1 ACK\nContent-Length: 0")
            + "  <pause/>\n"
            + _send(f"BYE [next_url] SIP/2.0\n{_DIALOG}\nCSeq: 2 BYE\nContent-Length: 0", retrans=True)
            + '  <recv response="200" crlf="true" next="end"/>\n  <label id="failed"/>\n'
            + _send(fail_ack) + '  <label id="end"/>\n</scenario>\n')


class _Trace:
    """Follows sipp's -trace_msg file as it grows: per Call-ID, INVITE time, final answer, end."""

    def __init__(self, path: Path) -> None:
        self.path, self._offset, self._pending = path, 0, ""
        self.calls: dict[str, dict[str, Any]] = {}

    def read(self, final: bool = False) -> None:
        if self.path.exists():
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
            self._offset += len(data)
            self._pending += data.decode(errors="replace")
        text = self._pending
        heads = list(_TRACE_HEAD.finditer(text))
        usable = heads if final else heads[:-1]  # the last block may still be half-written
        for i, m in enumerate(usable):
            end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
            self._block(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp(), text[m.end():end])
        self._pending = text[heads[len(usable)].start():] if len(usable) < len(heads) else ""

    def _block(self, at: float, block: str) -> None:
        head, _, msg = block.partition("\n\n")
        cid = re.search(r"^(?:Call-ID|i):\s*(\S+)", msg, re.M | re.I)
        cseq = re.search(r"^CSeq:\s*\d+\s+(\w+)", msg, re.M | re.I)
        if not cid or not cseq:
            return
        call = self.calls.setdefault(cid.group(1), {"invite_at": None, "status": None, "reason": "", "at": None,
                                                     "ended": False})
        status = re.match(r"SIP/2\.0 (\d{3}) ?(.*)", msg)
        code = int(status.group(1)) if status and "received" in head else 0
        if "sent" in head and msg.startswith("INVITE ") and call["invite_at"] is None:
            call["invite_at"] = at
        elif code >= 200 and cseq.group(1) == "INVITE" and call["status"] is None:
            call.update(status=code, reason=status.group(2).strip() if status else "", at=at, ended=code >= 300)
        elif code >= 200 and cseq.group(1) == "BYE":
            call["ended"] = True

    def outcomes(self) -> list[Call]:
        out = []
        for c in self.calls.values():
            ok = c["status"] is not None and 200 <= c["status"] < 300
            setup = round((c["at"] - c["invite_at"]) * 1000, 1) if ok and c["invite_at"] is not None else None
            out.append({"status": c["status"], "reason": c["reason"] or "no final response", "answered": ok,
                        "setup_ms": setup})
        return out


def run_sipp(args: argparse.Namespace, work: Path, progress: _Progress,
             stop: threading.Event) -> tuple[list[Call], list[str]]:
    sipp = shutil.which("sipp")
    if sipp is None:
        return [], ["sipp is not installed"]
    scenario = work / "loadtest.xml"
    scenario.write_text(sipp_scenario())
    limit = args.total / args.rate + math.ceil(args.total / args.calls) * (args.duration + 40) + 30
    target = parse_target(args.target)
    user = ["-s", args.number or target.user] if args.number or target.user else []  # sipp's default: "service"
    for attempt in range(3):  # a port found free may be taken before sipp binds it: retry with others
        trace = _Trace(work / f"sipp-{attempt}.messages.log")
        cmd = [sipp, target.hostport, "-sf", str(scenario), *user, "-i", "127.0.0.1", "-p", str(free_port()),
               "-mp", str(random.randrange(20000, 60000, 2)), "-ci", "127.0.0.1", "-cp", str(free_port()),
               "-m", str(args.total), "-l", str(args.calls), "-r", f"{args.rate:g}",
               "-d", str(round(args.duration * 1000)), "-recv_timeout", "40000", "-timeout", f"{math.ceil(limit)}s",
               "-nostdin", "-trace_msg", "-message_file", str(trace.path),
               "-trace_err", "-error_file", str(work / "sipp.errors.log")]
        with open(work / "sipp.out", "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work)
        end, stopping = time.monotonic() + limit + 15, False
        while proc.poll() is None:
            trace.read()
            calls = list(trace.calls.values())
            progress.tick(sum(c["invite_at"] is not None and not c["ended"] for c in calls),
                          sum(c["status"] is not None and c["status"] < 300 for c in calls),
                          sum(c["status"] is not None and c["status"] >= 300 for c in calls))
            if (stop.is_set() or time.monotonic() > end) and not stopping:
                proc.send_signal(signal.SIGUSR1)  # sipp: place no more calls, finish the running ones
                stopping, end = True, time.monotonic() + 15
            elif stopping and time.monotonic() > end:
                proc.kill()
            time.sleep(0.1)
        trace.read(final=True)
        if proc.returncode != _SIPP_BIND_ERROR or trace.calls:
            break
    outcomes = trace.outcomes()
    progress.tick(0, sum(c["answered"] for c in outcomes), sum(not c["answered"] for c in outcomes), final=True)
    return outcomes, [] if proc.returncode in (0, 1) else [f"sipp exited {proc.returncode} (--workdir keeps its logs)"]


def percentiles(values: Sequence[float]) -> dict[str, Any]:
    """Nearest-rank p50/p95/p99 (None without values)."""
    s = sorted(values)
    out: dict[str, Any] = {"n": len(s)}
    for q in (50, 95, 99):
        out[f"p{q}"] = round(s[max(0, math.ceil(q / 100 * len(s)) - 1)], 1) if s else None
    return out


def summarise(calls: list[Call], args: argparse.Namespace, elapsed: float, gateway: dict[str, Any] | None,
              errors: list[str]) -> dict[str, Any]:
    failures: dict[str, dict[str, Any]] = {}
    for c in calls:
        if not c.get("answered"):
            f = failures.setdefault(str(c.get("status") or "none"), {"count": 0, "reason": c.get("reason") or ""})
            f["count"] += 1
    turns = [t for c in calls for t in c.get("turns") or []]
    rtps = [c["rtp"] for c in calls if c.get("rtp")]
    jitter = [r["rx_jitter_max_ms"] for r in rtps if r.get("rx_jitter_max_ms") is not None]
    return {
        "target": args.target, "number": args.number, "mode": "sipp" if args.sipp else "softphone",
        "calls": args.calls, "total": args.total, "rate": args.rate, "duration": args.duration,
        "elapsed_s": round(elapsed, 1), "attempted": len(calls),
        "answered": sum(bool(c.get("answered")) for c in calls), "failed": sum(not c.get("answered") for c in calls),
        "failures": dict(sorted(failures.items())),
        "setup_ms": percentiles([c["setup_ms"] for c in calls if c.get("answered") and c.get("setup_ms") is not None]),
        "turn_latency_ms": percentiles([t["latency_ms"] for t in turns if t.get("latency_ms") is not None]),
        "barge_in_stop_ms": percentiles([t["barge_in_stop_ms"] for t in turns
                                         if t.get("barge_in_stop_ms") is not None]),
        "rtp": {"calls": len(rtps), "rx_packets": sum(r.get("rx_packets") or 0 for r in rtps),
                "rx_lost": sum(r.get("rx_lost") or 0 for r in rtps), "rx_jitter_max_ms": max(jitter, default=None)},
        "gateway": gateway, "errors": errors,
    }


def format_table(s: dict[str, Any]) -> str:
    def num(v: Any) -> str:
        return "-" if v is None else f"{v:g}"

    lines = [f"loadtest {s['target']} number {s['number']} ({s['mode']}): {s['total']} calls, up to {s['calls']} "
             f"at once, {s['rate']:g}/s, {s['duration']:g} s each; {s['elapsed_s']} s",
             f"calls        attempted {s['attempted']:>6}   answered {s['answered']:>6}   failed {s['failed']:>6}"]
    for code, f in s["failures"].items():
        label = "no final response" if code == "none" else f"{code} {f['reason']}".strip()
        lines.append(f"  failed     {label:<32} {f['count']:>6}")
    lines.append(f"{'':<12} {'p50':>9} {'p95':>9} {'p99':>9} {'n':>6}")
    for key, label in (("setup_ms", "setup ms"), ("turn_latency_ms", "turn ms"), ("barge_in_stop_ms", "barge-in ms")):
        p = s[key]
        lines.append(f"{label:<12} {num(p['p50']):>9} {num(p['p95']):>9} {num(p['p99']):>9} {p['n']:>6}")
    r = s["rtp"]
    if r["calls"]:
        lines.append(f"rtp rx       packets {r['rx_packets']}   lost {r['rx_lost']}   "
                     f"max jitter {num(r['rx_jitter_max_ms'])} ms   ({r['calls']} calls)")
    if g := s["gateway"]:
        lines.append(f"gateway      cpu {g['cpu_pct']:g} % of a core (avg over {g['seconds']:g} s, with children)   "
                     f"peak rss {g['rss_peak_mib']:g} MiB ({g['processes_max']} processes)")
    return "\n".join(lines + [f"error        {e}" for e in s["errors"]])


class _TurnAction(argparse.Action):
    """--say and --turn share one ordered list of turns."""

    def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace, value: Any, opt: Any = None) -> None:
        turn = ("say" if opt == "--say" else "play", str(value))
        setattr(ns, self.dest, [*(getattr(ns, self.dest, None) or []), turn])


def _positive(text: str) -> float:
    if not (value := float(text)) > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def build_parser(prog: str = "gateway loadtest") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Place many concurrent calls and summarise what happened.")
    p.add_argument("--target", required=True, metavar="TARGET", type=target_arg,
                   help="the gateway: HOST[:PORT] or sip:[USER@]HOST[:PORT] (sips: too)")
    p.add_argument("--number", default="",
                   help="the number to call (Request-URI user; default: the --target URI's user, "
                        "else none: the gateway's default dialplan answers)")
    p.add_argument("--calls", type=int, default=4, help="concurrent calls at most (default 4)")
    p.add_argument("--total", type=int, help="calls to place in all (default: --calls)")
    p.add_argument("--rate", type=_positive, default=1.0, help="new calls per second (default 1)")
    p.add_argument("--duration", type=_positive, default=10.0,
                   help="seconds each call lasts after answer (with turns: the most a call may last)")
    p.add_argument("--say", dest="turns", action=_TurnAction, default=[], metavar="TEXT",
                   help="a caller turn spoken with the offline voice (repeatable, in order with --turn)")
    p.add_argument("--turn", dest="turns", action=_TurnAction, metavar="FILE.wav", help="a caller turn from a WAV file")
    p.add_argument("--barge-in-ms", type=float, help="start each turn this long after the far end starts speaking")
    p.add_argument("--voice", default="joe", help="offline voice for --say")
    p.add_argument("--cache-dir", type=Path, default=Path("var/cache/prompts"), help="rendered --say cache")
    p.add_argument("--sipp", action="store_true", help="signalling-only calls placed by sipp (no turns, no RTP stats)")
    p.add_argument("--gateway-pid", type=int, help="sample this process tree's CPU and RSS during the run")
    p.add_argument("--workdir", type=Path, help="keep the softphone/sipp logs here (default: a temporary directory)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def _render_turns(turns: list[tuple[str, str]], work: Path, voice: str, cache_dir: Path) -> list[str]:
    """WAV files for the turns; each --say text rendered once, for every call."""
    out: list[str] = []
    renderer: Any = None  # a PromptRenderer, imported only when a --say needs one
    for i, (kind, value) in enumerate(turns):
        if kind == "play":
            if not Path(value).is_file():
                raise ValueError(f"--turn {value}: no such file")
            out.append(str(Path(value).resolve()))
            continue
        from gateway.media.audio import save_wav
        from gateway.speech.prompts import PromptRenderer

        renderer = renderer or PromptRenderer(cache_dir, voice)  # one voice model load for all texts
        save_wav(work / f"turn-{i + 1}.wav", renderer.render(value))
        out.append(str(work / f"turn-{i + 1}.wav"))
    return out


def main(argv: Sequence[str] | None = None, prog: str = "gateway loadtest") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    args.total = args.total or args.calls
    if args.calls < 1 or args.total < 1:
        parser.error("--calls and --total must be >= 1")
    if args.sipp and args.turns:
        parser.error("--sipp calls carry no media: --say/--turn need the softphones")
    stop = threading.Event()  # SIGINT/SIGTERM: place no more calls, let the running ones end and report
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="gateway-loadtest-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            turns = _render_turns(args.turns, work, args.voice, args.cache_dir)
            monitor = TreeMonitor(args.gateway_pid) if args.gateway_pid else None
        except Exception as exc:  # a missing voice, file or process: nothing was placed yet
            print(f"{prog}: {exc}", file=sys.stderr)
            return 2
        progress, t0 = _Progress(monitor), time.monotonic()
        run = run_sipp(args, work, progress, stop) if args.sipp else run_softphones(args, turns, work, progress, stop)
        summary = summarise(run[0], args, time.monotonic() - t0, monitor.result() if monitor else None, run[1])
    print(json.dumps(summary, indent=2) if args.json else format_table(summary))
    return 0 if summary["attempted"] == args.total and summary["answered"] == args.total else 1


if __name__ == "__main__":
    sys.exit(main(prog="python -m gateway.caller.loadtest"))
