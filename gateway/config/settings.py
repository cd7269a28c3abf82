"""Gateway settings: gateway.yaml + environment, parsed once, frozen.

Every setting has a default, so `gateway run` works with no file at all. `Settings` is what the
rest of the gateway reads; the file is validated by the models below (`GatewayFile`, via
gateway.config.schema), which build it. Secrets (trunk passwords, API keys) are never written in the file: it names the environment
variable or the secrets file that holds each one (see gateway.config.secrets).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gateway.config.codecs import read_codec_profile
from gateway.config.schema import Invalid, Number, Strict, Text, Whole, between, listed, load, matching
from gateway.config.secrets import SecretRef, forbidden_key
from gateway.errors import ConfigError
from gateway.media.framing import DEFAULT_FRAME_MS, FRAME_MS_CHOICES

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
    # Carrier details of a registering trunk: signalling transport (udp, tcp, tls; a sips:
    # registrar is TLS), SRTP for its calls (None: media.srtp), outbound proxy, the digest user
    # when it is not the account's, the From domain and the Contact user the carrier expects.
    transport: str | None = None
    srtp: str | None = None
    proxy: str | None = None
    auth_username: str | None = None
    from_domain: str | None = None
    contact_user: str | None = None

    def allows(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(net, strict=False) for net in self.allow)


@dataclass(frozen=True, slots=True)
class IceServer:
    """A STUN or TURN server for WebRTC calls; a TURN credential is named, never written."""

    urls: tuple[str, ...]
    username: str = ""
    credential: SecretRef | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    sip_address: str = "127.0.0.1"
    sip_port: int = 5060
    public_address: str | None = None
    rtp_port_start: int = 20000
    rtp_port_count: int = 1000
    # Media frame (and RTP packet) length for every call: 20, or 10 for lower latency.
    frame_ms: int = DEFAULT_FRAME_MS
    # SIP over TLS (a listener on tls_port with this certificate) and SRTP for media: off,
    # optional (offered; plain RTP accepted) or mandatory (a plain RTP offer gets 488).
    tls_port: int | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_verify_peer: bool = False
    srtp: str = "off"
    metrics_address: str = "127.0.0.1"
    metrics_port: int = 9100
    # The worker's HTTP server (WebRTC over WHIP, the call page); port 0: none.
    http_address: str = "127.0.0.1"
    http_port: int = 8080
    # WebRTC calls: ICE host candidates (default: the HTTP address), STUN/TURN servers, how long
    # an answered offer may take to connect its media, and how many WebRTC calls a worker holds.
    webrtc_ice_addresses: tuple[str, ...] = ()
    webrtc_ice_servers: tuple[IceServer, ...] = ()
    webrtc_connect_timeout: float = 15.0
    webrtc_max_calls: int = 100
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
    calls_per_worker: int = 64  # measured: tests/bench/bench_capacity.py --workers 1 (README)
    drain_timeout: float = 30.0
    # The call store: a SQLite file (WAL), or records_url (postgresql://...) for several hosts.
    records: Path = Path("var/calls.db")
    records_url: str = ""
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

    @property
    def records_target(self) -> str | Path:
        """Where calls are stored: the PostgreSQL URL if one is set, else the SQLite file."""
        return self.records_url or self.records

    def trunk_for(self, address: str) -> Trunk | None:
        for trunk in self.trunks:
            if trunk.allows(address):
                return trunk
        return None

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


DEFAULTS = Settings()


# -- gateway.yaml ---------------------------------------------------------------------------------

Port = between(Whole, at_least=1, at_most=65535)
SipUri = matching(r"^(sip|sips|tel):", "a sip: URI")
_TRUNK_SECRETS = ("password_env", "password_file", "password_ha1_env", "password_ha1_file")
_HA1 = re.compile(r"[0-9a-fA-F]{32}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _one_of(key: str, choices: tuple[str, ...], message: str):  # type: ignore[no-untyped-def]
    """A validator for a word from choices (any case), with the message of a wrong one."""
    def check(cls: type, value: str) -> str:
        if value.lower() not in choices:
            raise ValueError(message)
        return value.lower()
    return field_validator(key)(check)


class TlsFile(Strict):
    """SIP over TLS: the listener's port, certificate and key (PEM), the CAs peers must chain to."""

    port: Port = 5061
    cert: Text
    key: Text
    ca: Text | None = None
    verify_peer: bool = False

    @model_validator(mode="after")
    def _files(self, info: ValidationInfo) -> TlsFile:
        for key in ("cert", "key", "ca"):
            if (text := getattr(self, key)) is not None and not (_base(info) / text).is_file():
                raise Invalid(f"tls {key}: no such file: {text}", key)
        if self.verify_peer and self.ca is None:
            raise Invalid("tls verify_peer needs ca (the CAs peers' certificates must chain to)",
                          "verify_peer")
        return self

    def settings(self, base: Path) -> dict[str, Any]:
        return {"tls_port": self.port, "tls_cert": (base / self.cert).resolve(),
                "tls_key": (base / self.key).resolve(),
                "tls_ca": (base / self.ca).resolve() if self.ca else None,
                "tls_verify_peer": self.verify_peer}


SRTP_MODES = ("off", "optional", "mandatory")


class SipFile(Strict):
    address: Text = DEFAULTS.sip_address
    port: Port = DEFAULTS.sip_port
    public_address: Text | None = None
    rtp_port_start: between(Whole, at_least=1024, at_most=65534) = DEFAULTS.rtp_port_start
    rtp_port_count: between(Whole, at_least=2) = DEFAULTS.rtp_port_count
    tls: TlsFile | None = None


class MediaFile(Strict):
    frame_ms: Whole = Field(DEFAULTS.frame_ms, json_schema_extra={"enum": list(FRAME_MS_CHOICES)})
    srtp: Text = Field(DEFAULTS.srtp, json_schema_extra={"enum": list(SRTP_MODES)})

    _srtp = _one_of("srtp", SRTP_MODES, "srtp must be off, optional or mandatory")

    @field_validator("frame_ms")
    @classmethod
    def _frame(cls, value: int) -> int:
        if value not in FRAME_MS_CHOICES:
            raise ValueError(f"frame_ms must be 10 or 20, got {value}")
        return value


class SecurityFile(Strict):
    unknown_sources: Text = Field(DEFAULTS.unknown_sources, json_schema_extra={"enum": ["reject", "drop"]})
    flood_rate: between(Number, at_least=0.1) = DEFAULTS.flood_rate
    flood_burst: between(Whole, at_least=1) = DEFAULTS.flood_burst
    ban_seconds: between(Number, at_least=1) = DEFAULTS.ban_seconds

    _sources = _one_of("unknown_sources", ("reject", "drop"),
                       "unknown_sources must be reject (403) or drop (no answer)")


class MetricsFile(Strict):
    address: Text = DEFAULTS.metrics_address
    port: Port = DEFAULTS.metrics_port


class HttpFile(Strict):
    address: Text = DEFAULTS.http_address
    port: between(Whole, at_least=0, at_most=65535) = DEFAULTS.http_port


def _each(items: list[str], check: Callable[[str], str]) -> list[str]:
    """Every item checked; an error points at the item's own line."""
    for index, text in enumerate(items):
        try:
            check(text)
        except ValueError as exc:
            raise Invalid(str(exc), index) from None
    return items


def _ip(text: str) -> str:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"not an IP address: {text!r}") from None
    return text


class IceServerFile(Strict):
    urls: listed(matching(r"^(stun|turn|turns):", "a stun:, turn: or turns: URL"))
    username: Text | None = None
    credential_env: Text | None = None
    credential_file: Text | None = None

    @model_validator(mode="after")
    def _credential(self, info: ValidationInfo) -> IceServerFile:
        if self.credential_env and self.credential_file:
            raise Invalid("give credential_env or credential_file, not both", "credential_file")
        server = self.server(_base(info))
        if server.credential is not None and (problem := server.credential.problem()) is not None:
            raise Invalid(f"{problem} (TURN credential)", "credential_env" if self.credential_env else "credential_file")
        return self

    def server(self, base: Path) -> IceServer:
        key = "credential_env" if self.credential_env else "credential_file"
        text = self.credential_env or self.credential_file
        ref = _secret_ref(key, text, base) if text else None
        return IceServer(urls=tuple(self.urls), username=self.username or "", credential=ref)


class WebRtcFile(Strict):
    ice_addresses: listed(Text) = []
    ice_servers: list[IceServerFile] = []
    connect_timeout: between(Number, at_least=1, at_most=120) = DEFAULTS.webrtc_connect_timeout
    max_calls: between(Whole, at_least=0) = DEFAULTS.webrtc_max_calls

    @field_validator("ice_addresses")
    @classmethod
    def _addresses(cls, items: list[str]) -> list[str]:
        return _each(items, _ip)


def _secret_ref(key: str, text: str, base: Path) -> SecretRef:
    """`*_env: NAME` or `*_file: PATH` (relative to the config file)."""
    if key.endswith("_file"):
        return SecretRef(file=(base / text).resolve())
    if not _ENV_NAME.fullmatch(text):
        raise Invalid(f"{key} names an environment variable, e.g. {key}: MY_SECRET", key)
    return SecretRef(env=text)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "secret"


def _cidr(text: str) -> str:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"not an address or CIDR: {text!r}") from None
    return text


class TrunkFile(Strict):
    """A carrier: `allow` (addresses it sends from) and/or `registrar` (we register to it)."""

    name: Text
    allow: listed(Text) = []
    registrar: Text | None = None
    username: Text | None = None
    realm: Text | None = None
    expiry: between(Whole, at_least=10) = 300
    password_env: Text | None = None
    password_file: Text | None = None
    password_ha1_env: Text | None = None
    password_ha1_file: Text | None = None
    transport: Text | None = Field(None, json_schema_extra={"enum": ["udp", "tcp", "tls"]})
    srtp: Text | None = Field(None, json_schema_extra={"enum": list(SRTP_MODES)})
    proxy: SipUri | None = None
    auth_username: Text | None = None
    from_domain: Text | None = None
    contact_user: Text | None = None

    @field_validator("transport", "srtp")
    @classmethod
    def _word(cls, value: str | None, info: ValidationInfo) -> str | None:
        choices = ("udp", "tcp", "tls") if info.field_name == "transport" else SRTP_MODES
        if value is not None and value.lower() not in choices:
            raise ValueError(f"{info.field_name} must be {', '.join(choices[:-1])} or {choices[-1]}")
        return value.lower() if value is not None else None

    @field_validator("allow")
    @classmethod
    def _networks(cls, items: list[str]) -> list[str]:
        return _each(items, _cidr)

    @model_validator(mode="before")
    @classmethod
    def _no_written_password(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        name = str(data.get("name", ""))
        var, file = f"{_slug(name).upper()}_PASSWORD", f"/run/secrets/{_slug(name)}_password"
        for key in ("password", "password_ha1"):
            if key in data:
                raise Invalid(f"trunk {name!r}: a password must not be written in gateway.yaml: put it in "
                              f"an environment variable ({key}_env: {var}) or a secrets file ({key}_file: "
                              f"{file})", key)
        sources = [key for key in data if key in _TRUNK_SECRETS]
        if len(sources) > 1:
            raise Invalid(f"trunk {name!r}: give one of {', '.join(sources)}, not both", sources[1])
        return data

    @model_validator(mode="after")
    def _complete(self, info: ValidationInfo) -> TrunkFile:
        name = self.name
        for key, ref in self._secrets((info.context or {}).get("base", Path("."))).items():
            if (problem := ref.problem()) is not None:
                raise Invalid(f"{problem} (trunk {name!r} password)", key)
            if key.startswith("password_ha1") and not _HA1.fullmatch(ref.read()):
                raise Invalid(f"trunk {name!r}: {ref} is not an HA1 (32 hex digits: the MD5 of "
                              "username:realm:password)", key)
        if self.registrar and not self.registrar.startswith(("sip:", "sips:")):
            raise Invalid("registrar must be a sip: URI", "registrar")
        if not self.registrar and not self.allow:
            raise ValueError(f"trunk {name!r} needs allow (addresses) or registrar")
        if self.registrar:
            if not self.username:
                raise ValueError(f"trunk {name!r} registers but has no username")
            if not any(getattr(self, key) for key in _TRUNK_SECRETS):
                raise ValueError(f"trunk {name!r} registers but has no password: password_env: "
                                 f"{_slug(name).upper()}_PASSWORD or password_file: "
                                 f"/run/secrets/{_slug(name)}_password")
            if self.realm is None:
                # pjsua's "*" would answer any challenger with the password's hash.
                raise ValueError(f"trunk {name!r} registers but has no realm: set realm to the one in "
                                 "the carrier's 401 challenge (credentials are offered to it alone)")
            if self.realm == "*":
                raise Invalid("realm must be the carrier's own, not '*' (any challenger would get the "
                              "password hash)", "realm")
        return self

    def _secrets(self, base: Path) -> dict[str, SecretRef]:
        return {key: _secret_ref(key, text, base) for key in _TRUNK_SECRETS
                if (text := getattr(self, key)) is not None}

    def trunk(self, base: Path) -> Trunk:
        refs = self._secrets(base)
        password = refs.get("password_env") or refs.get("password_file")
        ha1 = refs.get("password_ha1_env") or refs.get("password_ha1_file")
        return Trunk(name=self.name, allow=tuple(self.allow), registrar=self.registrar,
                     username=self.username, password=password, password_ha1=ha1, expiry=self.expiry,
                     realm=self.realm, transport=self.transport, srtp=self.srtp, proxy=self.proxy,
                     auth_username=self.auth_username, from_domain=self.from_domain,
                     contact_user=self.contact_user)


# Where each provider's key comes from when the file names none.
_KEY_ENV = {"deepgram": "set DEEPGRAM_API_KEY in the environment, or name another",
            "llm": "for api.openai.com set OPENAI_API_KEY in the environment; for another "
                   "base_url name its own key"}


def _provider_options(provider: str, options: dict[str, Any], base: Path, *at: str) -> dict[str, Any]:
    """A provider's options as plain values (the provider checks them), with any secret written
    in the file refused and `api_key_env` / `api_key_file` checked for a readable key."""
    for where, key in _keys(options):
        if forbidden_key(key):
            raise Invalid(_written_secret(provider, key), *at, *where)
    sources = [key for key in options if key in ("api_key_env", "api_key_file")]
    if len(sources) > 1:
        raise Invalid(f"{provider}: give api_key_env or api_key_file, not both", *at, sources[1])
    out = dict(options)
    for key in sources:
        if not isinstance(options[key], str) or not options[key].strip():
            raise Invalid(f"expected text, got {options[key]!r}", *at, key)
        try:
            ref = _secret_ref(key, options[key].strip(), base)
        except Invalid as exc:
            raise Invalid(str(exc), *at, key) from None
        if (problem := ref.problem()) is not None:
            raise Invalid(f"{problem} ({provider} API key)", *at, key)
        out[key] = ref.env or str(ref.file)
    return out


def _keys(value: Any, where: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], str]]:
    """Every mapping key in a plain value, with its location."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += [((*where, key), key), *_keys(item, (*where, key))]
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _keys(item, (*where, index))
    return found


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


class GatewayFile(Strict):
    """gateway.yaml. Paths are relative to the file; secrets are named, never written."""

    sip: SipFile = SipFile()
    media: MediaFile = MediaFile()
    metrics: MetricsFile = MetricsFile()
    http: HttpFile = HttpFile()
    webrtc: WebRtcFile = WebRtcFile()
    security: SecurityFile = SecurityFile()
    dialplans: Text | None = None
    codec_profile: Text | None = None
    records: Text | None = None
    cache_dir: Text | None = None
    operator_uri: SipUri = DEFAULTS.operator_uri
    trunks: list[TrunkFile] | None = None
    workers: between(Whole, at_least=1, at_most=64) = DEFAULTS.workers
    calls_per_worker: between(Whole, at_least=1) = DEFAULTS.calls_per_worker
    drain_timeout: between(Number, at_least=0) = DEFAULTS.drain_timeout
    log_level: Text = Field(DEFAULTS.log_level, json_schema_extra={"enum": ["debug", "info", "warning", "error"]})
    stt: listed(Text) = list(DEFAULTS.stt)
    tts: Text = DEFAULTS.tts
    llm: dict[str, Any] = {}
    provider_options: dict[str, dict[str, Any]] = {}

    _level = _one_of("log_level", ("debug", "info", "warning", "error"),
                     "log_level must be debug, info, warning or error")

    @field_validator("records")
    @classmethod
    def _records(cls, text: str | None) -> str | None:
        if text is not None and not _is_url(text) and text.endswith(".jsonl"):
            raise ValueError("records: calls are kept in a database now: name a SQLite file "
                             "(e.g. ./var/calls.db) or a postgresql:// URL")
        if text is not None and "://" in text and not _is_url(text):
            raise ValueError("records: a file path or a postgresql:// URL")
        return text

    @field_validator("llm")
    @classmethod
    def _llm(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return _provider_options("llm", options, _base(info))

    @field_validator("provider_options")
    @classmethod
    def _providers(cls, providers: dict[str, dict[str, Any]], info: ValidationInfo) -> dict[str, dict[str, Any]]:
        return {name: _provider_options(name, options, _base(info), name) for name, options in providers.items()}

    def settings(self, base: Path) -> Settings:
        paths = {key: (base / text).resolve() for key in ("dialplans", "codec_profile", "records", "cache_dir")
                 if (text := getattr(self, key)) is not None and not (key == "records" and _is_url(text))}
        if self.records is not None and _is_url(self.records):
            paths["records_url"] = self.records  # type: ignore[assignment]
        trunks = {} if self.trunks is None else {"trunks": tuple(t.trunk(base) for t in self.trunks)}
        sip, sec = self.sip, self.security
        return Settings(
            sip_address=sip.address, sip_port=sip.port, public_address=sip.public_address,
            rtp_port_start=sip.rtp_port_start, rtp_port_count=sip.rtp_port_count,
            frame_ms=self.media.frame_ms, metrics_address=self.metrics.address, metrics_port=self.metrics.port,
            http_address=self.http.address, http_port=self.http.port,
            webrtc_ice_addresses=tuple(self.webrtc.ice_addresses),
            webrtc_ice_servers=tuple(s.server(base) for s in self.webrtc.ice_servers),
            webrtc_connect_timeout=self.webrtc.connect_timeout, webrtc_max_calls=self.webrtc.max_calls,
            unknown_sources=sec.unknown_sources, flood_rate=sec.flood_rate, flood_burst=sec.flood_burst,
            ban_seconds=sec.ban_seconds, operator_uri=self.operator_uri, workers=self.workers,
            calls_per_worker=self.calls_per_worker, drain_timeout=self.drain_timeout, log_level=self.log_level,
            stt=tuple(self.stt), tts=self.tts, llm=self.llm, provider_options=self.provider_options,
            srtp=self.media.srtp, **(sip.tls.settings(base) if sip.tls else {}),
            **paths, **trunks)  # type: ignore[arg-type]


def _is_url(text: str) -> bool:
    return re.match(r"^postgres(ql)?://", text) is not None


def _base(info: ValidationInfo) -> Path:
    return (info.context or {}).get("base", Path("."))


def load_settings(path: Path | None) -> Settings:
    """Read gateway.yaml (or defaults when path is None); raises the first ConfigError."""
    settings, errors = read_settings(path)
    if errors:
        raise errors[0]
    assert settings is not None
    return settings


def read_settings(path: Path | None) -> tuple[Settings | None, list[ConfigError]]:
    """Settings plus every error found (file:line), environment overrides applied."""
    settings: Settings | None = Settings()
    errors: list[ConfigError] = []
    if path is not None:
        base = path.parent
        model, errors = load(path, GatewayFile, context={"base": base})
        settings = model.settings(base) if model is not None else None
    if settings is not None and not errors:
        errors = _validate(settings, str(path or "defaults"))
    worker = os.environ.get("GATEWAY_WORKER")
    if settings is not None and worker:
        settings = _worker_overrides(settings, json.loads(worker))
    operator = os.environ.get("GATEWAY_OPERATOR_URI")
    if settings is not None and operator:
        settings = replace(settings, operator_uri=operator)
    return (None if errors else settings), errors


def _worker_overrides(settings: Settings, data: dict[str, object]) -> Settings:
    paths = {"ready_file", "heartbeat_file", "records"}
    tuples = {"trusted"}
    changes = {k: Path(v) if k in paths else tuple(v) if k in tuples else v  # type: ignore[arg-type]
               for k, v in data.items()}
    return replace(settings, **changes)  # type: ignore[arg-type]


def _validate(s: Settings, where: str) -> list[ConfigError]:
    """Checks across settings, and the codec profile they name."""
    # Each call needs an RTP and an RTCP port; pjsua steps through the range two at a time.
    needed = 2 * s.workers * s.calls_per_worker
    if s.rtp_port_count < needed:
        return [ConfigError(
            where, 0,
            f"rtp_port_count {s.rtp_port_count} is too small for {s.workers} workers x "
            f"{s.calls_per_worker} calls (needs at least {needed})",
        )]
    if s.rtp_port_start + s.rtp_port_count > 65536:
        return [ConfigError(where, 0, "RTP port range runs past 65535")]
    if not s.codec_profile.exists():
        return [ConfigError(where, 0, f"codec profile not found: {s.codec_profile}")]
    return read_codec_profile(s.codec_profile)[1]
