"""The labelled transcripts of pii_labelled.txt, and span-level precision and recall of the
redactor on them (a found span counts when it overlaps a labelled span of the same kind)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from gateway.compliance.redact import KINDS, find_pii

LABELLED = Path(__file__).with_name("pii_labelled.txt")
HELD_OUT = Path(__file__).with_name("pii_heldout.txt")
_MARK = re.compile(r"\{(\w+)\|([^}]*)\}")


def load(path: Path = LABELLED) -> list[tuple[str, list[tuple[str, int, int]]]]:
    items = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        text, spans, pos = "", [], 0
        for m in _MARK.finditer(line):
            text += line[pos:m.start()]
            spans.append((m.group(1), len(text), len(text) + len(m.group(2))))
            text += m.group(2)
            pos = m.end()
        items.append((text + line[pos:], spans))
    return items


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    missed: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def score(path: Path = LABELLED) -> dict[str, Score]:
    scores = {kind: Score() for kind in (*KINDS, "all")}
    for text, labels in load(path):
        found = [(s.kind, s.start, s.end) for s in find_pii(text)]
        for kind, start, end in found:
            hit = any(k == kind and start < e and s < end for k, s, e in labels)
            for key in (kind, "all"):
                if hit:
                    scores[key].tp += 1
                else:
                    scores[key].fp += 1
                    scores[key].wrong.append(f"{kind}: {text[start:end]!r} in {text!r}")
        for kind, start, end in labels:
            if not any(k == kind and s < end and start < e for k, s, e in found):
                for key in (kind, "all"):
                    scores[key].fn += 1
                    scores[key].missed.append(f"{kind}: {text[start:end]!r} in {text!r}")
    return scores


if __name__ == "__main__":
    for path in (LABELLED, HELD_OUT):
        print(f"{path.name}: {len(load(path))} transcripts")
        for kind, s in score(path).items():
            print(f"  {kind:6} precision {s.precision:.3f} recall {s.recall:.3f} (tp {s.tp}, fp {s.fp}, fn {s.fn})")
    for kind, s in score(HELD_OUT).items():
        if kind != "all":
            for m in s.missed:
                print("missed", m)
            for w in s.wrong:
                print("wrong ", w)
