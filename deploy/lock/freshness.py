"""Whether each layer's lock is up to date: its header's input digests against the files of today.

verify and lock both ask this, and it needs no resolver: the options every solve passes to
pip-compile are part of each lock's digested inputs, so changing one makes every lock stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from deploy.config import Config
from deploy.lock.layers import LayerGraph
from deploy.lock.lockfile import LockFile, parse
from deploy.lock.reqfile import clip, display

COMPILE_OPTIONS = (
    "--generate-hashes",
    "--strip-extras",
    "--allow-unsafe",
    "--no-emit-index-url",
    "--no-emit-find-links",
    "--no-emit-trusted-host",
    "--no-emit-options",
    "--resolver=backtracking",
    # pip-compile would otherwise read [tool.pip-tools] from a pyproject.toml or .pip-tools.toml next
    # to its inputs: settings that are not among the digested inputs, so verify could not see them.
    "--no-config",
)


def options_key(config: Config) -> str:
    return " ".join((*COMPILE_OPTIONS, *config.compile_options))


def read_locks(graph: LayerGraph) -> dict[str, LockFile]:
    """Every layer's lock file that exists, parsed once for all the checks that need it."""
    # Anything at the lock's path is read (and refused if it is not a regular file): a FIFO taken
    # for "missing" would have `lock` block forever writing into it.
    return {
        name: parse(graph.layers[name].lock, graph.root) for name in graph.order if _present(graph.layers[name].lock)
    }


def _present(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def stale_layers(config: Config, graph: LayerGraph, locks: Mapping[str, LockFile]) -> dict[str, list[str]]:
    """Why each layer needs compiling, given `read_locks(graph)`; a layer missing from the result is fresh."""
    stale: dict[str, list[str]] = {}
    options = options_key(config)
    for name in graph.order:
        layer = graph.layers[name]
        lock_name = display(layer.lock, config.root)
        recorded = locks.get(name)
        if recorded is None:
            stale[name] = [f"{lock_name} is missing"]
            continue
        reasons = [
            f"{lock_name} is out of date: {changed} changed since it was locked"
            for changed in _changed_inputs(recorded.inputs, graph.input_digests(name, options))
        ]
        if not recorded.body_is_intact():
            reasons.append(f"{lock_name} was edited by hand (its content no longer matches its header)")
        if reasons:
            stale[name] = reasons
    return stale


def _changed_inputs(recorded: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    changed = [
        "the compile options (pip-compile flags, [tool.deploy] compile-options)" if name == "(options)" else name
        for name, value in current.items()
        if recorded.get(name) != value
    ]
    # Names read from a lock's header are the lock's text: shown clipped like any quoted line.
    changed += [f"{clip(name)} (no longer an input)" for name in recorded if name not in current]
    if not recorded:
        return ["its header (no input digests: not written by nox -s lock)"]
    return changed


