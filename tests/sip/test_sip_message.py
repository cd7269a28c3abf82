"""Reading INVITEs: dialled number, caller, and the malformed ones the gateway refuses."""

from __future__ import annotations

import pytest

from gateway.sip.message import parse_invite, problems


def invite(ruri: str = "sip:+15550100@gw.example.com", to: str = "<sip:+15550100@gw.example.com>",
           extra: str = "", body: str = "v=0\r\n", length: int | None = None) -> str:
    n = len(body) if length is None else length
    return (f"INVITE {ruri} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
            'From: "Alice" <sip:+14155550123@carrier.example>;tag=1\r\n'
            f"To: {to}\r\n"
            "Call-ID: abc@10.0.0.1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            f"{extra}Content-Type: application/sdp\r\nContent-Length: {n}\r\n\r\n{body}")


@pytest.mark.parametrize("ruri,to,dialled", [
    ("sip:+15550100@gw", "<sip:+15550999@gw>", "+15550100"),
    ("sip:15550100@gw;user=phone", "<sip:x@gw>", "15550100"),
    ("sip:%2B15550100@gw", "<sip:x@gw>", "+15550100"),
    ("sip:gw.example.com", "<sip:+15550142@gw>", "+15550142"),       # no user: To user
    ("sip:gw.example.com", "sip:+15550142@gw;tag=x", "+15550142"),    # addr-spec To
    ("tel:+15550100", "<sip:x@gw>", "+15550100"),
])
def test_dialled_number(ruri, to, dialled):
    info = parse_invite(invite(ruri, to))
    assert info.dialled == dialled
    assert info.caller == "+14155550123"
    assert info.call_id == "abc@10.0.0.1"


def test_compact_and_folded_headers():
    text = ("INVITE sip:gw SIP/2.0\r\nt: <sip:+1555@gw>\r\nf: <sip:bob@x>\r\n ;tag=2\r\n"
            "i: xyz\r\n\r\n")
    info = parse_invite(text)
    assert (info.dialled, info.caller, info.call_id) == ("+1555", "bob", "xyz")


@pytest.mark.parametrize("extra,length,expected", [
    ("", None, None),
    ("Call-ID: second@x\r\n", None, 400),
    ("To: <sip:other@gw>\r\n", None, 400),
    ("", 5000, 400),
    ("Accept: text/nonsense\r\n", None, 406),
    ("Accept: application/sdp, text/plain\r\n", None, None),
])
def test_problems(extra, length, expected):
    found = problems(invite(extra=extra, length=length))
    assert (found[0] if found else None) == expected


def test_garbage_does_not_raise():
    for text in ("", "\x00\xff garbage", "INVITE\r\n\r\n", "SIP/2.0 200 OK\r\n"):
        parse_invite(text)
        problems(text)
