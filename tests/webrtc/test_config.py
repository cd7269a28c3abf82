"""The http and webrtc sections of gateway.yaml: defaults, values, and errors at their lines."""

from __future__ import annotations

from gateway.config.settings import read_settings


def _read(tmp_path, text: str):  # noqa: ANN202
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return read_settings(path)


def test_defaults_serve_http_on_loopback_8080_with_ice_on_that_address(tmp_path):
    settings, errors = _read(tmp_path, "{}\n")
    assert not errors
    assert (settings.http_address, settings.http_port) == ("127.0.0.1", 8080)
    assert settings.webrtc_ice_addresses == () and settings.webrtc_ice_servers == ()


def test_ice_addresses_servers_and_a_named_turn_credential(tmp_path, monkeypatch):
    monkeypatch.setenv("TURN_PASSWORD", "s3cret")
    settings, errors = _read(tmp_path, """
http: {address: 127.0.0.1, port: 0}
webrtc:
  ice_addresses: [127.0.0.1, 192.0.2.10]
  ice_servers:
    - urls: ["stun:127.0.0.1:3478"]
    - {urls: ["turn:127.0.0.1:3478"], username: gw, credential_env: TURN_PASSWORD}
  connect_timeout: 5
  max_calls: 12
""")
    assert not errors, errors
    assert settings.http_port == 0
    assert settings.webrtc_ice_addresses == ("127.0.0.1", "192.0.2.10")
    turn = settings.webrtc_ice_servers[1]
    assert turn.username == "gw" and turn.credential.read() == "s3cret"
    assert (settings.webrtc_connect_timeout, settings.webrtc_max_calls) == (5, 12)


def test_errors_name_their_line(tmp_path):
    _, errors = _read(tmp_path, """
webrtc:
  ice_addresses: [localhost]
  ice_servers:
    - {urls: ["http://stun.example"]}
    - {urls: ["turn:127.0.0.1"], credential: written-here}
    - {urls: ["turn:127.0.0.1"], credential_env: GATEWAY_TEST_UNSET_TURN}
""")
    text = "\n".join(str(e) for e in errors)
    assert ":3: not an IP address: 'localhost'" in text
    assert ":5: expected a stun:, turn: or turns: URL" in text
    assert ":6: unknown key 'credential'" in text and "did you mean 'credential_env'" in text
    assert ":7: environment variable GATEWAY_TEST_UNSET_TURN is not set (TURN credential)" in text
