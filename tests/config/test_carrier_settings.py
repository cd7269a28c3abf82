"""gateway.yaml's carrier settings: TLS listener, SRTP, per-trunk transport, proxy and users."""

from __future__ import annotations

from pathlib import Path

from gateway.config.settings import read_settings


def _read(tmp_path: Path, text: str):
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path, read_settings(path)


def test_tls_srtp_and_trunk_details_reach_the_settings(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CARRIER_PASSWORD", "x")
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("-----BEGIN-----\n")
    _path, (settings, errors) = _read(tmp_path, (
        "sip:\n  tls: {port: 5063, cert: cert.pem, key: key.pem, ca: ca.pem, verify_peer: true}\n"
        "media: {srtp: Optional}\n"
        "trunks:\n"
        "  - name: carrier\n    registrar: sips:sip.carrier.example\n    transport: TLS\n"
        "    srtp: mandatory\n    proxy: sip:edge.carrier.example\n    username: '+15550100'\n"
        "    auth_username: gw1\n    from_domain: carrier.example\n    contact_user: '+15550100'\n"
        "    realm: carrier.example\n    password_env: CARRIER_PASSWORD\n"))
    assert errors == []
    assert (settings.tls_port, settings.tls_cert, settings.tls_verify_peer) == (5063, tmp_path / "cert.pem", True)
    assert settings.srtp == "optional"
    trunk = settings.trunks[0]
    assert (trunk.transport, trunk.srtp, trunk.proxy) == ("tls", "mandatory", "sip:edge.carrier.example")
    assert (trunk.auth_username, trunk.from_domain, trunk.contact_user) == ("gw1", "carrier.example", "+15550100")


def test_carrier_setting_mistakes_are_errors_at_their_lines(tmp_path: Path) -> None:
    path, (_s, errors) = _read(tmp_path, (
        "sip:\n  tls: {port: 5061, cert: missing.pem, key: missing.key}\n"   # 2
        "media:\n  srtp: sometimes\n"                                          # 4
        "trunks:\n  - name: ip\n    allow: [192.0.2.0/24]\n"
        "    transport: sctp\n"                                                # 8
        "    proxy: edge.example\n"))                                          # 9
    found = {(e.line, e.message.split(":")[0]) for e in errors}
    assert (2, "tls cert") in found, errors
    assert (4, "srtp must be off, optional or mandatory") in found, errors
    assert any(e.line == 8 and "transport must be udp, tcp or tls" in e.message for e in errors), errors
    assert any(e.line == 9 and "sip: URI" in e.message for e in errors), errors
    assert all(str(e).startswith(f"{path}:") for e in errors)
