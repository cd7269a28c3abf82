"""Is what the caller said so far a whole answer? Rules on the partial transcript, pure.

Used by turn-taking to end a turn after a short silence when the words already answer what
was asked, and to wait longer when they plainly stop mid-sentence ("I'd like to book an...").
Conservative on purpose: a caller cut off mid-sentence is worse than a quarter second more
of waiting, so only answers that match what was asked count as complete.

Expected kinds (what the question asks for): `yes_no`, `day`, `time`, `number`, `digits`,
`name`, `choice` (with the expected words), or None (anything).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence

__all__ = ["Verdict", "verdict", "KINDS", "kind_of"]

KINDS = ("yes_no", "day", "date", "time", "number", "digits", "name", "choice", "text", "email", "phone")


class Verdict(enum.Enum):
    COMPLETE = "complete"      # a whole answer: a short silence ends the turn
    INCOMPLETE = "incomplete"  # stops mid-phrase: wait longer than usual
    UNSURE = "unsure"          # the usual end-of-turn silence


_WORD = re.compile(r"[a-z0-9']+")
# Words a sentence does not end on: articles, prepositions, conjunctions, fillers, and the
# starts of phrases that carry on ("I'd like", "my name is").
_DANGLING = frozenset("""
a an the to for of at on in with from by about into than as and or but so because if when
that which who whose where my your our their his her its this these those some any
is are was were am be been i'm it's that's what's i'd i'll we're you're it's he's she's there's
would could can will shall should might must do does did have has had
like want need wanna gonna um uh er erm uh-huh hmm mm well
very really just also maybe around between after before until
""".split())
_YES_NO = frozenset("""yes yeah yep yup no nope nah sure correct right okay ok
absolutely definitely exactly wrong negative affirmative""".split())
_DAYS = frozenset("""monday tuesday wednesday thursday friday saturday sunday today tomorrow
tonight weekend week mon tue tues wed thu thurs fri sat sun""".split())
_NUMBER_WORDS = frozenset("""zero oh one two three four five six seven eight nine ten eleven twelve
thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty
seventy eighty ninety hundred thousand million dozen""".split())
_TIME_WORDS = frozenset("""noon midday midnight morning afternoon evening am pm o'clock oclock
half quarter anytime""".split())
_NAME_INTRO = ("my name is", "name is", "this is", "it's", "i'm", "i am", "it is")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("p.m.", "pm").replace("a.m.", "am"))


def _has_number(words: Sequence[str]) -> bool:
    return any(w.isdigit() or w in _NUMBER_WORDS or w.rstrip("s") in _NUMBER_WORDS for w in words)


def verdict(text: str, expect: str | None = None, words: Sequence[str] = ()) -> Verdict:
    """How complete `text` is as the answer to a question expecting `expect` (`words`: the
    expected words of a `choice`, lowercase phrases)."""
    stripped = text.strip()
    said = _words(stripped)
    if not said:
        return Verdict.UNSURE
    # The recogniser's own hint: Whisper writes "..." or a comma where speech trails off.
    if stripped.endswith(("...", "…", ",", "-", "—")) or said[-1] in _DANGLING:
        return Verdict.INCOMPLETE
    if expect == "yes_no":
        return Verdict.COMPLETE if _YES_NO & set(said) else Verdict.UNSURE
    if expect in ("day", "date"):
        return Verdict.COMPLETE if _DAYS & set(said) or _has_number(said) else Verdict.INCOMPLETE
    if expect == "time":
        if _TIME_WORDS & set(said) or any(w.isdigit() for w in said):
            return Verdict.COMPLETE
        return Verdict.COMPLETE if _has_number(said) else Verdict.INCOMPLETE
    if expect == "number":
        return Verdict.COMPLETE if _has_number(said) else Verdict.UNSURE
    if expect in ("choice", "text") and words:
        joined = " " + " ".join(said) + " "
        if any(" " + " ".join(_words(w)) + " " in joined for w in words if _words(w)):
            return Verdict.COMPLETE
        return Verdict.UNSURE
    if expect == "name":
        rest = " ".join(said)
        for intro in _NAME_INTRO:
            if rest.startswith(intro + " "):
                rest = rest[len(intro) + 1:]
                break
        # Two words of a name, or one said as the whole answer with a full stop.
        if len(rest.split()) >= 2 or (len(said) == 1 and stripped.endswith((".", "!"))):
            return Verdict.COMPLETE
        return Verdict.UNSURE
    # Anything goes: only the short, formulaic answers are sure.
    if len(said) <= 3 and (_YES_NO & set(said) or said[-1] in ("thanks", "please", "bye", "goodbye")):
        return Verdict.COMPLETE
    return Verdict.UNSURE


def kind_of(words: Sequence[str]) -> str | None:
    """The kind of answer a question's expected words call for (None: no words, free text)."""
    said = [w for phrase in words for w in _words(phrase)]
    if not said:
        return None
    if set(said) <= _YES_NO | {"not", "please", "thanks"}:
        return "yes_no"
    if set(said) & _DAYS and set(said) <= _DAYS | {"next", "this", "the"}:
        return "day"
    if set(said) & (_TIME_WORDS - {"morning", "afternoon", "evening"}) or (
            any(w.isdigit() for w in said) and set(said) & _TIME_WORDS):
        return "time"
    return "choice"
