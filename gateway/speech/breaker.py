"""A circuit breaker per provider, shared by every call of a worker.

A provider that failed `threshold` times within `window` seconds is open: the fallback adapters
skip it and go straight to the next provider, so a cloud voice that is down costs no call any
more waiting. While open, one background probe (a short synthesis, a short recognition) runs
every `probe_every` seconds; the first that succeeds closes the breaker again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger("gateway.speech.breaker")

Probe = Callable[[], Awaitable[None]]


class CircuitBreaker:
    def __init__(self, name: str, probe: Probe | None = None, *, threshold: int = 3,
                 window: float = 60.0, probe_every: float = 10.0, probe_timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.threshold = threshold
        self.window = window
        self.probe_every = probe_every
        self.probe_timeout = probe_timeout
        self._probe = probe
        self._clock = clock
        self._failures: deque[float] = deque(maxlen=threshold)
        self.opened_at: float | None = None
        self.opened = 0          # how often it opened (for the record and the logs)
        self._prober: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return self.opened_at is not None

    def failed(self) -> None:
        now = self._clock()
        self._failures.append(now)
        if self.open or len(self._failures) < self.threshold or now - self._failures[0] > self.window:
            return
        self.opened_at = now
        self.opened += 1
        log.warning("%s failed %d times in %.0f s: skipped until a probe succeeds", self.name,
                    self.threshold, self.window)
        if self._probe is not None:
            with contextlib.suppress(RuntimeError):  # no running loop: stays open until succeeded()
                self._prober = asyncio.get_running_loop().create_task(self._probing(),
                                                                      name=f"probe-{self.name}")

    def succeeded(self) -> None:
        self._failures.clear()
        if self.open:
            log.info("%s answers again: back in use", self.name)
        self.opened_at = None

    async def _probing(self) -> None:
        assert self._probe is not None
        while self.open:
            await asyncio.sleep(self.probe_every)
            try:
                await asyncio.wait_for(self._probe(), self.probe_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a probe's failure keeps it open
                log.debug("%s probe failed: %s", self.name, exc)
                continue
            self.succeeded()

    async def aclose(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
