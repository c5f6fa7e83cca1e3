"""all.txt, the one file of the joint solve: the existing pins go in as preferences, every layer's pins come out.

pip-compile reads the pins already locked from all.txt (as `--output-file`, which makes them its
preferences) and writes back the universe: every pin of every layer, with its hashes and its `# via`
reasons. A layer's lock is then the part of that universe its own requirements reach.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from deploy.lock.layers import LayerGraph, input_key
from deploy.lock.lockfile import LockFile, Pin
from deploy.lock.reqfile import canonical, clip, display, requirement_name


def union(locks: Iterable[LockFile]) -> list[Pin]:
    """Every existing pin once; only locks whose body is as `lock` wrote it lend their hashes.

    pip-compile reuses a preferred pin's hashes as they are (pip only checks that one of them matches
    the file), so a hash slipped into a lock by hand would come back out under a fresh header that
    verifies, and a wrong one would make pip-compile die of a HashMismatch. A hand-edited lock's
    versions are still a fine preference: its hashes are fetched afresh.
    """
    intact: list[LockFile] = []
    edited: list[LockFile] = []
    for lock in locks:
        (intact if lock.body_is_intact() else edited).append(lock)
    merged: dict[str, Pin] = {}
    for lock in intact:
        for name, pin in lock.pins.items():
            merged.setdefault(name, pin)
    for lock in edited:
        for name, pin in lock.pins.items():
            merged.setdefault(name, Pin(pin.name, pin.version, ()))
    return list(merged.values())


def pin_lines(pins: Sequence[Pin]) -> list[str]:
    return [" ".join([pin.requirement(), *(f"--hash={h}" for h in pin.hashes)]) for pin in pins]


def read_universe(path: Path) -> dict[str, Pin]:
    pins: dict[str, Pin] = {}
    current: list[str] = []

    def flush() -> None:
        if current:
            pin = _pin_from(" ".join(current))
            if pin is not None:
                pins[canonical(pin.name)] = pin
            current.clear()

    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw.strip() or (raw.startswith("#") and not current):
            continue
        if not raw.startswith((" ", "\t")):
            flush()
        current.append(raw.strip().rstrip("\\"))
    flush()
    return pins


def _pin_from(text: str) -> Pin | None:
    requirement, _, comment = text.partition("#")
    parts = requirement.split()
    if not parts or "==" not in parts[0]:
        return None
    name, version = parts[0].split(";")[0].split("==", 1)
    hashes = tuple(part.split("=", 1)[1] for part in parts[1:] if part.startswith("--hash="))
    via: tuple[str, ...] = ()
    comment = comment.strip()
    if comment.startswith("via"):
        via = tuple(item.strip() for item in comment[3:].split(",") if item.strip())
    return Pin(name, version, hashes, via)


def select(graph: LayerGraph, name: str, universe: Mapping[str, Pin]) -> list[Pin]:
    """The pins one layer needs: what its own requirements reach in the dependency graph.

    Each pin's `via` names the layer files that ask for it, the packages that need it, and the
    constraint files (`-c requirements/common_constraints.txt`) of this layer that cap it, as
    pip-compile shows them; the constraints of the solve itself (the settled layers' pins) are not
    the user's files and are left out.
    """
    children = dependencies(universe)
    direct: dict[str, list[str]] = {}
    constraint_files: dict[str, str] = {}
    for member in graph.included(name):
        layer = graph.layers[member]
        source = display(layer.source, graph.root)
        for line in layer.requirements:
            req = requirement_name(line.text)
            if req is not None:
                direct.setdefault(req, []).append(f"-r {source}")
        for path in layer.external_constraints:
            constraint_files[str(path)] = f"-c {input_key(path, graph.root)}"
    reached = reach(direct, children, universe)
    selected = []
    for key in sorted(reached):
        pin = universe[key]
        parents = sorted(canonical(r) for r in pin.via if not r.startswith("-") and canonical(r) in reached)
        capped = sorted({constraint_files[r[3:].strip()] for r in pin.via
                         if r.startswith("-c ") and r[3:].strip() in constraint_files})
        selected.append(Pin(pin.name, pin.version, pin.hashes, tuple(capped + direct.get(key, []) + parents)))
    return selected


def dependencies(universe: Mapping[str, Pin]) -> dict[str, set[str]]:
    """Each package's dependencies in the solve, from the `via` of each pin."""
    children: dict[str, set[str]] = {}
    for child, pin in universe.items():
        for reason in pin.via:
            if not reason.startswith("-"):
                children.setdefault(canonical(reason), set()).add(child)
    return children


def reach(starts: Iterable[str], children: Mapping[str, set[str]], universe: Mapping[str, Pin]) -> set[str]:
    """The packages of `universe` that `starts` reach through `children` (dependencies())."""
    reached: set[str] = set()
    stack = [name for name in starts if name in universe]
    while stack:
        name = stack.pop()
        if name not in reached:
            reached.add(name)
            stack.extend(children.get(name, ()))
    return reached


def describe_changes(
    before: LockFile | None, after: Sequence[Pin], notes: Mapping[str, str] | None = None
) -> list[str]:
    """`django 4.2.1 → 4.2.7`, `+ sqlparse 0.4.4`, `- oldlib 1.0` for one layer; `notes` says why a
    package moved (`alpha 1.0 → 1.1 (needed by beta 1.1)`)."""
    why = {name: f" ({note})" for name, note in (notes or {}).items()}
    old_pins = dict(before.pins) if before else {}
    old = {name: pin.version for name, pin in old_pins.items()}
    new = {canonical(pin.name): pin.version for pin in after}
    hashes = {canonical(pin.name): set(pin.hashes) for pin in after}
    lines = []
    for name in sorted(old.keys() & new.keys()):
        if old[name] != new[name]:
            lines.append(f"{name} {old[name]} → {new[name]}{why.get(name, '')}")
        elif set(old_pins[name].hashes) != hashes[name]:
            # Same version, other files: the index changed them, which a reviewer should see.
            lines.append(f"{name} {new[name]}: other hashes")
    lines += [f"+ {name} {new[name]}{why.get(name, '')}" for name in sorted(new.keys() - old.keys())]
    lines += [f"- {name} {old[name]}" for name in sorted(old.keys() - new.keys())]
    # The old pins are a file's text (a hand edit can hold anything): shown like any quoted line.
    return [clip(line) for line in lines]
