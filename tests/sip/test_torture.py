"""RFC 4475 SIP torture messages replayed at a real gateway, one test per message.

The messages carry foreign addresses, so the replay (tests/support/torture.py) runs inside a
private network namespace with nothing but loopback (`unshare -n`) and starts the gateway there;
it runs once for the module and each test checks its own message's row of INDEX.tsv:
  - the gateway still answers OPTIONS afterwards (and logged no traceback);
  - one request gets at most one final answer (dblreq: the INVITE after Content-Length is ignored);
  - never a 2xx where no_2xx=yes, and a 2xx to an SDP offer shares a codec with it;
  - the first final code matches `expect`: alternatives `a|b`, `2xx`, `~400` (a final response
    other than 400: a valid request must be answered), `drop` (no response within ~1 s), `any`.
Every request meets the strict SIP edge (gateway/sip/strict.py, sent from the pjsip module of
gateway/sip/pjfilter.py) before pjsip's transaction layer; rows marked xfail are dropped by
pjsip's parser before any module sees them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.sip.message import problems
from tests.support.gateway import REPO
from tests.support.torture import NOT_ISOLATED, TORTURE, read_index


class Unexpected(AssertionError):
    """The gateway's answer is not what the row expects (the only failure an xfail covers)."""


_URI_SCHEME = ("pjsip's parser (2.15 and 2.17) drops this datagram as a 'Request Line' syntax "
               "error before any module sees it, so no 416 can be sent; answering it needs a parser "
               "patch in the project's pjproject build")

XFAIL = {
    "unkscm": _URI_SCHEME,
    "novelsc": _URI_SCHEME,
}

ROWS = read_index(TORTURE) if (TORTURE / "INDEX.tsv").is_file() else []


def _params() -> list:
    if not ROWS:
        return [pytest.param(None, id="torture-set-missing")]
    out = []
    for row in ROWS:
        name = Path(row["file"]).stem
        marks = [pytest.mark.xfail(strict=True, raises=Unexpected, reason=XFAIL[name])] \
            if name in XFAIL else []
        out.append(pytest.param(row, id=name, marks=marks))
    return out


def _unshare() -> tuple[list[str] | None, str]:
    """The command prefix that gives a private network namespace here, or why none does."""
    if shutil.which("unshare") is None:
        return None, "unshare (util-linux) is not installed"
    why = ""
    for prefix in (["unshare", "-n"], ["unshare", "-r", "-n"]):
        try:
            done = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = str(exc)
            continue
        if done.returncode == 0:
            return prefix, ""
        why = done.stderr.strip() or f"exit {done.returncode}"
    return None, f"`unshare -n` is not permitted here ({why})"


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not ROWS:
        pytest.skip(f"RFC 4475 torture set not found: {TORTURE}/INDEX.tsv "
                    "(shared/ is expected beside the repository)")
    prefix, why = _unshare()
    if prefix is None:
        pytest.skip(f"cannot replay the torture messages in isolation: {why}")
    out = tmp_path_factory.mktemp("torture") / "results.json"
    cmd = [*prefix, sys.executable, str(REPO / "tests" / "support" / "torture.py"), "--out", str(out),
           "--torture", str(TORTURE)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=150)
    if done.returncode == NOT_ISOLATED:
        pytest.skip(f"network namespace is not isolated: {done.stderr.strip()}")
    assert done.returncode == 0, f"replay failed ({done.returncode}):\n{done.stderr[-4000:]}"
    report = json.loads(out.read_text())
    gateway = report["gateway"]
    assert gateway["exit"] == 0, f"gateway exited {gateway['exit']}:\n{gateway['log_tail']}"
    return report["results"]


def matches(expect: str, final: int | None) -> bool:
    for alt in expect.split("|"):
        alt = alt.strip()
        if alt == "any" or (alt == "drop" and final is None):
            return True
        if final is None or alt == "drop":
            continue
        if alt == "2xx":
            ok = 200 <= final < 300
        elif alt.startswith("~"):
            ok = final != int(alt[1:])
        else:
            ok = final == int(alt)
        if ok:
            return True
    return False


def _payloads(sdp: str) -> set[str]:
    """Audio codecs of an SDP: static payload numbers, and encoding names from rtpmap."""
    found: set[str] = set()
    dynamic: dict[str, str] = {}
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("a=rtpmap:"):
            pt, _, enc = line[len("a=rtpmap:"):].partition(" ")
            dynamic[pt.strip()] = enc.split("/")[0].strip().lower()
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m=audio"):
            for pt in line.split()[3:]:
                found.add(dynamic.get(pt, pt))
    return found


@pytest.mark.parametrize("row", _params())
def test_torture_message(replay: dict, row: dict) -> None:
    result = replay[row["file"]]
    name = Path(row["file"]).stem
    assert not result["error"], f"{name}: replay error\n{result['error']}"
    assert result["gateway_running"], f"{name}: the gateway died\n{result['log']}"
    assert result["alive"], \
        f"{name}: no answer to OPTIONS afterwards ({result['options_code']})\n{result['log']}"
    assert not re.search(r"Traceback|error on the SIP thread", result["log"]), result["log"]
    assert len(result["finals"]) <= 1, f"{name}: several final answers {result['finals']}"
    final = result["final"]
    if row["no_2xx"] == "yes" and final is not None and 200 <= final < 300:
        raise Unexpected(f"{name}: answered {final} although {row['class']} (no 2xx allowed)")
    if final is not None and 200 <= final < 300 and result["answer_sdp"]:
        offer = (TORTURE / row["file"]).read_text(errors="replace").split("\r\n\r\n", 1)[-1]
        assert _payloads(offer) & _payloads(result["answer_sdp"]), \
            f"{name}: 2xx answer shares no codec with the offer"
    if not matches(row["expect"], final):
        got = "no response (drop)" if final is None else str(final)
        raise Unexpected(f"{name}: expected {row['expect']}, got {got}; all: {result['codes']}")


def _invite(extra: str, body: str = "v=0\r\n", ctype: str = "application/sdp") -> str:
    return ("INVITE sip:+15550100@gw SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
            "From: <sip:a@x>;tag=1\r\nTo: <sip:+15550100@gw>\r\nCall-ID: c@x\r\nCSeq: 1 INVITE\r\n"
            f"Max-Forwards: 70\r\n{extra}Content-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}")


@pytest.mark.parametrize("extra,expected", [
    ("Accept: text/nobodyKnowsThis\r\n", 406),                       # sdp01
    ("Accept: text/plain, application/sdpx\r\n", 406),              # not application/sdp
    ("Accept: application/sdp;q=0, text/plain\r\n", 406),           # q=0: not acceptable
    ("Accept: text/plain\r\nAccept: application/SDP;q=0.5\r\n", None),  # several Accept lines
    ("Accept: application/*\r\n", None),
    ("Accept: */*;q=0.1\r\n", None),
    ("Content-Encoding: gzip\r\n", 415),
    ("e: deflate\r\n", 415),
    ("Content-Encoding: identity\r\n", None),
    ("l: 6\r\n", 400),                                               # two Content-Lengths (mcl01)
])
def test_invite_refusals(extra: str, expected: int | None) -> None:
    found = problems(_invite(extra))
    assert (found[0] if found else None) == expected
