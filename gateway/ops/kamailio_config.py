"""The Kamailio front's config: its settings, their checks, and the one template both fronts
are rendered from (`kamailio.cfg.tmpl`, next to this file).

The supervisor renders it with its own settings into its runtime directory; deploy/kamailio's
kamailio.cfg is the same template rendered with Kamailio defines as values, so an operator
overrides them with `-A NAME=value` (`python -m gateway.ops.front --render-deploy` writes it,
and tests/ops/test_deploy.py checks it is up to date). Pure text: no processes, no pjsua2.
"""

from __future__ import annotations

import ipaddress
import math
import re
import tempfile
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gateway.errors import GatewayError

WORKER_SET = 1  # dispatcher group holding the workers
TRUSTED_TCP_LIFETIME = 3605  # a carrier's TCP connection may idle through a long call
_UID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Placeholders are @NAME@ because both str.format braces and $-templates clash with Kamailio.
_PLACEHOLDER = re.compile(r"@([A-Z]+)@")


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
        return f"sip:{host(self.address)}:{self.port}"


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


def host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def validate(s: FrontSettings) -> list[str]:
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


def ctl_path(runtime: Path) -> Path:
    # A unix socket path must fit in sun_path (108 bytes); long runtime dirs get a short one.
    path = runtime / "ctl.sock"
    if len(str(path)) < 100:
        return path
    return Path(tempfile.gettempdir()) / f"gwfront-{uuid.uuid4().hex[:12]}.sock"


def render_template(values: dict[str, str]) -> str:
    """kamailio.cfg.tmpl with every @NAME@ replaced; a placeholder without a value, or a value
    without a placeholder, is an error in this module, not a config that quietly differs."""
    text = resources.files("gateway.ops").joinpath("kamailio.cfg.tmpl").read_text()
    used = set(_PLACEHOLDER.findall(text))
    if used != set(values):
        raise FrontError(f"kamailio.cfg.tmpl placeholders {sorted(used ^ set(values))} "
                         "have no value or are not in the template")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


_REJECT = ('    xlog("L_NOTICE", "FRONT denied method=$rm src=$si:$sp\\n");\n'
           '    sl_send_reply("403", "Forbidden");\n    exit;')
_SILENCE = "    route(SILENCE);"


def render_dispatcher_list(s: FrontSettings) -> str:
    # setid destination flags priority attrs; flags 8 = probe it with OPTIONS.
    lines = ["# setid destination flags priority attrs"]
    for w in s.workers:
        lines.append(f"{WORKER_SET} {w.uri} 8 0 duid={w.uid};maxload={w.max_load}")
    return "\n".join(lines) + "\n"


def render_config(s: FrontSettings, *, ctl_socket: Path | None = None) -> tuple[str, str]:
    """(kamailio.cfg text, dispatcher.list text) for these settings."""
    networks = validate(s)
    runtime = s.runtime_dir.resolve()
    ctl = ctl_socket or ctl_path(runtime)
    listen = f"{host(s.listen_address)}:{s.listen_port}"
    if s.advertise:
        listen += f" advertise {host(s.advertise)}:{s.listen_port}"
    allow = "\n".join(f'    if (is_in_subnet("$si", "{n}")) return 1;' for n in networks)
    values = {
        "ORIGIN": "# Rendered by gateway.ops.front from the supervisor's settings; edit those, "
                  "not this file.",
        "LISTEN": f"listen=udp:{listen}\nlisten=tcp:{listen}",
        "CHILDREN": "4",
        "TCPCHILDREN": "2",
        "SELF": f"{host(s.advertise or s.listen_address)}:{s.listen_port}",
        "CTL": f'"unix:{ctl}"',
        "LIST": f'"{runtime / "dispatcher.list"}"',
        "PING": str(s.ping_interval),
        "TIMEOUT": str(s.worker_timeout_ms),
        "TRIES": f'"{len(s.workers)}"',
        "SET": str(WORKER_SET),
        "ALLOW": allow or "    # nobody but the workers",
        "UNKNOWN": _SILENCE if s.unknown_sources == "drop" else _REJECT,
        "PIKE": str(max(s.source_burst, math.ceil(2 * s.source_rate))),  # per 2 s unit
        "BAN": str(s.ban_seconds),
        "TCPMAX": str(s.tcp_max_connections),
        "TCPIDLE": str(s.tcp_idle_seconds),
        "TCPTRUSTED": str(TRUSTED_TCP_LIFETIME),
    }
    return render_template(values), render_dispatcher_list(s)


# deploy/kamailio: what an operator may set with -A NAME=value, and its default.
_DEPLOY_DEFINES = (
    ("DISPATCHER_LIST", '"/etc/kamailio/dispatcher.list"', "The gateway nodes (set 1)."),
    ("CTL_SOCKET", '"unix:/run/kamailio/kamailio_ctl"', "kamcmd's socket."),
    ("CARRIER_NETS", '"198.51.100.0/24"',
     "Carrier signalling addresses allowed to send initial INVITEs (comma-separated CIDRs)."),
    ("FLOOD_BURST", "20", "Requests one untrusted source may send per 2 s before it is banned."),
    ("FAILOVER_NODES", '"10"', "Nodes one call is offered to at most before the carrier gets 503."),
)
_DEPLOY_ORIGIN = """\
# Rendered from gateway/ops/kamailio.cfg.tmpl, the template of `gateway run --workers N`'s front:
# regenerate with `python -m gateway.ops.front --render-deploy` rather than editing this file.
#
# Start: kamailio -DD -E -m 256 -M 8 -f /etc/kamailio/kamailio.cfg
# No `listen=` line: Kamailio binds every interface (UDP and TCP 5060). To pin an address or
# advertise a public one behind 1:1 NAT, add e.g.  -l udp:10.0.0.5:5060/203.0.113.10:5060  to
# the command line. Sources outside CARRIER_NETS get 403, or no answer with
# -A DROP_UNKNOWN_SOURCES.
#
# Overridable with -A NAME=value on the command line:
"""


def render_deploy_config() -> str:
    """deploy/kamailio/kamailio.cfg: the template with the deploy's values (FrontSettings'
    defaults, and Kamailio defines for what differs per site)."""
    defaults = FrontSettings("127.0.0.1", 5060, (), (), Path("."))
    defines = "\n".join(f"\n# {doc}\n#!ifndef {name}\n#!define {name} {value}\n#!endif"
                        for name, value, doc in _DEPLOY_DEFINES)
    values = {
        "ORIGIN": _DEPLOY_ORIGIN + defines,
        "LISTEN": "# listen: all interfaces, or -l on the command line (see the top).",
        "CHILDREN": "8",
        "TCPCHILDREN": "4",
        "SELF": "gateway.invalid",
        "CTL": "CTL_SOCKET",
        "LIST": "DISPATCHER_LIST",
        "PING": str(defaults.ping_interval),
        "TIMEOUT": str(defaults.worker_timeout_ms),
        "TRIES": "FAILOVER_NODES",
        "SET": str(WORKER_SET),
        "ALLOW": '    if (is_in_subnet("$si", CARRIER_NETS)) return 1;',
        "UNKNOWN": f"#!ifdef DROP_UNKNOWN_SOURCES\n{_SILENCE}\n#!else\n{_REJECT}\n#!endif",
        "PIKE": "FLOOD_BURST",
        "BAN": str(defaults.ban_seconds),
        "TCPMAX": str(defaults.tcp_max_connections),
        "TCPIDLE": str(defaults.tcp_idle_seconds),
        "TCPTRUSTED": str(TRUSTED_TCP_LIFETIME),
    }
    return render_template(values)


def configmap_with(manifest: str, cfg: str) -> str:
    """deploy/k8s/front.yaml with its `kamailio.cfg: |` block replaced by cfg (indented by four)."""
    match = re.search(r"^  kamailio\.cfg: \|\n((?:    .*\n|\n)*)", manifest, re.MULTILINE)
    if match is None:
        raise FrontError("front.yaml has no `  kamailio.cfg: |` block")
    block = "".join(f"    {line}\n" if line else "\n" for line in cfg.splitlines())
    return manifest[:match.start(1)] + block + manifest[match.end(1):]
