"""The fix a failed `add` or `remove` ends with, once every file is back as it was.

The lock's errors name the command that fixes *the files as they stand*: `nox -s lock` once an
input is corrected, `nox -s lock -- --move-lower` to let a lower layer's pins move. After an edit's
rollback the edit itself is gone, so either would lock the old inputs and change nothing. The fix
here is the edit asked for again, changed where the lock's error says how: the version range the
other layers need for the package added, or the edit made by hand and locked with --move-lower.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from deploy.errors import DeployError, LockError
from deploy.lock.reqfile import canonical, clip
from deploy.lock.rounds import MOVE_LOWER

UNDONE = "nothing was changed: every file is as it was"
# conflicts.explain writes the fix of a failure read from pip's output as the message's last line
# (joint.fail passes no fix= of its own).
_FIX_LINE = "\n  fix: "
_THEN_LOCK = re.compile(r"\brun: nox -s lock$")
# What the lower-layer conflict (lock/rounds.py) and pipsays' lines say, as they print it.
_PACKAGE = re.compile(r"^\s*package (?P<name>[^\s:]+): (?P<needs>.*)$")
_NEEDS = re.compile(r"\bneeds (?P<spec>\S+)")
_VIA = re.compile(r"\(via (?P<parent>[^\s,()]+) (?P<version>[^\s,()]+),")
_MOVE = re.compile(r"^\s*(?P<lock>\S+\.txt): (?P<name>\S+) (?P<old>\S+) → (?P<new>\S+) would be needed by ")


@dataclass(frozen=True)
class Edit:
    """What the user asked for, to say how to ask again: `add` with its specs (name, text) or
    `remove` with its names, into or out of `files` (as the user sees them)."""

    command: str
    args: Sequence[str]
    layer: str | None
    files: Sequence[str]
    names: Sequence[str] = ()  # add: the canonical name of each of args
    lock: str = ""  # add: the lock file of the layer it writes

    def again(self, args: Sequence[str] | None = None) -> str:
        layer = ["--layer", self.layer] if self.layer else []
        words = [*layer, *(self.args if args is None else args)]
        return clip(f"nox -s {self.command} -- {shlex.join(words)}", 300)


def undone(exc: DeployError, edit: Edit) -> LockError:
    """`exc`, raised while locking the edit, as it reads after the rollback: what went wrong, that
    nothing changed, and a fix that works on the files as they are now."""
    message, fix = exc.message, exc.fix
    head, found, tail = message.rpartition(_FIX_LINE)
    if found and "\n" not in tail:
        message, fix = head, fix or tail
    return LockError(f"{message}\n{UNDONE}", fix=_fix(message, fix, edit))


def _fix(message: str, fix: str | None, edit: Edit) -> str:
    if fix and MOVE_LOWER in fix:
        return _within_range(message, edit) or _by_hand(edit)
    again = f"run the {edit.command} again: {edit.again()}"
    if fix is None:
        return f"correct what it names, then {again}"
    if _THEN_LOCK.search(fix):
        return _locks_hold(message, edit) + _THEN_LOCK.sub(lambda _: again, fix)
    return fix  # it names no lock of the old files (a network check, an upgrade): true as it stands


def _locks_hold(message: str, edit: Edit) -> str:
    """When the conflict is with what a version of another package needs (`via kombu 5.7.0`), that
    version is most often the one the locks hold, which an add keeps: the way to let it move, first."""
    if edit.command != "add":
        return ""
    held = [f"{match['parent']} {match['version']}" for match in _VIA.finditer(message)
            if canonical(match["parent"].split("[", 1)[0]) not in edit.names]
    if not held:
        return ""
    held = list(dict.fromkeys(held))
    quoted = ", ".join(f"'{arg}'" for arg in edit.args)
    return clip(f"if {', '.join(held)} {'is' if len(held) == 1 else 'are'} what the locks hold, let every locked "
                f"version move: add {quoted} to {' and '.join(edit.files)} by hand and run: nox -s upgrade (each "
                "package goes to the newest version that fits); else ", 400)


def _within_range(message: str, edit: Edit) -> str | None:
    """`nox -s add -- 'gamma<2'` when the conflict is only about packages the add asked for, the lock
    that would have to move is the one of the layer added to (the layers above hold it back), and
    the versions they need for each (with the one the joint run would move to) are known."""
    from packaging.requirements import InvalidRequirement, Requirement  # only when an add failed
    from packaging.specifiers import InvalidSpecifier
    from packaging.version import InvalidVersion

    if edit.command != "add":
        return None
    needs: dict[str, list[str]] = {}
    for line in message.splitlines():
        if match := _PACKAGE.match(line):
            needs[canonical(match["name"])] = [spec.rstrip(",") for spec in _NEEDS.findall(match["needs"])]
    moved = [match for line in message.splitlines() if (match := _MOVE.match(line))]
    moves = {canonical(match["name"]): match["new"] for match in moved}
    asked = dict(zip(edit.names, edit.args, strict=True))
    if not needs or not set(needs) <= set(asked) or not set(moves) <= set(asked):
        return None
    if any(match["lock"] != edit.lock for match in moved):
        return None  # a lower layer's lock holds the added layer back: no range of the add moves it
    args = []
    for name, text in asked.items():
        if name not in needs:
            args.append(text)
            continue
        try:
            requirement = Requirement(text)
            for spec in needs[name]:
                requirement.specifier &= Requirement(spec).specifier
        except (InvalidRequirement, InvalidSpecifier):
            return None  # a spec cut short for the message: no range to offer
        try:
            admitted = requirement.specifier.contains(moves.get(name, ""), prereleases=True)
        except InvalidVersion:
            admitted = False
        if not admitted:
            return None  # the range would not hold the version the joint run found
        args.append(str(requirement))
    if args == list(edit.args):
        return None
    return f"ask for a version the layers above accept: {edit.again(args)}"


def _by_hand(edit: Edit) -> str:
    files = " and ".join(edit.files)
    quoted = ", ".join(f"'{arg}'" for arg in edit.args)
    what = (f"add {quoted} to {files}" if edit.command == "add"
            else f"take {', '.join(edit.args)} out of {files}")
    return clip(f"to let the lower layers' pins move, {what} by hand and run: nox -s lock -- {MOVE_LOWER} "
                "(it prints every change)", 400)
