"""Hot reload: notice edited dialplans cheaply and swap them in only when they load cleanly."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.dialplan.loader import load_dialplans
from gateway.errors import ConfigError

__all__ = ["DialplanStore"]

_Signature = tuple[tuple[str, int, int], ...]


class DialplanStore:
    """Holds the dialplans in force. A broken edit is reported and the last good set stays,
    so a typo never takes the phone lines down."""

    __slots__ = ("_signature", "current", "directory", "errors")

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._signature = _signature(directory)
        # At start there is no older set to keep: serve the files that did load.
        self.current, self.errors = load_dialplans(directory)

    def poll(self) -> list[ConfigError] | None:
        """None if nothing changed; else reload: [] when swapped in, the errors when kept old."""
        signature = _signature(self.directory)
        if signature == self._signature:
            return None
        # Remember it even if the load fails: the same broken files are reported once.
        self._signature = signature
        plans, errors = load_dialplans(self.directory)
        self.errors = errors
        if errors:
            return errors
        self.current = plans
        return []


def _signature(directory: Path) -> _Signature:
    """(name, mtime_ns, size) of each dialplan file: stat calls only, no reading."""
    entries: list[tuple[str, int, int]] = []
    try:
        with os.scandir(directory) as scan:
            for entry in scan:
                if entry.name.startswith(".") or not entry.name.endswith((".yaml", ".yml")):
                    continue
                try:
                    stat = entry.stat()
                except OSError:  # removed while we looked
                    continue
                entries.append((entry.name, stat.st_mtime_ns, stat.st_size))
    except OSError:
        return ()
    return tuple(sorted(entries))
