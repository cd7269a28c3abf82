"""`gateway schema`: JSON Schemas of the YAML files for editors; the shipped files validate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from gateway.cli import SCHEMAS
from gateway.config.schema import located
from tests.support.gateway import REPO

EXAMPLES = {
    "gateway": [REPO / "deploy" / "gateway.yaml", *sorted((REPO / "deploy" / "compose").glob("*.yaml"))],
    "codec-profile": [REPO / "codecs" / "default.yaml"],
    "dialplan": sorted((REPO / "dialplans").glob("*.yaml")),
    "agent-script": sorted((REPO / "dialplans" / "agents").glob("*.yaml")),
    "scenario": sorted((REPO / "scenarios").rglob("*.yaml")),
}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("schemas")
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "schema", "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(out / f"{name}.schema.json") for name in SCHEMAS]
    return {name: json.loads((out / f"{name}.schema.json").read_text()) for name in SCHEMAS}


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_each_schema_is_a_valid_json_schema(written: dict[str, dict], name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(written[name])
    assert written[name]["additionalProperties"] is False  # unknown keys are errors here too


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_the_shipped_files_validate(written: dict[str, dict], name: str) -> None:
    assert EXAMPLES[name], name
    validator = jsonschema.Draft202012Validator(written[name])
    for path in EXAMPLES[name]:
        value, _ = located(path.read_text(), str(path))
        assert [e.message for e in validator.iter_errors(value)] == [], path


def test_a_misspelt_key_or_codec_fails_the_schema(written: dict[str, dict]) -> None:
    config = jsonschema.Draft202012Validator(written["gateway"])
    assert not config.is_valid({"sip": {"prot": 5060}})
    assert not config.is_valid({"sip": {"port": 99999}})
    assert config.is_valid({"sip": {"port": 5080}, "stt": "local", "trunks": [{"name": "a", "allow": "10.0.0.0/8"}]})
    codecs = jsonschema.Draft202012Validator(written["codec-profile"])
    assert codecs.is_valid({"codecs": ["PCMU/8000"]}) and not codecs.is_valid({"codecs": ["PCMA/800"]})
