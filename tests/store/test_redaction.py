"""PII redaction, measured on the labelled transcripts shipped here (python -m tests.store.labelled
prints the table the README quotes), and its behaviour on what the records hold."""

from __future__ import annotations

import pytest

from gateway.compliance.redact import find_pii, luhn, redact, redact_value
from tests.store.labelled import HELD_OUT, LABELLED, load, score


@pytest.mark.parametrize("path", [LABELLED, HELD_OUT], ids=["labelled", "held-out"])
def test_precision_and_recall_on_the_labelled_transcripts(path):
    assert len(load(path)) >= 20
    scores = score(path)
    overall = scores["all"]
    assert overall.precision >= 0.9 and overall.recall >= 0.9, (overall.missed, overall.wrong)
    # A card number is the costliest leak: nearly every labelled one is found.
    assert scores["card"].recall >= 0.9, scores["card"].missed


def test_markers_are_typed_and_the_rest_of_the_text_stays():
    text = "Card 4111 1111 1111 1111, email jo@example.com, call 555-867-5309, born 03/15/1985."
    assert redact(text) == "Card [CARD], email [EMAIL], call [PHONE], born [DOB]."


def test_a_misheard_card_number_is_still_redacted_with_less_confidence():
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    [span] = find_pii("it's 4111 1111 1111 1112")
    assert span.kind == "card" and span.confident is False


def test_kinds_are_chosen_and_off_is_nothing():
    text = "ssn 123-45-6789 and 4111111111111111"
    assert redact(text, ["ssn"]) == "ssn [SSN] and 4111111111111111"
    assert redact(text, []) == text


def test_values_gathered_on_purpose_are_redacted_in_what_is_stored():
    values = {"card": "4111 1111 1111 1111", "name": "John Smith", "notes": ["call 555-867-5309"]}
    assert redact_value(values) == {"card": "[CARD]", "name": "John Smith", "notes": ["call [PHONE]"]}
    assert redact_value(values, names=["name"])["name"] == "[REDACTED]"
