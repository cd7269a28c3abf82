"""Children that die with the supervisor: `Popen(..., **with_parent())`.

A supervisor killed with SIGKILL (or by the OOM killer) runs no cleanup; without this its workers
and Kamailio would live on as orphans holding the SIP port and answering calls nobody watches.
Linux delivers PR_SET_PDEATHSIG's signal to the child when its parent exits; the child then
drains or stops as on any SIGTERM. Elsewhere (no prctl) nothing is set.

The signal follows the *thread* that started the child, so children are started from the
supervisor's main thread only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1

_libc: Any = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        _libc = None


def with_parent(sig: int = signal.SIGTERM) -> dict[str, Any]:
    """Popen keyword arguments that make the child get `sig` when this process dies."""
    if _libc is None:
        return {}
    parent = os.getpid()
    prctl = _libc.prctl   # looked up before the fork: the child only calls it

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:   # the parent died between fork and prctl
            os.kill(os.getpid(), sig)

    return {"preexec_fn": arm}
