"""Registration trunks: a pjsua2 Account per carrier registrar, with our own retry backoff."""

from __future__ import annotations

import logging
import time
from typing import Protocol

import pjsua2 as pj

from gateway.config import secrets
from gateway.config.settings import Settings, Trunk
from gateway.sip import events as ev
from gateway.sip import pjutil

log = logging.getLogger("gateway.sip")
_MIN_BACKOFF = 1.0
_MAX_BACKOFF = 60.0


class TrunkOwner(Protocol):
    """What a trunk needs of the endpoint holding it (the SipEndpoint, on the pj thread)."""

    settings: Settings

    def post(self, event: ev.Event) -> None: ...

    def registration(self, trunk: str, host: str, up: bool) -> None: ...

    def incoming_on_trunk(self, account: pj.Account, prm: pj.OnIncomingCallParam) -> None: ...

    def media_config(self, acfg: pj.AccountConfig) -> None: ...


class TrunkAccount(pj.Account):
    """Registers to the carrier; pjsua refreshes before expiry, we retry failures with backoff."""

    def __init__(self, owner: TrunkOwner, trunk: Trunk) -> None:
        super().__init__()
        self.owner = owner
        self.trunk = trunk
        self.active = False
        self._backoff = _MIN_BACKOFF
        self._retry_at: float | None = None
        self._stopping = False
        self._unregistered = False

    def register(self) -> None:
        trunk, s = self.trunk, self.owner.settings
        registrar = registrar_uri(trunk)
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{trunk.username}@{trunk.from_domain or _host_of(registrar)}"
        acfg.regConfig.registrarUri = registrar
        acfg.regConfig.timeoutSec = trunk.expiry
        acfg.regConfig.retryIntervalSec = 0  # our own backoff below
        acfg.regConfig.firstRetryIntervalSec = 0
        acfg.regConfig.unregWaitMsec = 1000
        acfg.sipConfig.authCreds.append(_credentials(trunk))
        if s.outbound_proxy:
            acfg.sipConfig.proxies.append(s.outbound_proxy)
        elif trunk.proxy:
            acfg.sipConfig.proxies.append(_with_transport(trunk.proxy, trunk.transport))
        if trunk.contact_user and not s.contact_address:
            # The user the carrier sends its INVITEs to (often the DID), at our own address.
            tls = trunk.transport == "tls" or registrar.startswith("sips:")
            port = s.tls_port if tls and s.tls_port else s.sip_port
            params = f";transport={trunk.transport}" if trunk.transport in ("tcp", "tls") else ""
            acfg.sipConfig.contactForced = (f"<sip:{trunk.contact_user}@"
                                            f"{s.public_address or s.sip_address}:{port}{params}>")
        if s.contact_address:
            # Behind the front: the carrier must send calls to the front, not to this worker.
            acfg.sipConfig.contactForced = f"<sip:{trunk.contact_user or trunk.username}@{s.contact_address}>"
            acfg.natConfig.contactRewriteUse = 0
            acfg.natConfig.viaRewriteUse = 0
        self.owner.media_config(acfg)
        if trunk.srtp is not None:
            pjutil.set_srtp(acfg.mediaConfig, trunk.srtp)
        self.create(acfg)
        log.info("trunk %s: registering to %s as %s", trunk.name, registrar, trunk.username)

    def onRegState(self, prm: pj.OnRegStateParam) -> None:  # noqa: N802
        code, expires = prm.code, prm.expiration
        active = 200 <= code < 300 and expires > 0
        if self._stopping:
            self._unregistered = True
        if active != self.active:
            log.info("trunk %s: registration %s (%s %s)", self.trunk.name,
                     "up" if active else "down", code, prm.reason)
        self.active = active
        # Where the registrar answered from: the carrier's calls on this registration come from
        # there too, so they are accepted without an `allow` entry.
        source = prm.rdata.srcAddress if active else ""
        self.owner.registration(self.trunk.name, source.rsplit(":", 1)[0].strip("[]"), active)
        self.owner.post(ev.Registration(self.trunk.name, code, prm.reason, active, expires))
        if active:
            self._backoff = _MIN_BACKOFF
            self._retry_at = None
        elif not self._stopping:
            self._retry_at = time.monotonic() + self._backoff
            log.warning("trunk %s: registration failed (%s %s); retrying in %.0f s",
                        self.trunk.name, code, prm.reason, self._backoff)
            self._backoff = min(self._backoff * 2, _MAX_BACKOFF)

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:  # noqa: N802
        # An INVITE pjsua matched to this account (its user at the carrier's domain): the
        # gateway's, not pjsua's 500 for an account with no handler.
        self.owner.incoming_on_trunk(self, prm)

    def maybe_retry(self, now: float) -> None:
        if self._retry_at is not None and now >= self._retry_at and not self._stopping:
            self._retry_at = None
            try:
                self.setRegistration(True)
            except pj.Error as exc:
                log.warning("trunk %s: cannot send REGISTER: %s", self.trunk.name, exc.info())
                self._retry_at = now + self._backoff
                self._backoff = min(self._backoff * 2, _MAX_BACKOFF)

    def unregister(self) -> None:
        self._stopping = True
        if not self.active:
            self._unregistered = True
            return
        try:
            self.setRegistration(False)
        except pj.Error:
            self._unregistered = True

    def busy(self) -> bool:
        return self._stopping and not self._unregistered


def registrar_uri(trunk: Trunk) -> str:
    """The registrar with the trunk's transport: `transport: tls` on a sip: URI, or a sips:
    URI (TLS by its scheme)."""
    return _with_transport(trunk.registrar or "", trunk.transport)


def _with_transport(uri: str, transport: str | None) -> str:
    if not transport or transport == "udp" or uri.startswith("sips:") or ";transport=" in uri:
        return uri
    return f"{uri};transport={transport}"


def _credentials(trunk: Trunk) -> pj.AuthCredInfo:
    """Digest credentials for the trunk's realm only; the secret is read now, not kept."""
    user = trunk.auth_username or trunk.username
    if trunk.password_ha1 is not None:
        ha1 = trunk.password_ha1.read().lower()  # pjsip hashes the hex text as given
        secrets.mask(ha1)
        return pj.AuthCredInfo("digest", trunk.realm, user, pj.PJSIP_CRED_DATA_DIGEST, ha1)
    assert trunk.password is not None
    return pj.AuthCredInfo("digest", trunk.realm, user, pj.PJSIP_CRED_DATA_PLAIN_PASSWD,
                           trunk.password.read())


def _host_of(uri: str) -> str:
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    return rest.split(";", 1)[0].split("@")[-1]
