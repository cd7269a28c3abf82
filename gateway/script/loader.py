"""Read an agent script (YAML) into an AgentScript, reporting every mistake with file:line.

`ScriptFile` is the file's pydantic model (its JSON Schema is `json_schema(ScriptFile)`); the
steps are the one step language of `gateway.script.steps`, shared with dialplan flows.
Variables are checked along the script's paths by `StepCheck`: a `{name}` in a text or a branch
on a variable must have a value by then (gathered earlier on every path, declared under
`variables`, or built in).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import AfterValidator, Field, StringConstraints, Tag, ValidationInfo, field_validator, model_validator

from gateway.config import schema
from gateway.config.schema import Invalid, Lines, Number, Strict, Text, Whole, between, listed, matching
from gateway.errors import ConfigError
from gateway.script.model import (
    BUILTIN_VARIABLES,
    DEFAULT_DISCLOSURE,
    AgentScript,
    FallbackConfig,
    Webhook,
    WebhookPolicy,
)
from gateway.script.steps import (IDENTIFIER, Method, StepCheck, StepFile, Url, build_steps, by_shape, check_wav,
                                  target)

__all__ = ["ScriptFile", "load_agent", "load_agent_checked"]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_LANGUAGE = r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MIN_SECRET = 16  # characters: a short HMAC key can be guessed offline from one signed request


def _wav(text: str, info: ValidationInfo) -> str:
    check_wav(Path((info.context or {}).get("base", ".")) / text)
    return text


Wav = Annotated[Text, AfterValidator(_wav)]


class ClipFile(Strict):
    text: Text = Field(None)
    file: Wav


ClipSpec = Annotated[Union[Annotated[Wav, Tag("file")], Annotated[ClipFile, Tag("ClipFile")]],
                     by_shape("ClipFile", "file")]


class FallbackFile(Strict):
    max_no_input: between(Whole, at_least=1, at_most=10) = 2
    max_no_match: between(Whole, at_least=1, at_most=10) = 2
    max_failures: between(Whole, at_least=1, at_most=10) = 3
    low_confidence: between(Number, at_least=0, at_most=1) = 0.5
    escalate_to: Any = None

    @field_validator("escalate_to")
    @classmethod
    def _escalate(cls, value: Any) -> str | None:
        if value is None or value is False:
            return None
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ValueError(f"expected text, got {value!r}")
        return target(str(value).strip())


class WebhookFile(Strict):
    url: Url
    timeout: between(Number, above=0, at_most=30) = 2.0
    method: Method = "POST"


WebhookSpec = Annotated[Union[Annotated[Url, Tag("url")], Annotated[WebhookFile, Tag("WebhookFile")]],
                        by_shape("WebhookFile", "url")]


def _network(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError:
        wanted = "an address or a network like 10.0.0.0/8 (no host bits)"
        raise ValueError(f"expected {wanted}, got {text!r}") from None


def _secret_env(name: str) -> str:
    """The variable's name; its value must be set now, and is read again for each request."""
    if not _ENV_NAME.match(name):
        raise ValueError(f"secret_env names an environment variable, got {name!r}")
    value = os.environ.get(name)
    if not value:
        raise ValueError(f"environment variable {name} is not set (the webhook signing secret)")
    if len(value) < _MIN_SECRET:
        raise ValueError(f"environment variable {name} is shorter than {_MIN_SECRET} characters")
    return name


class PolicyFile(Strict):
    allow: listed(Annotated[Text, AfterValidator(_network)]) = []
    secret_env: Annotated[Text, AfterValidator(_secret_env)] = Field(None)


Value = Annotated[str, StringConstraints(strip_whitespace=True)]


class ScriptFile(Strict):
    """An agent script file."""

    name: matching(_NAME, "a name of letters, digits, '.', '_' and '-'") = Field(None)
    disclosure: Any = True
    voice: Text = Field(None)
    language: matching(_LANGUAGE, "a language tag like en or en-GB") = "en"
    vocabulary: listed(Text) = []
    end_of_turn_ms: between(Whole, at_least=100, at_most=5000) = Field(None)
    barge_in_min_ms: between(Whole, at_least=0, at_most=2000) = Field(None)
    clips: dict[str, ClipSpec] = {}
    fallback: FallbackFile = FallbackFile()
    context_webhook: WebhookSpec = Field(None)
    webhooks: PolicyFile = PolicyFile()
    variables: dict[str, Union[Value, None]] = {}
    steps: list[StepFile]

    @model_validator(mode="before")
    @classmethod
    def _clip_keys(cls, data: Any, info: ValidationInfo) -> Any:
        # `play: NAME` names a clip when clips has that key, loaded or not: the file is checked there.
        clips = data.get("clips") if isinstance(data, dict) else None
        if info.context is not None and isinstance(clips, dict):
            info.context["clip_keys"] = frozenset(clips)
        return data

    @field_validator("disclosure")
    @classmethod
    def _disclosure(cls, value: Any) -> str | bool:
        if value is None:
            raise ValueError("write 'disclosure: false' to play none, or give the text")
        if isinstance(value, (dict, list)):
            raise ValueError(f"expected text, got a {'mapping' if isinstance(value, dict) else 'list'}")
        return value if isinstance(value, bool) else str(value).strip()

    @field_validator("variables")
    @classmethod
    def _variables(cls, values: dict[str, str | None]) -> dict[str, str | None]:
        for name in values:
            if not IDENTIFIER.match(name):
                raise Invalid(f"variable names use letters, digits and '_', got {name!r}", name)
            if name in BUILTIN_VARIABLES:
                raise Invalid(f"'{name}' is built in; pick another name", name)
        return values

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[StepFile]) -> list[StepFile]:
        if not steps:
            raise ValueError("steps is empty")
        return steps

    def build(self, path: Path) -> AgentScript:
        base = path.parent.resolve()
        clips = self._clips(base)
        disclosure = self.disclosure
        if isinstance(disclosure, bool):
            disclosure = DEFAULT_DISCLOSURE if disclosure else None
        hook = self.context_webhook
        webhook = (None if hook is None else Webhook(hook, 2.0) if isinstance(hook, str)
                   else Webhook(hook.url, hook.timeout, hook.method))
        f = self.fallback
        vocabulary: dict[str, str] = {}
        for word in self.vocabulary:
            vocabulary.setdefault(word.casefold(), word)  # first spelling of each word, in file order
        return AgentScript(
            self.name or path.stem, str(path), disclosure, self.voice, self.language,
            tuple(vocabulary.values()), self.end_of_turn_ms, self.barge_in_min_ms, clips,
            FallbackConfig(f.max_no_input, f.max_no_match, f.max_failures, f.low_confidence, f.escalate_to),
            webhook, build_steps(self.steps, base, clips),
            {k: v or "" for k, v in self.variables.items()},
            WebhookPolicy(tuple(self.webhooks.allow), self.webhooks.secret_env),
        )  # fmt: skip

    def _clips(self, base: Path) -> dict[str, Path]:
        clips: dict[str, Path] = {}
        for key, spec in self.clips.items():
            file, text = (spec, None) if isinstance(spec, str) else (spec.file, spec.text)
            for name in (key, text) if text is not None else (key,):
                clips.setdefault(name, base / file)
        return clips


def _check(where: str):  # type: ignore[no-untyped-def]
    def check(value: Any, lines: Lines) -> list[ConfigError]:
        if not isinstance(value, dict):
            return []
        errors = _clip_clashes(value.get("clips"), lines, where)
        variables = value.get("variables", {})
        declared = (frozenset((*BUILTIN_VARIABLES, *variables)) if isinstance(variables, dict)
                    else None)  # unreadable declarations would make every use look unknown
        return errors + StepCheck(where, lines, declared=declared).run(value.get("steps"), ("steps",))

    return check


def _clip_clashes(clips: Any, lines: Lines, where: str) -> list[ConfigError]:
    """A phrase or key that names two different recordings."""
    errors: list[ConfigError] = []
    named: dict[str, tuple[str, int]] = {}  # name -> (file, line)
    for key, spec in clips.items() if isinstance(clips, dict) else ():
        file, text = (spec.get("file"), spec.get("text")) if isinstance(spec, dict) else (spec, None)
        line = lines.get(("clips", key), 0)
        for name in (key, text) if isinstance(text, str) else (key,):
            name = name.strip()
            if name not in named:
                named[name] = (str(file), line)
            elif named[name][0] != str(file):
                errors.append(ConfigError(where, line, f"{name!r} already names the clip on line {named[name][1]}"))
    return errors


def load_agent(path: Path) -> AgentScript:
    """Load one script; raises the first ConfigError (in file order) if there is any."""
    script, errors = load_agent_checked(path)
    if errors:
        raise errors[0]
    assert script is not None
    return script


def load_agent_checked(path: Path) -> tuple[AgentScript | None, list[ConfigError]]:
    """Load one script and every error in it, sorted by line; a script with errors gives None."""
    base = path.parent.resolve()
    model, errors = schema.load(path, ScriptFile, context={"base": base}, check=_check(str(path)))
    if model is None:
        return None, errors
    return model.build(path), []
