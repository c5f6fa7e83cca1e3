"""The layer graph: `requirements/NAME.in` files ordered by their own `-r`/`-c` references.

Nothing here is hard-coded: the order, the inputs of each layer and which layer ships all come
from the files themselves (and `[tool.deploy]`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from deploy.errors import LayerError
from deploy.lock.lockfile import LockInputs
from deploy.lock.options import (
    FILE_OPTIONS,
    REQUIREMENT_OPTIONS,
    Option,
    check_agreement,
    lock_lines,
    no_variable,
    pip_line,
    read_options,
)
from deploy.lock.reqfile import (
    Line,
    Reference,
    clip,
    display,
    hides_reference,
    is_inside,
    is_remote,
    local_paths,
    local_target,
    logical_lines,
    parse_reference,
    read_text,
    requirement_problem,
    requirement_text,
)

ALLOW = "add its folder to [tool.deploy] allow-inputs-outside in pyproject.toml"


@dataclass
class Layer:
    """One `.in` file and what compiling it depends on."""

    name: str
    source: Path
    # Requirement lines this layer asks for itself, including those of non-layer files it `-r`s.
    requirements: list[Line] = field(default_factory=list)
    # Option lines (`--pre`, `--extra-index-url` …) as pip-compile reads them from a copy of the
    # layer in another folder: a relative --find-links resolved against its file's folder.
    options: list[Line] = field(default_factory=list)
    # The same options one by one, as the user wrote them.
    option_list: list[Option] = field(default_factory=list)
    # Layers this one includes (`-r x.in`) or is constrained by (`-c x.txt`/`-c x.in`).
    includes: set[str] = field(default_factory=set)
    constrained_by: set[str] = field(default_factory=set)
    # Non-layer files read while parsing (`-r common.in`, `-c ../constraints.txt`).
    extra_inputs: set[Path] = field(default_factory=set)
    external_constraints: list[Path] = field(default_factory=list)

    @property
    def lock(self) -> Path:
        return self.source.with_suffix(".txt")


@dataclass
class LayerGraph:
    """Every layer of a project, sorted so that a layer comes after everything it references."""

    root: Path
    folder: Path
    layers: dict[str, Layer]
    order: list[str]

    def depends_on(self, name: str) -> list[str]:
        """Every layer that `name` references, directly or not (not including itself)."""
        seen: set[str] = set()
        stack = [name]
        while stack:
            layer = self.layers[stack.pop()]
            for other in layer.includes | layer.constrained_by:
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        return [n for n in self.order if n in seen]

    def included(self, name: str) -> list[str]:
        """`name` and every layer whose requirements it takes in through `-r`, in order."""
        seen = {name}
        stack = [name]
        while stack:
            for other in self.layers[stack.pop()].includes:
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        return [n for n in self.order if n in seen]

    def closure(self, names: Sequence[str]) -> list[str]:
        """`names` and every layer whose requirements they take in through `-r`, in order."""
        wanted = {member for name in names for member in self.included(name)}
        return [n for n in self.order if n in wanted]

    def groups(self) -> list[list[str]]:
        """The connected groups of layers (linked by -r/-c either way), each in order.

        A layer that references no other and that none references is a group of its own: an
        independent lock. Pins must agree, and options be the same, only within a group.
        """
        linked: dict[str, set[str]] = {name: set() for name in self.order}
        for layer in self.layers.values():
            for other in layer.includes | layer.constrained_by:
                linked[layer.name].add(other)
                linked[other].add(layer.name)
        groups: list[list[str]] = []
        seen: set[str] = set()
        for name in self.order:
            if name in seen:
                continue
            found, stack = {name}, [name]
            while stack:
                for other in linked[stack.pop()] - found:
                    found.add(other)
                    stack.append(other)
            seen |= found
            groups.append([n for n in self.order if n in found])
        return groups

    def options_of(self, name: str) -> list[Option]:
        """The options pip reads for `name`: its own and those of every layer it `-r`s."""
        return [option for member in self.included(name) for option in self.layers[member].option_list]

    def lock_options(self, name: str) -> list[str]:
        """The option lines `name`'s lock carries (lock/options.py lock_lines: local find-links)."""
        return lock_lines(self.options_of(name), self.layers[name].lock.parent)

    def input_files(self, name: str) -> list[Path]:
        """The files whose content decides what `name` compiles to."""
        files: set[Path] = set()
        for other in [name, *self.depends_on(name)]:
            layer = self.layers[other]
            files.add(layer.source)
            files.update(layer.extra_inputs)
        return sorted(files, key=lambda p: display(p, self.root))

    def input_digests(self, name: str, options: str) -> LockInputs:
        """A short digest per input file, plus one for the compile options; with the option lines
        the lock carries (lock_options), so that render() writes them.

        What is digested is the requirements a file states (reqfile.requirement_text), not its
        bytes: a comment or a blank line changes no lock, so editing one must not make it stale.
        """
        digests = {input_key(path, self.root): digest(requirement_text(path, self.root).encode())
                   for path in self.input_files(name)}
        digests["(options)"] = digest(options.encode())
        return LockInputs(digests, self.lock_options(name))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def input_key(path: Path, root: Path) -> str:
    """How a lock's header names an input: relative to the project, even one allowed outside it.

    An absolute path would tie the lock to one machine's layout; `../shared/constraints.txt` holds
    wherever the checkouts sit side by side.
    """
    shown = display(path, root)
    if not Path(shown).is_absolute():
        return shown
    try:
        return Path(os.path.relpath(path, root.resolve())).as_posix()
    except ValueError:  # another drive on Windows: no relative form exists
        return shown


class _Scope:
    """Where lock inputs may be read from: the project, and the folders the project allows."""

    def __init__(self, root: Path, allowed: Sequence[Path] | None) -> None:
        self.root = root
        self.resolved_root = root.resolve()
        self._allowed = None if allowed is None else tuple(allowed)

    def check(self, path: Path, where: str, what: str) -> None:
        """Refuse a resolved `path` outside the project unless its folder is allowed."""
        if is_inside(path, (self.resolved_root,)) or is_inside(path, self.allowed()):
            return
        raise LayerError(
            f"{where}: {what} resolves to {clip(str(path))}, outside the project ({self.root}); lock inputs "
            "are read only from inside it",
            fix=f"move that file into the project, or {ALLOW}",
        )

    def allowed(self) -> tuple[Path, ...]:
        if self._allowed is None:
            # A caller that did not pass the allowed folders gets the project's own setting, read
            # only when an input does lie outside the project (config imports nothing from here).
            from deploy.config import load as load_config

            self._allowed = load_config(self.root).inputs_outside
        return self._allowed


def load(root: Path, folder: Path, allowed: Sequence[Path] | None = None) -> LayerGraph:
    """Read every `*.in` in `folder` and sort them; raise LayerError on a broken graph.

    Every file read (layers, and whatever they `-r`/`-c`, symlinks resolved) must lie inside `root` or
    one of the `allowed` folders (default: `[tool.deploy] allow-inputs-outside`): a lock's inputs
    are part of the project, and a line like `-c /proc/self/environ` must not feed a secret to
    pip-compile, whose errors quote what it read.
    """
    if not folder.is_dir():
        raise LayerError(
            f"{display(folder, root)}/ does not exist: there are no layers to lock",
            fix="python -m deploy init  (or set [tool.deploy] requirements in pyproject.toml)",
        )
    sources = sorted(folder.glob("*.in"))
    if not sources:
        raise LayerError(
            f"{display(folder, root)}/ has no *.in files",
            fix="create requirements/base.in, or run: python -m deploy init",
        )
    scope = _Scope(root, allowed)
    layers = {path.stem: Layer(path.stem, path.resolve()) for path in sources}
    for path in sources:
        scope.check(layers[path.stem].source, display(path, root), "this layer file")
    by_path = {layer.source: layer.name for layer in layers.values()}
    for layer in layers.values():
        _read(layer, layer.source, by_path, scope, set())
    order = _sort(layers, root)
    graph = LayerGraph(root, folder, layers, order)
    options = {name: graph.options_of(name) for name in order}
    check_agreement(graph.groups(), options, {name: layers[name].source for name in order}, root)
    return graph


def _read(layer: Layer, path: Path, by_path: dict[Path, str], scope: _Scope, stack: set[Path]) -> None:
    stack = stack | {path}
    root = scope.root
    for line in logical_lines(path, read_text(path, root)):
        ref = parse_reference(line)
        if ref is None:
            if hides_reference(line):
                raise LayerError(
                    f"{line.where(root)}: '{clip(line.text)}' makes pip read another file in a form pinship does "
                    "not follow",
                    fix="write it as '-r FILE' or '-c FILE' alone on its line",
                )
            for value in local_paths(line):
                no_variable(value, line.where(root))
                scope.check(local_target(value, root), line.where(root), f"'{clip(value)}'")
            if line.text.startswith("-"):
                options = read_options(line, line.text.split(), FILE_OPTIONS, root)
                for option in options:
                    if option.local is not None:
                        scope.check(option.local, line.where(root), f"'{clip(option.value)}'")
                layer.option_list += options
                layer.options.append(pip_line(line, options))
                continue
            if (problem := requirement_problem(line.text)) is not None:
                raise LayerError(
                    f"{line.where(root)}: '{clip(line.text)}': {problem}",
                    fix="write a PEP 508 requirement: NAME, NAME==VERSION, NAME[EXTRA]>=VERSION; MARKER or "
                    "'NAME @ URL' (a local project too: 'NAME @ file:///path')",
                )
            words = line.text.split()
            first_option = next((i for i, word in enumerate(words) if word.startswith("-")), len(words))
            read_options(line, words[first_option:], REQUIREMENT_OPTIONS, root)
            layer.requirements.append(line)
            continue
        _follow(layer, ref, by_path, scope, stack)


def _follow(layer: Layer, ref: Reference, by_path: dict[Path, str], scope: _Scope, stack: set[Path]) -> None:
    root = scope.root
    target = ref.target
    where = ref.line.where(root)
    no_variable(ref.written, where)
    if is_remote(ref.written):
        raise LayerError(
            f"{where}: -{ref.kind} {clip(ref.written)}: pip would download that file, so the lock would depend on "
            "what a server says that day and verify could not check it",
            fix="download it into the project and reference the copy",
        )
    scope.check(target, where, f"-{ref.kind} {clip(ref.written)}")
    shown = clip(display(target, root))
    written = f"-{ref.kind} {shown}"
    other = by_path.get(target) or by_path.get(target.with_suffix(".in"))
    if other is not None and target.suffix in (".in", ".txt"):
        if other == layer.name and target == layer.source:
            raise LayerError(f"{where}: {layer.name}.in references itself")
        (layer.includes if ref.kind == "r" else layer.constrained_by).add(other)
        return
    if not target.exists():
        raise LayerError(f"{where}: {written}: no such file", fix=f"create {shown} or remove that line")
    if not target.is_file():
        raise LayerError(f"{where}: {written}: not a regular file", fix="point that line at a requirements file")
    if target in stack:
        raise LayerError(f"{where}: {written} forms a cycle")
    layer.extra_inputs.add(target)
    if ref.kind == "c":
        # pip-compile reads it, not us: check here that it is text pip can read, and that the
        # conflict report can quote.
        read_text(target, root)
        layer.external_constraints.append(target)
    else:
        _read(layer, target, by_path, scope, stack)


def _sort(layers: dict[str, Layer], root: Path) -> list[str]:
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for name in sorted(layers):
        sorter.add(name, *sorted(layers[name].includes | layers[name].constrained_by))
    try:
        sorter.prepare()
    except CycleError as exc:
        cycle = exc.args[1]
        path = " -> ".join(f"{n}.in" for n in reversed(cycle))
        raise LayerError(
            f"requirement layers form a cycle: {path}",
            fix="remove one of those -r/-c lines so that layers build on each other one way",
        ) from exc
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(ready)
        sorter.done(*ready)
    return order
