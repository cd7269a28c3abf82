"""The data-sovereignty promise: with no keys and the default config, a whole call (answer,
disclosure, the caller's words recognised, the agent's voice, the record) needs nothing but
loopback. The call runs in a network namespace that has only `lo`, and an audit hook in the
gateway's Python records every socket destination it connects or sends to: all are loopback.
(pjsip's own sockets are C, not seen by the hook: the namespace is what holds them in.)"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys

import pytest

from tests.sip.test_torture import _unshare
from tests.support.agents import plans_dir
from tests.support.gateway import REPO
from tests.support.speech import speech_wav

PAY = """
name: pay
steps:
  - gather: {name: card, prompt: "What is your card number?", confirm: never}
  - say: "Thank you."
  - hangup: true
"""


def _loopback(entry: dict) -> bool:
    to = entry["to"]
    if isinstance(to, str):
        return True  # an AF_UNIX path: this machine
    host = str(to[0])
    if entry["event"] == "socket.getaddrinfo":
        return host in ("localhost", "None", "") or _is_loopback_ip(host)
    return _is_loopback_ip(host)


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def test_a_whole_call_on_the_offline_engines_touches_only_loopback(tmp_path):
    prefix, why = _unshare()
    if prefix is None:
        pytest.skip(why)
    plans_dir(tmp_path, {"pay": PAY})
    speech_wav(tmp_path, "card", "My card number is 4111 1111 1111 1111.")
    run = subprocess.run([*prefix, sys.executable, "-m", "tests.worker.offline_call", str(tmp_path)],
                         capture_output=True, text=True, timeout=240, cwd=REPO)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == 200, result["log"]
    record = result["records"][-1]
    assert record["outcome"] in ("completed", "caller_hangup"), result["log"]

    # Every destination any process of the gateway (pid) tried: loopback only.
    sockets = [json.loads(line) for line in (tmp_path / "sockets.jsonl").read_text().splitlines()]
    gateway = [s for s in sockets if s["pid"] == result["gateway_pid"]]
    assert gateway, "the audit hook saw nothing: it did not load"
    assert [s for s in sockets if not _loopback(s)] == []

    # The record: PII redacted everywhere, every step in the audit chain, which verifies.
    kinds = [e["kind"] for e in record["audit"]]
    assert kinds[:3] == ["routed", "answered", "disclosure"] and kinds[-1] == "hangup", kinds
    assert "caller_turn" in kinds and "agent_turn" in kinds
    stored = json.dumps(record)
    assert "4111" not in stored and "[CARD]" in stored, record["transcript"]
    assert "You're speaking with an automated assistant." in result["show"]
    assert result["verify"][0] == 0 and "intact" in result["verify"][1]
    assert record["variables"]["called"] == "+15550301" and "[CARD]" in record["variables"]["card"]
