"""What init takes from a project: requirement lines per layer, where each came from, and the
versions the project runs today (kept as the first lock's preferences)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from deploy.adopt import tools
from deploy.errors import ConfigError
from deploy.lock.layernames import LAYERS
from deploy.lock.reqfile import ENV_VARIABLE, canonical, clip, read_text, requirement_name
from deploy.render import inert

# pip reads a requirements file line by line and gives some text on a line a meaning of its own:
# a token starting with '-' is an option (`--index-url`, `-r`), ' #' starts a comment, a trailing
# backslash joins the next line and ${NAME} is replaced from the environment. packaging accepts
# all of these inside a marker's quoted string or a URL, so each is refused on its own.
_PIP_SYNTAX = (
    (re.compile(r"(?:^|\s)-"), "a word starting with '-' is a pip option there"),
    (re.compile(r"(?:^|\s)#"), "' #' starts a comment there"),
    (re.compile(r"\\$"), "a trailing backslash joins the next line there"),
    (ENV_VARIABLE, "pip replaces ${NAME} with an environment variable there"),
)


@dataclass
class Adoption:
    """Everything init read, decided before anything is written."""

    layers: dict[str, list[str]] = field(default_factory=dict)
    # What the output says went where: (layer, "source: names"), or (None, a note).
    told: list[tuple[str | None, str]] = field(default_factory=list)
    # What init could not translate: (what, the layer file it suggests), each a loud warning.
    unadopted: list[tuple[str, str]] = field(default_factory=list)
    # Anything else the user must hear about what was read: one warning line each.
    warnings: list[str] = field(default_factory=list)
    # canonical name -> the version the project runs today, and where those versions come from.
    preferences: dict[str, str] = field(default_factory=dict)
    preferred_from: str = ""
    # The text of a pyproject.toml to create, for a project that has none.
    pyproject: str | None = None

    def add(self, layer: str, lines: list[str], source: str) -> None:
        if layer == "dev":  # a dev group's test tools are what CI needs: they go to test.in
            tests = [line for line in lines if tools.layer_of(_name(line)) == "test"]
            self.add("test", tests, source)
            lines = [line for line in lines if line not in tests]
        if not lines:
            return
        # A line a layer below already holds reaches this one through its `-r`: written once, below
        # (a dev group that includes the test group gives test.in's lines, not a copy in dev.in), and
        # said where it is.
        below: dict[str, str] = {}  # line -> the layer that holds it already: this one, or one it includes
        for name in (*included(layer), layer):
            for held_line in self.layers.get(name, []):
                below.setdefault(held_line, name)
        new = [line for line in lines if line not in below]
        if new:
            held = self.layers.setdefault(layer, [])
            held.extend(line for line in new if line not in held)
        told = _listing([inert(line, 60) for line in new]) if new else "nothing new"
        if found := [f"{inert(line, 60)} ({below[line]}.in)" for line in lines if line in below]:
            told += f"; already in: {_listing(found)}"
        self.told.append((layer, f"{source}: {told}"))


def _listing(items: list[str]) -> str:
    return ", ".join(items[:8]) + (" …" if len(items) > 8 else "")


def included(layer: str) -> tuple[str, ...]:
    """The layers `layer`'s file includes as init writes them: each of LAYERS the ones before it, a
    group's own layer base.in."""
    return LAYERS[:LAYERS.index(layer)] if layer in LAYERS else ("base",)


def rank(layer: str) -> int:
    """Where `layer` comes in the order a source's groups are read: lower layers first, so that a
    line two groups share lands on the lower one (see Adoption.add)."""
    return LAYERS.index(layer) if layer in LAYERS else 1


def requirement(entry: object, where: str, fix: str) -> Requirement:
    """One entry checked to be one PEP 508 requirement that pip reads back exactly as written."""
    if not isinstance(entry, str):
        raise ConfigError(f"{where} is {kind(entry)}, not a string", fix=fix)
    shown = f"{where} \"{inert(entry, 120)}\""
    if not entry.isprintable():  # a line break, a NUL or an escape sequence: never one line of a layer
        raise ConfigError(f"{shown} holds a line break or control character: not one requirement", fix=fix)
    try:
        parsed = Requirement(entry)
    except InvalidRequirement:
        raise ConfigError(f"{shown} is not a PEP 508 requirement", fix=fix) from None
    for pattern, why in _PIP_SYNTAX:
        if pattern.search(entry.strip()):
            raise ConfigError(f"{shown} would not be read by pip as written ({why})",
                              fix="write the requirement alone; pip options and indexes go in [tool.deploy] "
                              "compile-options")
    return parsed


def line(entry: str, parsed: Requirement) -> str:
    # A URL is written as `name @ url`, the one spelling of it that every reader of .in files
    # (pip's, and the lock's check that inputs stay in the project) takes for a URL.
    return str(parsed) if parsed.url else entry.strip()


def kind(value: object) -> str:
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _name(text: str) -> str:
    return requirement_name(text) or text


def keep_locked_versions(root: Path, adoption: Adoption, name: str,
                         from_index: Callable[[Mapping[str, Any]], bool]) -> None:
    """The versions a tool's lock file (`name`: poetry.lock, uv.lock) holds for packages that came
    from an index, as the first lock's preferences. A lock of another shape keeps nothing and
    says so; an entry of another shape is passed over."""
    path = root / name
    if not path.is_file():
        return
    try:
        data = tomllib.loads(read_text(path, root))
    except tomllib.TOMLDecodeError as exc:
        adoption.warnings.append(f"{name}: {clip(str(exc))}: its versions are not kept")
        return
    packages = data.get("package")
    if not isinstance(packages, list):
        adoption.warnings.append(f"{name}: no [[package]] list: its versions are not kept")
        return
    for package in packages:
        if (isinstance(package, dict) and isinstance(package.get("name"), str)
                and isinstance(package.get("version"), str) and package["version"] and from_index(package)):
            adoption.preferences[canonical(package["name"])] = package["version"]
    adoption.preferred_from = name
