"""Gateway settings: gateway.yaml + environment, parsed once, frozen.

Every setting has a default, so `gateway run` works with no file at all. Secrets (trunk
passwords, API keys) are never written in the file: it names the environment variable or the
secrets file that holds each one (see gateway.config.secrets).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from gateway.config import yamlfile
from gateway.errors import ConfigError
from gateway.media.framing import DEFAULT_FRAME_MS, FRAME_MS_CHOICES
from gateway.config.secrets import SecretRef, forbidden_key

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIALPLANS = REPO_ROOT / "dialplans"
DEFAULT_CODECS = REPO_ROOT / "codecs" / "default.yaml"


@dataclass(frozen=True, slots=True)
class Trunk:
    """A carrier connection: IP-authenticated (allow) and/or registering (registrar)."""

    name: str
    allow: tuple[str, ...] = ()
    registrar: str | None = None
    username: str | None = None
    # Where the digest secret is: the password itself, or its HA1 (MD5 of user:realm:password).
    password: SecretRef | None = None
    password_ha1: SecretRef | None = None
    expiry: int = 300
    # The realm the carrier challenges with; credentials are offered for it alone.
    realm: str | None = None

    def allows(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(net, strict=False) for net in self.allow)


@dataclass(frozen=True, slots=True)
class Settings:
    sip_address: str = "127.0.0.1"
    sip_port: int = 5060
    public_address: str | None = None
    rtp_port_start: int = 20000
    rtp_port_count: int = 1000
    # Media frame (and RTP packet) length for every call: 20, or 10 for lower latency.
    frame_ms: int = DEFAULT_FRAME_MS
    metrics_address: str = "127.0.0.1"
    metrics_port: int = 9100
    # The SIP door for sources outside every trunk (see README "Security"): their INVITEs are
    # refused with 403 ("reject") or dropped unanswered ("drop"); a source sending more than
    # flood_rate requests/s (after flood_burst) is banned for ban_seconds.
    unknown_sources: str = "reject"
    flood_rate: float = 10.0
    flood_burst: int = 20
    ban_seconds: float = 300.0
    dialplans: Path = DEFAULT_DIALPLANS
    codec_profile: Path = DEFAULT_CODECS
    operator_uri: str = "sip:operator@127.0.0.1:5070"
    trunks: tuple[Trunk, ...] = (Trunk(name="local", allow=("127.0.0.1/32",)),)
    workers: int = 1
    calls_per_worker: int = 4
    drain_timeout: float = 30.0
    records: Path = Path("var/calls.jsonl")
    cache_dir: Path = Path("var/cache")
    log_level: str = "info"
    # Speech and language providers: offline engines unless set (see README "Providers").
    stt: tuple[str, ...] = ("local",)
    tts: str = "local"
    llm: dict = field(default_factory=dict)
    provider_options: dict = field(default_factory=dict)
    # Proxy that outgoing requests (REGISTER) go through and the Contact to advertise: set by
    # the supervisor when workers sit behind the Kamailio front.
    outbound_proxy: str | None = None
    contact_address: str | None = None
    trusted: tuple[str, ...] = field(default=())
    # Set by the supervisor for each of its workers (GATEWAY_WORKER, JSON).
    worker_name: str = ""
    register_trunks: bool = True
    ready_file: Path | None = None
    heartbeat_file: Path | None = None

    @property
    def journal(self) -> Path:
        """Calls in progress, so a crash still leaves a record of them."""
        suffix = f".{self.worker_name}" if self.worker_name else ""
        return self.records.with_name(f"{self.records.name}{suffix}.journal")

    def trunk_for(self, address: str) -> Trunk | None:
        for trunk in self.trunks:
            if trunk.allows(address):
                return trunk
        return None

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


_TOP_KEYS = {
    "sip", "media", "metrics", "dialplans", "codec_profile", "operator_uri", "trunks", "workers",
    "calls_per_worker", "drain_timeout", "records", "cache_dir", "log_level",
    "stt", "tts", "llm", "provider_options", "security",
}
_SECURITY_KEYS = {"unknown_sources", "flood_rate", "flood_burst", "ban_seconds"}
_SIP_KEYS = {"address", "port", "public_address", "rtp_port_start", "rtp_port_count"}
_MEDIA_KEYS = {"frame_ms"}
_METRICS_KEYS = {"address", "port"}
_TRUNK_SECRETS = ("password_env", "password_file", "password_ha1_env", "password_ha1_file")
_TRUNK_KEYS = {"name", "allow", "registrar", "username", *_TRUNK_SECRETS, "expiry", "realm",
               "password", "password_ha1"}


def load_settings(path: Path | None) -> Settings:
    """Read gateway.yaml (or defaults when path is None); raises the first ConfigError."""
    settings, errors = read_settings(path)
    if errors:
        raise errors[0]
    assert settings is not None
    return settings


def read_settings(path: Path | None) -> tuple[Settings | None, list[ConfigError]]:
    """Settings plus every error found (file:line), environment overrides applied."""
    errors = yamlfile.Errors()
    settings = Settings() if path is None else errors.attempt(_parse, path, errors)
    if settings is not None and not errors.items:
        errors.attempt(_validate, settings, str(path or "defaults"))
    worker = os.environ.get("GATEWAY_WORKER")
    if settings is not None and worker:
        settings = _worker_overrides(settings, json.loads(worker))
    operator = os.environ.get("GATEWAY_OPERATOR_URI")
    if settings is not None and operator:
        settings = replace(settings, operator_uri=operator)
    return (None if errors.items else settings), errors.items


def _worker_overrides(settings: Settings, data: dict[str, object]) -> Settings:
    paths = {"ready_file", "heartbeat_file", "records"}
    tuples = {"trusted"}
    changes = {k: Path(v) if k in paths else tuple(v) if k in tuples else v  # type: ignore[arg-type]
               for k, v in data.items()}
    return replace(settings, **changes)  # type: ignore[arg-type]


def _parse(path: Path, errors: yamlfile.Errors) -> Settings:
    root = yamlfile.load(path)
    doc = root.fields(_TOP_KEYS, errors)
    base = path.parent
    kw: dict[str, object] = {}

    def take(fields: yamlfile.Fields, key: str, name: str, read) -> None:  # type: ignore[no-untyped-def]
        node = fields.get(key)
        if node is not None:
            value = errors.attempt(read, node)
            if value is not None:
                kw[name] = value

    if (node := doc.get("sip")) is not None:
        sip = node.fields(_SIP_KEYS, errors)
        take(sip, "address", "sip_address", yamlfile.Node.as_str)
        take(sip, "port", "sip_port", lambda n: n.as_int(at_least=1, at_most=65535))
        take(sip, "public_address", "public_address", lambda n: None if n.is_null else n.as_str())
        take(sip, "rtp_port_start", "rtp_port_start", lambda n: n.as_int(at_least=1024, at_most=65534))
        take(sip, "rtp_port_count", "rtp_port_count", lambda n: n.as_int(at_least=2))
    if (node := doc.get("media")) is not None:
        media = node.fields(_MEDIA_KEYS, errors)
        take(media, "frame_ms", "frame_ms", _frame_ms)
    if (node := doc.get("security")) is not None:
        sec = node.fields(_SECURITY_KEYS, errors)
        take(sec, "unknown_sources", "unknown_sources", _unknown_sources)
        take(sec, "flood_rate", "flood_rate", lambda n: n.as_float(at_least=0.1))
        take(sec, "flood_burst", "flood_burst", lambda n: n.as_int(at_least=1))
        take(sec, "ban_seconds", "ban_seconds", lambda n: n.as_float(at_least=1))
    if (node := doc.get("metrics")) is not None:
        met = node.fields(_METRICS_KEYS, errors)
        take(met, "address", "metrics_address", yamlfile.Node.as_str)
        take(met, "port", "metrics_port", lambda n: n.as_int(at_least=1, at_most=65535))
    for key in ("dialplans", "codec_profile", "records", "cache_dir"):
        take(doc, key, key, lambda n: (base / n.as_str()).resolve())
    take(doc, "operator_uri", "operator_uri", _sip_uri)
    take(doc, "workers", "workers", lambda n: n.as_int(at_least=1, at_most=64))
    take(doc, "calls_per_worker", "calls_per_worker", lambda n: n.as_int(at_least=1))
    take(doc, "drain_timeout", "drain_timeout", lambda n: n.as_float(at_least=0))
    take(doc, "log_level", "log_level", _log_level)
    take(doc, "stt", "stt", lambda n: tuple(item.as_str() for item in n.as_list(single=True)))
    take(doc, "tts", "tts", yamlfile.Node.as_str)
    take(doc, "llm", "llm", lambda n: _provider_options(n, "llm", base, errors))
    take(doc, "provider_options", "provider_options", lambda n: {
        key.as_str(): _provider_options(value, key.as_str(), base, errors)
        for key, value in _mapping(n).pairs()})
    if (node := doc.get("trunks")) is not None:
        trunks = [errors.attempt(_trunk, item, errors, base) for item in node.as_list()]
        kw["trunks"] = tuple(t for t in trunks if t is not None)
    return Settings(**kw)  # type: ignore[arg-type]


def _mapping(node: yamlfile.Node) -> yamlfile.Node:
    if node.kind != "mapping":
        raise node.error(f"expected a mapping (key: value), got {node.describe()}")
    return node


# Where each provider's key comes from when the file names none.
_KEY_ENV = {"deepgram": "set DEEPGRAM_API_KEY in the environment, or name another",
            "llm": "for api.openai.com set OPENAI_API_KEY in the environment; for another "
                   "base_url name its own key"}


def _provider_options(node: yamlfile.Node, provider: str, base: Path,
                      errors: yamlfile.Errors) -> dict:
    """A provider's options as plain values (the provider checks them), with any secret written
    in the file refused and `api_key_env` / `api_key_file` checked for a readable key."""
    options = _plain(_mapping(node), provider, errors)
    assert isinstance(options, dict)
    sources = [(key, value) for key, value in _mapping(node).pairs()
               if key.text in ("api_key_env", "api_key_file")]
    if len(sources) > 1:
        errors.add(sources[1][0].error(f"{provider}: give api_key_env or api_key_file, not both"))
    for key, value in sources[:1]:
        ref = _secret_ref(value, key.text, base)
        if (problem := ref.problem()) is not None:
            errors.add(value.error(f"{problem} ({provider} API key)"))
        options[key.text] = ref.env or str(ref.file)
    return options


def _plain(node: yamlfile.Node, provider: str, errors: yamlfile.Errors) -> object:
    if node.kind == "mapping":
        out = {}
        for key, value in node.pairs():
            name = key.as_str()
            if forbidden_key(name):
                errors.add(key.error(_written_secret(provider, name)))
            else:
                out[name] = _plain(value, provider, errors)
        return out
    if node.kind == "sequence":
        return [_plain(item, provider, errors) for item in node.as_list()]
    return node.value


def _written_secret(provider: str, key: str) -> str:
    if provider == "google":
        return (f"google: {key} must not be written in gateway.yaml: credentials come from the file "
                "named by GOOGLE_APPLICATION_CREDENTIALS or credentials_file: /run/secrets/google.json")
    if key != "api_key":
        return (f"{provider}: {key} must not be written in gateway.yaml: secrets come from the "
                "environment or a secrets file")
    how = _KEY_ENV.get(provider, "name where it is")
    return (f"{provider}: an API key must not be written in gateway.yaml: {how} with "
            f"api_key_env: VARIABLE or api_key_file: /run/secrets/{_slug(provider)}_api_key")


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "secret"


def _secret_ref(node: yamlfile.Node, key: str, base: Path) -> SecretRef:
    """`*_env: NAME` or `*_file: PATH` (relative to the config file)."""
    text = node.as_str()
    if key.endswith("_file"):
        return SecretRef(file=(base / text).resolve())
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise node.error(f"{key} names an environment variable, e.g. {key}: MY_SECRET")
    return SecretRef(env=text)


def _sip_uri(node: yamlfile.Node) -> str:
    text = node.as_str()
    if not text.startswith(("sip:", "sips:", "tel:")):
        raise node.error(f"expected a sip: URI, got {text!r}")
    return text


def _frame_ms(node: yamlfile.Node) -> int:
    value = node.as_int()
    if value not in FRAME_MS_CHOICES:
        raise node.error(f"frame_ms must be 10 or 20, got {value}")
    return value


def _unknown_sources(node: yamlfile.Node) -> str:
    text = node.as_str().lower()
    if text not in ("reject", "drop"):
        raise node.error("unknown_sources must be reject (403) or drop (no answer)")
    return text


def _log_level(node: yamlfile.Node) -> str:
    text = node.as_str().lower()
    if text not in ("debug", "info", "warning", "error"):
        raise node.error("log_level must be debug, info, warning or error")
    return text


def _trunk(node: yamlfile.Node, errors: yamlfile.Errors, base: Path) -> Trunk:
    doc = node.fields(_TRUNK_KEYS, errors)
    name = doc.require("name").as_str()
    allow: list[str] = []
    if (items := doc.get("allow")) is not None:
        for item in items.as_list(single=True):
            text = item.as_str()
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise item.error(f"not an address or CIDR: {text!r}") from None
            allow.append(text)
    kw: dict[str, object] = {"name": name, "allow": tuple(allow)}
    for key in ("registrar", "username", "realm"):
        if (value := doc.get(key)) is not None:
            kw[key] = value.as_str()
    if (value := doc.get("expiry")) is not None:
        kw["expiry"] = value.as_int(at_least=10)
    var, file = f"{_slug(name).upper()}_PASSWORD", f"/run/secrets/{_slug(name)}_password"
    for key in ("password", "password_ha1"):
        if key in doc:
            errors.add(doc.key_error(key, (
                f"trunk {name!r}: a password must not be written in gateway.yaml: put it in an "
                f"environment variable ({key}_env: {var}) or a secrets file ({key}_file: {file})")))
    sources = doc.present(*_TRUNK_SECRETS)
    if len(sources) > 1:
        raise doc.key_error(sources[1], f"trunk {name!r}: give one of {', '.join(sources)}, not both")
    for key in sources:
        value = doc.values[key]
        ref = _secret_ref(value, key, base)
        if (problem := ref.problem()) is not None:
            raise value.error(f"{problem} (trunk {name!r} password)")
        if key.startswith("password_ha1") and not _HA1.fullmatch(ref.read()):
            raise value.error(f"trunk {name!r}: {ref} is not an HA1 (32 hex digits: the MD5 of "
                              "username:realm:password)")
        kw["password_ha1" if key.startswith("password_ha1") else "password"] = ref
    trunk = Trunk(**kw)  # type: ignore[arg-type]
    if trunk.registrar and not trunk.registrar.startswith(("sip:", "sips:")):
        raise doc.require("registrar").error("registrar must be a sip: URI")
    if not trunk.registrar and not trunk.allow:
        raise node.error(f"trunk {name!r} needs allow (addresses) or registrar")
    if trunk.registrar:
        if not trunk.username:
            raise node.error(f"trunk {name!r} registers but has no username")
        if trunk.password is None and trunk.password_ha1 is None:
            raise node.error(f"trunk {name!r} registers but has no password: "
                             f"password_env: {var} or password_file: {file}")
        if trunk.realm is None:
            # pjsua's "*" would answer any challenger with the password's hash.
            raise node.error(f"trunk {name!r} registers but has no realm: set realm to the one in "
                             "the carrier's 401 challenge (credentials are offered to it alone)")
        if trunk.realm == "*":
            raise doc.require("realm").error(
                "realm must be the carrier's own, not '*' (any challenger would get the password hash)")
    return trunk


_HA1 = re.compile(r"[0-9a-fA-F]{32}")


def _validate(s: Settings, where: str) -> None:
    # Each call needs an RTP and an RTCP port; pjsua steps through the range two at a time.
    needed = 2 * s.workers * s.calls_per_worker
    if s.rtp_port_count < needed:
        raise ConfigError(
            where, 0,
            f"rtp_port_count {s.rtp_port_count} is too small for {s.workers} workers x "
            f"{s.calls_per_worker} calls (needs at least {needed})",
        )
    if s.rtp_port_start + s.rtp_port_count > 65536:
        raise ConfigError(where, 0, "RTP port range runs past 65535")
    if not s.codec_profile.exists():
        raise ConfigError(where, 0, f"codec profile not found: {s.codec_profile}")
