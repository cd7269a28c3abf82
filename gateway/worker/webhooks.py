"""Calling a webhook safely, on the event loop.

One deadline covers the whole request (DNS, connect, headers, body), so a server that trickles
bytes cannot stretch it. Only public addresses are reached unless the script allowlists a
network (see `destinations`); redirects are refused; replies are capped and must be JSON; a
model's arguments are checked against the tool's JSON Schema before anything is sent. With a
secret, each request carries

    X-Gateway-Call-Id: <the SIP Call-ID>    X-Gateway-Timestamp: <unix seconds>
    X-Gateway-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<call id>." + signed)>

where `signed` is the request body, or for GET the URL's query string. Every failure is a
WebhookError whose text is short and ours (never the server's), fit for a model or a log.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import jsonschema
import yarl

from gateway.worker import destinations
from gateway.script import model as sc
from gateway.worker.untrusted import brief

__all__ = ["MAX_ARGUMENTS", "MAX_REPLY", "WebhookError", "check_arguments", "run_tool", "send"]

log = logging.getLogger("gateway.agent")
MAX_REPLY = 64 * 1024
MAX_ARGUMENTS = 16 * 1024
_HEADER_LIMIT = 8192  # one header line; aiohttp refuses longer ones as malformed
_HEADER_VALUE = re.compile(r"[^\x21-\x7e]")  # a Call-ID comes from the caller


class WebhookError(Exception):
    """A webhook that gave nothing usable; str() is a short reason of our own."""


async def send(url: str, method: str, payload: Mapping[str, object], *, timeout: float,
               policy: sc.WebhookPolicy, call_id: str) -> object:
    """POST (PUT, ...) payload as JSON, or GET it as query parameters; the decoded JSON reply."""
    method = method.upper()
    url, body, signed = _encode(url, method, payload)
    allow = destinations.networks(policy.allow)
    _check_literal(urlsplit(url).hostname or "", allow)
    headers = {"Accept": "application/json", "Accept-Encoding": "identity", "User-Agent": "gateway",
               **_signature(policy, call_id, signed)}
    if body is not None:
        headers["Content-Type"] = "application/json"
    resolver = destinations.GuardedResolver(allow)
    try:
        async with asyncio.timeout(timeout):  # the deadline, DNS included
            async with _session(resolver, timeout) as session, session.request(
                    method, yarl.URL(url, encoded=True), data=body, headers=headers,
                    allow_redirects=False) as response:
                return await _reply(response)
    except TimeoutError:
        raise WebhookError(f"no complete reply within {timeout:g} s") from None
    except aiohttp.ClientConnectorError:
        raise WebhookError(resolver.refused or "cannot connect") from None
    except (aiohttp.ClientResponseError, aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
        raise WebhookError("malformed or cut-off reply") from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise WebhookError(f"request failed ({type(exc).__name__})") from None


async def run_tool(tool: sc.WebhookTool, arguments: str, *, policy: sc.WebhookPolicy,
                   call_id: str) -> str:
    """The tool message for the model: {"data": reply} or {"error": reason}, as JSON text.
    Nothing is sent when the arguments do not fit the tool's parameters."""
    try:
        payload = check_arguments(tool, arguments)
        data = await send(tool.url, tool.method, payload, timeout=tool.timeout, policy=policy,
                          call_id=call_id)
    except WebhookError as exc:
        log.warning("webhook %s failed: %s", tool.name, brief(str(exc), 200))
        return json.dumps({"error": f"{tool.name} failed: {exc}"})
    return json.dumps({"data": data})


def check_arguments(tool: sc.WebhookTool, arguments: str) -> dict[str, object]:
    """The model's arguments as a JSON object that the tool's schema accepts."""
    if len(arguments) > MAX_ARGUMENTS:
        raise WebhookError(f"arguments are over {MAX_ARGUMENTS // 1024} KiB")
    try:
        value = json.loads(arguments or "{}", parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise WebhookError("arguments are not valid JSON") from None
    if not isinstance(value, dict):
        raise WebhookError("arguments must be a JSON object")
    error = jsonschema.exceptions.best_match(_validator(tool.parameters_json).iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "arguments"
        raise WebhookError(f"{where}: {error.message[:200]}")
    return value


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_json)
    return jsonschema.validators.validator_for(schema)(schema)


def _encode(url: str, method: str, payload: Mapping[str, object]) -> tuple[str, bytes | None, bytes]:
    """The URL, the body and the bytes the signature covers."""
    if method == "GET":
        params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in payload.items()}
        parts = urlsplit(url)
        query = "&".join(q for q in (parts.query, urlencode(params)) if q)
        return urlunsplit(parts._replace(query=query)), None, query.encode()
    body = json.dumps(payload, separators=(",", ":")).encode()
    return url, body, body


def _check_literal(host: str, allow: tuple[destinations.Network, ...]) -> None:
    # aiohttp connects to an IP-literal host without asking the resolver.
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return
    reason = destinations.refusal(host, allow)
    if reason is not None:
        raise WebhookError(f"destination refused: {reason}")


def _signature(policy: sc.WebhookPolicy, call_id: str, signed: bytes) -> dict[str, str]:
    call_id = _HEADER_VALUE.sub("", call_id)[:128]
    timestamp = str(int(time.time()))
    headers = {"X-Gateway-Call-Id": call_id, "X-Gateway-Timestamp": timestamp}
    if policy.secret_env is None:
        return headers
    secret = os.environ.get(policy.secret_env)
    if not secret:  # checked at load; gone since: refuse rather than send unsigned
        raise WebhookError(f"signing secret ${policy.secret_env} is not set")
    message = f"{timestamp}.{call_id}.".encode() + signed
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    headers["X-Gateway-Signature"] = f"v1={digest}"
    return headers


def _session(resolver: destinations.GuardedResolver, timeout: float) -> aiohttp.ClientSession:
    # One connection per request: nothing pooled outlives the check made for it.
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, force_close=True, limit=1)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout),
        auto_decompress=False,  # a small gzip body could inflate past any cap
        max_line_size=_HEADER_LIMIT, max_field_size=_HEADER_LIMIT, max_headers=64,
        cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)


async def _reply(response: aiohttp.ClientResponse) -> object:
    status = response.status
    if 300 <= status < 400:
        raise WebhookError(f"redirect refused (HTTP {status})")
    if not 200 <= status < 300:
        raise WebhookError(f"HTTP {status}")
    if status == 204:
        return None
    if "Content-Type" in response.headers and not _is_json(response.content_type):
        raise WebhookError("reply is not JSON (content type)")
    if response.content_length is not None and response.content_length > MAX_REPLY:
        raise WebhookError(f"reply is over {MAX_REPLY // 1024} KiB")
    body = bytearray()
    async for chunk in response.content.iter_chunked(16384):
        body += chunk
        if len(body) > MAX_REPLY:
            raise WebhookError(f"reply is over {MAX_REPLY // 1024} KiB")
    try:
        return json.loads(bytes(body), parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise WebhookError("reply is not valid JSON") from None


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")
