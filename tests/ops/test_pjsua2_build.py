"""scripts/build-pjsua2 without compiling: it parses, pins every source by sha256, answers from
its cache at once, and is what deploy/Dockerfile builds with. The module self-test runs when the
installed pjsua2 is such a build (the stock wheel's 4-call limit is what the build replaces)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "build-pjsua2"
SELFTEST = ROOT / "deploy" / "pjproject" / "selftest.py"


def _run(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cache), "GATEWAY_CACHE": str(cache)}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=30)


def test_script_parses_and_pins_its_sources() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    text = SCRIPT.read_text()
    sources = re.search(r"^SOURCES=\((.*?)^\)", text, re.S | re.M).group(1)
    entries = [line.strip().strip('"') for line in sources.splitlines() if line.strip()]
    assert entries
    for entry in entries:
        url, sha, top = entry.split()
        assert url.startswith(("http://", "https://")), entry
        assert re.fullmatch(r"[0-9a-f]{64}", sha), entry
        assert top, entry


def test_cached_wheel_is_printed_without_building(tmp_path: Path) -> None:
    key = _run("--key", sys.executable, cache=tmp_path)
    assert key.returncode == 0, key.stderr
    assert re.fullmatch(r"[0-9a-f]{16}\n", key.stdout)
    wheel = tmp_path / "pjsua2" / key.stdout.strip() / "pjsua2-2.17-cp311-cp311-linux_x86_64.whl"
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b"")
    done = _run(sys.executable, cache=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{wheel}\n"
    assert done.stderr == ""


def test_dockerfile_builds_with_the_script() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "./scripts/build-pjsua2 python" in text
    assert "COPY scripts/build-pjsua2 " in text


def test_installed_build_passes_its_self_test() -> None:
    pj = pytest.importorskip("pjsua2")
    if pj.UaConfig().maxCalls < 512:
        pytest.skip("the stock pjsua2-python wheel is installed (GATEWAY_PJSUA2=wheel)")
    done = subprocess.run([sys.executable, str(SELFTEST)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "max calls" in done.stdout.splitlines()[-1]


def test_softphone_call_limit_matches_the_installed_module() -> None:
    pj = pytest.importorskip("pjsua2")
    from gateway.sip.phone.cli import MAX_CALLS

    assert MAX_CALLS == pj.UaConfig().maxCalls
