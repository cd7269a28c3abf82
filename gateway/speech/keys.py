"""Which API key a cloud vendor's client is given.

The key named in the options (api_key_env / api_key_file) always wins. Without one, the vendor's
own environment variable is used, but only towards the vendor's own host over TLS: a self-hosted
or third-party server never sees it, and gets a placeholder (the SDKs insist on some key).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from gateway.config.secrets import mask
from gateway.errors import ProviderError

PLACEHOLDER_KEY = "unused"


def own_host(url: str | None, domain: str, schemes: tuple[str, ...] = ("https",), *,
             subdomains: bool = False) -> bool:
    """`url` reaches the vendor itself over TLS (no url: the SDK's default, which does)."""
    if not url:
        return True
    parts = urlsplit(url)
    host = parts.hostname or ""
    return parts.scheme in schemes and (host == domain or (subdomains and host.endswith("." + domain)))


def vendor_key(provider: str, api_key: str | None, *, own: bool, env: str, missing: str) -> str:
    """The key to send. `missing`: the error's advice when the vendor's own host has none."""
    if api_key:
        key = api_key
    elif own:
        key = os.environ.get(env, "")
        if not key:
            raise ProviderError(provider, f"no API key: set {env} ({missing})")
    else:
        key = PLACEHOLDER_KEY
    if key != PLACEHOLDER_KEY:
        mask(key)  # the SDKs log their request headers at DEBUG
    return key
