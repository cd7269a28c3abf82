"""Codec profiles: a closed set of codec names; a misspelt one is an error at its line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config.codecs import CODECS, load_codec_profile, read_codec_profile
from gateway.config.settings import DEFAULT_CODECS, read_settings


def test_shipped_profile_names_known_codecs() -> None:
    codecs = load_codec_profile(DEFAULT_CODECS)
    assert codecs == ("PCMU/8000", "PCMA/8000", "G722/16000")
    assert set(codecs) <= set(CODECS)


def test_a_misspelt_codec_is_an_error_at_its_line_with_a_hint(tmp_path: Path) -> None:
    profile = tmp_path / "codecs.yaml"
    profile.write_text("# offer order\ncodecs:\n  - PCMU/8000\n  - PCMA/800\n")
    codecs, errors = read_codec_profile(profile)
    assert codecs is None
    assert [str(e).split(" (")[0] for e in errors] == [f"{profile}:4: unknown codec 'PCMA/800'"]
    assert "did you mean 'PCMA/8000'?" in errors[0].message


def test_profile_mistakes(tmp_path: Path) -> None:
    profile = tmp_path / "codecs.yaml"
    for text, line, message in [
        ("codecs: []\n", 1, "must not be an empty list"),
        ("codecs:\n  - PCMU/8000\n  - pcmu/8000\n", 3, "codec 'PCMU/8000' is listed twice"),
        ("codec: [PCMU/8000]\n", 1, "did you mean 'codecs'?"),
        ("", 1, "file is empty"),
    ]:
        profile.write_text(text)
        errors = read_codec_profile(profile)[1]
        assert any(e.line == line and message in e.message for e in errors), (text, errors)
    profile.write_text("codecs: [g722/16000, PCMU/8000]\n")
    assert load_codec_profile(profile) == ("G722/16000", "PCMU/8000")  # any case, as pjmedia matches


def test_gateway_check_reads_the_profile_the_config_names(tmp_path: Path) -> None:
    (tmp_path / "codecs.yaml").write_text("codecs:\n  - PCMU/8000\n  - G729/8000\n")
    config = tmp_path / "gateway.yaml"
    config.write_text("codec_profile: codecs.yaml\n")
    assert [e.line for e in read_settings(config)[1]] == [3]
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "check", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"{tmp_path / 'codecs.yaml'}:3: unknown codec 'G729/8000'" in done.stderr


def test_a_codec_the_loaded_module_lacks_is_an_error_at_its_line(tmp_path: Path) -> None:
    profile = tmp_path / "codecs.yaml"
    profile.write_text("codecs:\n  - PCMU/8000\n  - opus/48000\n")
    stock = ("PCMU/8000", "PCMA/8000", "G722/16000", "GSM/8000")  # the stock wheel: no Opus
    codecs, errors = read_codec_profile(profile, stock)
    assert codecs is None
    assert [(e.line, e.message.split(" (")[0]) for e in errors] == [
        (3, "codec 'opus/48000' is not in the pjsua2 module in use")]
    assert "GSM/8000" in errors[0].message  # says what the module has
    assert read_codec_profile(profile, ("pcmu/8000", "OPUS/48000"))[0] == ("PCMU/8000", "opus/48000")


def test_gateway_check_reports_the_module_and_checks_the_profile_against_it(tmp_path: Path) -> None:
    pj = pytest.importorskip("pjsua2")
    (tmp_path / "codecs.yaml").write_text("codecs:\n  - opus/48000\n  - PCMU/8000\n")
    config = tmp_path / "gateway.yaml"
    config.write_text("codec_profile: codecs.yaml\n")
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "check", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    max_calls = pj.UaConfig().maxCalls
    has_opus = max_calls >= 512  # the gateway's own build; the stock wheel (4 calls) has none
    if has_opus:
        assert done.returncode == 0, done.stderr
        summary = done.stdout.splitlines()[-1]
        assert summary.startswith("pjsua2 2.17: up to 512 calls per worker; codecs "), summary
        assert "opus/48000" in summary and "TLS yes" in summary and "AES_CM_128_HMAC_SHA1_80" in summary
    else:
        assert done.returncode == 1
        assert f"{tmp_path / 'codecs.yaml'}:2: codec 'opus/48000' is not in the pjsua2 module" in done.stderr


def test_shipped_profiles_are_valid_and_the_build_has_their_codecs() -> None:
    pj = pytest.importorskip("pjsua2")
    from gateway.sip.build import probe

    profiles = sorted((DEFAULT_CODECS.parent).glob("*.yaml"))
    assert {p.name for p in profiles} >= {"default.yaml", "pstn.yaml", "wideband.yaml"}
    assert load_codec_profile(DEFAULT_CODECS.parent / "pstn.yaml") == ("PCMU/8000", "PCMA/8000")
    available = probe().codecs
    for profile in profiles:
        codecs, errors = read_codec_profile(profile, available if pj.UaConfig().maxCalls >= 512 else None)
        assert errors == [] and codecs, (profile, errors)
