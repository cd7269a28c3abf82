"""Replay the RFC 4475 SIP torture messages at a real gateway, inside a private network namespace.

    unshare -n python tests/support/torture.py --out results.json [--torture DIR]

The messages carry foreign addresses (Via, Contact, SDP c= lines). This script therefore refuses
to run unless the only network interface it can see is loopback; it brings `lo` up itself and
starts the gateway in the same namespace, so neither a SIP response nor RTP can leave the machine.

For every row of INDEX.tsv it sends the message over UDP according to its send mode
  via: one top Via of the sender (with rport) is added, so responses come back to us;
  raw: the bytes as stored, sent from 127.0.0.1:5060 (where such Vias point responses);
collects the responses (the first final code, or "drop" when none comes within ~1 s), ACKs final
responses to INVITEs (and hangs up any 2xx), then checks the gateway still answers OPTIONS.
Results go to --out as JSON, one entry per message file; tests/sip/test_torture.py asserts them.
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import json
import socket
import struct
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.gateway import GatewayProcess  # noqa: E402

TORTURE = REPO.parent / "shared" / "sip-torture"
WAIT = 1.0          # no final response within this long: "drop"
GRACE = 0.3         # after a final response, listen this long for further (wrong) responses
RAW_PORT = 5060     # raw messages' Vias carry no port (or 5060) and resolve to 127.0.0.1 here
NOT_ISOLATED = 3    # exit status when the namespace has more than loopback

# Every INVITE in the torture set dials a non-numeric user (user, vivekg, UserB, joe, ...): the
# default plan refuses them all, so the gateway never answers one and never starts RTP.
DEFAULT_PLAN = '# torture replay: refuse every number\nreject: {code: 404, reason: "Not Found"}\n'


@dataclass
class Response:
    code: int
    reason: str
    cseq: str
    text: str


@dataclass
class Result:
    file: str
    mode: str
    final: int | None = None              # first final status code, None when nothing came
    codes: list[int] = field(default_factory=list)        # every status received, in order
    finals: list[str] = field(default_factory=list)       # distinct "code cseq" finals
    answer_sdp: str = ""                  # body of a 2xx to an INVITE, if any
    alive: bool = False                   # the gateway answered OPTIONS afterwards
    options_code: int | None = None
    gateway_running: bool = True
    log: str = ""                         # what the gateway logged while handling this message
    error: str = ""


# ---- namespace safety -----------------------------------------------------------------------

def interfaces() -> list[str]:
    return [name for _index, name in socket.if_nameindex()]


def isolated() -> bool:
    return interfaces() == ["lo"]


def loopback_up() -> None:
    """`ip link set lo up` without needing iproute2 (SIOCGIFFLAGS / SIOCSIFFLAGS)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, siocgifflags, ifreq))[1]
        if not flags & iff_up:
            fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


# ---- messages -------------------------------------------------------------------------------

def read_index(torture: Path) -> list[dict[str, str]]:
    with open(torture / "INDEX.tsv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def add_via(data: bytes, port: int, branch: str) -> bytes:
    """The message with one top Via of ours (rport) inserted right after the start line."""
    end = data.find(b"\n")
    eol = b"\r\n" if end > 0 and data[end - 1:end] == b"\r" else b"\n"
    via = f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport".encode() + eol
    if end < 0:
        return data + eol + via
    return data[:end + 1] + via + data[end + 1:]


def parse_response(data: bytes) -> Response | None:
    text = data.decode("utf-8", "replace")
    first, _, _ = text.partition("\n")
    parts = first.strip().split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("SIP/") or not parts[1].isdigit():
        return None
    return Response(int(parts[1]), parts[2] if len(parts) > 2 else "", header(text, "cseq", "CSeq"),
                    text)


def header(text: str, name: str, compact: str = "", every: bool = False) -> str | list[str]:
    """Header value(s) from a (well-formed) message we received or built; folded lines joined."""
    head = text.split("\r\n\r\n", 1)[0].split("\n\n", 1)[0]
    values: list[str] = []
    for line in head.replace("\r\n", "\n").replace("\n ", " ").replace("\n\t", " ").split("\n")[1:]:
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in (name.lower(), compact.lower()):
            values.append(value.strip())
    if every:
        return values
    return values[0] if values else ""


def body(text: str) -> str:
    for sep in ("\r\n\r\n", "\n\n"):
        if sep in text:
            return text.split(sep, 1)[1]
    return ""


def request_uri(data: bytes) -> str:
    first = data.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    rest = first.split(" ", 1)[1] if " " in first else ""
    if rest.rstrip().upper().endswith("SIP/2.0"):
        rest = rest.rstrip()[:-len("SIP/2.0")]
    return rest.strip() or "sip:127.0.0.1"


def in_dialog(resp: Response, method: str, ruri: str, cseq: int, via: str) -> bytes:
    lines = [f"{method} {ruri} SIP/2.0", f"Via: {via}", "Max-Forwards: 70",
             f"From: {header(resp.text, 'from', 'f')}", f"To: {header(resp.text, 'to', 't')}",
             f"Call-ID: {header(resp.text, 'call-id', 'i')}", f"CSeq: {cseq} {method}",
             "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def options(port: int, local: int, n: int) -> bytes:
    lines = [f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0",
             f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-alive-{n};rport",
             "Max-Forwards: 70", f"From: <sip:torture@127.0.0.1:{local}>;tag=alive{n}",
             f"To: <sip:ping@127.0.0.1:{port}>", f"Call-ID: alive-{n}@127.0.0.1",
             "CSeq: 1 OPTIONS", "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


# ---- replay ---------------------------------------------------------------------------------

def receive(sock: socket.socket, until: float, final: bool = False) -> list[Response]:
    """Responses until `until`; with final=True, return as soon as a final one arrives."""
    out: list[Response] = []
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return out
        sock.settimeout(left)
        try:
            data = sock.recv(65535)
        except (TimeoutError, socket.timeout):
            return out
        except ConnectionRefusedError:  # ICMP from an earlier send; nothing to read
            continue
        resp = parse_response(data)
        if resp is not None:
            out.append(resp)
            if final and resp.code >= 200:
                return out


def collect(sock: socket.socket) -> list[Response]:
    """Responses until the first final one (plus GRACE), or WAIT seconds without one."""
    got = receive(sock, time.monotonic() + WAIT, final=True)
    if any(r.code >= 200 for r in got):
        got += receive(sock, time.monotonic() + GRACE)
    return got


def replay(gw: GatewayProcess, row: dict[str, str], torture: Path, n: int) -> Result:
    result = Result(file=row["file"], mode=row["send_mode"])
    data = (torture / row["file"]).read_bytes()
    port = gw.sip_port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", RAW_PORT if row["send_mode"] == "raw" else 0))
        local = sock.getsockname()[1]
        if row["send_mode"] == "via":
            data = add_via(data, local, f"z9hG4bK-torture-{n}")
        sock.sendto(data, ("127.0.0.1", port))
        got = collect(sock)
        result.codes = [r.code for r in got]
        finals = [r for r in got if r.code >= 200]
        if finals:
            result.final = finals[0].code
        result.finals = sorted({f"{r.code} {r.cseq}" for r in finals})
        for resp in {(r.code, r.cseq): r for r in finals}.values():
            parts = resp.cseq.split()
            if len(parts) != 2 or parts[1].upper() != "INVITE" or not parts[0].isdigit():
                continue
            via = str(header(resp.text, "via", "v"))
            ruri = request_uri(data)
            if 200 <= resp.code < 300:
                result.answer_sdp = body(resp.text)
                contact = str(header(resp.text, "contact", "m"))
                target = contact[contact.find("<") + 1:contact.find(">")] if "<" in contact else contact
                sock.sendto(in_dialog(resp, "ACK", target or ruri, int(parts[0]),
                                      f"SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-ack-{n};rport"),
                            ("127.0.0.1", port))
                sock.sendto(in_dialog(resp, "BYE", target or ruri, int(parts[0]) + 1,
                                      f"SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-bye-{n};rport"),
                            ("127.0.0.1", port))
                receive(sock, time.monotonic() + 0.3)
            else:
                # Same branch as the INVITE: ends the server transaction's retransmissions.
                sock.sendto(in_dialog(resp, "ACK", ruri, int(parts[0]), via), ("127.0.0.1", port))
    result.options_code = alive(gw, n)
    result.alive = result.options_code is not None and 200 <= result.options_code < 300
    result.gateway_running = gw.proc is not None and gw.proc.poll() is None
    return result


def alive(gw: GatewayProcess, n: int, timeout: float = 3.0) -> int | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.sendto(options(gw.sip_port, sock.getsockname()[1], n), ("127.0.0.1", gw.sip_port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for resp in receive(sock, deadline, final=True):
                if resp.code >= 200 and resp.cseq.endswith("OPTIONS"):
                    return resp.code
        return None


def run(torture: Path, only: list[str]) -> dict[str, object]:
    rows = [r for r in read_index(torture) if not only or Path(r["file"]).stem in only]
    with tempfile.TemporaryDirectory(prefix="torture-") as tmp_name:
        tmp = Path(tmp_name)
        plans = tmp / "dialplans"
        plans.mkdir()
        (plans / "default.yaml").write_text(DEFAULT_PLAN)
        gw = GatewayProcess(tmp, dialplans=plans, extra={"log_level": "debug"})
        gw.start()
        results: dict[str, dict[str, object]] = {}
        try:
            for n, row in enumerate(rows, 1):
                offset = len(gw.log())
                try:
                    result = replay(gw, row, torture, n)
                except Exception:  # noqa: BLE001 - one message's failure is that row's result
                    result = Result(file=row["file"], mode=row["send_mode"],
                                    error=traceback.format_exc(limit=3))
                    result.gateway_running = gw.proc is not None and gw.proc.poll() is None
                result.log = gw.log()[offset:][-4000:]
                results[row["file"]] = asdict(result)
        finally:
            code = gw.stop()
            log = gw.log()
        return {"results": results, "gateway": {"exit": code, "log_tail": log[-8000:]}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--torture", type=Path, default=TORTURE)
    parser.add_argument("--only", nargs="*", default=[], help="message names (e.g. invut sdp01)")
    args = parser.parse_args(argv)
    try:
        loopback_up()
    except OSError as exc:
        print(f"cannot bring lo up: {exc}", file=sys.stderr)
        return NOT_ISOLATED
    if not isolated():
        print(f"refusing to replay: this network namespace has {interfaces()}, not only lo "
              "(run me under `unshare -n`)", file=sys.stderr)
        return NOT_ISOLATED
    report = run(args.torture, args.only)
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
