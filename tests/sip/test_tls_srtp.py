"""SIP over TLS and SRTP media against the real gateway, with a CA made for the test.

The gateway listens for TLS (`sip.tls`) with a certificate our CA signed for 127.0.0.1 and
requires SRTP (`media.srtp: mandatory`): the pjsua2 softphone calls over TLS, checks the
gateway's certificate against the CA and hears the prompt through SRTP; a plain RTP offer is
refused with 488; a phone trusting another CA never gets a call up.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import ipaddress
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import free_port
from tests.support.gateway import GatewayProcess
from tests.support.phones import call

pj = pytest.importorskip("pjsua2")
MENU = "+15550101"  # the shipped keypad menu: a greeting prompt, then waits for digits


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def make_ca(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signs for 127.0.0.1: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@pytest.fixture(scope="module")
def tls_gateway(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("tls")
    ca, cert, key = make_ca(tmp / "pki", "gateway test CA")
    port = free_port()
    gw = GatewayProcess(tmp, extra={"media": {"srtp": "mandatory"}})
    config = yaml.safe_load(gw.config_path.read_text())
    config["sip"]["tls"] = {"port": port, "cert": str(cert), "key": str(key)}
    gw.config_path.write_text(yaml.safe_dump(config))
    with gw:
        yield gw, port, ca, tmp


def test_call_over_tls_with_srtp_hears_the_prompt(tls_gateway) -> None:
    gw, port, ca, _tmp = tls_gateway
    assert f"tls on {port}; SRTP mandatory" in gw.log()
    done = call(f"127.0.0.1:{port}", MENU, "--transport", "tls", "--ca-file", str(ca),
                "--srtp", "mandatory", "--hangup-after", "3")["calls"][0]
    assert done["status"] == 200 and done["answered"], done
    assert done["frames_received"] > 50  # the prompt arrived, decrypted (SRTP is mandatory)


def test_mandatory_srtp_refuses_a_plain_rtp_offer_with_488(tls_gateway) -> None:
    gw, port, ca, _tmp = tls_gateway
    over_tls = call(f"127.0.0.1:{port}", MENU, "--transport", "tls", "--ca-file", str(ca),
                    "--hangup-after", "1")["calls"][0]
    plain = call(gw.target, MENU, "--hangup-after", "1")["calls"][0]
    assert (over_tls["status"], over_tls["answered"]) == (488, False), over_tls
    assert (plain["status"], plain["answered"]) == (488, False), plain


def test_a_phone_trusting_another_ca_never_connects(tls_gateway) -> None:
    _gw, port, _ca, tmp = tls_gateway
    other_ca = make_ca(tmp / "other", "some other CA")[0]
    done = call(f"127.0.0.1:{port}", MENU, "--transport", "tls", "--ca-file", str(other_ca),
                "--srtp", "mandatory", "--hangup-after", "1", "--max-duration", "10")["calls"][0]
    assert not done["answered"], done
    assert done["status"] != 200


def test_gateway_call_over_tls_and_srtp(tls_gateway) -> None:
    _gw, port, ca, _tmp = tls_gateway
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "call", MENU, "--to", f"127.0.0.1:{port}", "--transport", "tls",
         "--srtp", "mandatory", "--ca-file", str(ca), "--no-transcript", "--json", "--max-duration", "6"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["call"]["answered"] and report["call"]["status"] == 200, report["call"]
