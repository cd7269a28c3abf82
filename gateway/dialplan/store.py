"""Hot reload: notice edited dialplans, agent scripts and clips cheaply, and swap the set in only
when all of it loads cleanly.

What is watched: every *.yaml / *.yml / *.wav under the dialplan directory (agent scripts and
clips in its subfolders, as in the shipped `dialplans/agents/`), by stat only. A change reloads
the whole set off the event loop (`refresh()`); any error, even an unexpected one, keeps the
last good set and is reported, and the next change is tried again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from gateway.dialplan.loader import load_dialplans
from gateway.dialplan.model import DialplanSet
from gateway.errors import ConfigError

__all__ = ["DialplanStore"]

log = logging.getLogger("gateway.dialplan")
_Signature = tuple[tuple[str, int, int], ...]
_WATCHED = (".yaml", ".yml", ".wav")
_MAX_DEPTH = 4        # folder levels below the dialplan directory
_MAX_FILES = 5000     # watched files at most (a mistaken directory is not walked for ever)


class DialplanStore:
    """Holds the dialplans in force. A broken edit is reported and the last good set stays,
    so a typo never takes the phone lines down."""

    __slots__ = ("_signature", "current", "directory", "errors")

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._signature = _signature(directory)
        # At start there is no older set to keep: serve the files that did load.
        self.current, self.errors = _load(directory)

    def poll(self) -> list[ConfigError] | None:
        """None if nothing changed; else reload: [] when swapped in, the errors when kept old.
        Blocking (stat and YAML): from the loop use `refresh()`."""
        changed = self._changed()
        if changed is None:
            return None
        return self._swap(changed, _load(self.directory))

    async def refresh(self) -> list[ConfigError] | None:
        """`poll()` with the disk work on a thread: the loop keeps serving calls meanwhile."""
        changed = await asyncio.to_thread(self._changed)
        if changed is None:
            return None
        loaded = await asyncio.to_thread(_load, self.directory)
        return self._swap(changed, loaded)

    def _changed(self) -> _Signature | None:
        signature = _signature(self.directory)
        return None if signature == self._signature else signature

    def _swap(self, signature: _Signature, loaded: tuple) -> list[ConfigError]:
        # Remember it even if the load fails: the same broken files are reported once.
        self._signature = signature
        plans, errors = loaded
        self.errors = errors
        if errors:
            return errors
        self.current = plans
        return []


def _load(directory: Path) -> tuple:
    """load_dialplans, with anything it raises turned into an error: reloading never stops."""
    try:
        return load_dialplans(directory)
    except Exception as exc:  # noqa: BLE001 - a bug or a hostile file must not end reloading
        log.exception("dialplan reload failed")
        return DialplanSet(), [ConfigError(str(directory), 0, f"reload failed: {type(exc).__name__}")]


def _signature(directory: Path) -> _Signature:
    """(path, mtime_ns, size) of each watched file: stat calls only, no reading."""
    entries: list[tuple[str, int, int]] = []
    pending = [(directory, 0)]
    while pending and len(entries) < _MAX_FILES:
        folder, depth = pending.pop()
        try:
            with os.scandir(folder) as scan:
                for entry in scan:
                    if entry.name.startswith("."):
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if depth < _MAX_DEPTH:
                                pending.append((Path(entry.path), depth + 1))
                            continue
                        if not entry.name.endswith(_WATCHED):
                            continue
                        stat = entry.stat()
                    except OSError:  # removed while we looked
                        continue
                    entries.append((entry.path, stat.st_mtime_ns, stat.st_size))
        except OSError:
            continue
    return tuple(sorted(entries))
