"""Read an agent script (YAML) into an AgentScript, reporting every mistake with file:line.

Variables are checked along the script's paths: a `{name}` in a text or a branch on a variable
must have a value by then (gathered earlier on every path, declared under `variables`, or
built in). Those checks run after all steps are read, so an error can say where the name *is*
gathered when that is too late.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import jsonschema

from gateway.config import yamlfile
from gateway.script.model import (
    BUILTIN_TOOLS,
    BUILTIN_VARIABLES,
    DEFAULT_DISCLOSURE,
    AgentScript,
    Branch,
    FallbackConfig,
    Gather,
    Hangup,
    InputMode,
    Llm,
    Play,
    Say,
    Step,
    Tool,
    ToolRef,
    Transfer,
    Webhook,
    WebhookPolicy,
    WebhookTool,
    normalize_answer,
    placeholders,
)
from gateway.errors import ConfigError
from gateway.config.yamlfile import Errors, Fields, Node, step_key

__all__ = ["load_agent", "load_agent_checked"]

_T = TypeVar("_T")

_TOP_KEYS = (
    "name", "disclosure", "voice", "language", "vocabulary", "end_of_turn_ms", "barge_in_min_ms",
    "clips", "fallback", "context_webhook", "webhooks", "variables", "steps",
)  # fmt: skip
_STEP_KEYS = ("say", "play", "gather", "branch", "llm", "transfer", "hangup")
_GATHER_KEYS = ("name", "prompt", "input", "expect", "confirm", "timeout")
_BRANCH_KEYS = ("variable", "cases", "default")
_LLM_KEYS = ("instructions", "tools", "exit_when", "max_turns")
_TRANSFER_KEYS = ("to", "on_failure")
_FALLBACK_KEYS = ("max_no_input", "max_no_match", "max_failures", "low_confidence", "escalate_to")
_WEBHOOK_KEYS = ("url", "timeout", "method")
_POLICY_KEYS = ("allow", "secret_env")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MIN_SECRET = 16  # characters: a short HMAC key can be guessed offline from one signed request
_TOOL_KEYS = ("name", "url", "method", "description", "parameters", "timeout")
_CLIP_KEYS = ("text", "file")
_INPUTS: tuple[InputMode, ...] = ("speech", "dtmf", "both")
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what LLM function-calling APIs accept
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
_KEYPAD = re.compile(r"^[0-9*#]+$")
_SIP_URI = re.compile(r"^(sips?):([^\s<>\"]+)$", re.IGNORECASE)
_TEL_URI = re.compile(r"^(tel):(\+?[0-9*#().\-]+(?:;[^\s<>\"]*)?)$", re.IGNORECASE)


def load_agent(path: Path) -> AgentScript:
    """Load one script; raises the first ConfigError (in file order) if there is any."""
    script, errors = load_agent_checked(path)
    if errors:
        raise errors[0]
    assert script is not None
    return script


def load_agent_checked(path: Path) -> tuple[AgentScript | None, list[ConfigError]]:
    """Load one script and every error in it, sorted by line; a script with errors gives None."""
    errors = Errors()
    script = errors.attempt(_load, path, errors)
    found = sorted(errors, key=lambda e: e.line)
    return (None, found) if found or script is None else (script, [])


@dataclass(slots=True)
class _Use:
    """A variable read at a point of the script, checked once every gather is known."""

    node: Node
    name: str
    known: frozenset[str]
    cases: tuple[tuple[Node, str], ...] = ()  # for a branch: its case keys


@dataclass(slots=True)
class _Scope:
    base: Path
    errors: Errors
    clips: Mapping[str, Path]
    clip_keys: frozenset[str]  # every key under clips, loaded or not
    declared: frozenset[str]
    gathered: dict[str, Node] = field(default_factory=dict)  # name -> its node, whole script
    expects: dict[str, Mapping[str, tuple[str, ...]] | None] = field(default_factory=dict)
    uses: list[_Use] = field(default_factory=list)


def _load(path: Path, errors: Errors) -> AgentScript | None:
    root = yamlfile.load(path)
    top = root.fields(_TOP_KEYS, errors)
    base = path.parent.resolve()

    def opt(name: str, read: Callable[[Node], _T], default: _T) -> _T:
        node = top.get(name)
        value = None if node is None else errors.attempt(read, node)
        return default if value is None else value

    name = opt("name", _matching(_NAME, "a name of letters, digits, '.', '_' and '-'"), path.stem)
    disclosure_node = top.get("disclosure")
    disclosure = (
        DEFAULT_DISCLOSURE if disclosure_node is None else errors.attempt(_disclosure, disclosure_node)
    )
    voice = opt("voice", lambda n: n.as_str(), None)
    language = opt("language", _matching(_LANGUAGE, "a language tag like en or en-GB"), "en")
    vocabulary: tuple[str, ...] = opt("vocabulary", _vocabulary, ())
    end_of_turn = opt("end_of_turn_ms", lambda n: n.as_int(at_least=100, at_most=5000), None)
    barge_in = opt("barge_in_min_ms", lambda n: n.as_int(at_least=0, at_most=2000), None)
    clips: dict[str, Path] = opt("clips", lambda n: _clips(n, base, errors), {})
    fallback = opt("fallback", lambda n: _fallback(n, errors), FallbackConfig())
    webhook = opt("context_webhook", lambda n: _webhook(n, errors, 2.0), None)
    policy = opt("webhooks", lambda n: _policy(n, errors), WebhookPolicy())
    variables_node = top.get("variables")
    variables = {} if variables_node is None else errors.attempt(_variables, variables_node, errors)

    clips_node = top.get("clips")
    clip_pairs = clips_node.pairs() if clips_node is not None and clips_node.kind == "mapping" else ()
    declared = frozenset((*BUILTIN_VARIABLES, *(variables or ())))
    scope = _Scope(base, errors, clips, frozenset(key.text for key, _ in clip_pairs), declared)
    steps_node = top.get("steps")
    if steps_node is None:
        raise root.error("missing 'steps' (what the agent does, in order)")
    if not errors.attempt(steps_node.as_list):
        if steps_node.kind == "sequence":
            errors.add(steps_node.error("steps is empty"))
        return None
    steps = _steps(steps_node, scope, set(scope.declared))
    if variables is None:
        return None  # unreadable declarations would make every use look unknown
    _check_uses(scope)
    return AgentScript(
        name, str(path), disclosure, voice, language, vocabulary, end_of_turn, barge_in,
        clips, fallback, webhook, steps, variables, policy,
    )  # fmt: skip


def _matching(pattern: re.Pattern[str], wanted: str) -> Callable[[Node], str]:
    def read(node: Node) -> str:
        text = node.as_str()
        if not pattern.match(text):
            raise node.error(f"expected {wanted}, got {text!r}")
        return text

    return read


def _disclosure(node: Node) -> str | None:
    if node.kind == "scalar" and isinstance(node.value, bool):
        return DEFAULT_DISCLOSURE if node.value else None
    if node.is_null:
        raise node.error("write 'disclosure: false' to play none, or give the text")
    return node.as_str()


def _vocabulary(node: Node) -> tuple[str, ...]:
    words: dict[str, str] = {}
    for item in node.as_list(single=True):
        text = item.as_str()
        words.setdefault(text.casefold(), text)  # first spelling of each word, in file order
    return tuple(words.values())


def _clips(node: Node, base: Path, errors: Errors) -> dict[str, Path]:
    clips: dict[str, Path] = {}
    where: dict[str, int] = {}
    fields = node.fields(None, errors)
    for key, value in fields.values.items():
        entry = errors.attempt(_clip, value, base, errors)
        if entry is None:
            continue
        text, path = entry
        for name in (key, text) if text is not None else (key,):
            if name not in clips:
                clips[name], where[name] = path, value.line
            elif clips[name] != path:
                errors.add(value.error(f"{name!r} already names the clip on line {where[name]}"))
    return clips


def _clip(node: Node, base: Path, errors: Errors) -> tuple[str | None, Path]:
    if node.kind != "mapping":
        return None, _wav(node, base)
    fields = node.fields(_CLIP_KEYS, errors)
    text = fields.get("text")
    return (None if text is None else text.as_str()), _wav(fields.require("file"), base)


def _wav(node: Node, base: Path) -> Path:
    path = base / node.as_str()
    try:
        with path.open("rb") as file:
            header = file.read(12)
    except FileNotFoundError:
        raise node.error(f"file not found: {path}") from None
    except OSError as error:
        raise node.error(f"cannot read {path}: {error.strerror or error}") from None
    if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        raise node.error(f"not a WAV file: {path}")
    return path


def _fallback(node: Node, errors: Errors) -> FallbackConfig:
    fields = node.fields(_FALLBACK_KEYS, errors)
    default = FallbackConfig()

    def limit(name: str, fallback: int) -> int:
        part = fields.get(name)
        value = None if part is None else errors.attempt(part.as_int, at_least=1, at_most=10)
        return fallback if value is None else value

    confidence = fields.get("low_confidence")
    low = None if confidence is None else errors.attempt(confidence.as_float, at_least=0, at_most=1)
    escalate = fields.get("escalate_to")
    target = None
    if escalate is not None and not escalate.is_null and escalate.value is not False:
        target = errors.attempt(_target, escalate)
    return FallbackConfig(
        max_no_input=limit("max_no_input", default.max_no_input),
        max_no_match=limit("max_no_match", default.max_no_match),
        max_failures=limit("max_failures", default.max_failures),
        low_confidence=default.low_confidence if low is None else low,
        escalate_to=target,
    )


def _webhook(node: Node, errors: Errors, timeout: float) -> Webhook:
    if node.kind != "mapping":
        return Webhook(_url(node), timeout)
    fields = node.fields(_WEBHOOK_KEYS, errors)
    url = _url(fields.require("url"))
    return Webhook(url, _timeout(fields, errors, timeout), _method(fields, errors))


def _policy(node: Node, errors: Errors) -> WebhookPolicy:
    fields = node.fields(_POLICY_KEYS, errors)
    allow_node, secret_node = fields.get("allow"), fields.get("secret_env")
    allow = () if allow_node is None else allow_node.as_list(single=True)
    networks = (errors.attempt(_network, item) for item in allow)
    secret_env = None if secret_node is None else errors.attempt(_secret_env, secret_node)
    return WebhookPolicy(tuple(n for n in networks if n is not None), secret_env)


def _network(node: Node) -> str:
    text = node.as_str()
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError:
        wanted = "an address or a network like 10.0.0.0/8 (no host bits)"
        raise node.error(f"expected {wanted}, got {text!r}") from None


def _secret_env(node: Node) -> str:
    """The variable's name; its value must be set now, and is read again for each request."""
    name = node.as_str()
    if not _ENV_NAME.match(name):
        raise node.error(f"secret_env names an environment variable, got {name!r}")
    value = os.environ.get(name)
    if not value:
        raise node.error(f"environment variable {name} is not set (the webhook signing secret)")
    if len(value) < _MIN_SECRET:
        raise node.error(f"environment variable {name} is shorter than {_MIN_SECRET} characters")
    return name


def _url(node: Node) -> str:
    text = node.as_str()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in text):
        raise node.error(f"expected an http:// or https:// URL, got {text!r}")
    return text


def _timeout(fields: Fields, errors: Errors, default: float) -> float:
    node = fields.get("timeout")
    value = None if node is None else errors.attempt(node.as_float, above=0, at_most=30)
    return default if value is None else value


def _method(fields: Fields, errors: Errors) -> str:
    node = fields.get("method")
    if node is None:
        return "POST"
    method = (errors.attempt(node.as_str) or "POST").upper()
    if method not in _METHODS:
        errors.add(node.error(f"method must be one of {', '.join(_METHODS)}, got {method!r}"))
    return method


def _variables(node: Node, errors: Errors) -> dict[str, str]:
    values: dict[str, str] = {}
    fields = node.fields(None, errors)
    for name, value in fields.values.items():
        key = fields.keys[name]
        if not _IDENTIFIER.match(name):
            errors.add(key.error(f"variable names use letters, digits and '_', got {name!r}"))
        elif name in BUILTIN_VARIABLES:
            errors.add(key.error(f"'{name}' is built in; pick another name"))
        elif (text := errors.attempt(value.as_str, empty=True) if not value.is_null else "") is not None:
            values[name] = text
    return values


# -- steps ------------------------------------------------------------------------


def _steps(node: Node, scope: _Scope, known: set[str]) -> tuple[Step, ...]:
    """A list of steps; known grows with each gather, as it does when the call walks them."""
    steps = (scope.errors.attempt(_step, item, scope, known) for item in node.as_list())
    return tuple(step for step in steps if step is not None)


def _step(node: Node, scope: _Scope, known: set[str]) -> Step | None:
    found = step_key(node, _STEP_KEYS, scope.errors)
    if found is None:
        return None  # only unknown keys: already reported
    name, value = found
    if name == "say":
        return Say(_text(value, scope, known))
    if name == "play":
        return _play(value, scope)
    if name == "gather":
        return _gather(value, scope, known)
    if name == "branch":
        return _branch(value, scope, known)
    if name == "llm":
        return _llm(value, scope, known)
    if name == "transfer":
        return _transfer(value, scope, known)
    if not (value.kind == "scalar" and value.value is True):
        raise value.error(f"write 'hangup: true', got {value.describe()}")
    return Hangup()


def _text(node: Node, scope: _Scope, known: set[str]) -> str:
    text = node.as_str()
    scope.uses.extend(_Use(node, name, frozenset(known)) for name in placeholders(text))
    return text


def _play(node: Node, scope: _Scope) -> Play:
    key = node.as_str()
    if key in scope.clips:
        return Play(scope.clips[key], key)
    if key in scope.clip_keys:
        return Play(Path(key), key)  # a clip that failed to load: already reported
    return Play(_wav(node, scope.base))


def _gather(node: Node, scope: _Scope, known: set[str]) -> Gather | None:
    errors = scope.errors
    fields = node.fields(_GATHER_KEYS, errors)
    name = errors.attempt(_gather_name, fields, scope)
    prompt = errors.attempt(lambda: _text(fields.require("prompt"), scope, known))
    mode = errors.attempt(_input, fields.get("input")) or "speech"
    expect_node = fields.get("expect")
    expect = None if expect_node is None else errors.attempt(_expect, expect_node, mode, errors)
    confirm_node, timeout_node = fields.get("confirm"), fields.get("timeout")
    confirm = None if confirm_node is None else errors.attempt(confirm_node.as_bool)
    timeout = None if timeout_node is None else errors.attempt(timeout_node.as_float, above=0, at_most=60)
    if name is None:
        return None  # already reported
    scope.expects[name] = expect
    known.add(name)
    return Gather(name, prompt or "", mode, expect, bool(confirm), timeout or 6.0)


def _gather_name(fields: Fields, scope: _Scope) -> str:
    node = fields.require("name")
    name = node.as_str()
    if not _IDENTIFIER.match(name):
        raise node.error(f"gather names use letters, digits and '_', got {name!r}")
    if name in BUILTIN_VARIABLES:
        raise node.error(f"'{name}' is built in; pick another name")
    if name in scope.gathered:
        raise node.error(f"gather '{name}' is already on line {scope.gathered[name].line}")
    scope.gathered[name] = node
    return name


def _input(node: Node | None) -> InputMode:
    if node is None:
        return "speech"
    text = node.as_str()
    for mode in _INPUTS:
        if text == mode:
            return mode
    raise node.error(f"input must be speech, dtmf or both, got {text!r}")


def _expect(node: Node, mode: InputMode, errors: Errors) -> dict[str, tuple[str, ...]] | None:
    """null (free text), a list of values, or value -> synonym(s); each value is its own synonym."""
    if node.is_null:
        return None
    entries: list[tuple[Node, tuple[Node, ...]]]
    if node.kind == "sequence":
        entries = [(item, ()) for item in node.as_list()]
    else:
        fields = node.fields(None, errors)
        entries = [
            (fields.keys[k], () if v.is_null else v.as_list(single=True)) for k, v in fields.values.items()
        ]
    if not entries:
        raise node.error("needs at least one value; write 'expect: null' for free text")
    expect: dict[str, tuple[str, ...]] = {}
    owner: dict[str, tuple[str, int]] = {}  # normalised synonym -> (value, line)
    for key, synonym_nodes in entries:
        canonical = key.as_str()
        synonyms: dict[str, None] = {}
        for at in (key, *synonym_nodes):
            synonym = at.as_str().casefold()
            spoken = normalize_answer(synonym)
            if not spoken:
                errors.add(at.error(f"{synonym!r} has no words or digits to match"))
            elif spoken in owner and owner[spoken][0] != canonical:
                other, line = owner[spoken]
                errors.add(at.error(f"{synonym!r} already means {other!r} (line {line})"))
            else:
                owner[spoken] = (canonical, at.line)
            synonyms[synonym] = None
        if mode == "dtmf" and not any(_KEYPAD.match(normalize_answer(s)) for s in synonyms):
            errors.add(key.error(f'with input: dtmf, {canonical!r} needs a keypad synonym like "1"'))
        expect[canonical] = tuple(synonyms)
    return expect


def _branch(node: Node, scope: _Scope, known: set[str]) -> Branch:
    fields = node.fields(_BRANCH_KEYS, scope.errors)
    variable_node = fields.require("variable")
    variable = variable_node.as_str()
    cases_node = fields.require("cases")
    case_fields = cases_node.fields(None, scope.errors)
    if not case_fields:
        raise cases_node.error('needs at least one case, like "yes": [{say: ...}]')
    # Gather names are unique, so nothing gathered in a case is known on every path after it.
    cases = {key: _steps(value, scope, set(known)) for key, value in case_fields.values.items()}
    default_node = fields.get("default")
    default = () if default_node is None else _steps(default_node, scope, set(known))
    case_keys = tuple((case_fields.keys[k], k) for k in case_fields.values)
    scope.uses.append(_Use(variable_node, variable, frozenset(known), case_keys))
    return Branch(variable, cases, default)


def _llm(node: Node, scope: _Scope, known: set[str]) -> Llm:
    errors = scope.errors
    fields = node.fields(_LLM_KEYS, errors)
    instructions = errors.attempt(lambda: _text(fields.require("instructions"), scope, known))
    tools_node, exits_node, turns_node = fields.get("tools"), fields.get("exit_when"), fields.get("max_turns")
    tools: list[Tool] = []
    seen: dict[str, int] = {}
    for item in () if tools_node is None else tools_node.as_list():
        tool = errors.attempt(_tool, item, errors)
        if tool is None:
            continue
        if tool.name in seen:
            errors.add(item.error(f"tool '{tool.name}' is already listed on line {seen[tool.name]}"))
            continue
        seen[tool.name] = item.line
        tools.append(tool)
    exits = () if exits_node is None else tuple(n.as_str() for n in exits_node.as_list(single=True))
    if exits and "end_conversation" not in seen:
        tools.append(ToolRef("end_conversation"))  # exit_when is only ever signalled through it
    turns = None if turns_node is None else errors.attempt(turns_node.as_int, at_least=1, at_most=100)
    return Llm(instructions or "", tuple(tools), exits, turns or 10)


def _tool(node: Node, errors: Errors) -> Tool:
    if node.kind == "scalar":
        name = node.as_str()
        if name not in BUILTIN_TOOLS:
            built_in = ", ".join(BUILTIN_TOOLS)
            message = f"unknown tool '{name}' (built in: {built_in}; others are {{webhook: {{...}}}})"
            raise node.error(message + _suggest(name, BUILTIN_TOOLS))
        return ToolRef(name)
    fields = node.fields(("webhook",), errors)
    spec = fields.require("webhook")
    parts = spec.fields(_TOOL_KEYS, errors)
    name_node = parts.require("name")
    name = name_node.as_str()
    if not _TOOL_NAME.match(name):
        raise name_node.error(f"tool names use letters, digits, '_' and '-' (at most 64), got {name!r}")
    if name in BUILTIN_TOOLS:
        raise name_node.error(f"'{name}' is a built-in tool; give the webhook another name")
    url = errors.attempt(lambda: _url(parts.require("url")))
    # The model picks tools by their description, so a missing one is a mistake, not a default.
    description = errors.attempt(lambda: parts.require("description").as_str())
    params = parts.get("parameters")
    schema = None if params is None else errors.attempt(_schema, params)
    method, timeout = _method(parts, errors), _timeout(parts, errors, 5.0)
    tool = WebhookTool(name, url or "", description or "", method=method, timeout=timeout)
    return tool if schema is None else replace(tool, parameters_json=schema)


def _schema(node: Node) -> str:
    value = _plain(node)
    if not isinstance(value, dict):
        raise node.error(f"parameters must be a JSON Schema object (a mapping), got {node.describe()}")
    if value.get("type", "object") != "object":
        raise node.error("parameters must have type: object (the tool's arguments)")
    schema = {"type": "object", **value}
    try:  # the model's arguments are checked against it on every call
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as error:
        raise node.error(f"parameters is not a valid JSON Schema: {error.message}") from None
    return json.dumps(schema, sort_keys=True)


def _plain(node: Node) -> object:
    """A node as plain JSON-ready data."""
    if node.kind == "mapping":
        return {key.text: _plain(value) for key, value in node.pairs()}
    if node.kind == "sequence":
        return [_plain(item) for item in node.as_list()]
    value = node.value
    if isinstance(value, bool):  # only true/false: YAML 1.1's yes/no/on/off stay text
        return value if node.text.lower() in ("true", "false") else node.text
    return value if value is None or isinstance(value, int | float) else node.text


def _transfer(node: Node, scope: _Scope, known: set[str]) -> Transfer:
    if node.kind != "mapping":
        return Transfer(_target(node))
    fields = node.fields(_TRANSFER_KEYS, scope.errors)
    target = _target(fields.require("to"))
    failure = fields.get("on_failure")
    return Transfer(target, () if failure is None else _steps(failure, scope, set(known)))


def _target(node: Node) -> str:
    text = node.as_str()
    if text.lower() == "operator":
        return "operator"
    match = _SIP_URI.match(text) or _TEL_URI.match(text)
    if match is None:
        raise node.error(f"unknown transfer target {text!r} (use operator, or a sip:, sips: or tel: URI)")
    return f"{match.group(1).lower()}:{match.group(2)}"


# -- variables --------------------------------------------------------------------


def _check_uses(scope: _Scope) -> None:
    for use in scope.uses:
        if use.name not in use.known:
            scope.errors.add(use.node.error(_no_value(use, scope)))
        elif use.cases and (expect := scope.expects.get(use.name)) is not None:
            values = {value.casefold() for value in expect}
            for key_node, key in use.cases:
                if key.casefold() not in values:
                    message = f"case {key!r} is never a value of '{use.name}' (expects: {', '.join(expect)})"
                    scope.errors.add(key_node.error(message))


def _no_value(use: _Use, scope: _Scope) -> str:
    what = f"branch on '{use.name}'" if use.cases else f"'{{{use.name}}}'"
    gathered = scope.gathered.get(use.name)
    if gathered is None:
        hint = _suggest(use.name, sorted({*use.known, *scope.gathered}))
        return f"{what}: unknown variable; gather it first or declare it under variables{hint}"
    if gathered.line >= use.node.line:
        return f"{what} comes before '{use.name}' is gathered (line {gathered.line})"
    return f"{what}: '{use.name}' is only gathered on some paths to here (line {gathered.line})"


def _suggest(name: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""
