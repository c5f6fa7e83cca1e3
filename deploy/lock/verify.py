"""`nox -s verify`: prove offline, from files alone, that the locks are fresh and consistent.

No resolver, no network, no pip import: only the layer files, the lock headers and hashing, so it
is cheap enough for a pre-commit hook and the first step of every deploy.
"""

from __future__ import annotations

import re
from pathlib import Path

from deploy.config import Config
from deploy.errors import DeployError, VerifyFailed
from deploy.lock import drift, groupdrift, pylock
from deploy.lock.freshness import read_locks, stale_layers
from deploy.lock.layers import LayerGraph
from deploy.lock.layers import load as load_layers
from deploy.lock.lockfile import REGENERATE, LockFile
from deploy.lock.options import hide_password
from deploy.lock.reqfile import clip, display, requirement_name
from deploy.render import plural

FIX = f"run: {REGENERATE}"
_MACHINE_SPECIFIC = [
    (re.compile(r"file://"), "a file:// URL"),
    (re.compile(r"^\s*(--index-url|-i|--extra-index-url|--find-links|-f|--trusted-host)\b"), "an index option"),
    (re.compile(r"://[^/\s:@]+:[^/\s@]+@"), "a URL with credentials"),
    (re.compile(r"(^|\s)(/|[A-Za-z]:\\)(home|root|tmp|opt|Users|var|srv)\b"), "a local path"),
]


def deploy_layer(config: Config, graph: LayerGraph) -> str | None:
    if config.deploy_layer:
        return config.deploy_layer if config.deploy_layer in graph.layers else None
    for candidate in ("prod", "base"):
        if candidate in graph.layers:
            return candidate
    return None


def check(config: Config) -> list[str]:
    """Every problem with the locks, one line each naming the file (and line) and the fix."""
    try:
        graph = load_layers(config.root, config.requirements, config.inputs_outside)
        locks = read_locks(graph)
    except DeployError as exc:
        # An unreadable input or lock stops the check there: what follows would be about a guess.
        return [str(exc)]
    problems: list[str] = []
    stale = stale_layers(config, graph, locks)
    for reasons in stale.values():
        problems += [f"{reason}; {FIX}" for reason in reasons]
    for name, lock in locks.items():
        problems += _line_problems(config.root, lock, graph.lock_options(name))
    problems += _cross_layer(config, graph, locks)
    problems += _unpinned(config, graph, {name: lock for name, lock in locks.items() if name not in stale})
    if "base" in graph.layers:  # [project] dependencies is the one source of the base layer
        problems += drift.check(config.root, graph.layers["base"].requirements)
    problems += groupdrift.check(config.root, graph)  # each extra's and group's lines are on their layer
    if config.pylock and not problems:
        problems += _pylock_problems(config, graph, locks)
    return problems


def verify(config: Config) -> int:
    """Raise VerifyFailed listing every problem; return how many layers were checked."""
    problems = check(config)
    if problems:
        raise VerifyFailed(problems)
    return len(list(config.requirements.glob("*.in")))


def unchecked(config: Config) -> str | None:
    """One line for the pylock files verify leaves alone because `[tool.deploy] pylock = false`; None
    when there are none. Not a failure (the project turned them off), but never silent either: pip or
    uv given one installs what it says, however far the `.txt` locks have moved since."""
    if config.pylock:
        return None
    found = len(list(config.requirements.glob("pylock.*.toml")))
    if not found:
        return None
    return (f"{display(config.requirements, config.root)}/pylock.*.toml ({plural(found, 'file')}) not checked, as "
            f"[tool.deploy] pylock = false; delete them, or set pylock = true and {FIX}")


def _pylock_problems(config: Config, graph: LayerGraph, locks: dict[str, LockFile]) -> list[str]:
    """Each layer's `pylock.<layer>.toml` is there and says what its `.txt` lock says (lock/pylock.py).

    Checked once the `.txt` locks are clean: a pylock file is derived from its `.txt`, so against a
    stale one it would only repeat the problem, and the fix for both is the same lock.
    """
    problems: list[str] = []
    for name in graph.order:
        lock = locks[name]
        python = pylock.requires_python(lock.text)
        problems += pylock.check(pylock.path_for(lock.path), lock.pins, config.root, python=python)
    return problems


def _line_problems(root: Path, lock: LockFile, options: list[str]) -> list[str]:
    """The lock's own lines: pins pip can check, nothing tied to one machine, and exactly the option
    lines its inputs give it (a local `--find-links`, relative to the lock's folder)."""
    name = display(lock.path, root)
    problems = [f"{name}:{number}: {what}; {FIX}" for number, what in lock.problems]
    for number, raw in enumerate(lock.text.splitlines(), start=1):
        if raw.strip() in options:
            continue
        what = next((what for pattern, what in _MACHINE_SPECIFIC if pattern.search(raw)), None)
        if what is not None:
            problems.append(f"{name}:{number}: holds {what}, which is specific to one machine; {FIX}")
    for number, text in lock.options:
        if text not in options and not any(pattern.search(text) for pattern, _ in _MACHINE_SPECIFIC):
            shown = clip(hide_password(text))
            problems.append(f"{name}:{number}: option line '{shown}' is not one its inputs give it; {FIX}")
    carried = {text for _, text in lock.options}
    lacking = [text for text in options if text not in carried]
    problems += [f"{name}: lacks the line '{clip(text)}' that its inputs give it; {FIX}" for text in lacking]
    return problems


def _cross_layer(config: Config, graph: LayerGraph, locks: dict[str, LockFile]) -> list[str]:
    problems: list[str] = []
    # Pins must agree only where layers are solved together: a standalone docs.in is its own lock.
    group_of = {name: index for index, group in enumerate(graph.groups()) for name in group}
    first: dict[tuple[int, str], tuple[str, LockFile]] = {}
    for layer_name, lock in locks.items():
        for pkg, pin in lock.pins.items():
            key = (group_of[layer_name], pkg)
            if key not in first:
                first[key] = (layer_name, lock)
                continue
            other_layer, other = first[key]
            theirs = other.pins[pkg]
            if theirs.version == pin.version and set(theirs.hashes) == set(pin.hashes):
                continue
            where = f"{display(lock.path, config.root)}:{pin.line}"
            name = clip(pkg)
            if theirs.version != pin.version:
                problems.append(
                    f"{where}: {name}=={clip(pin.version)} but {other_layer}.txt pins {name}=={clip(theirs.version)}; "
                    f"{FIX}"
                )
            else:
                problems.append(f"{where}: {name} has other hashes than in {other_layer}.txt; {FIX}")
    shipped = deploy_layer(config, graph)
    if config.deploy_layer and shipped is None:
        # Silently falling back would ship nothing (or the wrong layer) and skip the check below.
        missing = display(graph.folder / f"{config.deploy_layer}.in", config.root)
        problems.append(
            f"pyproject.toml: [tool.deploy] deploy-layer = \"{config.deploy_layer}\" but {missing} does not "
            f"exist; set deploy-layer to one of: {', '.join(graph.order)}"
        )
    tested = config.test_layer or "test"
    if config.test_layer and config.test_layer not in graph.layers:
        missing = display(graph.folder / f"{config.test_layer}.in", config.root)
        problems.append(
            f"pyproject.toml: [tool.deploy] test-layer = \"{config.test_layer}\" but {missing} does not "
            f"exist; set test-layer to one of: {', '.join(graph.order)}"
        )
    if shipped and tested in locks and shipped in locks and shipped != tested:
        test_lock = locks[tested]
        for pkg, pin in locks[shipped].pins.items():
            if pkg not in test_lock.pins:
                problems.append(
                    f"{display(test_lock.path, config.root)}: {clip(pkg)}=={clip(pin.version)} ships in {shipped}.txt "
                    f"but is not in the test layer, so CI does not test it; add '-r {shipped}.in' to "
                    f"{tested}.in and {FIX}"
                )
    return problems


def _unpinned(config: Config, graph: LayerGraph, locks: dict[str, LockFile]) -> list[str]:
    """Each requirement line a fresh layer asks for (itself or through -r) is pinned in its lock.

    Digests prove a lock was made from these inputs, not that nothing was lost on the way: a lock
    written before a reading bug was fixed (a byte-order mark once hid a layer's first package)
    verifies by its digests and would ship without that package.
    """
    problems: list[str] = []
    for name, lock in locks.items():
        for member in graph.included(name):
            for line in graph.layers[member].requirements:
                wanted = requirement_name(line.text)
                if wanted is None or wanted in lock.pins or not _applies_here(line.text):
                    continue
                problems.append(
                    f"{display(lock.path, config.root)}: {clip(wanted)} is not pinned, though "
                    f"{line.where(config.root)} asks for it; {FIX}"
                )
    return problems


def _applies_here(text: str) -> bool:
    """Whether a requirement line's marker (if any) holds on this machine, as pip-compile evaluates it."""
    from packaging.requirements import InvalidRequirement, Requirement  # only for a missing pin: rare

    try:
        marker = Requirement(text.split(" -")[0]).marker
    except InvalidRequirement:
        return True
    return marker is None or marker.evaluate({"extra": ""})
