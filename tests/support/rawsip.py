"""A raw UDP SIP caller for attack tests: every byte it sends is written here, nothing is fixed up.

`RawDialog` places one call (INVITE with SDP, ACK on 200) and then sends whatever in-dialog
request a test wants (REFER, INFO floods, ...), returning the status code of each answer.
"""

from __future__ import annotations

import re
import socket
import time
import uuid

_STATUS = re.compile(r"^SIP/2\.0 (\d{3})")
_HEADER = re.compile(r"^([A-Za-z-]+)\s*:\s*(.*)$")


def sdp(address: str, port: int) -> str:
    return (f"v=0\r\no=- 1 1 IN IP4 {address}\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")


def header(message: str, name: str) -> str | None:
    for line in message.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        match = _HEADER.match(line)
        if match and match.group(1).lower() == name.lower():
            return match.group(2)
    return None


class RawDialog:
    def __init__(self, target: tuple[str, int], number: str, *, local: str = "127.0.0.1",
                 from_user: str = "5550001", display: str = "") -> None:
        self.target = target
        self.number = number
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local, 0))
        self.media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.media.bind((local, 0))
        self.local = f"{local}:{self.sock.getsockname()[1]}"
        self.call_id = uuid.uuid4().hex
        self.from_user = from_user
        self.display = display
        self.tag = uuid.uuid4().hex[:8]
        self.to = f"<sip:{number}@{target[0]}:{target[1]}>"
        self.remote_target = f"sip:{number}@{target[0]}:{target[1]}"
        self.cseq = 1
        self.received: list[str] = []

    # ---- sending ----
    def request(self, method: str, *, headers: str = "", body: str = "",
                content_type: str = "", cseq: int | None = None, uri: str | None = None) -> str:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        display = f'"{self.display}" ' if self.display else ""
        text = (f"{method} {uri or self.remote_target} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.local};rport;branch=z9hG4bK{uuid.uuid4().hex[:16]}\r\n"
                f"From: {display}<sip:{self.from_user}@{self.local}>;tag={self.tag}\r\n"
                f"To: {self.to}\r\nCall-ID: {self.call_id}\r\nCSeq: {cseq} {method}\r\n"
                f"Contact: <sip:{self.from_user}@{self.local}>\r\nMax-Forwards: 70\r\n{headers}")
        if content_type:
            text += f"Content-Type: {content_type}\r\n"
        text += f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
        self.sock.sendto(text.encode(), self.target)
        return text

    def final(self, method: str, timeout: float = 5.0) -> int | None:
        """The first final response to `method` at the current CSeq, answering requests meanwhile."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            message = self.recv(remaining)
            if message is None:
                return None
            status = _STATUS.match(message)
            cseq = header(message, "CSeq") or ""
            if status and cseq.endswith(method) and int(status.group(1)) >= 200:
                return int(status.group(1))
        return None

    def recv(self, timeout: float) -> str | None:
        self.sock.settimeout(max(timeout, 0.01))
        try:
            data, _ = self.sock.recvfrom(65535)
        except (TimeoutError, socket.timeout):
            return None
        message = data.decode(errors="replace")
        self.received.append(message)
        if not _STATUS.match(message):
            self._answer(message)
        elif message.startswith("SIP/2.0 200") and (header(message, "CSeq") or "").endswith("INVITE"):
            self._learn_dialog(message)
        return message

    def _learn_dialog(self, message: str) -> None:
        self.to = header(message, "To") or self.to
        contact = header(message, "Contact") or ""
        if "<" in contact:
            self.remote_target = contact[contact.index("<") + 1:contact.index(">")]

    def _answer(self, request: str) -> None:
        """200 to the gateway's own requests (NOTIFY, BYE): a well-behaved peer."""
        lines = [f"{name}: {header(request, name)}" for name in ("Via", "From", "To", "Call-ID", "CSeq")
                 if header(request, name) is not None]
        reply = "SIP/2.0 200 OK\r\n" + "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n"
        self.sock.sendto(reply.encode(), self.target)

    # ---- the call ----
    def invite(self, timeout: float = 10.0, headers: str = "") -> int | None:
        host, port = self.media.getsockname()
        self.request("INVITE", headers=headers, body=sdp(host, port),
                     content_type="application/sdp", cseq=1)
        code = self.final("INVITE", timeout)
        if code == 200:
            self.request("ACK", cseq=1)
        return code

    def bye(self) -> int | None:
        self.request("BYE")
        return self.final("BYE")

    def close(self) -> None:
        self.sock.close()
        self.media.close()

    def __enter__(self) -> RawDialog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
