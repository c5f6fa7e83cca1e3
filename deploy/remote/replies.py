"""What a host may answer, step by step, and how its text is shown: a host is never trusted.

A host runs what it is sent, but its replies are data from a machine that may be broken or
compromised: every reply is checked against the shape the step that reads it expects before any
of it is used, so a wrong one is one line naming the host and the step, never a traceback. The
shapes are declared in one table (`RESULTS`), written with a few combinators. Keys a step does
not know are allowed (a newer agent may add some) but never read. `check` takes a step's result,
`failure` a failure envelope, `envelope` a whole reply line, `conform` any other value a host sent.

Values come back as the host sent them. Whatever of a host's text reaches a terminal or a log
goes through `inert()` (one line) or `inert_lines()` (an output tail): escape codes, newlines,
bidi overrides and the like are shown as escapes, so a host cannot draw a line such as
"app1: switched" that the deploying side did not write.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from deploy.errors import HostError
from deploy.render import inert

FIX = ("the host did not answer the way pinship's agent does: check the host and its interpreter "
       "(setting: python), then run the command again")
_QUOTED = 60  # characters of an offending value a message shows

# Shapes: each checks a value at a JSON path and raises _Mismatch on the first thing wrong.


class _Mismatch(Exception):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")


Shape = Callable[[object, str], None]


def _show(value: object) -> str:
    if isinstance(value, str):
        return '"' + inert(value, _QUOTED) + '"'
    if isinstance(value, Mapping):
        return f"a mapping of {len(value)} keys"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    return inert(json.dumps(value) if value is None or isinstance(value, bool) else repr(value), _QUOTED)


def _wrong(path: str, expected: str, value: object) -> _Mismatch:
    return _Mismatch(path, f"expected {expected}, got {_show(value)}")


def kind(expected: type, what: str) -> Shape:
    def check(value: object, path: str) -> None:
        # bool is an int to Python, never to a reply: True bytes free or True as an exit code is wrong.
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            raise _wrong(path, what, value)

    return check


TEXT = kind(str, "a string")
FLAG = kind(bool, "true or false")
ANY_MAPPING = kind(Mapping, "a mapping")


def integer(least: int | None = None) -> Shape:
    def check(value: object, path: str) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or (least is not None and value < least):
            raise _wrong(path, "a whole number" + ("" if least is None else f" of at least {least}"), value)

    return check


def pattern(regex: str, what: str) -> Shape:
    compiled = re.compile(regex)

    def check(value: object, path: str) -> None:
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise _wrong(path, what, value)

    return check


def nullable(shape: Shape) -> Shape:
    def check(value: object, path: str) -> None:
        if value is not None:
            shape(value, path)

    return check


def list_of(item: Shape, size: int | None = None) -> Shape:
    def check(value: object, path: str) -> None:
        if not isinstance(value, list) or (size is not None and len(value) != size):
            raise _wrong(path, "a list" if size is None else f"a list of {size} items", value)
        for index, element in enumerate(value):
            item(element, f"{path}[{index}]")

    return check


def mapping_of(item: Shape) -> Shape:
    """A mapping from any (string) key to values of one shape."""

    def check(value: object, path: str) -> None:
        ANY_MAPPING(value, path)
        assert isinstance(value, Mapping)
        for key, element in value.items():
            item(element, f"{path}[{json.dumps(inert(str(key), _QUOTED))}]")

    return check


def record(required: dict[str, Shape], optional: dict[str, Shape] | None = None) -> Shape:
    """A mapping with these keys (and those of `optional`, when present); others are ignored."""

    def check(value: object, path: str) -> None:
        ANY_MAPPING(value, path)
        assert isinstance(value, Mapping)
        for key, shape in required.items():
            if key not in value:
                raise _Mismatch(f"{path}.{key}", "missing")
            shape(value[key], f"{path}.{key}")
        for key, shape in (optional or {}).items():
            if key in value:
                shape(value[key], f"{path}.{key}")

    return check


def either(keyed: str, then: Shape, otherwise: Shape) -> Shape:
    """`then` for a mapping that has the key `keyed`, else `otherwise` (a reply of two kinds)."""

    def check(value: object, path: str) -> None:
        (then if isinstance(value, Mapping) and keyed in value else otherwise)(value, path)

    return check


# What each step reads. Release ids and store digests are checked by their exact form, because
# they become paths here and on hosts.

RELEASE = pattern(r"[0-9a-f]{12}", "a release id (12 lowercase hex digits)")
SHA256 = pattern(r"[0-9a-f]{64}", "a sha256 (64 lowercase hex digits)")
KIND = pattern(r"[a-z][a-z0-9-]{0,31}", "a short word (a failure's kind)")
OWNER = record({}, {"token": nullable(TEXT), "user": TEXT, "machine": TEXT, "pid": integer(), "since": TEXT,
                    "action": TEXT})
WHEEL = record({"filename": TEXT, "name": TEXT, "version": TEXT, "sha256": SHA256, "size": integer(0)})
MANIFEST = record({}, {"release": RELEASE, "app": nullable(record({}, {"name": TEXT, "version": TEXT})),
                       "lock_sha256": SHA256, "layer": TEXT, "git": nullable(TEXT), "built_at": TEXT,
                       "built_by": TEXT, "python": TEXT, "wheels": list_of(WHEEL)})
# What the hosts run is passed to pip as arguments (--platform TAG …): plain words only.
WORD = pattern(r"[A-Za-z0-9_]{1,100}", "a word of letters, digits and _")
PROBE = record({
    "tags": list_of(WORD),
    "markers": mapping_of(TEXT),
    "python": record({"implementation": WORD, "version": pattern(r"[0-9]{1,3}\.[0-9]{1,3}", "a version like 3.11"),
                      "platform": WORD, "machine": WORD}),
    "current": nullable(RELEASE),
    "previous": nullable(RELEASE),
    "releases": list_of(RELEASE),
    "store": list_of(SHA256),
    "lock": nullable(OWNER),
    "free_bytes": integer(0),
}, {"unsafe": list_of(TEXT)})
LOG_ENTRY = record({}, {"release": nullable(TEXT), "result": TEXT, "time": TEXT, "user": TEXT, "machine": TEXT,
                        "action": TEXT})
VENV = either("error", record({"error": TEXT}), record({
    "installed": mapping_of(TEXT),
    "modified": list_of(list_of(TEXT, size=3)),
}))
NOTHING = record({})
HOOK = record({"exit": integer(), "output": TEXT})  # a release hook's exit code and last lines

RESULTS: dict[str, Shape] = {
    "probe": PROBE,
    "lock": record({"broke": nullable(OWNER), "probe": PROBE}),
    "unlock": NOTHING,
    "stage": record({"reused": FLAG}, {"linked": integer(0)}),
    "switch": record(
        {"previous": nullable(RELEASE), "switched": FLAG, "restart": nullable(integer()), "switched_back": FLAG,
         "pruned": list_of(RELEASE)},
        {"restart_output": TEXT, "post_switch": HOOK},
    ),
    "hook": HOOK,
    "abort": NOTHING,
    "read": record({"text": nullable(TEXT)}),
    "status": record(
        {"current": nullable(RELEASE), "previous": nullable(RELEASE), "log": list_of(LOG_ENTRY),
         "releases": list_of(record({"release": RELEASE, "manifest": nullable(MANIFEST)}))},
        {"venv": VENV, "lock": nullable(OWNER), "unsafe": list_of(TEXT)},
    ),
    "ping": NOTHING,
}
# What a failure carries besides its text, by kind; a kind not named here carries nothing read.
EXTRAS: dict[str, Shape] = {
    "locked": record({}, {"owner": nullable(OWNER)}),
    "lost-lock": record({}, {"owner": nullable(OWNER)}),
    "corrupt": record({"files": list_of(TEXT)}),
    "stage": record({}, {"step": TEXT}),
}
FAILURE = record({"kind": KIND, "error": TEXT}, {"extra": ANY_MAPPING})


def _refuse(host: str, op: str | None, mismatch: _Mismatch) -> HostError:
    step = f"{op}: " if op else ""
    return HostError(host, f"{step}the host's reply is not what this step expects: {mismatch}", fix=FIX)


def conform(host: str, step: str, shape: Shape, value: object, path: str) -> None:
    """Refuse `value`, which `host` sent for `step`, unless it has `shape` (e.g. MANIFEST, for a
    release's manifest.json read from a host); `path` names the value in the message."""
    try:
        shape(value, path)
    except _Mismatch as mismatch:
        raise _refuse(host, step, mismatch) from None


def check(host: str, op: str, reply: object) -> dict[str, Any]:
    """The `result` of a successful `op` from `host`, once it has the shape that step reads."""
    conform(host, op, RESULTS[op], reply, "result")
    assert isinstance(reply, Mapping)
    return dict(reply)


def failure(host: str, reply: object, op: str | None = None) -> dict[str, Any]:
    """A failure envelope ({"ok": false, "kind", "error", "extra"}) once it has its shape; `extra`
    is always there (a mapping) and holds what its kind carries in the shape that kind has.
    Pass the step as `op` where it is known: the message then names it."""
    try:
        FAILURE(reply, "reply")
        assert isinstance(reply, Mapping)
        extra = reply.get("extra") or {}
        EXTRAS.get(reply["kind"], ANY_MAPPING)(extra, "reply.extra")
    except _Mismatch as mismatch:
        raise _refuse(host, op, mismatch) from None
    return {**reply, "extra": dict(extra)}


def envelope(host: str, op: str, line: str) -> dict[str, Any]:
    """One reply line's JSON (after the agent's marker), checked: {"ok": True, "result": …} with the
    result `op` expects, or {"ok": False, "kind": …, "error": …, "extra": {…}}."""
    try:
        reply = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, nested too deep, or a number too long to read
        raise _refuse(host, op, _Mismatch("reply", f"not JSON: {_show(line)}")) from None
    try:
        record({"ok": FLAG})(reply, "reply")
    except _Mismatch as mismatch:
        raise _refuse(host, op, mismatch) from None
    assert isinstance(reply, Mapping)
    if not reply["ok"]:
        return failure(host, reply, op)
    if "result" not in reply:
        raise _refuse(host, op, _Mismatch("reply.result", "missing"))
    return {**reply, "result": check(host, op, reply["result"])}
