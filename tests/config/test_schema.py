"""The YAML schema adaptor: pydantic errors in the project's words, at the line they are about."""

from __future__ import annotations

from pydantic import Field, model_validator

from gateway.config.schema import (Flag, Invalid, Number, OneKey, Strict, Text, Whole, between, listed,
                                   load_text, matching)


class Step(OneKey):
    shape = "a step like {say: TEXT} or {hangup: true}"
    say: Text = Field(None)
    hangup: Flag = Field(None)


class Inner(Strict):
    port: between(Whole, at_least=1, at_most=65535) = 5060
    rate: between(Number, above=0, at_most=600) = 30.0
    realm: Text | None = None

    @model_validator(mode="after")
    def _realm(self) -> Inner:
        if self.realm == "*":
            raise Invalid("realm must not be '*'", "realm")
        return self


class Top(Strict):
    sip: Inner = Inner()
    number: matching(r"^\+?[0-9]+$", 'a number, e.g. "+1555"') = "1"
    nets: listed(Text) = []
    steps: list[Step] = []
    name: Text = Field(None, description="what the file is called")


def errors(text: str) -> list[str]:
    return [str(e) for e in load_text(text, "x.yaml", Top)[1]]


def test_values_are_read_as_written() -> None:
    top, found = load_text("number: 1555\nnets: 10.0.0.0/8\nname: 2024-01-01\nsteps: [{say: yes}]\n", "x", Top)
    assert found == [] and top is not None
    assert (top.number, top.nets, top.name, top.steps[0].key, top.steps[0].value) == (
        "1555", ["10.0.0.0/8"], "2024-01-01", "say", "yes")


def test_errors_in_the_projects_words_at_their_lines() -> None:
    assert errors("sip:\n  port: 99999\n  rate: 0\n") == [
        "x.yaml:2: must be at least 1 and at most 65535, got 99999",
        "x.yaml:3: must be more than 0 and at most 600, got 0"]
    assert errors("sip:\n  port: '5'\n  rate: .inf\n") == [
        "x.yaml:2: expected a whole number, got '5'", "x.yaml:3: expected a finite number, got 'inf'"]
    assert errors("sip:\n  prot: 1\n") == [
        "x.yaml:2: unknown key 'prot' (expected one of: port, rate, realm); did you mean 'port'?"]
    assert errors("sip:\n  port: 1\n  realm: '*'\n") == ["x.yaml:3: realm must not be '*'"]
    assert errors("number: abc\n") == ["x.yaml:1: expected a number, e.g. \"+1555\", got 'abc'"]
    assert errors("a: 1\na: 2\n") == ["x.yaml:2: duplicate key 'a' (first on line 1)"]
    assert errors("") == ["x.yaml:1: file is empty"]
    assert errors("- a\n") == ["x.yaml:1: expected a mapping (key: value), got a list"]
    assert errors("x: !secret y\n") == ["x.yaml:1: cannot read value tagged !secret"]


def test_one_key_steps() -> None:
    assert errors("steps:\n  - hangup\n  - {}\n  - say: hi\n    hangup: true\n  - sya: x\n  - say:\n") == [
        "x.yaml:2: expected a step like {say: TEXT} or {hangup: true}, got 'hangup'",
        "x.yaml:3: empty step (expected one of: say, hangup)",
        "x.yaml:5: one step per list item (this item also has 'say'); start the next with '- '",
        "x.yaml:6: unknown key 'sya' (expected one of: say, hangup); did you mean 'say'?",
        "x.yaml:7: expected text, got nothing"]


def test_a_missing_key_is_explained_by_its_description() -> None:
    class Named(Strict):
        name: Text = Field(description="what the file is called")

    assert [str(e) for e in load_text("other: 1\n", "x", Named)[1]] == [
        "x:1: missing 'name' (what the file is called)", "x:1: unknown key 'other' (expected one of: name)"]
