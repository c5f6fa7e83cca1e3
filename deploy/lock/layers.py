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
from deploy.lock.reqfile import (
    ENV_VARIABLE,
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

# The options pip's requirement-file parser takes (pip's req_file.py), and whether each takes a value:
# on a line of their own, and after a requirement on its line.
_FILE_OPTIONS = {
    "-i": True, "--index-url": True, "--extra-index-url": True, "--no-index": False, "-f": True,
    "--find-links": True, "--no-binary": True, "--only-binary": True, "--prefer-binary": False,
    "--require-hashes": False, "--pre": False, "--trusted-host": True, "--use-feature": True,
    "-e": True, "--editable": True, "-r": True, "--requirement": True, "-c": True, "--constraint": True,
}
_REQUIREMENT_OPTIONS = {"--hash": True, "--config-settings": True, "--global-option": True}
_SHORT_OPTIONS = ("-i", "-f", "-e", "-r", "-c")
ALLOW = "add its folder to [tool.deploy] allow-inputs-outside in pyproject.toml"


@dataclass
class Layer:
    """One `.in` file and what compiling it depends on."""

    name: str
    source: Path
    # Requirement lines this layer asks for itself, including those of non-layer files it `-r`s.
    requirements: list[Line] = field(default_factory=list)
    # Option lines (`--pre`, `--extra-index-url` …) passed through to pip-compile.
    options: list[Line] = field(default_factory=list)
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

    def input_files(self, name: str) -> list[Path]:
        """The files whose content decides what `name` compiles to."""
        files: set[Path] = set()
        for other in [name, *self.depends_on(name)]:
            layer = self.layers[other]
            files.add(layer.source)
            files.update(layer.extra_inputs)
        return sorted(files, key=lambda p: display(p, self.root))

    def input_digests(self, name: str, options: str) -> dict[str, str]:
        """A short digest per input file, plus one for the compile options.

        What is digested is the requirements a file states (reqfile.requirement_text), not its
        bytes: a comment or a blank line changes no lock, so editing one must not make it stale.
        """
        digests = {input_key(path, self.root): digest(requirement_text(path, self.root).encode())
                   for path in self.input_files(name)}
        digests["(options)"] = digest(options.encode())
        return digests


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
    _check_connected(layers, root, folder)
    return LayerGraph(root, folder, layers, order)


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
                _no_variable(value, line.where(root))
                scope.check(local_target(value, root), line.where(root), f"'{clip(value)}'")
            if line.text.startswith("-"):
                _check_options(line, line.text.split(), _FILE_OPTIONS, root)
                layer.options.append(line)
                continue
            if (problem := requirement_problem(line.text)) is not None:
                raise LayerError(
                    f"{line.where(root)}: '{clip(line.text)}': {problem}",
                    fix="write a PEP 508 requirement: NAME, NAME==VERSION, NAME[EXTRA]>=VERSION; MARKER or "
                    "'NAME @ URL' (a local project too: 'NAME @ file:///path')",
                )
            words = line.text.split()
            first_option = next((i for i, word in enumerate(words) if word.startswith("-")), len(words))
            _check_options(line, words[first_option:], _REQUIREMENT_OPTIONS, root)
            layer.requirements.append(line)
            continue
        _follow(layer, ref, by_path, scope, stack)


def _follow(layer: Layer, ref: Reference, by_path: dict[Path, str], scope: _Scope, stack: set[Path]) -> None:
    root = scope.root
    target = ref.target
    where = ref.line.where(root)
    _no_variable(ref.written, where)
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


def _check_options(line: Line, words: list[str], allowed: dict[str, bool], root: Path) -> None:
    """Refuse an option pip would reject: pip's own error ("no such option") names no line."""
    index = 0
    while index < len(words):
        word = words[index]
        option, equals, value = word.partition("=")
        if option[:2] in _SHORT_OPTIONS and len(option) > 2 and not option.startswith("--"):
            option, equals, value = option[:2], "=", word[2:]
        if option not in allowed:
            kind = "a requirements file" if allowed is _FILE_OPTIONS else "a requirement line"
            raise LayerError(
                f"{line.where(root)}: '{clip(option)}' is not an option pip takes in {kind}",
                fix="remove it, or pass pip-compile flags in [tool.deploy] compile-options",
            )
        takes_value = allowed[option]
        if takes_value and not equals:
            index += 1
            value = words[index] if index < len(words) else ""
        if takes_value and not value:
            raise LayerError(f"{line.where(root)}: '{clip(option)}' needs a value", fix=f"write {option} VALUE")
        if not takes_value and equals:
            raise LayerError(f"{line.where(root)}: '{clip(option)}' takes no value", fix=f"write {option} alone")
        if option == "--hash" and value.split(":", 1)[0] not in ("sha256", "sha384", "sha512"):
            raise LayerError(f"{line.where(root)}: '--hash={clip(value)}': pip takes only sha256, sha384 and "
                             "sha512 hashes", fix="write --hash=sha256:HEX")
        # An editable install has no file to hash: pip-compile writes it without --hash, and the
        # hash-checking install on every host then refuses the whole lock.
        if option in ("-e", "--editable"):
            raise LayerError(
                f"{line.where(root)}: '{clip(line.text)}': an editable requirement cannot be locked with hashes",
                fix="drop the -e line (pinship builds and ships the project's own wheel itself), or write "
                "'NAME @ file:///path' for another local project",
            )
        index += 1


def _no_variable(path: str, where: str) -> None:
    # pip would put the environment's value there: a path that cannot be checked before pip reads it.
    if ENV_VARIABLE.search(path):
        raise LayerError(
            f"{where}: '{clip(path)}' names an environment variable, so what pip reads there depends on the machine",
            fix="write the path itself (inside the project, or in a folder listed in allow-inputs-outside)",
        )


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


def _check_connected(layers: dict[str, Layer], root: Path, folder: Path) -> None:
    if len(layers) < 2:
        return
    linked: set[str] = set()
    for layer in layers.values():
        refs = layer.includes | layer.constrained_by
        if refs:
            linked.add(layer.name)
            linked.update(refs)
    for name in sorted(set(layers) - linked):
        raise LayerError(
            f"{display(folder / (name + '.in'), root)} has no place in the layer graph: "
            "it neither references another layer nor is referenced by one",
            fix=f"add '-r base.in' (or '-c base.txt') to {name}.in, or delete it",
        )
