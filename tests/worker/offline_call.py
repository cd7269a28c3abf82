"""One whole call on the default offline engines, for `unshare -n` (loopback only): run by
tests/worker/test_offline.py as `python -m tests.worker.offline_call TMP`; writes TMP/result.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.gateway import REPO, GatewayProcess
from tests.support.phones import call


def main(tmp: Path) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    env = {"PYTHONPATH": str(REPO / "tests" / "support" / "socket_audit"),
           "GATEWAY_TEST_SOCKET_LOG": str(tmp / "sockets.jsonl")}
    gw = GatewayProcess(tmp, tmp / "dialplans", env=env)
    # The repo stays on the path beside the hook (GatewayProcess puts it first).
    gw.env["PYTHONPATH"] = f"{REPO}:{env['PYTHONPATH']}"
    with gw:
        out = call(gw.target, "+15550301", "--turn", str(tmp / "card.wav"), "--greeting-wait", "6",
                   "--hangup-after", "6", "--max-duration", "60", timeout=120)["calls"][0]
        records = gw.wait_records(1, timeout=20)
        pid = gw.proc.pid if gw.proc else 0
    cli = [sys.executable, "-m", "gateway.cli", "calls"]
    show = subprocess.run([*cli, "show", records[-1]["call_id"], "--records", str(gw.records)],
                          capture_output=True, text=True, timeout=60)
    verify = subprocess.run([*cli, "verify", "--records", str(gw.records)], capture_output=True, text=True, timeout=60)
    (tmp / "result.json").write_text(json.dumps({
        "status": out["status"], "records": records, "gateway_pid": pid, "show": show.stdout + show.stderr,
        "verify": [verify.returncode, verify.stdout + verify.stderr], "log": gw.log()[-4000:]}, default=str))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
