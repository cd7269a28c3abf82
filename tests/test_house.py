"""The house rules, checked on the import graph of the `gateway` package (docs/DESIGN.md, "Wings").

Every import counts, also those inside functions or under TYPE_CHECKING: a circle of imports is
a circle of knowledge, whenever Python runs it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gateway"
MAX_LINES = 600
MAX_LOOSE = 5
# wing -> the wings it may import (itself always). Wings are the first folder below gateway/.
MAY_IMPORT = {
    "media": {"errors"},
    "conversation": {"media", "errors"},
    "config": {"errors", "media"},
    "sip": {"config", "media", "errors"},
    "script": {"config", "media", "conversation", "errors"},
    "dialplan": {"config", "media", "script", "compliance", "errors"},
    "speech": {"config", "media", "errors"},
    "compliance": {"errors"},
    "store": {"config", "compliance", "errors"},
    "webrtc": {"config", "media", "errors"},
    "worker": {"config", "media", "conversation", "script", "dialplan", "speech", "sip", "store", "compliance",
               "webrtc", "errors"},
    "ops": {"config", "media", "errors"},
}
PJSUA_WINGS = {"sip"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Names of gateway modules (and pjsua2) that a file imports, resolved to modules."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    resolved = set()
    for name in names:
        if name == "pjsua2" or name.startswith("pjsua2."):
            resolved.add("pjsua2")
        elif name in MODULES:
            resolved.add(name)
    return resolved


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if nxt not in GRAPH:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(GRAPH):
        # A package's __init__ importing its own submodules is how packages re-export; that is
        # not a circle of knowledge, so the package node itself is left out of the walk.
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_import_cycles() -> None:
    assert _cycle() is None, " -> ".join(_cycle() or [])


@pytest.mark.parametrize("wing", sorted(MAY_IMPORT))
def test_wing_imports_only_what_it_may(wing: str) -> None:
    allowed = MAY_IMPORT[wing] | {wing}
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items() if _wing(module) == wing
        for target in targets
        if target != "pjsua2" and target != "gateway" and _wing(target) not in allowed
    )
    assert not wrong, wrong


def test_only_sip_imports_pjsua2() -> None:
    wrong = sorted(m for m, targets in GRAPH.items() if "pjsua2" in targets and _wing(m) not in PJSUA_WINGS)
    assert not wrong, wrong


def test_script_never_imports_worker() -> None:
    assert not [m for m, t in GRAPH.items() if _wing(m) == "script" and any(_wing(x) == "worker" for x in t)]


def test_caller_drives_the_softphone_only_as_a_process() -> None:
    """Nothing the caller tools import, however indirectly, loads pjsua2."""
    seen: set[str] = set()
    todo = [m for m in GRAPH if _wing(m) == "caller"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += [t for t in GRAPH.get(module, ()) if t != "pjsua2"]
    assert not sorted(m for m in seen if "pjsua2" in GRAPH.get(m, ()))


def test_few_loose_modules_and_no_long_ones() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= MAX_LOOSE, loose
    long = sorted(f"{p.relative_to(PACKAGE)}: {n}" for p in PACKAGE.rglob("*.py")
                  if (n := len(p.read_text().splitlines())) > MAX_LINES)
    assert not long, long


def test_every_wing_says_its_thread_and_role() -> None:
    missing = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.glob("*/__init__.py")
                     if ast.get_docstring(ast.parse(p.read_text())) is None)
    assert not missing, missing
