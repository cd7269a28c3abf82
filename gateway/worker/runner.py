"""Walks a script on a live call, agent script or dialplan flow alike: disclosure, say/play/pause,
spoken or keypad gathers with the fallback policy, keypad menus, branches, llm, transfer, hangup.
Everything is spoken through the session's voice (whatever TTS is configured); audio and timing
belong to CallSession."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.worker import metrics
from gateway.conversation import fallback as fb
from gateway.conversation.turns import TurnState
from gateway.script import model as sc
from gateway.script.consent import Consent
from gateway.script import slots
from gateway.worker import webhooks
from gateway.worker.llm_step import LlmConversation
from gateway.worker.untrusted import spoken
from gateway.errors import ProviderError
from gateway.speech.base import LanguageModel
from gateway.worker.session import Answer, CallSession

log = logging.getLogger("gateway.agent")
GOODBYE = "Thank you for calling. Goodbye."
ESCALATE = "Let me connect you with someone who can help."
TRANSFER_FAILED_TEXT = "Sorry, the transfer did not go through."
_KEY_POLL = 0.02  # seconds: how often a menu prompt looks for a key that cuts it short


class ScriptEnded(Exception):
    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class ScriptRunner:
    def __init__(self, script: sc.AgentScript, session: CallSession, operator_uri: str,
                 variables: dict[str, str], llm: LanguageModel | None = None, timezone: str = "UTC") -> None:
        self._llm = llm
        self.script = script
        self.session = session
        self.call = session.call
        self._operator_uri = operator_uri
        self.variables: dict[str, str] = {**script.variables, **variables}
        self._spoken: dict[str, str] = {}  # gathered answers as read back, for {name} in what is said
        self._timezone = timezone  # the dialplan's: "tomorrow" is the caller's tomorrow
        self._after_read_back = False  # the last answer was a yes to a read-back
        self._turn_end: float | None = None

    async def run(self) -> str:
        # Fetch caller context while the disclosure plays: it is needed only after it.
        context = asyncio.ensure_future(self._fetch_context())
        try:
            if self.script.disclosure:
                self.call.audit.log("disclosure", text=self.script.disclosure)
                await self._say(self.script.disclosure, interruptible=False)
            self.variables.update(await context)
            await self.steps(self.script.steps)
            await self._hangup()
            return "completed"
        except ScriptEnded as end:
            return end.outcome
        finally:
            context.cancel()

    async def _fetch_context(self) -> dict[str, str]:
        """The context webhook's JSON object, declared variables only, each made fit to speak;
        {} when it fails."""
        hook = self.script.context_webhook
        if hook is None:
            return {}
        payload = {"caller": self.variables.get("caller"), "called": self.variables.get("called")}
        try:
            data = await webhooks.send(hook.url, hook.method, payload, timeout=hook.timeout,
                                       policy=self.script.webhooks, call_id=self.call.record.call_id)
        except webhooks.WebhookError as exc:
            data, reason = None, str(exc)
        else:
            reason = "not a JSON object"
        if not isinstance(data, dict):
            metrics.fallback("context_webhook")
            log.warning("call %s: context webhook gave nothing usable: %s", self.call.key, reason)
            return {}
        values = {k: spoken(v) for k, v in data.items() if k in self.script.variables}
        return {k: v for k, v in values.items() if v}

    async def steps(self, steps: Sequence[sc.Step], until_key: bool = False) -> bool:
        """Run steps in order. until_key (a menu's prompt): a key pressed cuts the prompt short
        and the rest of it is skipped; returns False when that happened."""
        for step in steps:
            self.call.record.steps.append(type(step).__name__.lower())
            if until_key and self.call.pending_digit():
                return False
            if not await self.step(step, until_key):
                return False
        return True

    async def step(self, step: sc.Step, until_key: bool = False) -> bool:
        if isinstance(step, sc.Say):
            return await self._until_key(self._say(sc.fill(step.text, self.speakable)), until_key)
        if isinstance(step, sc.Play):
            return await self._until_key(self.session.say(
                step.clip or step.path.name, clip=step.path, turn_end=self._take_turn_end()), until_key)
        if isinstance(step, sc.Pause):
            return await self._until_key(asyncio.sleep(step.seconds), until_key)
        if isinstance(step, sc.Gather):
            await (self.menu(step) if step.menu else self.gather(step))
        elif isinstance(step, sc.Branch):
            await self.steps(step.select(self.variables.get(step.variable)))
        elif isinstance(step, sc.Transfer):
            await self._transfer(step.target, step.on_failure)
        elif isinstance(step, sc.Hangup):
            await self._hangup()
            raise ScriptEnded("completed")
        elif isinstance(step, sc.Llm):
            await self.converse(step)
        elif isinstance(step, Consent):
            await self.consent(step)
        return True

    async def _until_key(self, work: Awaitable[object], until_key: bool) -> bool:
        """Await work; with until_key, a key pressed stops it (and what is playing) at once."""
        if not until_key:
            await work
            return True
        task = asyncio.ensure_future(work)
        try:
            while not task.done():
                if self.call.pending_digit():
                    task.cancel()
                    self.call.clear_playout()
                    await asyncio.wait({task})
                    return False
                await asyncio.wait({task}, timeout=_KEY_POLL)
        finally:
            task.cancel()
        task.result()
        return True

    async def _hangup(self) -> None:
        await self.call.hangup()

    async def _transfer(self, target: str, on_failure: Sequence[sc.Step]) -> None:
        uri = self._operator_uri if target == "operator" else target
        if await self.call.blind_transfer(uri):
            raise ScriptEnded("transferred")
        if on_failure:
            await self.steps(on_failure)
        else:
            await self._say(TRANSFER_FAILED_TEXT)

    async def _say(self, text: str, interruptible: bool = True) -> bool:
        clip = self.script.clip_for(text)
        return await self.session.say(text, interruptible=interruptible, clip=clip,
                                      turn_end=self._take_turn_end())

    def _take_turn_end(self) -> float | None:
        turn_end, self._turn_end = self._turn_end, None
        return turn_end

    # ---- gather ----
    async def gather(self, g: sc.Gather) -> None:
        f = self.script.fallback
        policy = fb.FallbackPolicy(fb.PolicyConfig(
            max_no_input=f.max_no_input, max_no_match=f.max_no_match,
            max_total_failures=f.max_failures, low_confidence_threshold=f.low_confidence,
            has_transfer_target=f.escalate_to is not None, no_input_timeout=g.timeout))
        prompt = sc.fill(g.prompt, self.speakable)
        loop = asyncio.get_running_loop()
        first, listen_on = True, False
        while True:
            # What the answer will be like: turn-taking ends the turn sooner on a whole answer.
            self.session.expect([w for syns in (g.expect or {}).values() for w in syns], kind=g.slot.type)
            # A caller who talked over the previous sentence may already have answered.
            if not (first and self.session.has_answer()) and not listen_on:
                await self._say(prompt)
            first = listen_on = False
            policy.listen(loop.time())
            answer = await self.session.next_answer(g.timeout, dtmf=g.input != "speech",
                                                    max_digits=_max_digits(g))
            if answer.speech_end:
                self._turn_end = answer.speech_end
            value = None if answer.empty else self._parse(g, answer)
            agreed, self._after_read_back = self._after_read_back, False
            if value is None and agreed and slots.parse_yes_no(answer.text) == "yes":
                listen_on = True  # the rest of "Yes, ... that's right" to the read-back: not this answer
                continue
            kind = "no_input" if answer.empty else "no_match" if value is None else "match"
            heard = 1.0 if answer.digits else answer.confidence
            confidence = min(heard, value.confidence) if value is not None else heard
            if value is not None:
                # Never the value itself: a gathered answer may be a card number or a birth date.
                log.info("call %s: %s understood (recogniser %.2f, slot %.2f)", self.call.key, g.name,
                         heard, value.confidence)
            mode = g.confirm_mode
            if value is not None and (mode == "always" or (mode == "auto" and confidence < f.low_confidence)):
                # Read it back before acting on it; "no, Thursday" corrects it, a bare "no" asks again.
                value = await self._confirmed(g, value)
                confidence = 1.0
                if value is None:
                    kind = "no_match"
            elif mode == "never":
                confidence = 1.0
            decision = policy.on_answer(kind, loop.time(), text=value.value if value else answer.text,
                                        confidence=confidence)
            if isinstance(decision, fb.Accept):
                self.variables[g.name] = value.value if value else decision.text
                self._spoken[g.name] = value.spoken if value else decision.text
                log.info("call %s: %s gathered", self.call.key, g.name)
                return
            if isinstance(decision, fb.Reprompt):
                metrics.fallback(decision.kind)
                prompt = f"{decision.text} {sc.fill(g.prompt, self.speakable)}"
                continue
            await self._give_up(decision)

    @property
    def speakable(self) -> dict[str, str]:
        """The variables as they are said: gathered answers in their read-back form ("Friday")."""
        return {**self.variables, **self._spoken}

    def _parse(self, g: sc.Gather, answer: Answer, text: str | None = None) -> slots.SlotValue | None:
        today = datetime.now(ZoneInfo(self._timezone)).date()
        said = answer.digits or answer.text if text is None else text
        return slots.parse_slot(g.slot, said, g.expect, today=today, keyed=bool(answer.digits) and text is None)

    async def menu(self, g: sc.Gather) -> None:
        """A keypad menu: prompt (cut short by a key), digits, the matching branch; no_input or
        no_match before asking again, `failed` after the last attempt."""
        for _attempt in range(g.attempts):
            await self.steps(g.prompt_steps, until_key=True)
            digits = await self._collect(g)
            if not digits:
                await self.steps(g.no_input)
                continue
            branch = g.branch(digits)
            if branch is not None:
                if g.name:
                    self.variables[g.name] = digits
                await self.steps(branch)
                return
            log.info("call %s: no branch for %r", self.call.key, digits)
            await self.steps(g.no_match)
        await self.steps(g.failed)

    async def _collect(self, g: sc.Gather) -> str:
        digits = ""
        timeout = g.timeout
        while len(digits) < g.max_digits:
            digit = await self.call.next_digit(timeout)  # type: ignore[arg-type]
            if digit is None or (g.terminator and digit == g.terminator):
                break
            digits += digit
            timeout = g.inter_digit_timeout
        return digits

    async def _confirmed(self, g: sc.Gather, value: slots.SlotValue) -> slots.SlotValue | None:
        """Read the value back; the value the caller agrees to (or corrects it to), else None."""
        for _ in range(2):
            self.session.flush_answers()
            await self._say(f"{self._read_back(g, value)}, is that right?")
            self.session.expect(kind="yes_no")
            answer = await self.session.next_answer(6.0, dtmf=True)
            await self._caller_done()
            if answer.digits:
                return value if answer.digits.startswith("1") else None
            said = slots.parse_yes_no(answer.text)
            # "no, Thursday", "Thursday, not Friday", or the answer simply said again.
            rest = re.sub(r"^\W*(?:no|nope|nah|sorry|actually|wrong)\b[\s,.!]*", "", answer.text,
                          flags=re.IGNORECASE).strip()
            other = self._parse(g, answer, rest) if rest and said != "yes" else None
            if other is not None and other.value != value.value and (said == "no" or g.slot.type != "text"):
                if min(answer.confidence, other.confidence) >= self.script.fallback.low_confidence:
                    await self._say(f"{_capital(other.spoken)}, got it.")
                    return other
                value = other  # not sure of the correction either: read that one back
                continue
            if said == "yes" or (other is not None and other.value == value.value):
                self._after_read_back = True
                return value
            return None
        return None

    async def _caller_done(self, most: float = 3.0) -> None:
        """Let the caller finish the sentence whose first words answered ("Yes, ... that's right"),
        so that what is said next is not cut short by its end; its leftover words are dropped."""
        loop = asyncio.get_running_loop()
        until = loop.time() + most
        while self.session.turns.state is not TurnState.IDLE and loop.time() < until:
            await asyncio.sleep(0.02)
        self.session.flush_answers()

    def _read_back(self, g: sc.Gather, value: slots.SlotValue) -> str:
        if g.read_back:
            return sc.fill(g.read_back, {**self.speakable, g.name: value.spoken})
        return _capital(value.spoken)

    async def _give_up(self, decision: fb.Decision) -> None:
        if isinstance(decision, fb.Apologize):
            await self._say("Sorry, we're having trouble on our side.")
            decision = decision.then
        if isinstance(decision, fb.Escalate) and self.script.fallback.escalate_to:
            metrics.fallback("escalate")
            await self._say(ESCALATE)
            await self._transfer(self.script.fallback.escalate_to, ())
            await self._say(GOODBYE)
            await self._hangup()
            raise ScriptEnded("gave_up")
        metrics.fallback("close")
        await self._say(GOODBYE)
        await self._hangup()
        raise ScriptEnded("gave_up")

    async def consent(self, step: Consent) -> None:
        """Ask; take yes or no by speech or keypad (1 yes, 2 no); log the answer in the audit trail
        and set the step's variable to yes, no or unanswered."""
        self.call.audit.log("consent_asked", topic=step.topic, question=step.ask)
        answer, via = "unanswered", "none"
        for _attempt in range(step.attempts):
            self.session.flush_answers()
            await self._say(step.ask)
            heard = await self.session.next_answer(step.timeout, dtmf=True)
            if heard.digits:
                answer, via = {"1": "yes", "2": "no"}.get(heard.digits[:1], "unanswered"), "keypad"
            elif heard.text.strip():
                said = sc.confirm_answer(heard.text)
                answer, via = ("unanswered" if said is None else "yes" if said else "no"), "speech"
            if answer != "unanswered":
                break
        self.variables[step.variable] = answer
        self.call.audit.consent(step.topic, step.ask, answer, via)
        log.info("call %s: consent to %s: %s (%s)", self.call.key, step.topic, answer, via)

    async def converse(self, step: sc.Llm) -> None:
        if self._llm is None:
            log.warning("call %s: llm step skipped: no language model configured (llm: in "
                        "gateway.yaml)", self.call.key)
            return
        conversation = LlmConversation(step, self._llm, self.session, self.variables, self._say,
                                      self.script.webhooks)
        try:
            ending = await conversation.run()
        except ProviderError as exc:
            metrics.provider_error(exc.provider)
            log.warning("call %s: language model failed: %s", self.call.key, exc)
            await self._give_up(fb.Apologize(fb.Escalate("provider_error")))
            return
        if ending == "hangup":
            await self._say(GOODBYE)
            await self._hangup()
            raise ScriptEnded("completed")
        if ending == "transfer":
            await self._transfer(self.script.fallback.escalate_to or "operator", ())


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _max_digits(g: sc.Gather) -> int:
    if g.slot.type in ("digits", "phone"):
        return g.slot.length or 15
    if not g.expect:
        return 1
    return max((len(s) for syns in g.expect.values() for s in syns if s.isdigit()), default=1)
