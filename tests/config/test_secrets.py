"""Secrets: never written in gateway.yaml, sent only where they belong, never in logs, records
or webhooks."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gateway.config import secrets as gsecrets
from gateway.config.settings import Settings, read_settings
from gateway.errors import ProviderError
from tests.support import wait_until
from tests.support.agents import plans_dir, serving, tool_agent
from tests.support.gateway import GatewayProcess
from tests.support.kamailio import KamailioRegistrar
from tests.support.phones import call
from tests.support.speech import speech_wav


def errors_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    settings, errors = read_settings(path)
    return [str(e) for e in errors]


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


TRUNK = """trunks:
  - name: carrier
    registrar: sip:sip.carrier.example
    username: gw1
    realm: sip.carrier.example
"""


# -- a secret written in the file is an error that says where to put it ----------------------------


@pytest.mark.parametrize(("text", "line", "hint", "value"), [
    ("llm: {base_url: 'http://127.0.0.1:8000/v1',\n      api_key: sk-written}\n", 2, "api_key_env",
     "sk-written"),
    ("provider_options:\n  deepgram:\n    model: nova-3\n    api_key: dg-written\n", 4,
     "DEEPGRAM_API_KEY", "dg-written"),
    ("provider_options:\n  deepgram:\n    access_token: dg-written\n", 3, "secrets file", "dg-written"),
    ("provider_options:\n  google: {private_key: pk-written}\n", 2, "GOOGLE_APPLICATION_CREDENTIALS",
     "pk-written"),
    (TRUNK + "    password: pw-written\n", 6, "password_env: CARRIER_PASSWORD", "pw-written"),
    (TRUNK + "    password_ha1: 0123456789abcdef0123456789abcdef\n", 6, "/run/secrets/carrier_password",
     "0123456789abcdef"),
])
def test_a_secret_written_in_yaml_is_an_error_at_its_line(tmp_path, text, line, hint, value):
    errors = errors_of(tmp_path, text)
    assert any(e.startswith(f"{tmp_path}/gateway.yaml:{line}:") and hint in e for e in errors), errors
    assert not any(value in e for e in errors)


def test_gateway_check_reports_it(tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text("provider_options:\n  deepgram:\n    api_key: dg-written-in-yaml\n")
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "check", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"{config}:3:" in done.stderr and "api_key_file" in done.stderr
    assert "dg-written-in-yaml" not in done.stderr + done.stdout


# -- *_env and *_file --------------------------------------------------------------------------------


def test_secret_files_are_read_relative_to_the_config_and_checked(tmp_path, monkeypatch):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "carrier").write_text("pw-from-file\n")  # `echo` adds the newline
    (tmp_path / "secrets" / "dg").write_text("dg-from-file")
    (tmp_path / "secrets" / "empty").write_text("\n")
    config = tmp_path / "gateway.yaml"
    config.write_text(TRUNK + "    password_file: secrets/carrier\n"
                      "stt: [deepgram, local]\n"
                      "provider_options:\n  deepgram: {api_key_file: secrets/dg}\n")
    settings, errors = read_settings(config)
    assert errors == [] and settings is not None
    carrier = settings.trunks[0]
    assert carrier.password is not None and carrier.password.read() == "pw-from-file"
    assert settings.provider_options["deepgram"] == {"api_key_file": str(tmp_path / "secrets" / "dg")}
    assert gsecrets.resolve_api_key("deepgram", settings.provider_options["deepgram"]) == {
        "api_key": "dg-from-file"}

    assert any(":6:" in e and "cannot read secret file" in e
               for e in errors_of(tmp_path, TRUNK + "    password_file: secrets/missing\n"))
    assert any(":6:" in e and "is empty" in e
               for e in errors_of(tmp_path, TRUNK + "    password_file: secrets/empty\n"))
    monkeypatch.delenv("SURELY_UNSET_KEY", raising=False)
    assert any(":2:" in e and "SURELY_UNSET_KEY is not set" in e for e in errors_of(
        tmp_path, "llm:\n  api_key_env: SURELY_UNSET_KEY\n  base_url: http://127.0.0.1:1/v1\n"))


def test_registering_trunk_needs_its_realm_and_one_password(tmp_path, monkeypatch):
    monkeypatch.setenv("CARRIER_PASSWORD", "pw")
    no_realm = TRUNK.replace("    realm: sip.carrier.example\n", "") + "    password_env: CARRIER_PASSWORD\n"
    assert any(":2:" in e and "no realm" in e for e in errors_of(tmp_path, no_realm))
    star = TRUNK.replace("realm: sip.carrier.example", 'realm: "*"') + "    password_env: CARRIER_PASSWORD\n"
    assert any(":5:" in e and "not '*'" in e for e in errors_of(tmp_path, star))
    assert any(":2:" in e and "no password" in e for e in errors_of(tmp_path, TRUNK))
    both = TRUNK + "    password_env: CARRIER_PASSWORD\n    password_file: /run/secrets/x\n"
    assert any(":7:" in e and "not both" in e for e in errors_of(tmp_path, both))


def test_ha1_must_look_like_one_and_is_never_printed(tmp_path, monkeypatch):
    monkeypatch.setenv("CARRIER_HA1", "not-an-md5-digest")
    errors = errors_of(tmp_path, TRUNK + "    password_ha1_env: CARRIER_HA1\n")
    assert any(":6:" in e and "32 hex digits" in e for e in errors), errors
    assert not any("not-an-md5-digest" in e for e in errors)
    monkeypatch.setenv("CARRIER_HA1", md5("gw1:sip.carrier.example:pw").upper())
    assert errors_of(tmp_path, TRUNK + "    password_ha1_env: CARRIER_HA1\n") == []


def test_settings_and_trunk_repr_name_secrets_without_their_values(tmp_path, monkeypatch):
    monkeypatch.setenv("CARRIER_PASSWORD", "pw-value-in-env")
    monkeypatch.setenv("MY_LLM_KEY", "llm-value-in-env")
    config = tmp_path / "gateway.yaml"
    config.write_text(TRUNK + "    password_env: CARRIER_PASSWORD\n"
                      "llm: {base_url: 'http://127.0.0.1:1/v1', api_key_env: MY_LLM_KEY}\n")
    settings, errors = read_settings(config)
    assert errors == [] and isinstance(settings, Settings)
    text = repr(settings) + str(settings.trunks[0])
    assert "CARRIER_PASSWORD" in text and "MY_LLM_KEY" in text
    assert "pw-value-in-env" not in text and "llm-value-in-env" not in text


def test_secret_values_read_are_masked_in_log_records(caplog):
    value = "masked-" + secrets.token_hex(8)
    gsecrets.mask(value)
    logging.getLogger("websockets.client").warning("> Authorization: Token %s", value)
    try:
        raise RuntimeError(f"bad key {value}")
    except RuntimeError:
        logging.getLogger("gateway").exception("failed")
    assert value not in caplog.text and "Token ********" in caplog.text


# -- provider keys go only to the provider's own host ------------------------------------------------


def test_openai_key_never_goes_to_another_base_url(monkeypatch):
    from gateway.speech import registry
    from tests.fakes.openai_server import FakeOpenAI

    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-openai-key")
    monkeypatch.setenv("LOCAL_LLM_KEY", "sk-local-server-key")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)

    async def scenario() -> list[str]:
        async with FakeOpenAI() as fake:
            plain = registry.make_llm("openai", base_url=fake.base_url)
            paired = registry.make_llm("openai", base_url=fake.base_url, api_key_env="LOCAL_LLM_KEY")
            for llm in (plain, paired):
                async for _ in llm.chat([{"role": "user", "content": "hi"}]):
                    pass
                await llm.aclose()
            return [r.headers.get("authorization", "") for r in fake.requests]

    assert asyncio.run(scenario()) == ["Bearer unused", "Bearer sk-local-server-key"]
    # OpenAI's own host, and only over TLS, gets OPENAI_API_KEY.
    from gateway.speech.vendors.openai_llm import is_openai_host

    assert is_openai_host(None) and is_openai_host("https://api.openai.com/v1")
    assert not is_openai_host("http://api.openai.com/v1")
    assert not is_openai_host("https://api.openai.com.evil.example/v1")
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ProviderError, match="OPENAI_API_KEY"):
        registry.make_llm("openai", base_url="https://api.openai.com/v1")


def test_deepgram_key_never_goes_to_another_url(monkeypatch):
    from gateway.speech import registry
    from tests.fakes.deepgram_server import FakeDeepgram

    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-real-deepgram-key")
    monkeypatch.setenv("OWN_DG_KEY", "dg-own-key")

    async def scenario() -> list[str]:
        async with FakeDeepgram() as fake:
            for options in ({"url": fake.url}, {"url": fake.url, "api_key_env": "OWN_DG_KEY"}):
                stream = registry.make_stt("deepgram", **options).stream()
                stream.push_audio(b"\0" * 320)
                await asyncio.sleep(0.3)
                await stream.aclose()
            return [s.headers.get("Authorization", s.headers.get("authorization", "")) for s in fake.sessions]

    assert asyncio.run(scenario()) == ["Token unused", "Token dg-own-key"]


# -- registration: HA1, and credentials offered to the trunk's realm only -----------------------------


def trunk(registrar: KamailioRegistrar, user: str, **secret: str) -> dict:
    return {"name": f"carrier-{user}", "registrar": f"sip:127.0.0.1:{registrar.port};transport=tcp",
            "username": user, "expiry": 60, "realm": "127.0.0.1", **secret}


def test_credentials_are_offered_to_the_trunk_realm_only(tmp_path):
    with KamailioRegistrar("gw1", "s3cret") as registrar:
        extra = {"trunks": [{"name": "local", "allow": ["127.0.0.1/32"]},
                            {**trunk(registrar, "gw1", password_env="GW_PW"), "realm": "elsewhere.example"}]}
        with GatewayProcess(tmp_path, extra=extra, env={"GW_PW": "s3cret"}) as gw:
            assert wait_until(lambda: "registration failed" in gw.log(), 10), gw.log()
            assert wait_until(lambda: registrar.register_count("gw1") >= 2, 8)
        # Challenged by 127.0.0.1, never answered: no credentials were sent.
        kinds = {e.kind for e in registrar.events() if e.user == "gw1"}
        assert kinds <= {"rcv", "challenged"}, kinds


# -- the whole gateway: no secret value in its log, records, journal, metrics or webhooks ------------




class _Hook(BaseHTTPRequestHandler):
    seen: list[str] = []  # each request as it arrived: request line, headers, body

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        _Hook.seen.append(f"{self.requestline}\n{self.headers}\n{body}")
        answer = b'{"free_slot": "three pm"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


def test_no_secret_reaches_logs_records_webhooks_or_metrics(tmp_path):
    from tests.fakes.deepgram_server import FakeDeepgram, Utterance
    from tests.fakes.openai_server import FakeOpenAI, Reply, ScriptedToolCall

    token = secrets.token_hex(6)
    pw1, pw2 = f"trunk-one-{token}", f"trunk-two-{token}"
    ha2 = md5(f"gw2:127.0.0.1:{pw2}")
    values = {
        "file password": pw1, "its HA1": md5(f"gw1:127.0.0.1:{pw1}"),
        "password of the HA1": pw2, "HA1 in the environment": ha2,
        "DEEPGRAM_API_KEY": f"dg-default-{token}", "named Deepgram key": f"dg-own-{token}",
        "OPENAI_API_KEY": f"sk-openai-{token}", "webhook signing secret": f"hook-{token}",
    }
    (tmp_path / "trunk1_password").write_text(pw1 + "\n")
    env = {"GW2_HA1": ha2, "DG_OWN_KEY": values["named Deepgram key"],
           "DEEPGRAM_API_KEY": values["DEEPGRAM_API_KEY"], "OPENAI_API_KEY": values["OPENAI_API_KEY"],
           "HOOK_SECRET": values["webhook signing secret"]}
    dg = FakeDeepgram([Utterance("I would like an appointment on Friday.", after_bytes=16000)],
                      api_key=values["named Deepgram key"])
    llm = FakeOpenAI([Reply(tool_calls=[ScriptedToolCall("check_slot", '{"day": "friday"}')]),
                      Reply(text_pieces=["Friday ", "works."])])
    _Hook.seen = []
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    with KamailioRegistrar("gw1", pw1, extra_users={"gw2": pw2}) as registrar, serving(dg), serving(llm):
        plans = plans_dir(tmp_path, {"secrets": tool_agent("secrets", hook.server_address[1], secret_env="HOOK_SECRET")})
        turn = speech_wav(tmp_path, "ask", "I would like an appointment on Friday.")
        extra = {
            "log_level": "debug",  # the most a log can say
            # Both register to the real Kamailio: one with a secrets file, one with an HA1.
            "trunks": [{"name": "local", "allow": ["127.0.0.1/32"]},
                       trunk(registrar, "gw1", password_file=str(tmp_path / "trunk1_password")),
                       trunk(registrar, "gw2", password_ha1_env="GW2_HA1")],
            "stt": ["deepgram", "local"],
            "provider_options": {"deepgram": {"url": dg.url, "api_key_env": "DG_OWN_KEY"}},
            "llm": {"provider": "openai", "base_url": llm.base_url, "model": "test"},
        }
        with GatewayProcess(tmp_path, plans, extra=extra, env=env) as gw:
            for user in ("gw1", "gw2"):
                assert wait_until(lambda u=user: registrar.registered_contacts(u), 15), gw.log()
            out = call(gw.target, "+15550301", "--turn", str(turn), "--greeting-wait", "5",
                       "--hangup-after", "6", "--max-duration", "40")["calls"][0]
            gw.wait_records(1)
            metrics = gw.metrics()
        journal = Path(f"{gw.records}.journal")
        check = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "check", "--config", str(gw.config_path)],
            capture_output=True, text=True, timeout=60, env=gw.env)
    hook.shutdown()
    assert out["status"] == 200
    assert dg.sessions, gw.log()  # the recogniser was reached with its own key...
    assert llm.requests and {r.headers.get("authorization") for r in llm.requests} == {"Bearer unused"}
    assert check.returncode == 0, check.stderr
    assert len(_Hook.seen) == 1 and "X-Gateway-Signature" in _Hook.seen[0], gw.log()
    places = {"log": gw.log(), "records": gw.records.read_text(), "metrics": metrics,
              "journal": journal.read_text(),
              "webhook": "\n".join(_Hook.seen), "check": check.stdout + check.stderr}
    leaks = [(what, where) for what, value in values.items() for where, text in places.items()
             if value in text]
    assert leaks == []
