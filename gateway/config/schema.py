"""YAML files validated by pydantic models, with every error at its `file:line`.

`load(path, Model)` reads the file with line marks, builds plain values with YAML 1.2's plain
scalars (so `yes`, `0155`, `+1555` and `9:30` stay text, and only `true`/`false` are booleans),
validates them against the model, and turns each pydantic error into a `ConfigError` at the line
of the value it is about, in the project's own words (with did-you-mean hints for unknown keys).
Models say `extra="forbid"`: an unknown key is an error, never silently ignored.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from gateway.errors import ConfigError

__all__ = ["Located", "Strict", "load", "load_text", "located", "messages"]

Model = TypeVar("Model", bound=BaseModel)
Loc = tuple[str | int, ...]

_INT = re.compile(r"^-?(?:0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?$|^-?\.inf$|^\.nan$",
                    re.IGNORECASE)
_BOOL = {"true": True, "false": False}
_NULL = {"", "~", "null"}


class Strict(BaseModel):
    """Base for file models: unknown keys are errors; numbers written where text is expected
    are read as their text (`port: 5060` for a string field)."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class Located(dict):
    """The plain value tree of one file plus the line of every value in it (by location)."""


def load(path: Path, model: type[Model], *, context: dict | None = None) -> tuple[Model | None, list[ConfigError]]:
    """The file validated as `model`, or None and every error found (file:line: message)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        return None, [ConfigError(str(path), line, "not valid UTF-8")]
    except OSError as exc:
        return None, [ConfigError(str(path), 0, f"cannot read: {exc.strerror or exc}")]
    return load_text(text, str(path), model, context=context)


def load_text(text: str, where: str, model: type[Model], *, context: dict | None = None,
              ) -> tuple[Model | None, list[ConfigError]]:
    try:
        value, lines = located(text, where)
    except ConfigError as error:
        return None, [error]
    try:
        return model.model_validate(value, context=context), []
    except ValidationError as exc:
        return None, messages(exc, where, lines, model)


def located(text: str, where: str) -> tuple[Any, dict[Loc, int]]:
    """Plain values of a YAML document and the (1-based) line of each location in it."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        return _raise(where, line, f"invalid YAML: {getattr(exc, 'problem', None) or exc}")
    lines: dict[Loc, int] = {}
    if node is None:
        return {}, {(): 1}
    return _plain(node, (), lines, where), lines


def messages(exc: ValidationError, where: str, lines: Mapping[Loc, int],
             model: type[BaseModel] | None = None) -> list[ConfigError]:
    errors: list[ConfigError] = []
    seen: set[tuple[int, str]] = set()
    for item in exc.errors(include_url=False):
        loc = tuple(item["loc"])
        line = _line_of(loc, lines)
        known = _known_keys(model, loc[:-1]) if model and item["type"] == "extra_forbidden" else ()
        message = _message(item, loc, known)
        if (line, message) not in seen:
            seen.add((line, message))
            errors.append(ConfigError(where, line, message))
    errors.sort(key=lambda e: e.line)
    return errors


# -- values ---------------------------------------------------------------------------------------

def _plain(node: yaml.Node, loc: Loc, lines: dict[Loc, int], where: str) -> Any:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, where) if isinstance(key_node, yaml.ScalarNode) else None
            if key is None or isinstance(key, (list, dict)):
                _raise(where, key_node.start_mark.line + 1, "keys must be plain text or numbers")
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                _raise(where, key_node.start_mark.line + 1, f"duplicate key '{key}'")
            out[key] = _plain(value_node, (*loc, key), lines, where)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, (*loc, i), lines, where) for i, item in enumerate(node.value)]
    return _scalar(node, where)


def _scalar(node: yaml.ScalarNode, where: str) -> Any:
    text = node.value
    if node.tag not in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                        "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"):
        _raise(where, node.start_mark.line + 1, f"cannot read value tagged {node.tag}")
    if node.style is not None:  # quoted or block text is always text
        return text
    lowered = text.lower()
    if lowered in _NULL:
        return None
    if lowered in _BOOL:
        return _BOOL[lowered]
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        number = float(text)
        return number if math.isfinite(number) or "inf" not in lowered else number
    return text


def _raise(where: str, line: int, message: str) -> Any:
    raise ConfigError(where, line, message)


# -- errors ---------------------------------------------------------------------------------------

def _line_of(loc: Loc, lines: Mapping[Loc, int]) -> int:
    """The line of the deepest part of loc that is in the file (pydantic adds model and union
    member names to locations; a missing key is reported at its mapping)."""
    parts = [p for p in loc]
    while parts:
        found = _walk(parts, lines)
        if found is not None:
            return found
        parts.pop()
    return lines.get((), 0)


def _walk(parts: list[str | int], lines: Mapping[Loc, int]) -> int | None:
    # Keep the parts that name file locations, skipping pydantic's own (union tags, models).
    loc: Loc = ()
    for part in parts:
        if (*loc, part) in lines:
            loc = (*loc, part)
    return lines.get(loc) if loc or not parts else None


def _message(item: Mapping[str, Any], loc: Loc, known: Iterable[str] = ()) -> str:
    kind = item["type"]
    ctx = item.get("ctx") or {}
    got = _describe(item.get("input"))
    key = str(loc[-1]) if loc else ""
    if kind == "extra_forbidden":
        return f"unknown key '{key}'" + _hint(key, known)
    if kind == "missing":
        return f"missing '{key}'"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {got}"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"expected a number, got {got}"
    if kind in ("string_type",):
        return f"expected text, got {got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {got}"
    if kind in ("list_type", "tuple_type"):
        return f"expected a list, got {got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping (key: value), got {got}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, got {got}"
    if kind == "greater_than":
        return f"must be more than {ctx['gt']}, got {got}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}, got {got}"
    if kind == "less_than":
        return f"must be less than {ctx['lt']}, got {got}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "too_short":
        return "must not be an empty list"
    if kind == "literal_error":
        return f"must be {ctx.get('expected', 'one of the listed values')}, got {got}"
    if kind in ("value_error", "assertion_error"):
        message = str(item.get("msg", ""))
        return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return str(item.get("msg", kind))


def _known_keys(model: type[BaseModel], loc: Loc) -> set[str]:
    """The keys a mapping at loc may have, following the model's field types along loc."""
    candidates: list[Any] = [model]
    for part in loc:
        types = [t for c in candidates for t in _flatten(c)]
        named = [t for t in types if isinstance(t, type) and t.__name__ == part]
        if named:  # pydantic names the union member it tried
            candidates = named
            continue
        following: list[Any] = []
        for t in types:
            if isinstance(part, int):
                following += [a for a in typing.get_args(t)] if typing.get_origin(t) in (list, tuple) else []
            elif isinstance(t, type) and issubclass(t, BaseModel) and part in t.model_fields:
                following.append(t.model_fields[part].annotation)
            elif typing.get_origin(t) in (dict, Mapping) and len(typing.get_args(t)) == 2:
                following.append(typing.get_args(t)[1])
        candidates = following or candidates
    keys: set[str] = set()
    for t in (t for c in candidates for t in _flatten(c)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            keys |= {f.alias or name for name, f in t.model_fields.items()}
    return keys


def _flatten(annotation: Any) -> list[Any]:
    """The types an annotation may hold: unions and Annotated unwrapped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _flatten(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(annotation) for t in _flatten(a)]
    return [annotation]


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    shown = str(value)
    return repr(shown if len(shown) <= 40 else shown[:37] + "...")


def _hint(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
