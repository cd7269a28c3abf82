"""Agent dialplans written for one test, and vendor fakes served beside a gateway process."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["AGENT_BARGE", "plans_dir", "serving", "tool_agent"]

F = TypeVar("F")

# Long enough to be interrupted, then one question whose answer is read back.
AGENT_BARGE = """
name: barge
disclosure: false
steps:
  - say: "Welcome to the test line. This sentence is long on purpose, so that there is time to interrupt it. It goes on and on for a while longer still."
  - gather: {name: answer, prompt: "What is your name?"}
  - say: "Thanks, {answer}."
  - hangup: true
"""


def tool_agent(name: str, port: int, *, secret_env: str = "", goodbye: str = "") -> str:
    """An agent whose LLM step may call one webhook tool, `check_slot`, on 127.0.0.1:port."""
    secret = f", secret_env: {secret_env}" if secret_env else ""
    farewell = f'  - say: "{goodbye}"\n' if goodbye else ""
    return f"""
name: {name}
disclosure: false
webhooks: {{allow: [127.0.0.1/32]{secret}}}
steps:
  - say: "How can I help?"
  - llm:
      instructions: "You book appointments."
      tools:
        - webhook:
            name: check_slot
            url: "http://127.0.0.1:{port}/slots"
            description: "Find a free slot on a day"
            parameters: {{type: object, properties: {{day: {{type: string}}}}}}
      max_turns: 1
{farewell}  - hangup: true
"""


def plans_dir(tmp: Path, agents: dict[str, str]) -> Path:
    """A dialplan directory with one agent per entry, on +15550301, +15550302, ... in order."""
    plans = tmp / "dialplans"
    (plans / "agents").mkdir(parents=True)
    (plans / "default.yaml").write_text("reject: 404\n")
    for number, (name, text) in enumerate(agents.items(), start=1):
        (plans / "agents" / f"{name}.yaml").write_text(text)
        (plans / f"{name}.yaml").write_text(f'numbers: ["+1555030{number}"]\nagent: agents/{name}.yaml\n')
    return plans


@contextlib.contextmanager
def serving(fake: F) -> Iterator[F]:
    """Run an asyncio fake server (an async context manager) on its own loop thread while the
    test drives a gateway process from this one."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    server: Any = fake
    asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
