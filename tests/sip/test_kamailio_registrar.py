"""The Kamailio registrar harness itself: digest auth on the wire, bindings, restart, relaying."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.support import udp_port_is_free, wait_until
from tests.support.kamailio import KamailioRegistrar, UdpSipClient, digest_authorization

pytestmark = pytest.mark.timeout(60)

USER, PASSWORD = "alice", "s3cret"


@pytest.fixture(scope="module")
def registrar() -> Iterator[KamailioRegistrar]:
    with KamailioRegistrar(USER, PASSWORD, extra_users={"carol": "pw2"}) as reg:
        yield reg


def test_register_is_challenged_then_accepted(registrar: KamailioRegistrar) -> None:
    before = registrar.register_count(USER)
    with UdpSipClient() as client:
        codes = client.register(("127.0.0.1", registrar.port), USER, PASSWORD, "127.0.0.1")
        contact = f"sip:{USER}@127.0.0.1:{client.port}"
        assert codes == [401, 200]
        assert contact in registrar.registered_contacts(USER)
        # Both REGISTERs (unauthenticated, then with credentials) reached the registrar.
        assert registrar.register_count(USER) == before + 2
        assert registrar.events()[-1].kind == "ok"
        assert registrar.events()[-1].expires == 60

        # Expires: 0 removes the binding.
        assert client.register(("127.0.0.1", registrar.port), USER, PASSWORD, "127.0.0.1",
                               expires=0)[-1] == 200
        assert contact not in registrar.registered_contacts(USER)


def test_challenge_is_md5_digest_with_qop(registrar: KamailioRegistrar) -> None:
    with UdpSipClient() as client:
        uri = f"sip:127.0.0.1:{registrar.port}"
        resp = client.request("REGISTER", uri, ("127.0.0.1", registrar.port),
                              to=f"<sip:{USER}@127.0.0.1>", from_=f"<sip:{USER}@127.0.0.1>")
        assert resp.code == 401
        challenge = resp.header("www-authenticate") or ""
        assert 'realm="127.0.0.1"' in challenge and "nonce=" in challenge
        assert 'qop="auth"' in challenge
        # A response computed for the wrong method must not pass.
        bad = digest_authorization(challenge, "INVITE", uri, USER, PASSWORD)
        resp = client.request("REGISTER", uri, ("127.0.0.1", registrar.port),
                              to=f"<sip:{USER}@127.0.0.1>", from_=f"<sip:{USER}@127.0.0.1>",
                              extra=(f"Authorization: {bad}",))
        assert resp.code == 403


@pytest.mark.parametrize(("user", "password"), [(USER, "wrong"), ("mallory", "x")])
def test_bad_credentials_are_forbidden(
    registrar: KamailioRegistrar, user: str, password: str
) -> None:
    with UdpSipClient() as client:
        codes = client.register(("127.0.0.1", registrar.port), user, password, "127.0.0.1")
    assert codes == [401, 403]
    assert registrar.registered_contacts(user) == []


def test_short_expiry_lapses(registrar: KamailioRegistrar) -> None:
    with UdpSipClient() as client:
        assert client.register(("127.0.0.1", registrar.port), "carol", "pw2", "127.0.0.1",
                               expires=1) == [401, 200]
        assert registrar.registered_contacts("carol")
        assert wait_until(lambda: registrar.registered_contacts("carol") == [], timeout=4)


def test_invite_to_registered_user_is_relayed_to_its_contact(
    registrar: KamailioRegistrar,
) -> None:
    with UdpSipClient() as callee, UdpSipClient() as caller:
        callee.register(("127.0.0.1", registrar.port), USER, PASSWORD, "127.0.0.1")
        callee.sock.settimeout(2)
        caller.sock.sendto(_invite(caller, f"sip:{USER}@127.0.0.1:{registrar.port}"),
                           ("127.0.0.1", registrar.port))
        data, _ = callee.sock.recvfrom(65535)
        first_line = data.decode().split("\r\n", 1)[0]
        assert first_line == f"INVITE sip:{USER}@127.0.0.1:{callee.port} SIP/2.0"
        assert b"Record-Route:" in data
        callee.register(("127.0.0.1", registrar.port), USER, PASSWORD, "127.0.0.1", expires=0)


def test_restart_frees_and_reuses_the_port() -> None:
    with KamailioRegistrar(USER, PASSWORD) as reg:
        port = reg.port
        with UdpSipClient() as client:
            assert client.register(("127.0.0.1", port), USER, PASSWORD, "127.0.0.1")[-1] == 200
            reg.stop()
            assert udp_port_is_free("127.0.0.1", port)
            with pytest.raises(TimeoutError):
                client.register(("127.0.0.1", port), USER, PASSWORD, "127.0.0.1", timeout=0.5)
            reg.start()
            assert reg.port == port
            # In-memory location table: the binding did not survive the restart.
            assert reg.registered_contacts(USER) == []
            assert client.register(("127.0.0.1", port), USER, PASSWORD, "127.0.0.1")[-1] == 200
            assert reg.registered_contacts(USER) == [f"sip:{USER}@127.0.0.1:{client.port}"]
        # The log survives restarts, so refresh counting spans them.
        assert wait_until(lambda: reg.register_count(USER, kind="ok") == 2, 5)


def _invite(client: UdpSipClient, uri: str) -> bytes:
    lines = [
        f"INVITE {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {client.address}:{client.port};branch=z9hG4bKrelay1;rport",
        "Max-Forwards: 70",
        f"From: <sip:caller@{client.address}>;tag=c1",
        f"To: <{uri}>",
        f"Call-ID: relay-{client.port}@test",
        "CSeq: 1 INVITE",
        f"Contact: <sip:caller@{client.address}:{client.port}>",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_udp_port_helper_sees_a_bound_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        assert not udp_port_is_free("127.0.0.1", sock.getsockname()[1])
