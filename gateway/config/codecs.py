"""Codec profiles (codecs/*.yaml): the codecs the gateway offers in SDP, best first.

The set of codec names is closed here, in one place: the pjmedia codecs the gateway's pjsua2 build
(scripts/build-pjsua2) offers. A profile naming any other (a misspelling, a codec the build lacks)
is a file:line error with a did-you-mean, never a codec silently left out of the offer. Given the
codecs of the module actually loaded (`available`, from gateway.sip.build), a profile naming one it
lacks (Opus on the stock wheel) is an error at its line too.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from collections.abc import Iterable

from pydantic import Field, ValidationInfo, field_validator

from gateway.config.schema import Invalid, Strict, Text, load
from gateway.errors import ConfigError

__all__ = ["CODECS", "CodecProfile", "load_codec_profile", "read_codec_profile"]

# pjmedia codec ids without their channel count ("PCMU/8000" enables "PCMU/8000/1").
CODECS: tuple[str, ...] = ("PCMU/8000", "PCMA/8000", "G722/16000", "opus/48000", "L16/44100")
_BY_NAME = {name.lower(): name for name in CODECS}


class CodecProfile(Strict):
    """The codecs to offer, highest priority first; any codec not listed is disabled.
    telephone-event (RFC 4733 DTMF) is always offered and needs no entry."""

    codecs: list[Text] = Field(min_length=1, json_schema_extra={"items": {"enum": list(CODECS)}})

    @field_validator("codecs")
    @classmethod
    def _known(cls, names: list[str], info: ValidationInfo) -> list[str]:
        available = (info.context or {}).get("available")
        seen: set[str] = set()
        for index, name in enumerate(names):
            codec = _BY_NAME.get(name.lower())
            if codec is None:
                close = difflib.get_close_matches(name, CODECS, n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise Invalid(f"unknown codec '{name}' (expected one of: {', '.join(CODECS)}){hint}", index)
            if available is not None and codec.lower() not in available:
                raise Invalid(f"codec '{codec}' is not in the pjsua2 module in use (it has: "
                              f"{', '.join(available.values())}); scripts/setup installs the "
                              "gateway's own build", index)
            if codec in seen:
                raise Invalid(f"codec '{codec}' is listed twice", index)
            seen.add(codec)
            names[index] = codec
        return names


def read_codec_profile(path: Path, available: Iterable[str] | None = None,
                       ) -> tuple[tuple[str, ...] | None, list[ConfigError]]:
    """The profile's codecs, best first, or None and every error (file:line); with `available`
    (the loaded module's codec ids, e.g. "opus/48000"), a codec outside it is an error too."""
    context = None if available is None else {"available": {name.lower(): name for name in available}}
    profile, errors = load(path, CodecProfile, context=context)
    return (tuple(profile.codecs) if profile is not None else None), errors


def load_codec_profile(path: Path, available: Iterable[str] | None = None) -> tuple[str, ...]:
    """The profile's codecs, best first; raises the first ConfigError."""
    codecs, errors = read_codec_profile(path, available)
    if errors:
        raise errors[0]
    assert codecs is not None
    return codecs
