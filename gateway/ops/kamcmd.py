"""Reading what `kamcmd` prints: its brace trees, and the front's workers, calls and screening
counters in them. Pure parsing; running kamcmd is the Front's job."""

from __future__ import annotations

from typing import TypedDict

_FLAG_STATES = {"A": "active", "I": "inactive", "D": "disabled", "T": "trying"}


class Destination(TypedDict):
    """One worker as the front sees it (parsed from `kamcmd dispatcher.list`)."""

    uri: str
    uid: str
    flags: str  # Kamailio's letters: A/I/T/D state + P (probed) or X (not probed)
    state: str  # active | inactive | trying | disabled
    probing: bool
    max_load: int | None
    load: int | None  # calls in progress through the front


class FrontDialog(TypedDict):
    """One call the front tracks (parsed from `kamcmd dlg.list`)."""

    h_entry: int
    h_id: int
    call_id: str
    state: int  # Kamailio's: 1 unconfirmed, 2 early, 3 answered (no ACK yet), 4 confirmed, 5 ended
    worker: str | None  # uid of the worker the call was dispatched to; None: not dispatched
    ended: bool  # the front sent its BYEs (end_dialogs_on); state stays until a BYE is answered


class ScreeningStats(TypedDict):
    """The front's flood and scanner counters (kamcmd cnt.grp_get_all + htable.stats)."""

    bans: int  # sources banned since start
    banned_now: int  # bans not yet expired
    dropped_banned: int  # requests dropped because their source is banned
    unknown_source: int  # requests from sources in no allow list (403 or dropped)


Tree = list[tuple[str, object]]


def parse_rpc_tree(text: str) -> Tree:
    """kamcmd's brace output as nested (key, value) pairs; repeated keys (DEST) stay in order.
    A bare `{` (one record of a list, e.g. each dialog of dlg.list) is a child keyed ""."""
    stack: list[Tree] = [[]]
    for raw in text.splitlines():
        line = raw.strip()
        if line == "}":
            if len(stack) > 1:
                stack.pop()
            continue
        if line == "{":
            record: Tree = []
            stack[-1].append(("", record))
            stack.append(record)
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        value = value.strip()
        if value == "{":
            child: Tree = []
            stack[-1].append((key.strip(), child))
            stack.append(child)
        else:
            stack[-1].append((key.strip(), value))
    return stack[0]


def walk(tree: Tree, key: str) -> list[Tree]:
    found: list[Tree] = []
    for k, v in tree:
        if isinstance(v, list):
            if k == key:
                found.append(v)
            found.extend(walk(v, key))
    return found


def _child(record: Tree, key: str) -> Tree:
    return next((v for k, v in record if k == key and isinstance(v, list)), [])


def _strings(record: Tree) -> dict[str, str]:
    return {k: v for k, v in record if isinstance(v, str)}


def parse_counters(text: str) -> dict[str, int]:
    """`kamcmd cnt.grp_get_all script` output → {name: value}."""
    out: dict[str, int] = {}
    todo = parse_rpc_tree(text)
    while todo:
        key, value = todo.pop()
        if isinstance(value, list):
            todo += value  # kamcmd wraps the group in an anonymous record
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def parse_destinations(text: str) -> list[Destination]:
    """`kamcmd dispatcher.list` → one dict per worker, in Kamailio's order."""
    result: list[Destination] = []
    for dest in walk(parse_rpc_tree(text), "DEST"):
        fields = _strings(dest)
        attr = _strings(_child(dest, "ATTRS"))
        load = _strings(_child(dest, "RUNTIME")).get("DLGLOAD", "")
        flags = fields.get("FLAGS", "")
        maxload = attr.get("MAXLOAD", "")
        result.append({
            "uri": fields.get("URI", ""),
            "uid": attr.get("DUID", ""),
            "flags": flags,
            "state": _FLAG_STATES.get(flags[:1], "unknown"),
            "probing": flags[1:2] == "P",
            "max_load": int(maxload) if maxload.isdigit() else None,
            "load": int(load) if load.isdigit() else None,
        })
    return result


def parse_dialogs(text: str) -> list[FrontDialog]:
    """`kamcmd dlg.list` → one dict per dialog."""
    result: list[FrontDialog] = []
    for key, record in parse_rpc_tree(text):
        if key or not isinstance(record, list):
            continue
        fields = _strings(record)
        # variables: { { name: value } ... }, one anonymous record per variable
        var = {k: v for _, block in _child(record, "variables") if isinstance(block, list)
               for k, v in block if isinstance(v, str)}
        try:
            h_entry, h_id = int(fields["h_entry"]), int(fields["h_id"])
            state = int(fields.get("state", "0"))
        except (KeyError, ValueError):
            continue
        result.append({
            "h_entry": h_entry,
            "h_id": h_id,
            "call_id": fields.get("call-id", ""),
            "state": state,
            "worker": var.get("worker"),
            "ended": var.get("ended") is not None,
        })
    return result


def parse_screening(counters_text: str, htable_text: str) -> ScreeningStats:
    """`kamcmd cnt.grp_get_all script` and `kamcmd htable.stats` → the screening counters."""
    counters = parse_counters(counters_text)
    banned_now = 0
    for table in walk(parse_rpc_tree(htable_text), ""):
        fields = _strings(table)
        if fields.get("name") == "ipban" and fields.get("all", "").isdigit():
            banned_now = int(fields["all"])
    return {
        "bans": counters.get("bans", 0),
        "banned_now": banned_now,
        "dropped_banned": counters.get("banned", 0),
        "unknown_source": counters.get("unknown_source", 0),
    }
