"""`upgrade -- PKG`: PKG to the newest version the inputs allow, and whatever that version needs.

pip-compile's own `--upgrade-package beta` keeps every other existing pin as a constraint it drops
only when pip finds no solution at all; pip finds one by staying on the old beta, so when beta 1.1
needs a newer alpha than the one locked, nothing moves and the run says nothing. Here an upgrade is
two steps per group of layers:

1. which version: one run without the existing pins, PKG asked above its locked version (or as
   the user wrote it: `PKG==X`, `PKG<X`). pip picks the newest the inputs allow; when there is none
   newer, pip's conflict names the input lines that hold PKG back, or the index has nothing newer;
2. the move: one run with the existing pins as preferences and `PKG==that version` as a hard
   constraint. An existing pin the new version cannot live with is dropped by pip-compile (and
   moves), every other pin stays: only what the new version needs moves, in every layer that has it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from deploy.config import Config
from deploy.errors import LockError
from deploy.lock import joint
from deploy.lock.layers import LayerGraph
from deploy.lock.lockfile import Pin
from deploy.lock.pipsays import holding_back
from deploy.lock.reqfile import canonical, clip, display, requirement_name
from deploy.lock.universe import select

Log = Callable[[str], None]
_TARGET = re.compile(r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?P<spec>(?:[<>=!~][^;]*)?)$")


@dataclass(frozen=True)
class Target:
    """One package to upgrade: `beta`, or `beta==1.1` / `beta<2` for a version of the user's choosing."""

    name: str  # canonical
    spec: str = ""

    def __str__(self) -> str:
        return self.name + self.spec


@dataclass
class Upgraded:
    pins: dict[str, list[Pin]] = field(default_factory=dict)  # every layer of the group
    universe: dict[str, Pin] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # package -> `needed by beta 1.1`


def targets(values: Sequence[str], known: set[str], graph: LayerGraph) -> list[Target]:
    """The packages named on the command line, each known to some layer; a typo is one clear error."""
    found: list[Target] = []
    unknown: list[str] = []
    for value in values:
        match = _TARGET.match(value)
        if match is None:
            raise LockError(f"'{clip(value)}' is not a package to upgrade",
                            fix="name it as PKG, PKG==VERSION or PKG<VERSION: nox -s upgrade -- PKG")
        name = canonical(match.group("name"))
        if name not in known:
            unknown.append(value)
        found.append(Target(name, match.group("spec").replace(" ", "")))
    if unknown:
        raise LockError(
            f"unknown package(s) to upgrade: {clip(', '.join(unknown))} — not required or pinned by any layer "
            f"in {display(graph.folder, graph.root)}/",
            fix="check the spelling, or add the package to an .in file and run: nox -s lock",
        )
    return found


def in_group(graph: LayerGraph, group: Sequence[str], current: Mapping[str, Sequence[Pin]], wanted: Sequence[Target]
             ) -> list[Target]:
    """The targets some layer of `group` pins or asks for."""
    names = {canonical(pin.name) for name in group for pin in current.get(name, ())}
    for name in group:
        names.update(filter(None, (requirement_name(line.text) for line in graph.layers[name].requirements)))
    return [target for target in wanted if target.name in names]


def upgrade_group(
    config: Config,
    graph: LayerGraph,
    group: Sequence[str],
    current: Mapping[str, Sequence[Pin]],
    wanted: Sequence[Target],
    *,
    env: Mapping[str, str] | None,
    log: Log,
    pages: joint.Pages | None = None,
) -> Upgraded:
    """Upgrade `wanted` in one group of layers (see the module's docstring); say what cannot move and why."""
    before: dict[str, Pin] = {}
    for name in group:
        for pin in current.get(name, ()):
            before.setdefault(canonical(pin.name), pin)
    layers = graph.closure(group)
    asked: list[str] = []
    moving = False
    for target in wanted:
        locked = before.get(target.name)
        version = _choose(config, graph, layers, target, locked, env=env, log=log)
        asked.append(f"{target.name}=={version}" if version is not None else target.name)
        moving |= version is not None
    if not moving:  # every one stays (said why): no run, and no layer of the group is solved or written
        return Upgraded()
    log(f"resolving {len(layers)} layers together with pip-compile, upgrading {', '.join(asked)}")
    outcome = joint.run(config, graph, joint.Run(layers, list(before.values()), upgrade=asked), env=env, log=log,
                        pages=pages)
    if outcome.universe is None:
        raise joint.fail(outcome, graph)
    result = Upgraded(universe=outcome.universe)
    for name in group:
        result.pins[name] = select(graph, name, outcome.universe)
    result.notes = _needed_by(before, outcome.universe, {target.name for target in wanted})
    return result


def _choose(
    config: Config, graph: LayerGraph, layers: Sequence[str], target: Target, locked: Pin | None, *,
    env: Mapping[str, str] | None, log: Log,
) -> str | None:
    """The version `target` moves to, or None when it cannot move (said, with the reason)."""
    spec = target.spec or (f">{locked.version}" if locked is not None else "")
    log(f"finding the newest version of {target.name} the inputs allow" if not target.spec
        else f"finding the version of {target.name} that matches {clip(target.spec)}")
    probe = joint.run(config, graph, joint.Run(layers, upgrade=[target.name + spec]), env=env, log=log)
    now = locked.version if locked is not None else None
    if probe.universe is not None:
        pin = probe.universe.get(target.name)
        if pin is None:
            log(f"{target.name}: no layer needs it any more, so there is nothing to upgrade")
            return None
        if pin.version == now:
            log(f"{target.name} is already at {clip(now)}")
        return pin.version
    held = holding_back(probe.output, graph, target.name, asked=target.name + spec)
    # A line's bound holds nothing back when no release on the index lies beyond `now` at all.
    newest = now is not None and not target.spec and _newest_on_index(config, graph, layers, target.name, now, env)
    if held and now is not None and not newest:
        log(f"{target.name} stays at {clip(now)}: {'; '.join(held)}")
        return None
    if now is not None and not target.spec and (newest or _nothing_newer(probe.output, target.name + spec)):
        log(f"{target.name} is already at its newest allowed version {clip(now)}")
        return None
    if held:
        raise LockError(f"{target.name}{clip(target.spec)} cannot be locked: {'; '.join(held)}",
                        fix=f"change the lines named, or ask for another version: nox -s upgrade -- {target.name}")
    raise joint.fail(probe, graph)


def _newest_on_index(config: Config, graph: LayerGraph, layers: Sequence[str], name: str, now: str,
                     env: Mapping[str, str] | None) -> bool:
    """Whether the layers' index and find-links folders offer no release of `name` newer than `now`
    that a resolver could take (a final release, unless `now` is none; not yanked; for this Python):
    then no line holds it back. False when they do, or it cannot tell (two indexes, a page it cannot
    read): the resolver's own words decide then."""
    from packaging.version import Version

    from deploy.lock import candidates, indexfiles, isolation, sources  # an upgrade that cannot move only

    found = sources.proof_sources(config, graph, layers, env)
    if found is None:
        return False
    try:
        fetch = indexfiles.fetcher(isolation.pip_environment(dict(os.environ) if env is None else env).env)
        files = candidates.files(name, *fetch(indexfiles.page_url(found[0], name)))
        # A find-links folder's files are candidates too (init's wheels/ folder, in every adopted project).
        files = candidates.merged(files, candidates.group(name, candidates.local(name, candidates.folder_files(
            found[1]))))
        current = Version(now)
    except Exception:  # any surprise: the resolver's words decide
        return False
    python = candidates.running_python()
    return not any(version > current and (current.is_prerelease or not version.is_prerelease)
                   and candidates.usable(found, python) for version, found in files.items())


def _nothing_newer(output: str, requirement: str) -> bool:
    """Whether pip found no version for `requirement` (`beta>1.0`, quoted as it was given): the index
    has none, or pip's conflict is only between it and the layers' bare `beta` (holding_back: none)."""
    return any(f"{words} {requirement}" in output for words in
               ("No matching distribution found for", "satisfies the requirement", "(constraint)"))


def _needed_by(before: Mapping[str, Pin], after: Mapping[str, Pin], asked: set[str]) -> dict[str, str]:
    """Why each package that moved (and was not asked for) moved: the moved packages that need it."""
    moved = {name for name, pin in after.items() if name not in before or before[name].version != pin.version}
    notes: dict[str, str] = {}
    for name in sorted(moved - asked):
        parents = sorted(canonical(reason) for reason in after[name].via
                         if not reason.startswith("-") and canonical(reason) in moved)
        if parents:
            notes[name] = "needed by " + ", ".join(f"{parent} {after[parent].version}" for parent in parents)
    return notes
