"""RFC 3261 answers on the wire, from raw SIP against the real gateway (strict SIP edge).

In-dialog OPTIONS, the INFO bodies carriers send, unknown methods and extensions, malformed
framing, oversized TCP messages, and a CANCEL that beats the answer.
"""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import pytest

from gateway.sip.strict import ALLOW, screen
from tests.support import wait_until
from tests.support.gateway import GatewayProcess
from tests.support.rawsip import RawDialog, header, sdp

MENU = "+15550101"      # keypad menu: a flow, no recogniser


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory):
    with GatewayProcess(tmp_path_factory.mktemp("conformance")) as gateway:
        yield gateway


def _answer(dialog: RawDialog, method: str, timeout: float = 3.0) -> str | None:
    """The final response to `method` at the dialog's current CSeq (its whole text)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = dialog.recv(left)
        if message is None:
            return None
        cseq = header(message, "CSeq") or ""
        if message.startswith("SIP/2.0 ") and cseq == f"{dialog.cseq} {method}" \
                and int(message[8:11]) >= 200:
            return message
    return None


def _code(message: str | None) -> int | None:
    return int(message[8:11]) if message else None


def test_in_dialog_requests(gw: GatewayProcess) -> None:
    with RawDialog(("127.0.0.1", gw.sip_port), MENU) as call:
        assert call.invite() == 200
        call.request("OPTIONS")
        reply = _answer(call, "OPTIONS")
        assert _code(reply) == 200, reply
        assert "INVITE" in (header(reply, "Allow") or "")
        call.request("INFO", content_type="application/dtmf", body="1")
        assert _code(_answer(call, "INFO")) == 200
        call.request("INFO", content_type="application/dtmf-relay", body="Signal=2\r\nDuration=160\r\n")
        assert _code(_answer(call, "INFO")) == 200
        call.request("INFO", content_type="application/x-unknown", body="hello")
        reply = _answer(call, "INFO")
        assert _code(reply) == 415 and "application/dtmf" in (header(reply, "Accept") or "")
        call.request("INFO", headers="Info-Package: nobody-knows\r\n",
                     content_type="application/x-unknown", body="x")
        assert _code(_answer(call, "INFO")) == 469
        call.request("INFO", content_type="application/dtmf", body="not-a-digit")
        assert _code(_answer(call, "INFO")) == 400
        call.request("INFO")                                   # a keep-alive: no body
        assert _code(_answer(call, "INFO")) == 200
        call.request("FROBNICATE")
        reply = _answer(call, "FROBNICATE")
        assert _code(reply) == 501 and header(reply, "Allow") == ALLOW
        assert call.bye() == 200
    record = gw.wait_records(1)[-1]
    assert record["digits"].startswith("12"), record   # both INFO digits reached the call


def test_in_dialog_request_without_dialog_is_481(gw: GatewayProcess) -> None:
    with RawDialog(("127.0.0.1", gw.sip_port), MENU) as ghost:
        ghost.to = f"<sip:{MENU}@127.0.0.1>;tag=nosuchdialog"
        for method in ("OPTIONS", "INFO"):
            ghost.request(method, content_type="application/dtmf", body="5")
            assert _code(_answer(ghost, method)) == 481


@pytest.mark.parametrize("method,extra,body,expected", [
    ("OPTIONS", "Require: nothingSupportedHere\r\n", "", 420),
    ("OPTIONS", "Content-Length: 0\r\n", "", 400),            # a second Content-Length
    ("FROBNICATE", "", "", 501),
    ("REGISTER", "", "", 405),
    ("OPTIONS", "", "", 200),
])
def test_out_of_dialog_answers(gw: GatewayProcess, method: str, extra: str, body: str,
                               expected: int) -> None:
    with RawDialog(("127.0.0.1", gw.sip_port), MENU) as peer:
        peer.request(method, headers=extra, body=body)
        reply = _answer(peer, method)
        assert _code(reply) == expected, reply
        if expected == 420:
            assert header(reply, "Unsupported") == "nothingSupportedHere"
        if expected in (405, 501):
            assert header(reply, "Allow") == ALLOW


def test_content_length_larger_than_datagram(gw: GatewayProcess) -> None:
    with RawDialog(("127.0.0.1", gw.sip_port), MENU) as peer:
        text = peer.request("OPTIONS")
        assert _code(_answer(peer, "OPTIONS")) == 200
        text = text.replace("Content-Length: 0", "Content-Length: 300").replace(
            "branch=z9hG4bK", "branch=z9hG4bKlong")          # a new transaction, the same CSeq
        peer.sock.sendto(text.encode(), peer.target)
        assert _code(_answer(peer, "OPTIONS")) == 400


def test_oversized_tcp_message_closes_the_connection(gw: GatewayProcess) -> None:
    tag = uuid.uuid4().hex
    message = (f"OPTIONS sip:ping@127.0.0.1:{gw.sip_port} SIP/2.0\r\n"
               f"Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK{tag}\r\nMax-Forwards: 70\r\n"
               f"From: <sip:big@127.0.0.1>;tag={tag[:8]}\r\nTo: <sip:ping@127.0.0.1>\r\n"
               f"Call-ID: {tag}\r\nCSeq: 1 OPTIONS\r\nX-Big: {'a' * 65536}\r\n"
               "Content-Length: 0\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", gw.sip_port), timeout=5) as sock:
        try:
            sock.sendall(message)
            received = b""
            while chunk := sock.recv(4096):
                received += chunk
        except (ConnectionResetError, BrokenPipeError):
            received = b""
    assert not received.startswith(b"SIP/2.0 200"), received[:200]
    with RawDialog(("127.0.0.1", gw.sip_port), MENU) as peer:   # and the gateway still serves
        peer.request("OPTIONS")
        assert _code(_answer(peer, "OPTIONS")) == 200


def test_cancel_before_the_answer_is_487_and_never_answered(tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "default.yaml").write_text("ring: 2\nflow:\n  - say: Hello.\n  - hangup: true\n")
    with GatewayProcess(tmp_path, dialplans=plans) as gw, \
            RawDialog(("127.0.0.1", gw.sip_port), "+15550999") as call:
        host, port = call.media.getsockname()
        invite = call.request("INVITE", body=sdp(host, port), content_type="application/sdp", cseq=1)
        codes: list[int] = []
        assert wait_until(lambda: _collect(call, codes) and 180 in codes, 3.0), codes
        head = invite.split("\r\n\r\n", 1)[0].split("\r\n")
        cancel = [head[0].replace("INVITE", "CANCEL", 1)] + [
            line.replace("1 INVITE", "1 CANCEL") for line in head[1:]
            if not line.lower().startswith(("content-", "contact"))]
        call.sock.sendto(("\r\n".join(cancel) + "\r\nContent-Length: 0\r\n\r\n").encode(), call.target)
        assert wait_until(lambda: _collect(call, codes) and 487 in codes, 3.0), codes
        time.sleep(0.5)
        _collect(call, codes)
        assert 200 not in codes, codes          # the INVITE is never answered
        record = gw.wait_records(1)[-1]
    assert record["outcome"] == "cancelled" and record["answered"] is None, record
    assert record["transcript"] == [] and record["steps"] == []


def _collect(call: RawDialog, codes: list[int]) -> bool:
    while (message := call.recv(0.05)) is not None:
        if message.startswith("SIP/2.0 ") and (header(message, "CSeq") or "").endswith("INVITE"):
            codes.append(int(message[8:11]))
    return True


# ---- the edge's rules, on text -----------------------------------------------------------------

def _request(method: str = "OPTIONS", uri: str = "sip:gw@127.0.0.1", extra: str = "",
             body: str = "", cseq_method: str | None = None, to_tag: str = "") -> bytes:
    tag = f";tag={to_tag}" if to_tag else ""
    return (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
            f"From: <sip:a@x>;tag=1\r\nTo: <sip:gw@127.0.0.1>{tag}\r\nCall-ID: c@x\r\n"
            f"CSeq: 7 {cseq_method or method}\r\nMax-Forwards: 70\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n{body}").encode()


@pytest.mark.parametrize("raw,code", [
    (_request(), None),                                                  # pjsua answers it
    (_request(cseq_method="INVITE"), 400),                               # mismatch01
    (_request("INVITE", extra="Require: 100rel, timer\r\n"), None),      # pjsua's own
    (_request(extra="Require: foo, 100rel\r\n"), 420),
    (_request("CANCEL", extra="Require: foo\r\n"), None),                # never for CANCEL
    (_request("ACK", cseq_method="INVITE"), None),                       # ACK is never answered
    (_request("PUBLISH"), 405),
    (_request(uri="nobodyKnowsThisScheme:x"), 416),
    (_request(to_tag="abc"), 200),                                       # in-dialog OPTIONS
    (_request("INFO"), 481),                                             # INFO outside a dialog
    (_request("INFO", to_tag="t", extra="Content-Type: application/dtmf\r\n", body="#"), 200),
    (_request("INFO", to_tag="t", extra="Content-Type: application/dtmf-relay\r\n",
              body="Signal=1\r\n"), None),                               # pjsua's own
    (_request("INFO", to_tag="t", extra="Content-Type: text/plain\r\n", body="1"), 415),
    (_request("INFO", to_tag="t", extra="Content-Type: application/dtmf\r\n", body="12"), 400),
    (_request(extra="CSeq: 8 OPTIONS\r\n"), 400),                        # two CSeqs
    (_request(extra="CSeq: 99999999999 OPTIONS\r\n".replace("CSeq", "X-Not")), None),
    (_request().replace(b"CSeq: 7", b"CSeq: 4294967296"), 400),          # over 2**31-1
])
def test_screen(raw: bytes, code: int | None) -> None:
    answer = screen(raw)
    assert (answer.code if answer else None) == code


def test_screen_reports_the_digit_and_dialog() -> None:
    answer = screen(_request("INFO", to_tag="loc", extra="Content-Type: application/dtmf\r\n",
                             body=" 7\r\n"))
    assert answer is not None and answer.digit == "7"
    assert answer.in_dialog == ("c@x", "loc", "1")


def test_an_unanswered_invite_rings_after_the_late_answer_time() -> None:
    from types import SimpleNamespace

    from gateway.sip.calls import LATE_ANSWER, GatewayCall

    def call(responded: bool, offered_at: float | None) -> SimpleNamespace:
        return SimpleNamespace(_responded=responded, offered_at=offered_at)

    late = 100.0 + LATE_ANSWER
    assert GatewayCall.awaiting_answer(call(False, 100.0), late)            # type: ignore[arg-type]
    assert not GatewayCall.awaiting_answer(call(False, 100.0), late - 0.1)  # type: ignore[arg-type]
    assert not GatewayCall.awaiting_answer(call(True, 100.0), late)         # type: ignore[arg-type]
    assert not GatewayCall.awaiting_answer(call(False, None), late)  # a leg we dialled  # type: ignore[arg-type]
