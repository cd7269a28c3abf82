"""A real Kamailio registrar (digest auth, in-memory location table) for integration tests.

It doubles as a tiny carrier: an INVITE to a registered user is relayed to the registered Contact,
so a test can play "carrier calls the trunk" against it. Also holds a raw-UDP SIP client with MD5
digest auth, small enough to read, for tests that must see every status code on the wire.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from gateway.ops.front import stop_kamailio
from tests.support import udp_port_is_free, wait_until
from tests.support.sipp import unassigned_port

KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
KAMCMD = shutil.which("kamcmd") or "/usr/sbin/kamcmd"

# Placeholders are @NAME@ because both str.format braces and $-templates clash with Kamailio syntax.
_CFG = r"""#!KAMAILIO
debug=2
log_stderror=yes
children=2
auto_aliases=no
listen=udp:@ADDR@:@PORT@
listen=tcp:@ADDR@:@PORT@  # TCP too: a refused connection shows an outage at once
alias="@DOMAIN@:@PORT@"  # with the port: other local test peers share 127.0.0.1

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "xlog.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "ctl.so"
loadmodule "kex.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"

modparam("ctl", "binrpc", "unix:@CTL@")
modparam("usrloc", "db_mode", 0)
modparam("usrloc", "timer_interval", 1)  # drop expired bindings within a second, not 60 s
# Tests use expiries of a few seconds to watch refreshes happen.
modparam("registrar", "min_expires", 1)
modparam("registrar", "default_expires", 60)
modparam("registrar", "max_expires", 3600)
modparam("auth", "secret", "@SECRET@")

request_route {
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    if (has_totag()) {
        if (loose_route()) {
            t_relay();
            exit;
        }
        if (is_method("ACK") && t_check_trans()) {
            t_relay();
        } else if (!is_method("ACK")) {
            sl_send_reply("404", "Not here");
        }
        exit;
    }
    if (is_method("CANCEL")) {
        if (t_check_trans()) t_relay();
        exit;
    }
    if (is_method("REGISTER")) {
        route(REGISTRAR);
        exit;
    }
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {
        sl_send_reply("200", "OK");
        exit;
    }
    remove_hf("Route");
    if (is_method("INVITE")) record_route();
    if (!lookup("location")) {
        xlog("L_NOTICE", "REGLOG kind=notfound user=$rU method=$rm\n");
        sl_send_reply("404", "Not Found");
        exit;
    }
    xlog("L_NOTICE", "REGLOG kind=relay user=$tU method=$rm to=$ru\n");
    if (!t_relay()) sl_reply_error();
}

route[REGISTRAR] {
    xlog("L_NOTICE", "REGLOG kind=rcv user=$tU expires=$hdr(Expires) ct=$ct path=$hdr(Path)\n");
    if (!is_present_hf("Authorization")) {
        xlog("L_NOTICE", "REGLOG kind=challenged user=$tU\n");
        auth_challenge("@DOMAIN@", "1");
        exit;
    }
    $var(pw) = "";
@USERS@
    if ($var(pw) == "") {
        xlog("L_NOTICE", "REGLOG kind=denied user=$tU rc=unknown\n");
        sl_send_reply("403", "Forbidden");
        exit;
    }
    if (!pv_auth_check("@DOMAIN@", "$var(pw)", "0", "1")) {
        $var(rc) = $rc;
        # -4 stale nonce, -5 no credentials: challenge; anything else is a wrong user or password.
        if ($var(rc) == -4 || $var(rc) == -5) {
            xlog("L_NOTICE", "REGLOG kind=challenged user=$tU\n");
            auth_challenge("@DOMAIN@", "1");
        } else {
            xlog("L_NOTICE", "REGLOG kind=denied user=$tU rc=$var(rc)\n");
            sl_send_reply("403", "Forbidden");
        }
        exit;
    }
    consume_credentials();
    # 0x2: no reply from save() itself, so the "ok" line is in the log before the client can see
    # the 200 (a test that saw the registration succeed then finds it counted).
    if (!save("location", "0x2")) {
        sl_reply_error();
        exit;
    }
    xlog("L_NOTICE", "REGLOG kind=ok user=$tU expires=$hdr(Expires) ct=$ct\n");
    reg_send_reply();
}
"""

_LOG_LINE = re.compile(r"REGLOG (.*)$")


def _cfg_string(value: str) -> str:
    """Quote a value for a Kamailio string literal; refuse what could break out of it."""
    if any(c in value for c in '"\\\r\n'):
        raise ValueError(f"unsupported character in {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class RegisterEvent:
    """One REGLOG line: kind is rcv | challenged | denied | ok | relay | notfound."""

    kind: str
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def user(self) -> str:
        return self.fields.get("user", "")

    @property
    def expires(self) -> int | None:
        raw = self.fields.get("expires", "")
        return int(raw) if raw.isdigit() else None


class KamailioRegistrar:
    """Kamailio as a digest-auth registrar on 127.0.0.1:<free port>; a context manager."""

    def __init__(
        self,
        user: str,
        password: str,
        domain: str = "127.0.0.1",
        *,
        extra_users: dict[str, str] | None = None,
        address: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        self.users = {user: password, **(extra_users or {})}
        self.domain = domain
        self.address = address
        # Outside the ephemeral range: the port stays free while a test has the registrar down.
        self.port = port or unassigned_port(address, tcp=True)
        self._port_chosen = port is None
        self._started = False
        # Short path: the ctl unix socket path must fit in sun_path (108 bytes).
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="kamreg-"))
        self.log_path = self.runtime_dir / "kamailio.log"
        self._ctl = self.runtime_dir / "ctl.sock"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def render_config(self) -> str:
        users = "\n".join(
            f'    if ($au == "{_cfg_string(u)}") $var(pw) = "{_cfg_string(p)}";'
            for u, p in self.users.items()
        )
        values = {
            "@ADDR@": self.address,
            "@PORT@": str(self.port),
            "@DOMAIN@": _cfg_string(self.domain),
            "@CTL@": str(self._ctl),
            "@SECRET@": secrets.token_hex(8),
            "@USERS@": users,
        }
        text = _CFG
        for key, value in values.items():
            text = text.replace(key, value)
        return text

    def start(self) -> None:
        """Start it; a restart keeps its port (what the gateway under test was given). Only a
        first start on a port picked here moves on to another if that one was taken meanwhile."""
        if self._proc is not None:
            raise RuntimeError("registrar already running")
        for _ in range(3):
            logged = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._launch()
            try:
                if wait_until(self._answers_options, timeout=10):
                    self._started = True
                    return
            except RuntimeError:  # it exited
                with open(self.log_path, "rb") as f:
                    f.seek(logged)
                    taken = b"Address already in use" in f.read()
                if not (taken and self._port_chosen and not self._started):
                    self.stop()
                    raise
                self._reap()
                self.port = unassigned_port(self.address, tcp=True)
                continue
            self.stop()
            raise RuntimeError(f"kamailio registrar did not start; see {self.log_path}")
        raise RuntimeError(f"kamailio registrar found no free port; see {self.log_path}")

    def _launch(self) -> None:
        cfg = self.runtime_dir / "kamailio.cfg"
        cfg.write_text(self.render_config())
        log = open(self.log_path, "ab")  # append: a restart keeps the earlier REGISTER history
        try:
            self._proc = subprocess.Popen(
                [
                    KAMAILIO, "-f", str(cfg), "-DD", "-E",
                    "-P", str(self.runtime_dir / "kamailio.pid"),  # absolute: kamailio chdirs
                    "-Y", str(self.runtime_dir), "-w", str(self.runtime_dir),
                    "-m", "64", "-M", "8",
                ],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, for stop_kamailio()
            )
        finally:
            log.close()

    def stop(self) -> None:
        if not self._reap():
            return
        # Children may outlive the main process by a moment; the port must really be free
        # before a test's "registrar is down" phase begins.
        wait_until(lambda: udp_port_is_free(self.address, self.port), timeout=5)

    def _reap(self) -> bool:
        """End the main process if it runs; False if there was none."""
        proc, self._proc = self._proc, None
        if proc is None:
            return False
        stop_kamailio(proc)  # and any child that outlives the main process
        return True

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> KamailioRegistrar:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _answers_options(self) -> bool:
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError(f"kamailio exited; see {self.log_path}:\n{self.log_tail()}")
        with UdpSipClient() as client:
            try:
                return client.options(self.address, self.port, timeout=0.2).code == 200
            except TimeoutError:
                return False

    # -- inspection ------------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        return f"sip:{self.domain}:{self.port}"

    def kamcmd(self, *args: str) -> str:
        out = subprocess.run(
            [KAMCMD, "-s", f"unix:{self._ctl}", *args],
            capture_output=True, text=True, timeout=5, check=False,
        )
        return out.stdout + out.stderr

    def registered_contacts(self, aor_user: str) -> list[str]:
        """Contact URIs currently bound to `aor_user` (expired bindings excluded)."""
        out = self.kamcmd("ul.lookup", "location", aor_user)
        if "AOR not found" in out:
            return []
        contacts: list[str] = []
        for match in re.finditer(r"Address: (\S+)\s+Expires: (-?\d+|permanent)", out):
            address, expires = match.groups()
            if expires == "permanent" or int(expires) > 0:
                contacts.append(address)
        return contacts

    def events(self) -> list[RegisterEvent]:
        if not self.log_path.exists():
            return []
        found: list[RegisterEvent] = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            m = _LOG_LINE.search(line)
            if not m:
                continue
            pairs = dict(p.split("=", 1) for p in m.group(1).split(" ") if "=" in p)
            found.append(RegisterEvent(kind=pairs.pop("kind", "?"), fields=pairs))
        return found

    def register_count(self, user: str | None = None, *, kind: str = "rcv") -> int:
        """REGISTERs that arrived (kind="rcv") or were accepted (kind="ok"), optionally per user."""
        return sum(
            1 for e in self.events() if e.kind == kind and (user is None or e.user == user)
        )

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# -- raw SIP over UDP ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SipResponse:
    code: int
    reason: str
    headers: dict[str, list[str]]  # lower-case names
    raw: str

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
            "l": "content-length"}


def parse_response(data: bytes) -> SipResponse:
    text = data.decode(errors="replace")
    head = text.split("\r\n\r\n", 1)[0]
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("SIP/2.0"):
        raise ValueError(f"not a SIP response: {lines[0]!r}")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers.setdefault(_COMPACT.get(key, key), []).append(value.strip())
    return SipResponse(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, text)


def _auth_params(challenge: str) -> dict[str, str]:
    scheme, _, rest = challenge.partition(" ")
    if scheme.lower() != "digest":
        raise ValueError(f"not a digest challenge: {challenge!r}")
    return {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in re.finditer(r'(\w+)=(?:"([^"]*)"|([^,\s]*))', rest)
    }


def digest_authorization(
    challenge: str, method: str, uri: str, user: str, password: str, nc: int = 1
) -> str:
    """The Authorization header value answering an RFC 2617 MD5 challenge (qop=auth or none)."""
    p = _auth_params(challenge)
    realm, nonce = p["realm"], p["nonce"]

    def md5(s: str) -> str:
        return hashlib.md5(s.encode()).hexdigest()

    ha1 = md5(f"{user}:{realm}:{password}")
    ha2 = md5(f"{method}:{uri}")
    fields = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    qops = [q.strip() for q in p.get("qop", "").split(",") if q.strip()]
    if "auth" in qops:
        cnonce, ncs = secrets.token_hex(8), f"{nc:08x}"
        response = md5(f"{ha1}:{nonce}:{ncs}:{cnonce}:auth:{ha2}")
        fields += ["qop=auth", f"nc={ncs}", f'cnonce="{cnonce}"']
    else:
        response = md5(f"{ha1}:{nonce}:{ha2}")
    fields += [f'response="{response}"', "algorithm=MD5"]
    if "opaque" in p:
        fields.append(f'opaque="{p["opaque"]}"')
    return "Digest " + ", ".join(fields)


class UdpSipClient:
    """A blocking SIP UDP client for tests: one socket, requests built by hand, no retransmits."""

    def __init__(self, address: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, port))
        self.address, self.port = self.sock.getsockname()
        self.call_id = uuid.uuid4().hex
        self.tag = secrets.token_hex(4)
        self.cseq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> UdpSipClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        uri: str,
        dest: tuple[str, int],
        *,
        to: str | None = None,
        from_: str | None = None,
        extra: tuple[str, ...] = (),
        timeout: float = 2.0,
    ) -> SipResponse:
        """Send one request, return its final response (provisional ones are skipped)."""
        self.cseq += 1
        branch = "z9hG4bK" + secrets.token_hex(8)
        to = to or f"<{uri}>"
        from_ = from_ or f"<sip:test@{self.address}>"
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.address}:{self.port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: {from_};tag={self.tag}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} {method}",
            *extra,
            "Content-Length: 0",
        ]
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), dest)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no final response to {method} from {dest}")
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65535)
            except socket.timeout as exc:
                raise TimeoutError(f"no final response to {method} from {dest}") from exc
            try:
                resp = parse_response(data)
            except ValueError:
                continue  # a request (e.g. OPTIONS to us): not what we wait for
            if branch in (resp.header("via") or "") and resp.code >= 200:
                return resp

    def options(self, host: str, port: int, timeout: float = 2.0) -> SipResponse:
        return self.request("OPTIONS", f"sip:{host}:{port}", (host, port), timeout=timeout)

    def register(
        self,
        registrar: tuple[str, int],
        user: str,
        password: str,
        domain: str,
        *,
        expires: int = 60,
        contact: str | None = None,
        request_uri: str | None = None,
        timeout: float = 2.0,
    ) -> list[int]:
        """REGISTER with digest auth; returns every final status seen, e.g. [401, 200].

        `registrar` is where packets go (a proxy such as the front may sit there); the
        Request-URI defaults to the registrar's own address.
        """
        uri = request_uri or f"sip:{registrar[0]}:{registrar[1]}"
        aor = f"<sip:{user}@{domain}>"
        contact = contact or f"<sip:{user}@{self.address}:{self.port}>"
        base = (f"Contact: {contact}", f"Expires: {expires}")
        codes: list[int] = []
        resp = self.request("REGISTER", uri, registrar, to=aor, from_=aor, extra=base,
                            timeout=timeout)
        codes.append(resp.code)
        if resp.code in (401, 407):
            challenge = resp.header("www-authenticate") or resp.header("proxy-authenticate") or ""
            name = "Authorization" if resp.code == 401 else "Proxy-Authorization"
            auth = digest_authorization(challenge, "REGISTER", uri, user, password)
            resp = self.request("REGISTER", uri, registrar, to=aor, from_=aor,
                                extra=(*base, f"{name}: {auth}"), timeout=timeout)
            codes.append(resp.code)
        return codes
