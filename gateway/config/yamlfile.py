"""YAML files whose every value remembers its line, so errors can point at it.

`load(path)` gives a tree of `Node`s. Readers (`as_str`, `as_int`, `fields`, ...) raise `ConfigError`
at the node's line; `Errors.attempt` lets a caller note that error and move on to the next item, so
one run reports many mistakes instead of the first. Line 0 means the file as a whole.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal, ParamSpec, TypeVar

import yaml

from gateway.errors import ConfigError

__all__ = ["Errors", "Fields", "Node", "load", "parse", "step_key"]

Kind = Literal["scalar", "sequence", "mapping"]
_T = TypeVar("_T")
_P = ParamSpec("_P")
_NULL_TAG = "tag:yaml.org,2002:null"


class Errors:
    """Collects ConfigErrors so one bad item does not hide the next."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[ConfigError] = []

    def add(self, error: ConfigError) -> None:
        self.items.append(error)

    def attempt(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T | None:
        """Run fn; on ConfigError record it and return None."""
        try:
            return fn(*args, **kwargs)
        except ConfigError as error:
            self.items.append(error)
            return None

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ConfigError]:
        return iter(self.items)


@dataclass(frozen=True, slots=True)
class Node:
    """One YAML value and where it was written.

    value: a scalar's Python value (None, bool, int, float, str, date...), a sequence's
    tuple[Node, ...], or a mapping's tuple[tuple[Node, Node], ...] (key, value) in file order.
    text: a scalar's source text. Strings are read from it so `yes`, `0155` or `9:30` stay as
    written instead of YAML 1.1's bool, octal and base-60 readings.
    """

    path: str
    line: int
    kind: Kind
    value: object
    text: str = ""

    def error(self, message: str) -> ConfigError:
        return ConfigError(self.path, self.line, message)

    @property
    def is_null(self) -> bool:
        return self.kind == "scalar" and self.value is None

    def describe(self) -> str:
        """How this value reads in an error message."""
        if self.kind == "mapping":
            return "a mapping"
        if self.kind == "sequence":
            return "a list"
        if self.is_null:
            return "nothing"
        shown = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return repr(shown)

    def as_str(self, *, empty: bool = False) -> str:
        """Text as written, stripped; numbers and booleans are accepted as their text."""
        if self.kind != "scalar" or self.is_null:
            raise self.error(f"expected text, got {self.describe()}")
        text = self.text.strip()
        if not text and not empty:
            raise self.error("must not be empty")
        return text

    def as_int(self, *, at_least: int | None = None, at_most: int | None = None) -> int:
        value = self.value
        if self.kind != "scalar" or isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"expected a whole number, got {self.describe()}")
        _check_range(self, value, at_least, at_most, None)
        return value

    def as_float(
        self,
        *,
        at_least: float | None = None,
        at_most: float | None = None,
        above: float | None = None,
    ) -> float:
        value = self.value
        if self.kind != "scalar" or isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"expected a number, got {self.describe()}")
        number = float(value)
        if not math.isfinite(number):
            raise self.error(f"expected a finite number, got {self.describe()}")
        _check_range(self, number, at_least, at_most, above)
        return number

    def as_bool(self) -> bool:
        if self.kind != "scalar" or not isinstance(self.value, bool):
            raise self.error(f"expected true or false, got {self.describe()}")
        return self.value

    def as_list(self, *, single: bool = False) -> tuple[Node, ...]:
        """A sequence's items; with single=True a lone value counts as a list of one."""
        if self.kind == "sequence":
            assert isinstance(self.value, tuple)
            return self.value
        if single and not self.is_null:
            return (self,)
        raise self.error(f"expected a list, got {self.describe()}")

    def pairs(self) -> tuple[tuple[Node, Node], ...]:
        if self.kind != "mapping":
            raise self.error(f"expected a mapping (key: value), got {self.describe()}")
        assert isinstance(self.value, tuple)
        return self.value

    def fields(self, allowed: Collection[str] | None, errors: Errors) -> Fields:
        """Read a mapping. Unknown and duplicate keys are recorded in errors, not raised,
        so the known keys can still be checked. allowed=None accepts any key."""
        values: dict[str, Node] = {}
        keys: dict[str, Node] = {}
        for key, value in self.pairs():
            if key.kind != "scalar" or key.is_null:
                errors.add(key.error(f"a key must be text, got {key.describe()}"))
                continue
            name = key.text
            if allowed is not None and name not in allowed:
                errors.add(key.error(_unknown_key(name, allowed)))
            elif name in keys:
                errors.add(key.error(f"duplicate key '{name}' (first on line {keys[name].line})"))
            else:
                keys[name] = key
                values[name] = value
        return Fields(self, MappingProxyType(values), MappingProxyType(keys))


@dataclass(frozen=True, slots=True)
class Fields:
    """A mapping's known entries, with each key's node for errors that belong on the key."""

    node: Node
    values: Mapping[str, Node]
    keys: Mapping[str, Node]

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def __len__(self) -> int:
        return len(self.values)

    def get(self, name: str) -> Node | None:
        return self.values.get(name)

    def require(self, name: str) -> Node:
        node = self.values.get(name)
        if node is None:
            raise self.node.error(f"missing '{name}'")
        return node

    def present(self, *names: str) -> tuple[str, ...]:
        """Which of names are set, in file order."""
        return tuple(name for name in self.values if name in names)

    def key_error(self, name: str, message: str) -> ConfigError:
        return self.keys[name].error(message)


def step_key(node: Node, keys: tuple[str, ...], errors: Errors) -> tuple[str, Node] | None:
    """A list item that is one `{key: value}` step: its key and value.

    None when it only had unknown keys (already recorded in errors)."""
    if node.kind != "mapping":
        raise node.error(f"expected a step like {{say: TEXT}} or {{hangup: true}}, got {node.describe()}")
    fields = node.fields(keys, errors)
    present = fields.present(*keys)
    if not present:
        if not node.pairs():
            raise node.error(f"empty step (expected one of: {', '.join(keys)})")
        return None
    if len(present) > 1:
        message = f"one step per list item (this item also has '{present[0]}'); start the next with '- '"
        raise fields.key_error(present[1], message)
    return present[0], fields.values[present[0]]


def load(path: Path) -> Node:
    """Read and parse a YAML file; unreadable, malformed or empty files raise ConfigError."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(str(path), 0, f"cannot read: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ConfigError(str(path), line, "not valid UTF-8 text") from None
    return parse(text, str(path))


def parse(text: str, path: str) -> Node:
    """Parse YAML text; path is only used in error messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = error.problem or error.context or "syntax error"
        raise ConfigError(path, line, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(path, 1, f"invalid YAML: {error}") from None
    if root is None:
        raise ConfigError(path, 1, "file is empty")
    # A fresh constructor per file: it caches every node it builds.
    return _convert(root, path, yaml.constructor.SafeConstructor())


def _convert(node: yaml.Node, path: str, ctor: yaml.constructor.SafeConstructor) -> Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        pairs = tuple((_convert(k, path, ctor), _convert(v, path, ctor)) for k, v in node.value)
        return Node(path, line, "mapping", pairs)
    if isinstance(node, yaml.SequenceNode):
        items = tuple(_convert(item, path, ctor) for item in node.value)
        return Node(path, line, "sequence", items)
    assert isinstance(node, yaml.ScalarNode)
    try:
        value = ctor.construct_object(node)
    except yaml.YAMLError:
        raise ConfigError(path, line, f"cannot read value tagged {node.tag}") from None
    if node.tag == _NULL_TAG:
        value = None
    return Node(path, line, "scalar", value, node.value)


def _check_range(
    node: Node,
    value: float,
    at_least: float | None,
    at_most: float | None,
    above: float | None,
) -> None:
    low_ok = (at_least is None or value >= at_least) and (above is None or value > above)
    if low_ok and (at_most is None or value <= at_most):
        return
    low = f"at least {at_least:g}" if at_least is not None else ""
    low = f"more than {above:g}" if above is not None else low
    high = f"at most {at_most:g}" if at_most is not None else ""
    bounds = " and ".join(part for part in (low, high) if part)
    raise node.error(f"must be {bounds}, got {node.text}")


def _unknown_key(name: str, allowed: Collection[str]) -> str:
    message = f"unknown key '{name}' (expected one of: {', '.join(allowed)})"
    close = difflib.get_close_matches(name, list(allowed), n=1)
    return f"{message}; did you mean '{close[0]}'?" if close else message
