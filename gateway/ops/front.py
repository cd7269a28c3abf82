"""The Kamailio front for multi-worker mode: renders its config and runs it.

Callers and carriers talk to the front; the front dispatches each INVITE to the worker with the
fewest calls (dispatcher algorithm 10), fails over on busy/dead workers, probes workers with
OPTIONS, and stays in the signalling path (Record-Route) so in-dialog requests follow the call.
Dispatched calls are tracked as Kamailio dialogs tagged with their worker, so the calls of a
worker that died can be hung up from the front (`Front.end_dialogs_on`).
Workers send their trunk REGISTERs (and outbound requests) out through the front.
Every other source is screened first (route SCREEN): pike counts its requests, one that floods is
banned for `ban_seconds` (an htable entry that expires by itself) and dropped silently meanwhile;
a source in no trunk's allow list gets 403, or nothing with unknown_sources="drop".
Pure rendering plus process control: nothing here imports pjsua2.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict

from gateway.errors import GatewayError

KAMAILIO = "kamailio"
KAMCMD = "kamcmd"
WORKER_SET = 1  # dispatcher group holding the workers
_TRUSTED_TCP_LIFETIME = 3605  # a carrier's TCP connection may idle through a long call

State = Literal["active", "inactive", "disabled", "probing"]
# Kamailio state letters. 'd' for drain: 'i' would be undone by the next good OPTIONS ping.
_STATE_CODES: dict[str, str] = {"active": "ap", "inactive": "ip", "disabled": "d", "probing": "tp"}
_FLAG_STATES = {"A": "active", "I": "inactive", "D": "disabled", "T": "trying"}
_UID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Destination(TypedDict):
    """One worker as the front sees it (parsed from `kamcmd dispatcher.list`)."""

    uri: str
    uid: str
    flags: str  # Kamailio's letters: A/I/T/D state + P (probed) or X (not probed)
    state: str  # active | inactive | trying | disabled
    probing: bool
    max_load: int | None
    load: int | None  # calls in progress through the front


class FrontDialog(TypedDict):
    """One call the front tracks (parsed from `kamcmd dlg.list`)."""

    h_entry: int
    h_id: int
    call_id: str
    state: int  # Kamailio's: 1 unconfirmed, 2 early, 3 answered (no ACK yet), 4 confirmed, 5 ended
    worker: str | None  # uid of the worker the call was dispatched to; None: not dispatched
    ended: bool  # the front sent its BYEs (end_dialogs_on); state stays until a BYE is answered


# Dialog states whose calls can be hung up with a BYE (they have both tags).
_ANSWERED_STATES = (3, 4)


class FrontError(GatewayError):
    """The Kamailio front could not be configured, started or controlled."""


@dataclass(frozen=True, slots=True)
class FrontWorker:
    uid: str
    address: str
    port: int
    max_load: int

    @property
    def uri(self) -> str:
        return f"sip:{_host(self.address)}:{self.port}"


@dataclass(frozen=True, slots=True)
class FrontSettings:
    listen_address: str
    listen_port: int
    workers: tuple[FrontWorker, ...]
    allow: tuple[str, ...]  # CIDRs/addresses that may send INVITEs (workers are always trusted)
    runtime_dir: Path
    ping_interval: int = 2
    worker_timeout_ms: int = 2000  # no reply from a worker within this → try the next one
    advertise: str | None = None  # public address for Via/Record-Route when behind NAT
    # Sources in no allow list (scanners, strangers): "reject" answers 403, "drop" answers nothing.
    unknown_sources: str = "reject"
    # Untrusted sources: a burst of more than source_burst requests, or more than source_rate
    # per second sustained, earns a ban (pike counts per 2 s unit). Settings' flood_* values.
    source_rate: float = 10.0
    source_burst: int = 20
    ban_seconds: int = 300
    tcp_max_connections: int = 2048
    # TCP connections idle this long are closed; trusted sources get 3605 s on each request, so
    # only connections that never identified as a trunk or worker go this soon.
    tcp_idle_seconds: int = 20


class ScreeningStats(TypedDict):
    """The front's flood and scanner counters (kamcmd cnt.grp_get_all + htable.stats)."""

    bans: int  # sources banned since start
    banned_now: int  # bans not yet expired
    dropped_banned: int  # requests dropped because their source is banned
    unknown_source: int  # requests from sources in no allow list (403 or dropped)


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _validate(s: FrontSettings) -> list[str]:
    """Everything that goes into the config is checked here, so nothing can inject script.
    Returns the allow list as normalised networks."""
    try:
        for address in (s.listen_address, s.advertise, *(w.address for w in s.workers)):
            if address is not None:
                ipaddress.ip_address(address)
        networks = [str(ipaddress.ip_network(a, strict=False)) for a in s.allow]
    except ValueError as exc:
        raise FrontError(f"front settings: {exc}") from exc
    if any(c in str(s.runtime_dir) for c in '"\\\r\n'):
        raise FrontError(f"front runtime_dir has quote or control characters: {s.runtime_dir}")
    if not 0 < s.listen_port < 65536:
        raise FrontError(f"front listen port out of range: {s.listen_port}")
    if not s.workers:
        raise FrontError("the front needs at least one worker")
    seen: set[str] = set()
    for w in s.workers:
        if not _UID.match(w.uid) or w.uid in seen:
            raise FrontError(f"worker uid must be unique and [A-Za-z0-9_.-]: {w.uid!r}")
        seen.add(w.uid)
        if not 0 < w.port < 65536 or w.max_load < 1:
            raise FrontError(f"worker {w.uid}: bad port {w.port} or max_load {w.max_load}")
    if s.ping_interval < 1 or s.worker_timeout_ms < 100:
        raise FrontError("ping_interval must be >= 1 s and worker_timeout_ms >= 100 ms")
    if s.unknown_sources not in ("reject", "drop"):
        raise FrontError(f"unknown_sources must be reject or drop: {s.unknown_sources!r}")
    if min(s.source_rate, s.source_burst, s.ban_seconds, s.tcp_idle_seconds) < 1:
        raise FrontError("source_rate, source_burst, ban_seconds, tcp_idle_seconds must be >= 1")
    if not 16 <= s.tcp_max_connections <= 65536:
        raise FrontError(f"tcp_max_connections out of range: {s.tcp_max_connections}")
    return networks


def render_dispatcher_list(s: FrontSettings) -> str:
    # setid destination flags priority attrs; flags 8 = probe it with OPTIONS.
    lines = ["# setid destination flags priority attrs"]
    for w in s.workers:
        lines.append(f"{WORKER_SET} {w.uri} 8 0 duid={w.uid};maxload={w.max_load}")
    return "\n".join(lines) + "\n"


def render_config(s: FrontSettings, *, ctl_socket: Path | None = None) -> tuple[str, str]:
    """(kamailio.cfg text, dispatcher.list text) for these settings."""
    networks = _validate(s)
    runtime = s.runtime_dir.resolve()
    ctl = ctl_socket or _ctl_path(runtime)
    allow = "\n".join(f'    if (is_in_subnet("$si", "{n}")) return 1;' for n in networks)
    adv = f" advertise {_host(s.advertise)}:{s.listen_port}" if s.advertise else ""
    if s.unknown_sources == "drop":
        unknown = "    route(SILENCE);"
    else:
        unknown = ('    xlog("L_NOTICE", "FRONT denied method=$rm src=$si:$sp\\n");\n'
                   '    sl_send_reply("403", "Forbidden");\n    exit;')
    values = {
        "@LISTEN@": f"{_host(s.listen_address)}:{s.listen_port}{adv}",
        "@SELF@": f"{_host(s.advertise or s.listen_address)}:{s.listen_port}",
        "@CTL@": str(ctl),
        "@LIST@": str(runtime / "dispatcher.list"),
        "@PING@": str(s.ping_interval),
        "@TIMEOUT@": str(s.worker_timeout_ms),
        "@NWORKERS@": str(len(s.workers)),
        "@SET@": str(WORKER_SET),
        "@ALLOW@": allow or "    # nobody but the workers",
        "@UNKNOWN@": unknown,
        "@PIKE@": str(max(s.source_burst, math.ceil(2 * s.source_rate))),  # per 2 s unit
        "@BAN@": str(s.ban_seconds),
        "@TCPMAX@": str(s.tcp_max_connections),
        "@TCPIDLE@": str(s.tcp_idle_seconds),
        "@TCPTRUSTED@": str(_TRUSTED_TCP_LIFETIME),
    }
    text = _CFG
    for key, value in values.items():
        text = text.replace(key, value)
    return text, render_dispatcher_list(s)


def parse_counters(text: str) -> dict[str, int]:
    """`kamcmd cnt.grp_get_all script` output → {name: value}."""
    out: dict[str, int] = {}
    todo = parse_rpc_tree(text)
    while todo:
        key, value = todo.pop()
        if isinstance(value, list):
            todo += value  # kamcmd wraps the group in an anonymous record
        elif value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def _ctl_path(runtime: Path) -> Path:
    # A unix socket path must fit in sun_path (108 bytes); long runtime dirs get a short one.
    path = runtime / "ctl.sock"
    if len(str(path)) < 100:
        return path
    return Path(tempfile.gettempdir()) / f"gwfront-{uuid.uuid4().hex[:12]}.sock"


def options_ping(address: str, port: int, timeout: float = 0.5) -> int | None:
    """Send one SIP OPTIONS over UDP; the status code of the reply, or None on silence."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))
        me, my_port = sock.getsockname()[:2]
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        msg = (
            f"OPTIONS sip:{_host(address)}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {_host(me)}:{my_port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{_host(me)}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{_host(address)}:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(msg.encode(), (address, port))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65535)
            except (TimeoutError, ConnectionRefusedError):
                return None
            m = re.match(rb"SIP/2\.0 (\d{3}) ", data)
            if m and branch.encode() in data:
                return int(m.group(1))
    return None


def stop_kamailio(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a Kamailio started in the foreground (-DD) as the leader of its own process group
    (start_new_session): SIGTERM to the main process, which stops its children and waits for
    them. A child that misses the SIGTERM (seen with TCP processes, which then spin on their
    closed pipes, logging without end) keeps the main process waiting: after `timeout` it is
    killed, and whatever is left of the group with it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # children outliving the main process, if any


def parse_rpc_tree(text: str) -> list[tuple[str, object]]:
    """kamcmd's brace output as nested (key, value) pairs; repeated keys (DEST) stay in order.
    A bare `{` (one record of a list, e.g. each dialog of dlg.list) is a child keyed ""."""
    stack: list[list[tuple[str, object]]] = [[]]
    for raw in text.splitlines():
        line = raw.strip()
        if line == "}":
            if len(stack) > 1:
                stack.pop()
            continue
        if line == "{":
            record: list[tuple[str, object]] = []
            stack[-1].append(("", record))
            stack.append(record)
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        value = value.strip()
        if value == "{":
            child: list[tuple[str, object]] = []
            stack[-1].append((key.strip(), child))
            stack.append(child)
        else:
            stack[-1].append((key.strip(), value))
    return stack[0]


def _walk(tree: list[tuple[str, object]], key: str) -> list[list[tuple[str, object]]]:
    found: list[list[tuple[str, object]]] = []
    for k, v in tree:
        if isinstance(v, list):
            if k == key:
                found.append(v)
            found.extend(_walk(v, key))
    return found


class Front:
    """Runs Kamailio as the SIP front for the workers in `settings`."""

    def __init__(self, settings: FrontSettings) -> None:
        _validate(settings)
        self.settings = settings
        self.runtime_dir = settings.runtime_dir.resolve()
        self.log_path = self.runtime_dir / "kamailio.log"
        self.pid_path = self.runtime_dir / "kamailio.pid"  # absolute: kamailio chdirs to /
        self._ctl = _ctl_path(self.runtime_dir)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            raise FrontError("front already running")
        binary = shutil.which(KAMAILIO) or shutil.which(KAMAILIO, path="/usr/sbin:/sbin")
        if binary is None:
            raise FrontError("kamailio not found (Debian package 'kamailio')")
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        cfg_text, ds_text = render_config(self.settings, ctl_socket=self._ctl)
        cfg = self.runtime_dir / "kamailio.cfg"
        cfg.write_text(cfg_text)
        (self.runtime_dir / "dispatcher.list").write_text(ds_text)
        self._ctl.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [
                    binary, "-f", str(cfg), "-P", str(self.pid_path), "-DD", "-E",
                    "-m", "256", "-M", "8",
                    "-Y", str(self.runtime_dir), "-w", str(self.runtime_dir),
                ],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() can end all of it
            )
        address = self.settings.listen_address
        deadline = time.monotonic() + timeout
        while options_ping(address, self.settings.listen_port, timeout=0.2) != 200:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
                raise FrontError(
                    f"kamailio front did not start; {self.log_path} ends with:\n" + "\n".join(tail)
                )

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        stop_kamailio(proc, timeout)
        if self._ctl.parent != self.runtime_dir:
            self._ctl.unlink(missing_ok=True)

    def __enter__(self) -> Front:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kamcmd(self, *args: str) -> str:
        binary = shutil.which(KAMCMD) or shutil.which(KAMCMD, path="/usr/sbin:/sbin") or KAMCMD
        out = subprocess.run(
            [binary, "-s", f"unix:{self._ctl}", *args],
            capture_output=True, text=True, timeout=5, check=False,
        )
        if out.returncode != 0 or out.stdout.startswith("error:"):
            raise FrontError(f"kamcmd {' '.join(args)}: {(out.stdout + out.stderr).strip()}")
        return out.stdout

    def _worker(self, worker: str | FrontWorker) -> FrontWorker:
        key = worker.uid if isinstance(worker, FrontWorker) else worker
        for w in self.settings.workers:
            if key in (w.uid, w.uri):
                return w
        raise FrontError(f"unknown worker {key!r}")

    def set_worker_state(self, worker: str | FrontWorker, state: State) -> None:
        """active: takes calls. inactive: none until its next good ping. probing: still takes
        calls, out at its next failed ping. disabled (drain): no new calls and no pings until
        set active again. Calls in progress are never touched. Kept only until a restart."""
        w = self._worker(worker)
        if state not in _STATE_CODES:
            raise FrontError(f"unknown worker state {state!r}")
        self.kamcmd("dispatcher.set_state", _STATE_CODES[state], str(WORKER_SET), w.uri)

    def destinations(self) -> list[Destination]:
        """One dict per worker, in Kamailio's order."""
        tree = parse_rpc_tree(self.kamcmd("dispatcher.list"))
        result: list[Destination] = []
        for dest in _walk(tree, "DEST"):
            fields = {k: v for k, v in dest if isinstance(v, str)}
            attrs = next((v for k, v in dest if k == "ATTRS" and isinstance(v, list)), [])
            attr = {k: v for k, v in attrs if isinstance(v, str)}
            runtime = next((v for k, v in dest if k == "RUNTIME" and isinstance(v, list)), [])
            load = dict((k, v) for k, v in runtime if isinstance(v, str)).get("DLGLOAD", "")
            flags = fields.get("FLAGS", "")
            maxload = attr.get("MAXLOAD", "")
            result.append({
                "uri": fields.get("URI", ""),
                "uid": attr.get("DUID", ""),
                "flags": flags,
                "state": _FLAG_STATES.get(flags[:1], "unknown"),
                "probing": flags[1:2] == "P",
                "max_load": int(maxload) if maxload.isdigit() else None,
                "load": int(load) if load.isdigit() else None,
            })
        return result

    def destination(self, worker: str | FrontWorker) -> Destination:
        uri = self._worker(worker).uri
        for d in self.destinations():
            if d["uri"] == uri:
                return d
        raise FrontError(f"worker {uri} not in the dispatcher list")

    def dialogs(self) -> list[FrontDialog]:
        """The calls the front tracks: every INVITE it dispatched to a worker, until its BYE
        (an ended one may linger in state 5 for a moment). Calls the workers place out through
        the front are not tracked."""
        tree = parse_rpc_tree(self.kamcmd("dlg.list"))
        result: list[FrontDialog] = []
        for key, record in tree:
            if key or not isinstance(record, list):
                continue
            fields = {k: v for k, v in record if isinstance(v, str)}
            variables = next((v for k, v in record if k == "variables" and isinstance(v, list)),
                             [])
            # variables: { { name: value } ... }, one anonymous record per variable
            var = {k: v for _, block in variables if isinstance(block, list)
                   for k, v in block if isinstance(v, str)}
            try:
                h_entry, h_id = int(fields["h_entry"]), int(fields["h_id"])
                state = int(fields.get("state", "0"))
            except (KeyError, ValueError):
                continue
            result.append({
                "h_entry": h_entry,
                "h_id": h_id,
                "call_id": fields.get("call-id", ""),
                "state": state,
                "worker": var.get("worker"),
                "ended": var.get("ended") is not None,
            })
        return result

    def screening(self) -> ScreeningStats:
        """Flood and scanner counters since the front started (two kamcmd calls)."""
        counters = parse_counters(self.kamcmd("cnt.grp_get_all", "script"))
        banned_now = 0
        for table in _walk(parse_rpc_tree(self.kamcmd("htable.stats")), ""):
            fields = dict(kv for kv in table if isinstance(kv[1], str))
            if fields.get("name") == "ipban" and fields.get("all", "").isdigit():
                banned_now = int(fields["all"])
        return {
            "bans": counters.get("bans", 0),
            "banned_now": banned_now,
            "dropped_banned": counters.get("banned", 0),
            "unknown_source": counters.get("unknown_source", 0),
        }

    def end_dialogs_on(self, worker: str | FrontWorker) -> int:
        """Hang up every answered call the front dispatched to `worker` (call it once the worker
        died): the front sends BYE to the caller (and to the worker's address, which may be gone)
        and releases the call's dispatcher load, so a restarted worker starts empty.
        Returns how many calls it ended; calls whose BYEs it already sent are not ended again.
        Calls still ringing on a dead worker are not touched: their INVITE times out and fails
        over to another worker.
        The caller's BYE goes first and is reliable. The worker's is best effort: Kamailio < 6.1
        skips it when the caller's 200 to the first BYE comes back before it is sent (kamailio
        issues #4169/#4268), which only matters when ending calls on a worker that is alive."""
        uid = self._worker(worker).uid
        ended = 0
        for d in self.dialogs():
            if d["worker"] != uid or d["state"] not in _ANSWERED_STATES or d["ended"]:
                continue
            try:
                self.kamcmd("dlg.end_dlg", str(d["h_entry"]), str(d["h_id"]))
            except FrontError:
                continue  # gone meanwhile: a BYE from either side crossed ours
            ended += 1
        return ended


# Placeholders are @NAME@ because both str.format braces and $-templates clash with Kamailio.
_CFG = r"""#!KAMAILIO
# Rendered by gateway.ops.front; edit the settings, not this file.
debug=2
log_stderror=yes
children=4
tcp_children=2
auto_aliases=no
server_signature=no
listen=udp:@LISTEN@
listen=tcp:@LISTEN@
# TCP: a bounded number of connections, and short-lived unless their source is trusted (SCREEN
# extends those): idle connections from strangers cannot pile up for an hour.
tcp_max_connections=@TCPMAX@
tcp_connection_lifetime=@TCPIDLE@
tcp_accept_no_cl=yes

loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "path.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
loadmodule "ctl.so"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "ipops.so"
loadmodule "dispatcher.so"
loadmodule "dialog.so"
loadmodule "pike.so"
loadmodule "htable.so"
loadmodule "counters.so"
loadmodule "tcpops.so"

modparam("ctl", "binrpc", "unix:@CTL@")
# Flood screening of untrusted sources: pike flags a source sending more than @PIKE@ requests in
# a 2 s unit; the ban is an ipban entry that expires by itself after @BAN@ s. The ban line in
# the log is ours (FRONT ban), so pike's own stays at debug level.
modparam("pike", "sampling_time_unit", 2)
modparam("pike", "reqs_density_per_unit", @PIKE@)
modparam("pike", "remove_latency", 4)
modparam("pike", "pike_log_level", 3)
modparam("htable", "htable", "ipban=>size=10;autoexpire=@BAN@;")
modparam("htable", "timer_interval", 10)
# Read by the supervisor's /metrics (kamcmd cnt.grp_get_all script).
modparam("counters", "script_counter", "bans Sources banned")
modparam("counters", "script_counter", "banned Requests dropped from banned sources")
modparam("counters", "script_counter", "unknown_source Requests from sources in no allow list")
# fr_timer also bounds dispatcher's OPTIONS probes, so it is the worker timeout: a dead worker
# is marked down within ping_interval + this. Requests to carriers get tm's usual timers back
# with t_set_fr() in FROM_WORKER/WITHINDLG, so a slow carrier is not cut off.
modparam("tm", "fr_timer", @TIMEOUT@)
modparam("tm", "fr_inv_timer", 120000)
modparam("tm", "failure_reply_mode", 3)
modparam("rr", "enable_double_rr", 1)

modparam("dispatcher", "list_file", "@LIST@")
modparam("dispatcher", "flags", 2)
modparam("dispatcher", "xavp_dst", "_dsdst_")
modparam("dispatcher", "xavp_ctx", "_dsctx_")
modparam("dispatcher", "ds_ping_method", "OPTIONS")
modparam("dispatcher", "ds_ping_from", "sip:front@@SELF@")
modparam("dispatcher", "ds_ping_interval", @PING@)
modparam("dispatcher", "ds_probing_threshold", 1)
modparam("dispatcher", "ds_inactive_threshold", 1)
modparam("dispatcher", "ds_probing_mode", 1)
# Call-load tracking (algorithm 10): calls keyed by Call-ID; unanswered entries expire fast.
modparam("dispatcher", "ds_hash_size", 9)
modparam("dispatcher", "ds_hash_initexpire", 60)
modparam("dispatcher", "ds_hash_expire", 7200)
modparam("dispatcher", "ds_hash_check_interval", 10)

request_route {
    route(SCREEN);
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    if (!sanity_check()) exit;

    if (is_method("CANCEL")) {
        if (t_check_trans()) {
            ds_load_update();
            route(RELAY);
        }
        exit;
    }
    # Absorb retransmissions of requests already being handled.
    if (!is_method("ACK")) {
        if (t_precheck_trans()) {
            t_check_trans();
            exit;
        }
        t_check_trans();
    }
    if (has_totag()) {
        route(WITHINDLG);
        exit;
    }
    if (is_method("OPTIONS") && uri == myself) {
        sl_send_reply("200", "OK");
        exit;
    }
    # Workers are known by address and port: pjsua sends from its listening UDP socket.
    if (ds_is_from_list("@SET@", "2")) {
        route(FROM_WORKER);
        exit;
    }
    # Only trusted sources get this far (SCREEN).
    if (is_method("INVITE")) {
        route(TO_WORKER);
        exit;
    }
    if (is_method("ACK")) exit;
    sl_send_reply("405", "Method Not Allowed");
}

route[ALLOWED] {
@ALLOW@
    return -1;
}

# Before anything else is spent on a request. The front itself, its workers and the trunks'
# addresses pass and are never banned: banning a carrier (or a packet forged with its address)
# would cut off real calls, and the workers' maxload already bounds what a carrier can push.
# Everyone else is counted by pike, banned when flooding, and refused or dropped.
route[SCREEN] {
    if (src_ip == myself || ds_is_from_list("@SET@", "2") || route(ALLOWED)) {
        if (proto == TCP) tcp_set_connection_lifetime("@TCPTRUSTED@");
        return;
    }
    if ($sht(ipban=>$si) != $null) {
        cnt_inc("banned");
        route(SILENCE);
    }
    if (!pike_check_req()) {
        # Several processes may see the same flood at once: one of them bans it.
        sht_lock("ipban=>$si");
        $var(new_ban) = ($sht(ipban=>$si) == $null);
        $sht(ipban=>$si) = 1;
        sht_unlock("ipban=>$si");
        cnt_inc("banned");
        if (!$var(new_ban)) route(SILENCE);
        cnt_inc("bans");
        # $si is the parsed source address: nothing the sender wrote reaches the log.
        xlog("L_WARN", "FRONT ban src=$si seconds=@BAN@\n");
        route(SILENCE);
    }
    cnt_inc("unknown_source");
@UNKNOWN@
}

# No answer at all, and a TCP connection is closed rather than left to idle.
route[SILENCE] {
    if (proto == TCP) tcp_close_connection();
    exit;
}

# In-dialog: follow the Record-Route set both ways; a BYE frees the worker's call slot.
route[WITHINDLG] {
    if (loose_route()) {
        if (is_method("BYE")) ds_load_update();
        t_set_fr(120000, 30000);
        route(RELAY);
        exit;
    }
    if (is_method("ACK")) {
        # ACK to a negative reply: t_check_trans() absorbs it; stray ones are dropped.
        if (t_check_trans()) route(RELAY);
        exit;
    }
    sl_send_reply("404", "Not here");
}

# New INVITE from a caller/carrier → the least-loaded worker.
route[TO_WORKER] {
    remove_hf("Route");  # a preloaded route (e.g. the carrier honouring our Path) is us
    record_route();
    if (!ds_select_dst("@SET@", "10", "@NWORKERS@")) {
        xlog("L_NOTICE", "FRONT noworker callid=$(ci{s.rmws})\n");
        sl_send_reply("503", "Service Unavailable");
        exit;
    }
    # The Call-ID is the sender's text (a folded header carries a line break): no whitespace.
    xlog("L_INFO", "FRONT dispatch callid=$(ci{s.rmws}) dst=$du\n");
    # Track the call as a dialog tagged with its worker's duid (algorithm 10 puts it in dstid):
    # Front.end_dialogs_on() finds a dead worker's calls by it and ends them (dlg.end_dlg).
    dlg_manage();
    $dlg_var(worker) = $xavp(_dsdst_=>dstid);
    route(WORKER_BRANCH);
    if (!t_relay()) {
        ds_load_unset();
        sl_reply_error();
    }
    exit;
}

route[WORKER_BRANCH] {
    t_set_fr(30000, @TIMEOUT@);  # per branch: calls the workers place keep tm's defaults
    t_on_reply("WORKER_REPLY");
    t_on_failure("WORKER_FAILED");
}

onreply_route[WORKER_REPLY] {
    if (is_method("INVITE") && status =~ "^2[0-9][0-9]$") ds_load_update();
}

failure_route[WORKER_FAILED] {
    if (t_is_canceled()) exit;  # the CANCEL already released the load
    if (t_check_status("486|408|480|500|503") || t_branch_timeout()) {
        # Next worker first: with algorithm 10 ds_next_dst() moves the call's load along.
        if (ds_next_dst()) {
            xlog("L_NOTICE", "FRONT failover callid=$(ci{s.rmws}) status=$T_reply_code next=$du\n");
            $dlg_var(worker) = $xavp(_dsdst_=>dstid);
            route(WORKER_BRANCH);
            if (t_relay()) exit;
        }
        ds_load_unset();
        xlog("L_NOTICE", "FRONT exhausted callid=$(ci{s.rmws}) status=$T_reply_code\n");
        t_reply("503", "Service Unavailable");
        exit;
    }
    ds_load_unset();  # any other final answer (404, 603, ...) goes back to the caller as is
}

# Requests the front makes itself skip request_route: dispatcher OPTIONS pings, and the BYEs of
# dlg.end_dlg (one to the caller, one to the worker). Those BYEs release the call's load, once.
event_route[tm:local-request] {
    if (is_method("BYE") && $dlg_var(worker) != $null && $dlg_var(ended) == $null) {
        $dlg_var(ended) = "1";
        ds_load_update();
    }
}

# Initial request from a worker: its trunk REGISTER, an outbound call, a probe to a carrier.
route[FROM_WORKER] {
    remove_hf("Route");  # the worker's outbound-proxy route is us
    if (uri == myself) {
        if (is_method("INVITE")) {
            route(TO_WORKER);
        }
        sl_send_reply("404", "Not Found");
        exit;
    }
    if (is_method("REGISTER")) {
        add_path();
    } else if (is_method("INVITE|SUBSCRIBE|REFER")) {
        record_route();
    }
    xlog("L_INFO", "FRONT outbound method=$rm src=$si:$sp ruri=$ru\n");
    t_set_fr(120000, 30000);
    t_on_reply("OUTBOUND_REPLY");
    route(RELAY);
}

# A TCP connection the front opened to a carrier (a REGISTER flow the carrier calls back on)
# is trusted like the carrier's own.
onreply_route[OUTBOUND_REPLY] {
    if (proto == TCP) tcp_set_connection_lifetime("@TCPTRUSTED@");
}

route[RELAY] {
    if (!t_relay()) sl_reply_error();
    exit;
}
"""
