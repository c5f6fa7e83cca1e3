"""`nox -s lock` and `nox -s upgrade`: each group of layers solved with pip-compile, then written.

Layers linked by `-r`/`-c` form a group whose locks agree (a package has one version and the same
hashes in every layer of it); a standalone layer is a group of its own. In a group, the stale layers
are solved in rounds that keep every fresh lower layer as locked (lock/rounds.py: an upper layer never
moves a lower one unless `--move-lower` is given); an upgrade moves the packages asked for and what
they need (lock/upgrade.py). Each pip-compile run solves the union of its layers at once (lock/joint.py)
and each layer's lock is the part of that universe its own requirements reach, so the deploy layer
is a subset of any layer that includes it. Nothing is written unless every group solved.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from deploy.config import Config
from deploy.errors import LockError
from deploy.lock import compiler, joint, preferences, resolver, rounds
from deploy.lock.freshness import options_key, read_locks, stale_layers
from deploy.lock.layers import LayerGraph
from deploy.lock.layers import load as load_layers
from deploy.lock.lockfile import REGENERATE, LockFile, Pin, render
from deploy.lock.reqfile import canonical, clip, display, requirement_name
from deploy.lock.universe import describe_changes, select
from deploy.lock.upgrade import Target, in_group, targets, upgrade_group
from deploy.render import plural

if TYPE_CHECKING:
    from deploy.lock import pylocks

Log = Callable[[str], None]


def honour_ctrl_c() -> None:
    """Make SIGINT raise KeyboardInterrupt even when this process was started with it ignored.

    A script's `cmd &` starts the command with SIGINT ignored, and Python then leaves it so: a
    `kill -INT` would do nothing, and `lock` would run on to pip's timeouts. Stopping is what the
    user asked for: the signal is honoured, and the entry point turns KeyboardInterrupt into exit 130.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass
class LockResult:
    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    changes: dict[str, list[str]] = field(default_factory=dict)
    rewritten: list[str] = field(default_factory=list)  # layers whose .txt was written (pins changed or not)
    solved: bool = False
    moved_lower: list[str] = field(default_factory=list)  # lower layers --move-lower let move


@dataclass
class _Solved:
    """What the groups' solves gave: each solved layer's pins, and every pin seen, for the checks."""

    pins: dict[str, list[Pin]] = field(default_factory=dict)
    universe: dict[str, Pin] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    moved_lower: list[str] = field(default_factory=list)


def lock(
    config: Config,
    *,
    upgrade: Sequence[str] = (),
    upgrade_all: bool = False,
    move_lower: bool = False,
    env: Mapping[str, str] | None = None,
    log: Log = print,
) -> LockResult:
    """Bring every layer's lock up to date; resolve only when something is stale or asked for."""
    with contextlib.ExitStack() as stack:  # ends the pylock step's read-ahead, however the lock ends
        return _lock(config, upgrade, upgrade_all, move_lower, env, log, stack)


def _lock(
    config: Config, upgrade: Sequence[str], upgrade_all: bool, move_lower: bool, env: Mapping[str, str] | None,
    log: Log, stack: contextlib.ExitStack,
) -> LockResult:
    log = _said_once(log, config.resolver)
    graph = load_layers(config.root, config.requirements, config.inputs_outside)
    existing = read_locks(graph)
    wanted = _check_upgrade_names(upgrade, existing, graph)
    stale = stale_layers(config, graph, existing)
    result = LockResult()
    if not stale and not wanted and not upgrade_all:
        log(f"all {len(graph.order)} layers are up to date: {', '.join(graph.order)}")
        result.unchanged = [graph.layers[name].lock for name in graph.order]
        from deploy.lock import pylocks  # not before a resolver starts: see _open_ahead

        _write_all(config, _pylock_files(pylocks.plan(config, graph, _as_locked(existing), env=env, log=log)),
                   result, log)
        if config.resolver == resolver.UV:
            by_pip_tools = [name for name, lock in existing.items() if f"`{REGENERATE}` (pip-tools " in lock.text]
            if by_pip_tools:
                log(f"note: {', '.join(by_pip_tools)} {'was' if len(by_pip_tools) == 1 else 'were'} solved by "
                    'pip-tools; resolver = "uv" solves the next lock that changes a layer')
            _uv_locked({name: list(lock.pins) for name, lock in existing.items()}, log)
            try:  # the next lock that changes a layer needs it: said now, not then
                resolver.find_uv(path=(os.environ if env is None else env).get("PATH"))
            except LockError as exc:
                log(f"warning: {str(exc).splitlines()[0]}: the next lock that changes a layer needs it")
        return result
    seeds = {} if upgrade_all else preferences.seeded(existing)
    for name, reasons in stale.items():
        if name in seeds:  # written by init from the project's own pins: a preference, not a stale lock
            reasons = [f"{display(seeds[name].path, config.root)}: {len(seeds[name].pins)} versions from before "
                       "adopting pinship, kept where the layers allow"]
        for reason in reasons:
            log(reason)
    pages = joint.Pages()  # every index page pip read: the pylock step need not fetch it again
    if config.pylock and config.resolver == resolver.UV:  # uv's runs read pages for uv alone
        pages.open_ahead = functools.partial(_open_ahead, config, graph, existing, env, pages, stack)
    solved = _solve_groups(config, graph, existing, list(stale), wanted, upgrade_all, move_lower, env, log, pages)
    result.solved = bool(solved.pins)
    result.moved_lower = solved.moved_lower
    left_out = _check_every_line_locked(graph, list(solved.pins), solved.universe, log)
    for line in preferences.report(graph, seeds, solved.universe):
        log(line)
    header = _header(config.resolver, left_out, env)
    options = options_key(config)
    texts: dict[str, tuple[str, int]] = {}
    for name in graph.order:
        layer = graph.layers[name]
        if name not in solved.pins:
            result.changes[name] = []
            result.unchanged.append(layer.lock)
            continue
        pins = solved.pins[name]
        text = render(header, graph.input_digests(name, options), pins)
        result.changes[name] = describe_changes(existing.get(name), pins, solved.notes)
        if name in existing and existing[name].text == text:
            result.unchanged.append(layer.lock)
        else:
            texts[name] = (text, len(pins))
            result.rewritten.append(name)
    # Each layer's pylock file follows from its settled .txt (lock/pylocks.py): found before anything is written.
    settled = _as_locked(existing)
    settled.update({name: (text, solved.pins[name]) for name, (text, _) in texts.items()})
    from deploy.lock import pylocks  # loaded while uv solved, if a uv run read pages ahead

    planned = pylocks.plan(config, graph, settled, env=env, log=log, pages=pages, ahead=pages.ahead)
    files = [(graph.layers[name].lock, text, plural(count, "pin")) for name, (text, count) in texts.items()]
    _write_all(config, files + _pylock_files(planned), result, log)
    if move_lower:
        _log_moves(graph, result, log)
    if config.resolver == resolver.UV:
        _uv_locked({name: [canonical(pin.name) for pin in solved.pins[name]] if name in solved.pins
                    else list(existing[name].pins) if name in existing else [] for name in graph.order}, log)
    return result


def _open_ahead(config: Config, graph: LayerGraph, existing: Mapping[str, LockFile], env: Mapping[str, str] | None,
                pages: joint.Pages, stack: contextlib.ExitStack) -> None:
    """pages.ahead, made once the first uv run has started (joint.py), and ended however the lock ends."""
    from deploy.lock import pylocks

    if pages.ahead is None:
        pages.ahead = stack.enter_context(pylocks.ReadAhead(config, graph, env))
        pages.ahead.expect(graph, existing)


def _uv_locked(names: Mapping[str, Sequence[str]], log: Log) -> None:
    """With resolver = "uv", a warning when no lock holds uv: a fresh clone's onboard would not install it,
    and its first lock would stop asking for it."""
    if not any("uv" in pinned for pinned in names.values()):
        log('warning: resolver = "uv", but no layer\'s lock holds uv, so a fresh clone will not have it; lock it '
            "for every clone: nox -s add -- --layer dev uv")


def _solve_groups(
    config: Config, graph: LayerGraph, existing: Mapping[str, LockFile], stale: Sequence[str],
    wanted: Sequence[Target], upgrade_all: bool, move_lower: bool, env: Mapping[str, str] | None, log: Log,
    pages: joint.Pages,
) -> _Solved:
    """Solve each group of layers on its own: a standalone layer's versions never move another group's."""
    current: dict[str, list[Pin]] = {name: list(lock.pins.values()) for name, lock in existing.items()}
    solved = _Solved()
    for group in graph.groups():
        if upgrade_all:
            log(f"resolving {len(group)} layers together with pip-compile, upgrading every package")
            outcome = joint.run(config, graph, joint.Run(group, fresh=True), env=env, log=log, pages=pages)
            if outcome.universe is None:
                raise joint.fail(outcome, graph)
            solved.universe.update(outcome.universe)
            solved.pins.update({name: select(graph, name, outcome.universe) for name in group})
            continue
        group_stale = [name for name in group if name in stale]
        if group_stale:
            settled = rounds.settle(config, graph, group, current, existing, group_stale, move_lower=move_lower,
                                    unpreferred=[target.name for target in wanted], env=env, log=log, pages=pages)
            solved.pins.update(settled.pins)
            current.update(settled.pins)
            solved.universe.update(settled.universe)
            if move_lower:
                solved.moved_lower += [name for name in rounds.lower_layers(graph, group) if name not in group_stale]
        if upgrading := in_group(graph, group, current, wanted):
            upgraded = upgrade_group(config, graph, group, current, upgrading, env=env, log=log, pages=pages)
            solved.pins.update(upgraded.pins)
            current.update(upgraded.pins)
            solved.universe.update(upgraded.universe)
            solved.notes.update(upgraded.notes)
    return solved


def _log_moves(graph: LayerGraph, result: LockResult, log: Log) -> None:
    """With --move-lower, every change of every layer, a lower layer's marked as such."""
    for name in graph.order:
        if not result.changes.get(name):
            continue
        lower = " (a lower layer: moved, as --move-lower allows)" if name in result.moved_lower else ""
        log(f"{display(graph.layers[name].lock, graph.root)}{lower}:")
        for line in result.changes[name]:
            log(f"  {line}")


def _write_all(config: Config, files: Sequence[tuple[Path, str, str]], result: LockResult, log: Log) -> None:
    """All the new locks and pylock files (path, text, what it holds), or none: Ctrl-C waits until the
    last one is in place."""
    with _ctrl_c_deferred():
        for path, text, _ in files:
            _write(path, text)
            result.written.append(path)
    for path, _, holds in files:
        log(f"wrote {display(path, config.root)} ({holds})")


def _as_locked(existing: Mapping[str, LockFile]) -> dict[str, tuple[str, Sequence[Pin]]]:
    """Each existing lock's text and pins, as pylocks.plan takes a layer's settled `.txt`."""
    return {name: (lock.text, list(lock.pins.values())) for name, lock in existing.items()}


def _pylock_files(planned: Sequence[pylocks.PylockFile]) -> list[tuple[Path, str, str]]:
    return [(file.path, file.text, plural(file.count, "package")) for file in planned]


@contextlib.contextmanager
def _ctrl_c_deferred() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _check_every_line_locked(graph: LayerGraph, layers: Sequence[str], universe: Mapping[str, Pin],
                             log: Log) -> list[str]:
    """Every requirement line reaches a pin, or the user hears why: nothing is dropped silently.

    pip-compile leaves out a requirement whose marker excludes this machine (said here, since the
    hosts may differ, and returned for the locks' headers), and pins a `name @ URL` in a form a
    hash-checked layer lock cannot hold.
    """
    left_out: list[str] = []
    for name in layers:
        for line in graph.layers[name].requirements:
            wanted = requirement_name(line.text)
            if wanted is None or wanted in universe:
                continue
            from packaging.requirements import Requirement  # a missing pin is rare: verify never pays for it

            requirement = Requirement(line.text.split(" -")[0])
            where = line.where(graph.root)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                log(f"{where}: {clip(wanted)} is not locked: its marker ({clip(str(requirement.marker))}) excludes "
                    "this machine, and a lock holds what this machine resolves")
                left_out.append(clip(line.text))
                continue
            raise LockError(
                f"{where}: '{clip(line.text)}' was asked for, but pip-compile locked no version of {clip(wanted)}",
                fix="write it as a name with a version specifier from the index (a direct URL cannot be pinned "
                "with ==), then run: nox -s lock",
            )
    return left_out


# What each resolver run says about this machine's settings and the index is the same for every run of
# one lock (a lock makes one run per level of the graph): said once.
_SAID_ONCE = ("this machine's pip settings", "this machine's uv and pip settings", "index: ")


def _said_once(log: Log, resolver: str = "pip-tools") -> Log:
    """`log`, saying the lines above once per lock, and naming the resolver that really runs."""
    said: set[str] = set()

    def once(line: str) -> None:
        if resolver == "uv" and line.startswith("resolving "):
            line = line.replace(" with pip-compile", " with uv pip compile", 1)
        if line.startswith(_SAID_ONCE):
            if line in said:
                return
            said.add(line)
        log(line)

    return once


def _write(path: Path, text: str) -> None:
    """Replace a lock whole (written beside it, then renamed): never half a file, never through a link."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _header(used: str, left_out: Sequence[str], env: Mapping[str, str] | None) -> list[str]:
    version = resolver.uv_version(env) if used == resolver.UV else resolver.installed_version("pip-tools")
    tool = f"{'uv' if used == resolver.UV else 'pip-tools'} {version}"
    return [
        f"This file is generated by `{REGENERATE}` ({tool}, pinship {resolver.installed_version('pinship')}).",
        "Do not edit it by hand. To regenerate it, run:",
        "",
        f"    {REGENERATE}",
        "",
        # The markers of another platform or Python are not in a lock: the header says which one it is.
        compiler.solve_environment(left_out),
    ]




def _check_upgrade_names(names: Sequence[str], existing: Mapping[str, LockFile], graph: LayerGraph) -> list[Target]:
    known = {pin_name for lock in existing.values() for pin_name in lock.pins}
    for layer in graph.layers.values():
        known.update(filter(None, (requirement_name(line.text) for line in layer.requirements)))
    return targets(names, known, graph)
