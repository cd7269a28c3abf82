"""Trunk registration against a real Kamailio registrar with digest auth."""

from __future__ import annotations

import pytest

from tests.support import wait_until
from tests.support.gateway import GatewayProcess
from tests.support.kamailio import KamailioRegistrar
from tests.support.phones import call
from tests.support.rawsip import RawDialog


@pytest.fixture
def registrar():
    with KamailioRegistrar("gw1", "s3cret") as reg:
        yield reg


def trunk_config(registrar: KamailioRegistrar, expiry: int = 10) -> dict:
    return {"trunks": [
        {"name": "local", "allow": ["127.0.0.1/32"]},
        {"name": "carrier", "registrar": f"sip:127.0.0.1:{registrar.port};transport=tcp",
         "username": "gw1", "password_env": "GW_TEST_PASSWORD", "realm": "127.0.0.1",
         "expiry": expiry},
    ]}


def registered(gw: GatewayProcess) -> float:
    return gw.metric("gateway_registration_up", trunk="carrier")


def test_register_refresh_outage_and_recovery(tmp_path, registrar):
    env = {"GW_TEST_PASSWORD": "s3cret"}
    with GatewayProcess(tmp_path, extra=trunk_config(registrar), env=env) as gw:
        # 401 challenge, then 200 with credentials.
        assert wait_until(lambda: registered(gw) == 1, 15), gw.log()
        assert registrar.registered_contacts("gw1")
        assert registrar.register_count("gw1", kind="rcv") >= 2
        first_ok = registrar.register_count("gw1", kind="ok")
        assert first_ok >= 1
        # Refreshed before the 10 s expiry runs out.
        assert wait_until(lambda: registrar.register_count("gw1", kind="ok") > first_ok, 12)
        # Registrar down: the next refresh fails, the gateway says so and retries.
        registrar.stop()
        assert wait_until(lambda: registered(gw) == 0, 15), gw.log()
        assert wait_until(lambda: "retrying in" in gw.log(), 5)
        # Back up: registered again within the backoff.
        registrar.start()
        assert wait_until(lambda: registered(gw) == 1, 20), gw.log()
        assert registrar.registered_contacts("gw1")
    # Unregistered on stop (Expires: 0 accepted by the registrar).
    assert wait_until(lambda: not registrar.registered_contacts("gw1"), 5)


def test_wrong_password_is_reported_and_retried(tmp_path, registrar):
    env = {"GW_TEST_PASSWORD": "wrong"}
    with GatewayProcess(tmp_path, extra=trunk_config(registrar), env=env) as gw:
        assert wait_until(lambda: "registration failed" in gw.log(), 10), gw.log()
        assert registered(gw) == 0
        # Backoff: a second attempt follows about a second later, not a tight loop.
        assert wait_until(lambda: registrar.register_count("gw1", kind="rcv") >= 4, 8)
        assert registrar.register_count("gw1", kind="rcv") < 20


def test_trunk_transport_auth_user_and_contact_user(tmp_path, registrar):
    """`transport: tcp` on a plain sip: registrar, the digest user apart from the account's, and the
    Contact user the carrier will send its calls to (the DID)."""
    env = {"GW_TEST_PASSWORD": "s3cret"}
    trunks = {"trunks": [
        {"name": "local", "allow": ["127.0.0.1/32"]},
        {"name": "carrier", "registrar": f"sip:127.0.0.1:{registrar.port}", "transport": "tcp",
         "username": "gw1", "auth_username": "gw1", "contact_user": "+15550100",
         "from_domain": "127.0.0.1", "password_env": "GW_TEST_PASSWORD", "realm": "127.0.0.1"},
    ]}
    with GatewayProcess(tmp_path, extra=trunks, env=env) as gw:
        assert wait_until(lambda: registered(gw) == 1, 15), gw.log()
        contacts = registrar.registered_contacts("gw1")
        assert contacts and all(c.startswith("sip:+15550100@127.0.0.1:") for c in contacts), contacts
        assert all("transport=tcp" in c for c in contacts), contacts
        assert f"registering to sip:127.0.0.1:{registrar.port};transport=tcp as gw1" in gw.log()


def test_a_registering_trunks_own_invites_are_accepted_without_allow(tmp_path, registrar):
    """No trunk allows 127.0.0.1: calls from there are a stranger's (403) until the carrier's
    registration is up from there; then they are the trunk's, also those pjsua matches to the
    trunk's own account (its user at the carrier's domain), which it used to answer 500."""
    trunks = {"trunks": [
        {"name": "carrier", "registrar": f"sip:127.0.0.1:{registrar.port};transport=tcp",
         "username": "gw1", "password_env": "GW_TEST_PASSWORD", "realm": "127.0.0.1"}]}
    (tmp_path / "down").mkdir()
    (tmp_path / "up").mkdir()
    with GatewayProcess(tmp_path / "down", extra=trunks, env={"GW_TEST_PASSWORD": "wrong"}) as gw:
        assert wait_until(lambda: "registration failed" in gw.log(), 15), gw.log()
        assert call(gw.target, "+15550101", "--hangup-after", "1")["calls"][0]["status"] == 403
    with GatewayProcess(tmp_path / "up", extra=trunks, env={"GW_TEST_PASSWORD": "s3cret"}) as gw:
        assert wait_until(lambda: registered(gw) == 1, 15), gw.log()
        menu = call(gw.target, "+15550101", "--hangup-after", "1")["calls"][0]
        assert menu["status"] == 200 and menu["answered"], menu
        own = call(gw.target, "gw1", "--hangup-after", "1")["calls"][0]
        assert own["status"] == 404, own  # the dialplans' default for an unknown number, not pjsua's 500
        assert gw.metric("gateway_invites_rejected_total", reason="unknown_source") == 0
        # The DID as carriers send it: in To with the trunk's user in the Request-URI, or in the
        # Request-URI with anything in To.
        target = ("127.0.0.1", gw.sip_port)
        for ruri_user, to_user in (("gw1", "+15550101"), ("+15550101", "gw1")):
            with RawDialog(target, to_user) as dialog:
                dialog.remote_target = f"sip:{ruri_user}@127.0.0.1:{gw.sip_port}"
                assert dialog.invite() == 200, (ruri_user, to_user, dialog.received[-1:])
                assert dialog.bye() == 200
        records = gw.wait_records(1)
        assert records[0]["trunk"] == "carrier", records[0]
