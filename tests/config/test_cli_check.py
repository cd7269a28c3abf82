"""`gateway check`: every error as file:line, non-zero exit; the shipped files pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.gateway import REPO


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "check", *args],
                          capture_output=True, text=True, timeout=60)


def test_shipped_config_and_dialplans_pass():
    done = check("--dialplans", str(REPO / "dialplans"))
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout


def test_every_dialplan_error_is_reported_with_file_and_line(tmp_path: Path):
    (tmp_path / "+1555.yaml").write_text(
        'numbers: ["+1555"]\n'
        "flow:\n"
        "  - sya: hello\n"          # line 3: unknown step
        "  - pause: -1\n")           # line 4: negative pause
    (tmp_path / "+1666.yaml").write_text('numbers: ["+1666"]\nreject: 99\n')  # line 2
    (tmp_path / "default.yaml").write_text("reject: 404\n")
    done = check("--dialplans", str(tmp_path))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert any(line.startswith(f"{tmp_path}/+1555.yaml:3:") for line in lines), lines
    assert any(line.startswith(f"{tmp_path}/+1555.yaml:4:") for line in lines), lines
    assert any(line.startswith(f"{tmp_path}/+1666.yaml:2:") for line in lines), lines


def test_config_errors_point_at_the_line(tmp_path: Path):
    config = tmp_path / "gateway.yaml"
    config.write_text("sip:\n  port: 99999\nworkers: 2\n")
    done = check("--config", str(config))
    assert done.returncode == 1
    assert f"{config}:2:" in done.stderr


def test_scale_settings_are_checked(tmp_path: Path):
    config = tmp_path / "gateway.yaml"
    config.write_text("sip:\n  rtp_port_count: 10\nworkers: 4\ncalls_per_worker: 4\n")
    done = check("--config", str(config))
    assert done.returncode == 1
    assert "rtp_port_count" in done.stderr


def test_trunk_password_must_come_from_the_environment(tmp_path: Path):
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "trunks:\n"
        "  - name: carrier\n"
        "    registrar: sip:127.0.0.1\n"
        "    username: gw\n"
        "    password_env: SURELY_UNSET_PASSWORD_VAR\n")
    done = check("--config", str(config))
    assert done.returncode == 1
    assert f"{config}:5:" in done.stderr and "SURELY_UNSET_PASSWORD_VAR" in done.stderr


def test_check_reports_every_config_error_at_once(tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text("sip:\n  port: 0\nlog_level: loud\nsecurity:\n  unknown_sources: ignore\n")
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "check", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "gateway.yaml:2:" in result.stderr and "gateway.yaml:3:" in result.stderr
    assert "gateway.yaml:5:" in result.stderr and "unknown_sources" in result.stderr


def _no_keys() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items()
            if k not in ("DEEPGRAM_API_KEY", "GOOGLE_APPLICATION_CREDENTIALS", "OPENAI_API_KEY")}


def test_a_missing_provider_key_is_reported_by_check_and_run(tmp_path: Path):
    config = tmp_path / "gateway.yaml"
    config.write_text("stt: [deepgram, local]\ntts: google\nllm: {provider: openai, model: gpt-4o-mini}\n")
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "check", "--config", str(config),
                           "--dialplans", str(REPO / "dialplans")],
                          capture_output=True, text=True, timeout=60, env=_no_keys())
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert any(line.startswith("stt: deepgram: no API key: set DEEPGRAM_API_KEY") for line in lines), lines
    assert any(line.startswith("tts: google: no credentials") for line in lines), lines
    assert any(line.startswith("llm: openai:") and "OPENAI_API_KEY" in line for line in lines), lines
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "--config", str(config)],
                         capture_output=True, text=True, timeout=60, env=_no_keys(), cwd=tmp_path)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert "gateway run: stt: deepgram: no API key: set DEEPGRAM_API_KEY" in run.stderr
