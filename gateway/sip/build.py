"""What the pjsua2 module in use can do: its codecs, TLS, SRTP suites and compiled call limit.

The gateway runs on the module scripts/build-pjsua2 compiles (512 calls, Opus, TLS, SRTP); the
stock pjsua2-python wheel (`GATEWAY_PJSUA2=wheel`) stops at 4 calls and has no Opus. `gateway
check` and worker start-up report these facts, and a codec profile is checked against them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import pjsua2 as pj

__all__ = ["BuildInfo", "describe", "probe"]


@dataclass(frozen=True, slots=True)
class BuildInfo:
    version: str
    max_calls: int  # PJSUA_MAX_CALLS: uaConfig.maxCalls above it is clamped silently
    codecs: tuple[str, ...]  # pjmedia ids without the channel count, e.g. "opus/48000"
    tls: bool
    srtp: tuple[str, ...]  # crypto suites, strongest first as pjmedia lists them

    def summary(self) -> str:
        return (f"pjsua2 {self.version}: up to {self.max_calls} calls per worker; codecs "
                f"{', '.join(self.codecs)}; TLS {'yes' if self.tls else 'no'}; "
                f"SRTP {', '.join(self.srtp) if self.srtp else 'no'}")


def compiled_max_calls() -> int:
    """A fresh UaConfig carries the compiled-in PJSUA_MAX_CALLS."""
    return int(pj.UaConfig().maxCalls)


def describe(ep: pj.Endpoint) -> BuildInfo:
    """The facts of an initialised Endpoint (call on its thread)."""
    codecs: list[str] = []
    for info in ep.codecEnum2():
        name = "/".join(info.codecId.split("/")[:2])
        if name not in codecs:
            codecs.append(name)
    try:
        tls = len(ep.utilSslGetAvailableCiphers()) > 0
    except pj.Error:
        tls = False
    try:
        srtp = tuple(ep.srtpCryptoEnum())
    except (pj.Error, AttributeError):
        srtp = ()
    return BuildInfo(version=ep.libVersion().full, max_calls=compiled_max_calls(),
                     codecs=tuple(sorted(codecs, key=str.lower)), tls=tls, srtp=srtp)


def probe() -> BuildInfo:
    """Start a throwaway Endpoint to describe the module. Only where no other Endpoint lives in
    the process (pjsua has one per process): `gateway check`, tools, tests."""
    ep = pj.Endpoint()
    sys.stdout.flush()
    saved = os.dup(1)
    try:  # libCreate logs its banner to stdout before any log level applies
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            ep.libCreate()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    try:
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.logConfig.level = 0
        cfg.logConfig.consoleLevel = 0
        ep.libInit(cfg)
        return describe(ep)
    finally:
        ep.libDestroy()
