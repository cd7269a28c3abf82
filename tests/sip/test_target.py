"""Call targets as people write them: HOST[:PORT] or sip:/sips: URIs, with or without a user."""

from __future__ import annotations

import pytest

from gateway.sip.target import parse_target


@pytest.mark.parametrize("text,number,transport,uri", [
    ("127.0.0.1:5060", "+15550100", "udp", "sip:+15550100@127.0.0.1:5060"),
    ("sip:127.0.0.1:5060", "", "udp", "sip:127.0.0.1:5060"),
    ("sip:127.0.0.1:5060", "+15550100", "tcp", "sip:+15550100@127.0.0.1:5060;transport=tcp"),
    ("SIP:+15550101@gw.example.com", "", "udp", "sip:+15550101@gw.example.com"),
    ("sip:+15550101@gw.example.com", "+15550100", "udp", "sip:+15550100@gw.example.com"),
    ("sips:gw.example.com:5061", "100", "udp", "sips:100@gw.example.com:5061"),
    ("sip:gw:5080;transport=tcp", "1", "tcp", "sip:1@gw:5080;transport=tcp"),
    ("[::1]:5060", "1", "udp", "sip:1@[::1]:5060"),
    ("::1", "1", "udp", "sip:1@[::1]"),
    ("localhost", "", "udp", "sip:localhost"),
])
def test_targets(text: str, number: str, transport: str, uri: str) -> None:
    assert parse_target(text).uri(number, transport) == uri


@pytest.mark.parametrize("text,why", [
    ("tel:+15550100", "only sip: and sips:"),
    ("http://example.com", "only sip: and sips:"),
    ("127.0.0.1:70000", "port must be 1-65535"),
    ("127.0.0.1:", "empty port"),
    ("bob@127.0.0.1", "needs a SIP URI"),
    ("sip:", "no host"),
    ("sip:a b@host", "not a SIP user part"),
    ("sip:host;x=\\r\\n", "not a URI parameter"),
])
def test_bad_targets_say_what_was_expected(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_target(text)
