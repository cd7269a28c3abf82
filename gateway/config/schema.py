"""YAML files validated by pydantic models, with every error at its `file:line`.

`load(path, Model)` reads the file with line marks, builds plain values with YAML 1.2's plain
scalars (so `yes`, `0155`, `+1555` and `9:30` stay text, and only `true`/`false` are booleans),
validates them against the model, and turns each pydantic error into a `ConfigError` at the line
of the value it is about, in the project's own words (with did-you-mean hints for unknown keys).
Models say `extra="forbid"`: an unknown key is an error, never silently ignored.

The value types below (`Text`, `Whole`, `Number`, `Flag`, `between`, `matching`) read YAML the
way the files are written and word their errors the same way everywhere; `OneKey` is a list item
that is one `{key: value}` step. A validator that finds a mistake in one of its keys raises
`Invalid(message, key)`, so the error points at that key's line. Validators find the line of any
location in `info.context["lines"]`. `json_schema(Model)` is the file's JSON Schema for editors.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

import yaml
from pydantic import (AllowInfNan, BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler,
                      StringConstraints, ValidationError, model_validator)
from pydantic import Strict as _StrictType
from pydantic.fields import FieldInfo
from pydantic_core import core_schema

from gateway.errors import ConfigError

__all__ = ["Check", "Flag", "Invalid", "Lines", "Number", "OneKey", "Strict", "Text", "Whole", "between",
           "json_schema", "listed", "load", "load_text", "located", "matching", "messages"]

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


class Lines(dict[Loc, int]):
    """The (1-based) line of every value in a file, by location; `keys` has the line of each
    mapping key in `key_lines` (errors about a key point there, not at its value, which may start
    on a line below)."""

    def __init__(self) -> None:
        super().__init__()
        self.key_lines: dict[Loc, int] = {}


class Invalid(ValueError):
    """A validator's error about one of its own keys (or a place below it: `Invalid(msg, "trunks",
    0)`): the error is reported at that key's line instead of the line of the whole mapping."""

    def __init__(self, message: str, *at: str | int) -> None:
        super().__init__(message)
        self.at = at


# A whole-file pass over the plain values (names used before they are defined, entries that
# clash): it runs also when the model found errors, so one run reports every mistake.
Check = typing.Callable[[Any, "Lines"], list[ConfigError]]


def load(path: Path, model: type[Model], *, context: dict | None = None, check: Check | None = None,
         ) -> tuple[Model | None, list[ConfigError]]:
    """The file validated as `model`, or None and every error found (file:line: message)."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return None, [ConfigError(str(path), 0, f"cannot read: {exc.strerror or exc}")]
    if len(data) > MAX_FILE_BYTES:
        return None, [ConfigError(str(path), 0, f"larger than {MAX_FILE_BYTES // 1024} KiB")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [ConfigError(str(path), data.count(b"\n", 0, exc.start) + 1, "not valid UTF-8 text")]
    return load_text(text, str(path), model, context=context, check=check)


def load_text(text: str, where: str, model: type[Model], *, context: dict | None = None,
              check: Check | None = None) -> tuple[Model | None, list[ConfigError]]:
    """Like `load`, for text read elsewhere; `where` names it in errors. Validators get the
    context given, to which `lines` (see `Lines`) is added: a caller keeping the dict has them."""
    try:
        value, lines = located(text, where)
    except ConfigError as error:
        return None, [error]
    found = check(value, lines) if check is not None else []
    context = {} if context is None else context
    context["lines"] = lines
    try:
        result = model.model_validate(value, context=context)
    except ValidationError as exc:
        found, result = messages(exc, where, lines, model) + found, None
    found.sort(key=lambda e: e.line)
    return (None, found) if found else (result, [])


def located(text: str, where: str) -> tuple[Any, Lines]:
    """Plain values of a YAML document and the line of each location in it; an empty document
    (or one of only comments) is an error."""
    try:
        _bounded_events(text, where)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        return _raise(where, line, f"invalid YAML: {exc.problem or exc.context or 'syntax error'}")
    except yaml.YAMLError as exc:
        return _raise(where, 1, f"invalid YAML: {exc}")
    except RecursionError:
        return _raise(where, 1, f"invalid YAML: nested deeper than {MAX_DEPTH} levels")
    if node is None:
        return _raise(where, 1, "file is empty")
    lines = Lines()
    return _plain(node, (), lines, where, _Walk()), lines


# Bounds on what one file may make the reader build: an alias names a node that is read again
# wherever it is used, so a few hundred bytes of nested aliases would expand to billions of
# values (a "billion laughs"), and an alias inside its own anchor to an endless one.
MAX_FILE_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 64
MAX_ALIASES = 1000


def _bounded_events(text: str, where: str) -> None:
    """Read the file's events once, flat (no recursion), refusing it past the depth and alias
    bounds before anything is built from it."""
    depth = aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                _raise(where, event.start_mark.line + 1, f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                _raise(where, event.start_mark.line + 1, f"more than {MAX_ALIASES} alias uses")


class _Walk:
    """What reading one file has built so far: values, the nodes being read (for cycles), the
    aliases followed."""

    __slots__ = ("aliases", "nodes", "open", "seen")

    def __init__(self) -> None:
        self.nodes = 0
        self.aliases = 0
        self.open: set[int] = set()
        self.seen: set[int] = set()

    def enter(self, node: yaml.Node, depth: int, where: str) -> None:
        line = node.start_mark.line + 1
        self.nodes += 1
        if self.nodes > MAX_NODES:
            _raise(where, line, f"more than {MAX_NODES} values (aliases expanding too far?)")
        if depth > MAX_DEPTH:
            _raise(where, line, f"nested deeper than {MAX_DEPTH} levels")
        if id(node) in self.open:
            _raise(where, line, "an alias refers to itself")
        if isinstance(node, yaml.CollectionNode):
            if id(node) in self.seen:
                self.aliases += 1
                if self.aliases > MAX_ALIASES:
                    _raise(where, line, f"more than {MAX_ALIASES} alias uses")
            self.seen.add(id(node))


def messages(exc: ValidationError, where: str, lines: Mapping[Loc, int],
             model: type[BaseModel] | None = None) -> list[ConfigError]:
    errors: list[ConfigError] = []
    seen: set[tuple[int, str]] = set()
    keys = lines.key_lines if isinstance(lines, Lines) else {}
    for item in exc.errors(include_url=False):
        loc = tuple(item["loc"])
        raised = (item.get("ctx") or {}).get("error")
        at_key = item["type"] == "extra_forbidden"
        if isinstance(raised, Invalid) and raised.at:
            loc, at_key = (*loc, *raised.at), True
        line = (at_key and keys.get(_file_loc(loc, lines))) or _line_of(loc, lines)
        fields = _fields_at(model, loc[:-1]) if model and item["type"] in ("extra_forbidden", "missing") else {}
        message = _message(item, loc, fields)
        if (line, message) not in seen:
            seen.add((line, message))
            errors.append(ConfigError(where, line, message))
    errors.sort(key=lambda e: e.line)
    return errors


# -- values ---------------------------------------------------------------------------------------

def _plain(node: yaml.Node, loc: Loc, lines: Lines, where: str, walk: _Walk) -> Any:
    walk.enter(node, len(loc), where)
    if isinstance(node, yaml.CollectionNode):
        walk.open.add(id(node))
        try:
            return _collection(node, loc, lines, where, walk)
        finally:
            walk.open.discard(id(node))
    lines[loc] = node.start_mark.line + 1
    return _scalar(node, where)


def _collection(node: yaml.CollectionNode, loc: Loc, lines: Lines, where: str, walk: _Walk) -> Any:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, where) if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if key is None or isinstance(key, (list, dict)):
                _raise(where, line, "keys must be plain text or numbers")
            key = str(key).lower() if isinstance(key, bool) else str(key)
            if key in out:
                _raise(where, line, f"duplicate key '{key}' (first on line {lines.key_lines[(*loc, key)]})")
            lines.key_lines[(*loc, key)] = line
            out[key] = _plain(value_node, (*loc, key), lines, where, walk)
        return out
    return [_plain(item, (*loc, i), lines, where, walk) for i, item in enumerate(node.value)]


# Tags PyYAML's resolver may give a plain scalar; the text is then read by YAML 1.2's rules (a
# date or `<<` stays text). Any other tag was written in the file (`!secret x`) and is refused.
_PLAIN_TAGS = {f"tag:yaml.org,2002:{name}" for name in
               ("str", "int", "float", "bool", "null", "timestamp", "merge", "value")}


def _scalar(node: yaml.ScalarNode, where: str) -> Any:
    text = node.value
    if node.tag not in _PLAIN_TAGS:
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
        return float(lowered.replace(".inf", "inf").replace(".nan", "nan"))
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


def _file_loc(loc: Loc, lines: Mapping[Loc, int]) -> Loc:
    """loc without the parts pydantic adds (union members, model names)."""
    found: Loc = ()
    for part in loc:
        if (*found, part) in lines:
            found = (*found, part)
    return found


def _walk(parts: list[str | int], lines: Mapping[Loc, int]) -> int | None:
    # Keep the parts that name file locations, skipping pydantic's own (union tags, models).
    loc: Loc = ()
    for part in parts:
        if (*loc, part) in lines:
            loc = (*loc, part)
    return lines.get(loc) if loc or not parts else None


def _message(item: Mapping[str, Any], loc: Loc, fields: Mapping[str, FieldInfo]) -> str:
    """The error in the project's words; fields are those of the mapping it is in (the known
    keys of an unknown one; a missing key is explained by its field's description)."""
    kind = item["type"]
    ctx = item.get("ctx") or {}
    got = _describe(item.get("input"))
    key = str(loc[-1]) if loc else ""
    if kind == "extra_forbidden":
        known = list(fields)
        listed = f" (expected one of: {', '.join(known)})" if known else ""
        return f"unknown key '{key}'{listed}" + _hint(key, known)
    if kind == "missing":
        what = fields[key].description if key in fields else None
        return f"missing '{key}'" + (f" ({what})" if what else "")
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {got}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {got}"
    if kind == "finite_number":
        return f"expected a finite number, got {got}"
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


def _fields_at(model: type[BaseModel], loc: Loc) -> dict[str, FieldInfo]:
    """The fields (by key) a mapping at loc may have, following the model's field types along loc."""
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
            elif isinstance(t, type) and issubclass(t, BaseModel) and part in _by_key(t):
                following.append(_by_key(t)[str(part)].annotation)
            elif typing.get_origin(t) in (dict, Mapping) and len(typing.get_args(t)) == 2:
                following.append(typing.get_args(t)[1])
        candidates = following or candidates
    fields: dict[str, FieldInfo] = {}  # in the order the models declare them
    for t in (t for c in candidates for t in _flatten(c)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            fields.update(_by_key(t))
    return fields


def _by_key(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {field.alias or name: field for name, field in model.model_fields.items()}


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
    return f"; did you mean '{close[0]}'?" if close else ""


# -- value types ----------------------------------------------------------------------------------

# Text as written, stripped; a number is read as its text (`port: 5060` where text is expected).
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
# Numbers and flags as YAML writes them: `"5"`, `true` or `1.0` is not a whole number, `yes` is
# not a flag. A whole number is a number.
Whole = Annotated[int, _StrictType()]
Number = Annotated[float, _StrictType(), AllowInfNan(False)]
Flag = Annotated[bool, _StrictType()]


@dataclass(frozen=True, slots=True)
class _Bounds:
    at_least: float | None = None
    at_most: float | None = None
    above: float | None = None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        out = handler(schema)
        for key, bound in (("minimum", self.at_least), ("maximum", self.at_most),
                           ("exclusiveMinimum", self.above)):
            if bound is not None:
                out[key] = bound
        return out

    def _check(self, value: float) -> float:
        low_ok = (self.at_least is None or value >= self.at_least) and (self.above is None or value > self.above)
        if low_ok and (self.at_most is None or value <= self.at_most):
            return value
        low = f"at least {self.at_least:g}" if self.at_least is not None else ""
        low = f"more than {self.above:g}" if self.above is not None else low
        high = f"at most {self.at_most:g}" if self.at_most is not None else ""
        shown = int(value) if isinstance(value, float) and value.is_integer() else value
        raise ValueError(f"must be {' and '.join(p for p in (low, high) if p)}, got {shown}")


def between(kind: Any, *, at_least: float | None = None, at_most: float | None = None,
            above: float | None = None) -> Any:
    """`Whole` or `Number` within bounds, e.g. `between(Whole, at_least=1, at_most=65535)`; the
    error names both bounds ("must be at least 1 and at most 65535, got 99999")."""
    return Annotated[kind, _Bounds(at_least, at_most, above)]


@dataclass(frozen=True, slots=True)
class _Pattern:
    pattern: str
    what: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        return {**handler(schema), "pattern": self.pattern}

    def _check(self, text: str) -> str:
        if not re.match(self.pattern, text):
            raise ValueError(f"expected {self.what}, got {text!r}")
        return text


@dataclass(frozen=True, slots=True)
class _OneOrList:
    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_before_validator_function(
            lambda value: value if isinstance(value, list) or value is None else [value], handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        out = handler(schema)
        return {"anyOf": [out.get("items", {}), out]} if out.get("type") == "array" else out


def listed(item: Any) -> Any:
    """A list of items, where one item alone stands for a list of one (`stt: local`)."""
    return Annotated[list[item], _OneOrList()]


def matching(pattern: str, what: str) -> Any:
    """`Text` matching a regular expression; the error says what was expected in words."""
    return Annotated[Text, _Pattern(pattern, what)]


class OneKey(Strict):
    """A list item that is one `{key: value}` step, e.g. `{say: TEXT}`: exactly one of the model's
    fields is given. Declare each as `name: Type = Field(None)`, so a key given must hold a Type;
    `key` and `value` say which one it is. `shape` says what an item looks like, for errors."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})
    shape: ClassVar[str] = "a step like {key: value}"

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"expected {cls.shape}, got {_describe(data)}")
        names = [field.alias or name for name, field in cls.model_fields.items()]
        if not data:
            raise ValueError(f"empty step (expected one of: {', '.join(names)})")
        present = [key for key in data if key in names]
        if len(present) > 1:
            raise Invalid(f"one step per list item (this item also has '{present[0]}'); start the next "
                          "with '- '", present[1])
        return data

    @property
    def key(self) -> str:
        name = next(iter(self.model_fields_set))
        return type(self).model_fields[name].alias or name

    @property
    def value(self) -> Any:
        return getattr(self, next(iter(self.model_fields_set)))


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a file model, as editors read it."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            **model.model_json_schema(by_alias=True)}
