"""sipp as a test peer: stand-in workers (UAS) that count calls, and callers (UAC) whose
final status codes are read back from sipp's own message trace.

    with SippUas(tmp_path) as worker:                       # answers OPTIONS and INVITE
        out = call("127.0.0.1", port, "100", workdir=tmp_path, expect=200)
        assert out.codes == [200] and worker.call_count == 1
"""

from __future__ import annotations

import itertools
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.support import free_udp_port, wait_until

SIPP = shutil.which("sipp") or "/usr/bin/sipp"

_SDP = """v=0
      o=sipp 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 8 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000"""

_REPLY_200 = """
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>"""


_END = '<action><log message="END [call_id]"/></action>'


def uas_scenario(*, hangup_after_ms: int | None = None, answer: int = 200) -> str:
    """A worker: 200 to OPTIONS (so dispatcher probing sees it alive), then per INVITE:
    answer=200: answer, hold until BYE (or send BYE itself after hangup_after_ms), 200 to INFO;
    answer=180: ring until CANCEL (200, then 487); anything else: reject with that code.
    Logs `INVITE <call-id>` when a call arrives, `END <call-id>` when it is over and
    `OPTIONS <call-id>` per ping."""
    tag = "[pid]SIPpTag01[call_number]"
    capture = ""  # sipp refuses variables that are set but never used: capture only if needed
    if answer == 200 and hangup_after_ms is None:
        # The front relays with several processes, so the caller's ACK can be overtaken by the
        # INFO or BYE sent right after it: both are taken before the ACK as well. A <nop> runs
        # only on sipp's next pass, and a request arriving before that is unexpected: so each
        # reply is followed by the requests that may come next, not by a <nop> jumping back.
        body = f"""
  <recv request="INFO" optional="true" next="early_info"/>
  <recv request="BYE" optional="true" next="bye">{_END}</recv>
  <recv request="ACK" next="incall"/>
  <label id="early_info"/>{_REPLY_200}
  <recv request="BYE" optional="true" next="bye">{_END}</recv>
  <recv request="ACK"/>
  <label id="incall"/>
  <recv request="INFO" optional="true" next="info"/>
  <recv request="BYE" next="bye">{_END}</recv>
  <label id="info"/>{_REPLY_200}
  <recv request="INFO" optional="true" next="info"/>
  <recv request="BYE">{_END}</recv>
  <label id="bye"/>{_REPLY_200}
  <nop next="end"/>"""
    elif answer == 200:
        capture = """
      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="remote"/>
      <ereg regexp=".*" search_in="hdr" header="To:" assign_to="local"/>"""
        body = f"""
  <pause milliseconds="{hangup_after_ms}"/>
  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: [$local];tag={tag}
      To: [$remote]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200">{_END}</recv>
  <nop next="end"/>"""
    elif answer == 180:
        capture = """
      <ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" assign_to="cseq"/>"""
        body = f"""
  <recv request="CANCEL"/>{_REPLY_200}
  <send>
    <![CDATA[

      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag={tag}
      [last_Call-ID:]
      CSeq: [$cseq] INVITE
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK">{_END}</recv>
  <nop next="end"/>"""
    else:
        body = f"""
  <recv request="ACK">{_END}</recv>
  <nop next="end"/>"""
    if answer == 200:
        first = f"""
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag={tag}
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:worker@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      {_SDP}
"""
    else:
        first = f"""
      SIP/2.0 {answer} {"Ringing" if answer == 180 else "Test Answer"}
      [last_Via:]
      [last_From:]
      [last_To:];tag={tag}
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:worker@[local_ip]:[local_port]>
      Content-Length: 0
"""
    # sipp sends nothing new while a message it retransmits is unacknowledged, and only an ACK or
    # BYE acknowledges the 200: an INFO overtaking the ACK would go unanswered. So the 200 of a
    # call held until BYE is sent once (loopback does not lose it, and a lost one would still be
    # sent again for the front's INVITE retransmission).
    hangs_up = answer == 200 and hangup_after_ms is not None
    retrans = ' retrans="500"' if hangs_up else ""
    answer_ack = '\n  <recv request="ACK"/>' if hangs_up else ""  # else `body` takes the ACK
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="test worker">
  <recv request="OPTIONS" optional="true" next="options">
    <action><log message="OPTIONS [call_id]"/></action>
  </recv>
  <recv request="INVITE" rrs="true">
    <action>{capture}
      <log message="INVITE [call_id]"/>
    </action>
  </recv>
  <send{retrans}>
    <![CDATA[
{first}
    ]]>
  </send>{answer_ack}{body}
  <label id="options"/>{_REPLY_200}
  <label id="end"/>
</scenario>
"""


def uac_scenario(
    *,
    expect: int = 200,
    hold_ms: int | None = 500,
    info: bool = False,
    remote_hangup: bool = False,
    cancel: bool = False,
) -> str:
    """A caller: INVITE, expect final status `expect`. On 200: ACK, optional INFO, then BYE after
    hold_ms (or wait for the callee's BYE). On anything else: ACK the failure and stop.
    hold_ms=None: hold until a NOTIFY comes in (`SippUac.release`), then BYE.
    cancel=True: CANCEL once it rings (180), then expect 487."""
    held = hold_ms is None and not remote_hangup
    if held and (info or expect != 200 or cancel):
        raise ValueError("a held call (hold_ms=None) is answered, without INFO")
    invite = f"""
  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[caller]@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      {_SDP}

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>"""
    if cancel:
        # sipp wants a mandatory recv right before a send: 180 is it, so no optional 183 after.
        invite = invite.replace('response="180" optional="true"', 'response="180"').replace(
            '\n  <recv response="183" optional="true"/>', "")
        invite += """
  <send>
    <![CDATA[

      CANCEL sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="487" optional="true" next="terminated"/>
  <recv response="200"/>"""
        # The front sends the CANCEL on before answering it, so the 487 may come first.
        expect = 487
    in_dialog = """
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]"""
    if expect != 200:
        terminated = '\n  <label id="terminated"/>' if cancel else ""
        rest = f"""
  <recv response="{expect}"/>{terminated}
  <send>
    <![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>"""
    else:
        # A held call's BYE follows the NOTIFY: its To is kept from the 200, not the last message.
        keep_to = """
    <action><ereg regexp=".*" search_in="hdr" header="To:" assign_to="callee"/></action>
  """ if held else ""
        rest = f"""
  <recv response="200" rrs="true">{keep_to}</recv>
  <send>
    <![CDATA[

      ACK [next_url] SIP/2.0{in_dialog}
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>"""
        if info:
            rest += f"""
  <send retrans="500">
    <![CDATA[

      INFO [next_url] SIP/2.0{in_dialog}
      CSeq: 2 INFO
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal=5
      Duration=160

    ]]>
  </send>
  <recv response="200"/>"""
        if remote_hangup:
            rest += f"""
  <recv request="BYE"/>{_REPLY_200}"""
        else:
            # The NOTIFY is the test's own signal: not part of the dialog, so not answered
            # (sipp would send the 200 to the front, its peer).
            # Held for as long as the test needs (its fixture stops sipp if it never comes).
            hold = (f'\n  <recv request="NOTIFY" timeout="{_HELD_S * 1000}"/>' if held
                    else f'\n  <pause milliseconds="{hold_ms}"/>')
            bye_dialog = in_dialog.replace("[last_To:]", "To: [$callee]") if held else in_dialog
            rest += f"""{hold}
  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0{bye_dialog}
      CSeq: 3 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>"""
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="test caller">{invite}{rest}
</scenario>
"""


# sipp binds, in this order: its SIP socket (-p), its RTP echo sockets at -mp and -mp + 2, then
# its control socket (-cp, or one of the next 60 ports). A taken SIP or RTP port is fatal (exit
# 254). Ports are picked free just before the start, so another process (a parallel test, a
# pjsua worker's RTP) can still take one meanwhile: that start is retried with fresh ports.
_BIND_ERROR = 254
_HELD_S = 600  # how long a held call waits for its release at most
_START_ATTEMPTS = 3
_CONTROL_TRIES = 60
_START_TIMEOUT = 10.0
_names = itertools.count(1)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def unassigned_port(address: str = "127.0.0.1", *, tcp: bool = False) -> int:
    """A port free now (UDP, and TCP too if `tcp`) below the kernel's ephemeral range: the kernel
    never hands it to a socket bound to port 0 or connecting out, so a port that must stay ours
    while its server is down (a worker revived on it, a restarted registrar) is not taken by
    some other socket meanwhile, as a port from free_port() can be."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(10000, low) if low > 11000 else free_udp_port(address)
        kinds = (socket.SOCK_DGRAM, socket.SOCK_STREAM) if tcp else (socket.SOCK_DGRAM,)
        socks = [socket.socket(socket.AF_INET, kind) for kind in kinds]
        try:
            for sock in socks:
                sock.bind((address, port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return port
    raise RuntimeError(f"no free port below the ephemeral range on {address}")


def _free_media_port(address: str) -> int:
    """A port P with P and P + 2 both free: sipp's audio and video echo sockets."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as audio:
            audio.bind((address, 0))
            port = int(audio.getsockname()[1])
            if port + 2 > 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as video:
                try:
                    video.bind((address, port + 2))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free pair of RTP ports on {address}")


def _udp_ports(pid: int) -> set[int]:
    """Local ports of the UDP sockets process `pid` holds (its fds matched to /proc/net/udp)."""
    inodes: set[str] = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports: set[int] = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _unique_name(workdir: Path, prefix: str) -> str:
    while True:
        name = f"{prefix}{next(_names)}"
        if not (workdir / f"{name}.xml").exists():
            return name


def _start_sipp(
    scenario: Path, address: str, stem: Path, *, port: int | None, transport: str = "u1",
    extra: tuple[str, ...] = (),
) -> tuple[subprocess.Popen[bytes], int]:
    """Start sipp; return once it holds all its sockets (or has already exited, for a reason
    other than a taken port), with its SIP port. `port` None: a free one, picked per attempt."""
    for attempt in range(1, _START_ATTEMPTS + 1):
        sip = port or unassigned_port(address, tcp=transport.startswith("t"))
        media, control = _free_media_port(address), free_udp_port(address)
        args = [
            SIPP, "-sf", str(scenario), "-i", address, "-p", str(sip), "-t", transport,
            "-nostdin", "-trace_msg", "-message_file", f"{stem}.messages.log",
            "-trace_err", "-error_file", f"{stem}.errors.log",
            "-trace_logs", "-log_file", f"{stem}.actions.log",
            "-mp", str(media),  # distinct RTP echo ports so several sipps coexist
            # sipp's control socket would otherwise sit on 0.0.0.0:8888 and up.
            "-ci", address, "-cp", str(control),
            *extra,
        ]
        with open(f"{stem}.stdout", "ab") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=stem.parent)

        def up(proc: subprocess.Popen[bytes] = proc, sip: int = sip, media: int = media,
               control: int = control) -> bool:
            if proc.poll() is not None:
                return True
            ports = _udp_ports(proc.pid)
            # The control socket is bound last, right before sipp starts its traffic.
            return {media, media + 2} <= ports and any(
                control <= p < control + _CONTROL_TRIES for p in ports - {sip, media, media + 2})

        if not wait_until(up, timeout=_START_TIMEOUT, interval=0.01):
            proc.kill()
            proc.wait()
            raise RuntimeError(f"sipp did not bind its sockets in {_START_TIMEOUT} s; see {stem}.*")
        if proc.returncode != _BIND_ERROR:
            return proc, sip
        # A port was taken between picking it and sipp binding it: keep the log, try others.
        errors = Path(f"{stem}.errors.log")
        if errors.exists():
            errors.rename(f"{stem}.errors.attempt{attempt}.log")
    raise RuntimeError(f"sipp could not bind its ports {_START_ATTEMPTS} times; "
                       f"see {stem}.errors.attempt*.log")


class SippUas:
    """A sipp UAS on address:<free port>, standing in for a worker; counts calls it took."""

    def __init__(
        self,
        workdir: Path,
        *,
        name: str | None = None,
        address: str = "127.0.0.1",
        port: int | None = None,
        hangup_after_ms: int | None = None,
        answer: int = 200,
    ) -> None:
        self.address = address
        self._fixed_port = port
        self.port = port or 0  # a free one is picked by start()
        self.name = name or _unique_name(workdir, "uas")
        self.workdir = workdir
        self._stem = workdir / self.name
        self._scenario = workdir / f"{self.name}.xml"
        self._scenario.write_text(uas_scenario(hangup_after_ms=hangup_after_ms, answer=answer))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"sip:{self.address}:{self.port}"

    def start(self) -> SippUas:
        """Returns once sipp holds its SIP port (and the rest: it can no longer fail to bind)."""
        if self._proc is not None:
            raise RuntimeError("already running")
        self._proc, self.port = _start_sipp(self._scenario, self.address, self._stem,
                                            port=self._fixed_port)
        if self._proc.poll() is not None:
            raise RuntimeError(f"sipp UAS exited ({self._proc.returncode}); see {self._stem}.*")
        return self

    def stop(self, *, crash: bool = False) -> None:
        """Stop it; `crash=True` is kill -9, as a dying worker would."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> SippUas:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _log_lines(self) -> list[str]:
        path = Path(f"{self._stem}.actions.log")
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    def invites(self) -> list[str]:
        """Call-IDs of the INVITEs this worker received, in order."""
        return [line.split(" ", 1)[1] for line in self._log_lines() if line.startswith("INVITE ")]

    @property
    def call_count(self) -> int:
        return len(self.invites())

    @property
    def options_count(self) -> int:
        """OPTIONS pings received so far."""
        return sum(1 for line in self._log_lines() if line.startswith("OPTIONS "))

    @property
    def active_calls(self) -> int:
        lines = self._log_lines()
        return sum(1 for x in lines if x.startswith("INVITE ")) - sum(
            1 for x in lines if x.startswith("END ")
        )


@dataclass(frozen=True, slots=True, repr=False)
class CallOutcome:
    """What sipp saw: exit status (0 = every call went as the scenario expected) and, per call,
    the final status of its INVITE in arrival order (None if no final response came)."""

    returncode: int
    codes: list[int | None]
    messages_log: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def __repr__(self) -> str:
        """For assertion messages: the outcome and what sipp reported as going wrong."""
        errors = self.messages_log.with_name(
            self.messages_log.name.replace(".messages.log", ".errors.log"))
        text = errors.read_text(errors="replace")[-3000:] if errors.exists() else ""
        return (f"CallOutcome(returncode={self.returncode}, codes={self.codes}); "
                f"{errors}:\n{text or '(empty)'}")


_BLOCK = re.compile(r"message received \[\d+\] bytes :\s*\n\n(.*?)(?=\n-{20,}|\Z)", re.S)
_SENT = re.compile(r"message sent \(\d+ bytes\):\s*\n\n(.*?)(?=\n-{20,}|\Z)", re.S)


def _calls_with(messages_log: Path, method: str, *, sent: bool) -> list[str]:
    """Call-IDs for which a sipp trace shows a `method` request sent (or received)."""
    text = messages_log.read_text(errors="replace") if messages_log.exists() else ""
    found: list[str] = []
    for block in (_SENT if sent else _BLOCK).finditer(text):
        call_id = re.search(r"^Call-ID:\s*(\S+)", block.group(1), re.M | re.I)
        if block.group(1).startswith(f"{method} ") and call_id and call_id.group(1) not in found:
            found.append(call_id.group(1))
    return found


def final_codes(messages_log: Path) -> list[int | None]:
    """Final INVITE status per call this sipp placed (its INVITEs sent, in order) from its
    -trace_msg file; a stray message to its port (another call's) is not counted."""
    text = messages_log.read_text(errors="replace") if messages_log.exists() else ""
    codes: dict[str, int | None] = dict.fromkeys(_calls_with(messages_log, "INVITE", sent=True))
    for block in _BLOCK.finditer(text):
        msg = block.group(1)
        status = re.match(r"SIP/2\.0 (\d{3})", msg)
        cseq = re.search(r"^CSeq:\s*\d+\s+(\w+)", msg, re.M | re.I)
        call_id = re.search(r"^(?:Call-ID|i):\s*(\S+)", msg, re.M | re.I)
        if status and cseq and call_id and cseq.group(1) == "INVITE":
            code = int(status.group(1))
            if code >= 200 and call_id.group(1) in codes and codes[call_id.group(1)] is None:
                codes[call_id.group(1)] = code
    return list(codes.values())


class SippUac:
    """sipp placing `calls` calls (at most `concurrent` at once) to host:port, dialling `number`."""

    def __init__(
        self,
        host: str,
        port: int,
        number: str,
        *,
        workdir: Path,
        calls: int = 1,
        concurrent: int | None = None,
        rate: int = 50,
        expect: int = 200,
        hold_ms: int | None = 500,  # None: until release()
        info: bool = False,
        remote_hangup: bool = False,
        cancel: bool = False,
        caller: str = "5550001",
        local_address: str = "127.0.0.1",
        transport: str = "u1",  # sipp -t: u1 = one UDP socket, t1 = one TCP connection
        timeout_s: float = 20.0,
    ) -> None:
        self.host, self.port, self.number = host, port, number
        self.calls = calls
        self.held = hold_ms is None and not remote_hangup
        if self.held and concurrent is not None and concurrent < calls:
            raise ValueError("held calls (hold_ms=None) are all placed at once")
        self.timeout_s = timeout_s
        self.local_address = local_address
        self.transport = transport
        self.name = _unique_name(workdir, "uac")
        self._stem = workdir / self.name
        self.workdir = workdir
        self._scenario = workdir / f"{self.name}.xml"
        self._scenario.write_text(uac_scenario(expect=expect, hold_ms=hold_ms, info=info,
                                               remote_hangup=remote_hangup, cancel=cancel))
        self._extra = (
            f"{host}:{port}", "-s", number, "-key", "caller", caller,
            "-m", str(calls), "-l", str(concurrent or calls), "-r", str(rate),
            "-recv_timeout", str(int(timeout_s * 1000)),
            "-timeout", f"{_HELD_S + int(timeout_s) if self.held else int(timeout_s) + 5}s",
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._sip_port = 0

    def start(self) -> SippUac:
        """Returns once sipp is up and placing its calls (or, for quick ones, already done)."""
        if self._proc is not None:
            raise RuntimeError("already started")
        self._proc, self._sip_port = _start_sipp(
            self._scenario, self.local_address, self._stem, port=None,
            transport=self.transport, extra=self._extra)
        return self

    def wait_answered(self, timeout: float = 30.0) -> bool:
        """Wait until every call got its final answer and sent the ACK (or sipp is gone)."""
        if self._proc is None:
            raise RuntimeError("not started")
        proc, log = self._proc, Path(f"{self._stem}.messages.log")
        return wait_until(lambda: proc.poll() is not None
                          or len(_calls_with(log, "ACK", sent=True)) >= self.calls,
                          timeout=timeout)

    def release(self, timeout: float = 30.0) -> None:
        """Hang up a held caller's calls (hold_ms=None): each one, once it has sent its ACK, is
        sent a NOTIFY, upon which it sends its BYE. Returns once sipp took every NOTIFY (or is
        gone: wait() tells what happened)."""
        if self._proc is None or not self.held or self.transport != "u1":
            raise RuntimeError("release() is for a started UDP caller with hold_ms=None")
        proc, log = self._proc, Path(f"{self._stem}.messages.log")
        self.wait_answered(timeout)  # a NOTIFY before the ACK would be unexpected: call aborted
        calls = _calls_with(log, "ACK", sent=True)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((self.local_address, 0))
            me = f"{self.local_address}:{sock.getsockname()[1]}"
            for call_id in calls:
                sock.sendto((
                    f"NOTIFY sip:{self.local_address}:{self._sip_port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {me};branch=z9hG4bK{uuid.uuid4().hex[:16]}\r\n"
                    f"From: <sip:release@{me}>;tag={uuid.uuid4().hex[:8]}\r\n"
                    f"To: <sip:{self.local_address}:{self._sip_port}>\r\n"
                    f"Call-ID: {call_id}\r\nCSeq: 1 NOTIFY\r\nEvent: release\r\n"
                    "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode(),
                    (self.local_address, self._sip_port))
        if not wait_until(lambda: proc.poll() is not None
                          or set(calls) <= set(_calls_with(log, "NOTIFY", sent=False)),
                          timeout=timeout):
            raise RuntimeError(f"sipp caller took no NOTIFY within {timeout} s; see {log}")

    def wait(self, timeout: float | None = None) -> CallOutcome:
        if self._proc is None:
            raise RuntimeError("not started")
        try:
            rc = self._proc.wait(timeout=timeout or self.timeout_s + 10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            rc = self._proc.wait()
        log = Path(f"{self._stem}.messages.log")
        return CallOutcome(returncode=rc, codes=final_codes(log), messages_log=log)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def call(
    host: str,
    port: int,
    number: str,
    *,
    workdir: Path,
    expect: int = 200,
    calls: int = 1,
    hold_ms: int = 200,
    info: bool = False,
    remote_hangup: bool = False,
    cancel: bool = False,
    local_address: str = "127.0.0.1",
    transport: str = "u1",
    timeout_s: float = 20.0,
) -> CallOutcome:
    """Place call(s) and wait: `call(h, p, "100", workdir=d, expect=503).codes == [503]`."""
    uac = SippUac(host, port, number, workdir=workdir, expect=expect, calls=calls,
                  hold_ms=hold_ms, info=info, remote_hangup=remote_hangup, cancel=cancel,
                  local_address=local_address, transport=transport, timeout_s=timeout_s)
    return uac.start().wait()


def flood_scenario(method: str = "INVITE") -> str:
    """A stranger's flood: each sipp "call" sends one request and waits for nothing."""
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="flood">
  <send>
    <![CDATA[

      {method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:scanner@[local_ip]:[local_port]>;tag=[pid]Flood[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 {method}
      Contact: <sip:scanner@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      {_SDP}

    ]]>
  </send>
</scenario>
"""


class SippFlood:
    """sipp sending `count` requests at `rate` per second from `local_address`, one per Call-ID,
    answering nothing; `sent()` and `replies()` read its message trace."""

    def __init__(self, host: str, port: int, *, workdir: Path, local_address: str,
                 rate: int = 300, count: int = 3000, number: str = "+14155550100",
                 method: str = "INVITE") -> None:
        self.name = _unique_name(workdir, "flood")
        self._stem = workdir / self.name
        self._scenario = workdir / f"{self.name}.xml"
        self._scenario.write_text(flood_scenario(method))
        self.local_address = local_address
        self.rate, self.count = rate, count
        self._extra = (f"{host}:{port}", "-s", number, "-m", str(count), "-l", str(count),
                       "-r", str(rate), "-timeout", f"{count // rate + 30}s")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SippFlood:
        self._proc, _ = _start_sipp(self._scenario, self.local_address, self._stem, port=None,
                                    extra=self._extra)
        return self

    def wait(self, timeout: float | None = None) -> int:
        assert self._proc is not None
        try:
            return self._proc.wait(timeout=timeout or self.count / self.rate + 30)
        except subprocess.TimeoutExpired:
            self.stop()
            return self._proc.wait()

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def _trace(self) -> str:
        path = Path(f"{self._stem}.messages.log")
        return path.read_text(errors="replace") if path.exists() else ""

    def sent(self) -> int:
        return len(_SENT.findall(self._trace()))

    def replies(self) -> int:
        """Responses that came back (403s before the ban; none once banned)."""
        return sum(1 for m in _BLOCK.finditer(self._trace()) if m.group(1).startswith("SIP/2.0"))

    def __enter__(self) -> SippFlood:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
