"""An upper layer never moves a lower one: the stale layers of a group are solved in rounds.

A group is a set of layers linked by `-r`/`-c` either way; a standalone layer is a group of its
own, locked independently. Within a group, a *lower* layer is one another layer includes or is
constrained by. A plain lock keeps the pins of every lower layer that is fresh, and solves the rest
in rounds, each constrained by the layers already settled (their pins as hard `==` constraints,
so pip says so when it cannot keep one):

    round 1 … k   the stale lower layers, lowest first (peers together): an edit of base.in is
                  solved from base's inputs alone, never pulled by what dev.in asks
    last round    every layer no other layer builds on, together (one version per package)

When only a top layer changed, that is a single pip-compile run, as before. When the settled pins
cannot satisfy an upper layer, one more run (the whole group together, the old joint solve) finds
which lower pins would have to move; the lock fails naming both lines and those moves, and makes
them only with `--move-lower`, which solves each group in one joint run.

When more than one round would run (a first lock, an edit of a lower layer), they are tried in one
run first (lock/onerun.py): its result stands only when pip's own account of it proves the rounds
would give the same pins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from deploy.config import Config
from deploy.errors import LockError
from deploy.lock import joint, onerun, preferences
from deploy.lock.freshness import options_key
from deploy.lock.layers import LayerGraph, input_key
from deploy.lock.lockfile import LockFile, Pin
from deploy.lock.reqfile import canonical, clip, display
from deploy.lock.universe import select, union

Log = Callable[[str], None]
MOVE_LOWER = "--move-lower"


def lower_layers(graph: LayerGraph, group: Sequence[str]) -> list[str]:
    """The layers of `group` that another layer includes or is constrained by."""
    below = {other for name in group for other in graph.depends_on(name)}
    return [name for name in group if name in below]


def plan(graph: LayerGraph, group: Sequence[str], stale: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """The layers kept as locked, and the rounds that solve the others, lowest first."""
    lower = lower_layers(graph, group)
    kept = [name for name in lower if name not in stale]
    moving = [name for name in lower if name in stale]
    level: dict[str, int] = {}
    for name in moving:  # in layer order: whatever a layer depends on has its level already
        level[name] = 1 + max((level[other] for other in graph.depends_on(name) if other in level), default=-1)
    rounds = [[name for name in moving if level[name] == depth] for depth in range(max(level.values(), default=-1) + 1)]
    rounds.append([name for name in group if name not in lower])
    return kept, rounds


@dataclass
class Settled:
    """A group's layers as this run leaves them: each solved layer's pins, and what was kept."""

    pins: dict[str, list[Pin]] = field(default_factory=dict)  # solved layers only
    kept: list[str] = field(default_factory=list)  # lower layers left exactly as locked
    universe: dict[str, Pin] = field(default_factory=dict)  # every pin of the group, for the checks


def settle(
    config: Config,
    graph: LayerGraph,
    group: Sequence[str],
    current: Mapping[str, Sequence[Pin]],
    existing: Mapping[str, LockFile],
    stale: Sequence[str],
    *,
    move_lower: bool = False,
    unpreferred: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    log: Log = print,
    pages: joint.Pages | None = None,
) -> Settled:
    """Solve the stale layers of one group, keeping the lower layers that are fresh (see above).

    `current` is each layer's pins before this run (its lock's, or a seed's). The existing pins are
    the preferences, but for `unpreferred` (packages about to be upgraded: their hashes are fetched
    again, as pip-compile's --upgrade-package does).
    """
    seeds = preferences.seeded(existing)

    def preferred(members: Sequence[str]) -> dict[str, Pin]:
        """The existing pins of `members` and the layers below them, never those of a layer above; and
        the versions the project ran before adopting pinship (init's seed, whichever layer holds it)."""
        reach = {other for name in members for other in [name, *graph.depends_on(name)]} | set(seeds)
        pins = union(existing[name] for name in group if name in existing and name in reach)
        return {canonical(pin.name): pin for pin in pins if canonical(pin.name) not in unpreferred}

    kept, rounds = ([], [list(group)]) if move_lower else plan(graph, group, stale)
    result = Settled(kept=kept)
    settled: dict[str, list[Pin]] = {name: list(current[name]) for name in kept}
    kept_at: dict[str, str] = {}
    for name in kept:
        lock = existing[name]
        for pin in current[name]:
            kept_at.setdefault(canonical(pin.name), f"{display(lock.path, graph.root)}:{pin.line}")
    first = None
    if onerun.ENABLED and len(rounds) > 1 and not (move_lower or unpreferred):
        first = onerun.solve(config, graph, group, rounds, preferred, settled, kept_at, env=env, log=log,
                             pages=pages)
        if first is not None and first.complete:
            result.pins = first.pins(graph, [name for members in rounds for name in members])
            result.universe = dict(first.universe)
            rounds = []  # every round is proven: none runs, and the kept layers' pins join the universe below
    options = options_key(config)
    carried: list[str] = []  # stale lower layers whose lock still holds: kept, selected in the last round
    for number, round_members in enumerate(rounds):
        last = number == len(rounds) - 1
        # The one run's proof of a round assumes the rounds below it gave the one run's pins: those it
        # proved did, and one that ran (or kept its lock) may have come out the same.
        below = [name for earlier in rounds[:number] for name in earlier]
        if first is not None and _as_in(graph, first, settled, below) and (
                first.top if last else all(name in first.proven for name in round_members)):
            taken = [*round_members, *carried] if last else list(round_members)
            log(f"{', '.join(round_members)}: the one run's pins stand, as "
                + ("the layers below came out as it had them" if last else "its own inputs give them"))
            for name, pins in first.pins(graph, taken).items():
                result.universe.update({canonical(pin.name): first.universe[canonical(pin.name)] for pin in pins})
                _solved(graph, name, pins, result, settled, kept_at)
            continue
        if last:
            members = [*round_members, *carried]
        else:
            members = [name for name in round_members if not _still_holds(graph, name, existing, settled, options)]
            for name in round_members:
                if name not in members:
                    log(f"{name}: only layers below it changed, and its lock pins what they pin: its pins are kept")
                    carried.append(name)
                    settled[name] = list(existing[name].pins.values())
                    lock_name = display(existing[name].path, graph.root)
                    for pin in settled[name]:
                        kept_at.setdefault(canonical(pin.name), f"{lock_name}:{pin.line}")
        if not members:
            continue
        hard = {canonical(pin.name): pin for name in settled for pin in settled[name]}
        layers = graph.closure(members)
        _announce([name for name in members if name not in carried], group, layers, list(settled), log)
        wished = preferred(members) | {canonical(pin.name): pin for pins in settled.values() for pin in pins
                                       if canonical(pin.name) not in unpreferred}
        plan_run = joint.Run(layers, list(wished.values()), hard, dict(kept_at))
        outcome = joint.run(config, graph, plan_run, env=env, log=log, pages=pages)
        if outcome.universe is None:
            if hard and outcome.blames_kept(hard):
                raise _lower_conflict(config, graph, group, outcome, settled, kept_at, preferred(group), env, log)
            raise joint.fail(outcome, graph, kept_at)
        result.universe.update(outcome.universe)
        for name in members:
            _solved(graph, name, select(graph, name, outcome.universe), result, settled, kept_at)
    for name in kept:
        for pin in current[name]:
            result.universe.setdefault(canonical(pin.name), pin)
    return result


def _as_in(graph: LayerGraph, first: onerun.OneRun, settled: Mapping[str, list[Pin]], names: Sequence[str]) -> bool:
    """Whether each of these layers, as this lock settled it, pins what the one run gives it."""
    def versions(pins: Sequence[Pin]) -> dict[str, str]:
        return {canonical(pin.name): pin.version for pin in pins}

    return all(versions(settled[name]) == versions(first.pins(graph, [name])[name]) for name in names)


def _solved(graph: LayerGraph, name: str, pins: list[Pin], result: Settled, settled: dict[str, list[Pin]],
            kept_at: dict[str, str]) -> None:
    """Record a layer's pins as this run's: the rounds above keep them, and name them in a conflict."""
    result.pins[name] = settled[name] = pins
    lock_name = display(graph.layers[name].lock, graph.root)
    for pin in pins:
        kept_at.setdefault(canonical(pin.name), f"{lock_name} (as locked in this run)")


def _still_holds(
    graph: LayerGraph, name: str, existing: Mapping[str, LockFile], settled: Mapping[str, list[Pin]], options: str
) -> bool:
    """Whether a stale layer's lock is still what solving it alone would give, without solving it.

    So when its own files and the options are as its lock recorded (only a layer below changed), its
    lock is intact, and each package the layers below now pin it pins at that version or not at all:
    its pins and theirs are then one consistent and complete set for its inputs, and pip-compile,
    which keeps existing pins that fit, would return exactly that. One pip-compile run fewer.
    """
    lock = existing.get(name)
    if lock is None or not lock.inputs or not lock.body_is_intact():
        return False
    layer = graph.layers[name]
    digests = graph.input_digests(name, options)
    keys = [input_key(path, graph.root) for path in (layer.source, *layer.extra_inputs)] + ["(options)"]
    if any(lock.inputs.get(key) != digests.get(key) for key in keys):
        return False
    below = {canonical(pin.name): pin.version for other in graph.depends_on(name) for pin in settled.get(other, ())}
    return all(lock.pins[key].version == version for key, version in below.items() if key in lock.pins)


def _announce(members: Sequence[str], group: Sequence[str], layers: Sequence[str], settled: Sequence[str],
              log: Log) -> None:
    if settled:
        log(f"resolving {', '.join(members)} with pip-compile, keeping the pins of {', '.join(settled)}")
    elif len(members) == len(group):
        log(f"resolving {layers[0]} with pip-compile" if len(layers) == 1
            else f"resolving {len(layers)} layers together with pip-compile")
    else:
        log(f"resolving {', '.join(members)} with pip-compile, on its own inputs (the layers above it come next)")


def _lower_conflict(
    config: Config,
    graph: LayerGraph,
    group: Sequence[str],
    failed: joint.Outcome,
    settled: Mapping[str, list[Pin]],
    kept_at: Mapping[str, str],
    wished: Mapping[str, Pin],
    env: Mapping[str, str] | None,
    log: Log,
) -> LockError:
    """An upper layer asks for what a lower lock does not hold: say which lines, and what would move.

    One joint run of the whole group (what --move-lower does) tells a real conflict between the
    inputs (no lock can hold both: that is the error) from one only moving a lower layer can solve.
    """
    from deploy.lock.pipsays import conflict_lines
    conflict = conflict_lines(failed.output, graph, kept_at) or [joint.explain(failed, graph, kept_at)]
    log("the lower layers' pins cannot satisfy the layers above them; finding what would have to move")
    probe = joint.run(config, graph, joint.Run(graph.closure(group), list(wished.values())), env=env, log=log)
    if probe.universe is None:
        return joint.fail(probe, graph)
    moves: list[str] = []
    below = {canonical(pin.name) for pins in settled.values() for pin in pins}
    for name, before in settled.items():
        lock_name = display(graph.layers[name].lock, graph.root)
        after = {canonical(pin.name): pin for pin in select(graph, name, probe.universe)}
        for pin in before:
            key = canonical(pin.name)
            if key in after and after[key].version != pin.version:
                reason = _needed_by(graph, group, name, key, pin.version, probe.universe, below)
                moves.append(f"{lock_name}: {clip(key)} {clip(pin.version)} → {clip(after[key].version)} "
                             f"would be needed by {reason}")
    asking = sorted({_first_line(graph, group, line) for line in conflict} - {""})
    message = "\n  ".join([
        "the layers above cannot be locked with the pins the lower layers keep:", *conflict,
        "only moving a lower layer can satisfy both:", *(moves or ["(pip-compile found no version to move to)"]),
    ])
    return LockError(message, fix=(f"change {', '.join(asking) or 'the upper layer'} to agree with the lower locks, or "
                                   f"move them (every change is printed) with: nox -s lock -- {MOVE_LOWER}"))


def _needed_by(
    graph: LayerGraph, group: Sequence[str], lower: str, key: str, version: str, universe: Mapping[str, Pin],
    below: set[str],
) -> str:
    """The upper layer's line that excludes the kept version, else the packages that need the move:
    those the layers above bring (`below`: every package the kept layers already had)."""
    line = preferences.excluding(graph, [name for name in group if lower in graph.depends_on(name)], key, version)
    if line is not None:
        return f"{line.where(graph.root)} '{clip(line.text)}'"
    parents = [reason for reason in universe[key].via if not reason.startswith("-")]
    parents = [parent for parent in parents if canonical(parent) not in below] or parents
    shown = [f"{clip(parent)} {clip(universe[canonical(parent)].version)}" for parent in parents
             if canonical(parent) in universe]
    return ", ".join(shown) or "the layers above"


def _first_line(graph: LayerGraph, group: Sequence[str], conflict: str) -> str:
    """The `.in` file an explained conflict line names first (`requirements/dev.in`), or ''."""
    for name in group:
        shown = display(graph.layers[name].source, graph.root)
        if f"({shown}:" in conflict or f", {shown}:" in conflict:
            return shown
    return ""
