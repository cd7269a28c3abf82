"""Runs a dialplan flow on an answered call: say, play, pause, gather, transfer, hang up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from gateway.worker.call import Call
from gateway.dialplan import model as dp

log = logging.getLogger("gateway.worker.flow")
TRANSFER_FAILED_TEXT = "Sorry, the transfer did not go through."


class FlowEnded(Exception):
    """The flow finished the call (hangup or successful transfer)."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class FlowRunner:
    def __init__(self, call: Call, speak: Callable[[str], Awaitable[bytes]],
                 load_clip: Callable[[Path], Awaitable[bytes]], operator_uri: str) -> None:
        self.call = call
        self._speak = speak
        self._load_clip = load_clip
        self._operator_uri = operator_uri

    async def run(self, steps: Sequence[dp.Step]) -> str:
        """Run steps to the end; returns the outcome. Ends the call unless a step did."""
        try:
            await self.steps(steps)
        except FlowEnded as end:
            return end.outcome
        await self.call.hangup()
        return "completed"

    async def steps(self, steps: Sequence[dp.Step], stop_on_digit: bool = False) -> bool:
        """Run steps in order; with stop_on_digit, a keypress ends prompts early (returns False)."""
        for step in steps:
            self.call.record.steps.append(type(step).__name__.lower())
            if not await self.step(step, stop_on_digit):
                return False
        return True

    async def step(self, step: dp.Step, stop_on_digit: bool = False) -> bool:
        if isinstance(step, dp.Say):
            return await self.call.play(await self._speak(step.text), stop_on_digit)
        if isinstance(step, dp.Play):
            return await self.call.play(await self._load_clip(step.path), stop_on_digit)
        if isinstance(step, dp.Pause):
            return await self._pause(step.seconds, stop_on_digit)
        if isinstance(step, dp.Gather):
            await self.gather(step)
            return True
        if isinstance(step, dp.Transfer):
            await self.transfer(step.target, step.on_failure)
            return True
        if isinstance(step, dp.Hangup):
            await self.call.hangup()
            raise FlowEnded("completed")
        raise TypeError(f"unknown step {step!r}")

    async def _pause(self, seconds: float, stop_on_digit: bool) -> bool:
        if not stop_on_digit:
            await asyncio.sleep(seconds)
            return True
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            if self.call.pending_digit():
                return False
            await asyncio.sleep(min(0.05, end - loop.time()))
        return True

    async def gather(self, g: dp.Gather) -> None:
        for _attempt in range(max(1, g.attempts)):
            await self.steps(g.prompt, stop_on_digit=True)
            digits = await self._collect(g)
            if not digits:
                await self.steps(g.no_input)
                continue
            branch = g.branches.get(digits)
            if branch is not None:
                await self.steps(branch)
                return
            log.info("call %s: no branch for %r", self.call.key, digits)
            await self.steps(g.no_match)
        await self.steps(g.failed)

    async def _collect(self, g: dp.Gather) -> str:
        digits = ""
        timeout = g.timeout
        while len(digits) < g.max_digits:
            digit = await self.call.next_digit(timeout)
            if digit is None:
                break
            if g.terminator and digit == g.terminator:
                break
            digits += digit
            timeout = g.inter_digit_timeout
        return digits

    async def transfer(self, target: str, on_failure: Sequence[dp.Step]) -> None:
        uri = self._operator_uri if target == "operator" else target
        if await self.call.blind_transfer(uri):
            raise FlowEnded("transferred")
        if on_failure:
            await self.steps(on_failure)
        else:
            await self.call.play(await self._speak(TRANSFER_FAILED_TEXT))
