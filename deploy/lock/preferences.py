"""After the first lock of an adopted project: which of today's versions it kept, and why not the rest.

init seeds the top layer's lock with the versions the project ran (a pip freeze file, poetry.lock,
uv.lock); pip-compile keeps each where the layers allow. A version that moved is named with the
reason found: a layer line that excludes it, the packages that pulled it in, or the index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from deploy.lock.layers import LayerGraph
from deploy.lock.lockfile import LockFile, Pin
from deploy.lock.reqfile import Line, clip, display, requirement_name


def seeded(locks: Mapping[str, LockFile]) -> dict[str, LockFile]:
    """Locks that `nox -s lock` never wrote (no header): their versions are preferences, nothing more."""
    return {name: lock for name, lock in locks.items() if not lock.inputs and lock.content_digest is None}


def report(graph: LayerGraph, seeds: Mapping[str, LockFile], universe: Mapping[str, Pin]) -> list[str]:
    lines: list[str] = []
    for lock in seeds.values():
        moved: list[str] = []
        for key, before in sorted(lock.pins.items()):
            after = universe.get(key)
            if after is not None and after.version == before.version:
                continue
            old = f"{clip(key)} {clip(before.version)}"
            if after is None:
                moved.append(f"{old}: not locked, as no layer requires it (add it to a layer if the app imports it)")
            else:
                moved.append(f"{old} → {clip(after.version)}: {_why(graph, key, before.version, after)}")
        kept = len(lock.pins) - len(moved)
        lines.append(f"{display(lock.path, graph.root)}: kept {kept} of the {len(lock.pins)} versions the project "
                     f"ran before adopting pinship" + (": every one" if not moved else "; could not keep:"))
        lines += [f"  {line}" for line in moved]
    return lines


def excluding(graph: LayerGraph, layers: Iterable[str], key: str, version: str) -> Line | None:
    """The first requirement line of `layers` that names `key` and excludes `version`, if any."""
    from packaging.requirements import InvalidRequirement, Requirement  # only when a move is explained

    for name in layers:
        for line in graph.layers[name].requirements:
            if requirement_name(line.text) != key:
                continue
            try:
                specifier = Requirement(line.text.split(" --")[0]).specifier
            except InvalidRequirement:
                continue
            if not specifier.contains(version, prereleases=True):
                return line
    return None


def _why(graph: LayerGraph, key: str, version: str, after: Pin) -> str:
    line = excluding(graph, graph.order, key, version)
    if line is not None:
        return f"{line.where(graph.root)} asks for '{clip(line.text)}'"
    parents = [reason for reason in after.via if not reason.startswith("-")]
    if parents:
        return (f"required by {clip(', '.join(parents))}, whose locked version asks for another, or the index "
                f"offers no file of {clip(version)} for this machine")
    return f"no layer line excludes {clip(version)}: the index offers no file of it that this machine can install"
