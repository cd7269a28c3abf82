"""A gather's slot as written in YAML: `type`, `ranges` (number bands), `confirm`, and what the
whole-file check needs to know of them (the few values a typed answer may take, for branches)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from gateway.config.schema import Invalid, Number, Strict, Text
from gateway.script.model import SLOT_TYPES, NumberRange, Slot
from gateway.script.slot_times import WEEKDAYS

__all__ = ["ConfirmSpec", "RangeFile", "Ranges", "SlotTypeText", "build_slot", "typed_values"]

_BOUNDS = ("below", "at_most", "above", "at_least")


class RangeFile(Strict):
    """A band of a number slot: `small: {below: 50}`, `mid: {at_least: 1000, at_most: 10000}`."""

    below: Number = Field(None)
    at_most: Number = Field(None)
    above: Number = Field(None)
    at_least: Number = Field(None)
    say: Text = Field(None)


def _type(kind: str) -> str:
    if kind not in SLOT_TYPES:
        import difflib

        close = difflib.get_close_matches(kind, SLOT_TYPES, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"type must be one of {', '.join(SLOT_TYPES)}, got {kind!r}{hint}")
    return kind


def _confirm(value: Any) -> bool | str:
    if isinstance(value, bool) or value in ("always", "never", "auto"):
        return value
    shown = "a mapping" if isinstance(value, dict) else "a list" if isinstance(value, list) else repr(str(value))
    raise ValueError(f"expected true or false, or always, never or auto, got {shown}")


def _ranges(ranges: dict[str, RangeFile]) -> dict[str, RangeFile]:
    if not ranges:
        raise ValueError("needs at least one range, like small: {below: 50}")
    for key, band in ranges.items():
        if all(getattr(band, b) is None for b in _BOUNDS):
            raise Invalid(f"range '{key}' needs a bound: below, at_most, above or at_least", key)
    return ranges


SlotTypeText = Annotated[Text, AfterValidator(_type)]
ConfirmSpec = Annotated[Any, AfterValidator(_confirm)]
Ranges = Annotated[dict[str, RangeFile], AfterValidator(_ranges)]


def build_slot(kind: str | None, ranges: dict[str, RangeFile] | None, length: int | None) -> Slot:
    bands = {k: NumberRange(r.below, r.at_most, r.above, r.at_least, r.say) for k, r in (ranges or {}).items()}
    return Slot(kind or "text", bands, length)  # type: ignore[arg-type]


def typed_values(g: dict, expect: tuple[str, ...] | None,
                 ) -> tuple[tuple[str, ...] | None, list[tuple[str, str]]]:
    """The values a typed answer may take where they are few (None: any), and (key, message)
    for mistakes that need more than one key to see."""
    kind, ranges = g.get("type"), g.get("ranges")
    problems: list[tuple[str, str]] = []
    if ranges is not None and kind != "number":
        problems.append(("ranges", "ranges belong to number slots (type: number)"))
    if kind == "choice" and g.get("expect") is None:
        problems.append(("", "a choice needs 'expect' (its values and what callers say for them)"))
    if kind == "number" and isinstance(ranges, dict):
        return (*ranges, *(expect or ())), problems
    if kind == "yes_no":
        return ("yes", "no", *(expect or ())), problems
    if kind == "day" and expect is None:
        return WEEKDAYS, problems
    return expect, problems
