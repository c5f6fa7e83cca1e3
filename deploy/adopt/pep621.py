"""PEP 621 `[project]` and PEP 735 `[dependency-groups]`: the project's own declared requirements.

`[project] dependencies` is the one source of the base layer: init copies it into base.in, and
`verify` fails when the two drift apart (deploy.lock.drift).
"""

from __future__ import annotations

from typing import Any

from deploy.adopt.entries import Adoption, kind, line, rank, requirement
from deploy.errors import ConfigError
from deploy.lock.layernames import layer_for
from deploy.lock.reqfile import canonical, clip

FIX = 'list one PEP 508 requirement per string, e.g. dependencies = ["requests>=2.31"]'


def read(data: dict[str, Any], adoption: Adoption) -> None:
    """Put [project] dependencies, its extras and the dependency groups onto layers."""
    project = data.get("project", {})
    own = canonical(str(project.get("name", "")))
    dynamic = project.get("dynamic")
    for key, suggested in (("dependencies", "base.in"), ("optional-dependencies", "<layer>.in")):
        if isinstance(dynamic, list) and key in dynamic:  # the build backend reads them, e.g. from a file
            adoption.unadopted.append((f"[project] {key} (listed in dynamic, so read by the build backend)",
                                       suggested))
    dependencies = project.get("dependencies", [])
    if not isinstance(dependencies, list):
        raise _wrong_type("[project] dependencies", "a list of strings", dependencies)
    base = [_line(entry, f"pyproject.toml: [project] dependencies[{n}]") for n, entry in enumerate(dependencies)]
    adoption.add("base", base, "[project] dependencies")
    extras = project.get("optional-dependencies", {})
    if not isinstance(extras, dict):
        raise _wrong_type("[project.optional-dependencies]", "a table", extras)
    groups = data.get("dependency-groups", {})
    if not isinstance(groups, dict):
        raise _wrong_type("[dependency-groups]", "a table", groups)
    found: list[tuple[str, list[str], str]] = []  # (layer, lines, source), in the file's order
    for extra in extras:
        where = f"pyproject.toml: [project.optional-dependencies] {extra}"
        found.append((layer_for(extra, where), _extra(extras, extra, own, where, ()),
                     f"[project.optional-dependencies] {extra}"))
    for group in groups:
        where = f"pyproject.toml: [dependency-groups] {group}"
        found.append((layer_for(group, where), _group(groups, extras, own, group, where, ()),
                     f"[dependency-groups] {group}"))
    for layer, lines, source in sorted(found, key=lambda entry: rank(entry[0])):  # lower layers first
        adoption.add(layer, lines, source)


def _wrong_type(name: str, expected: str, value: object) -> ConfigError:
    return ConfigError(f"pyproject.toml: {name} must be {expected}, not {kind(value)}", fix=FIX)


def _line(entry: object, where: str) -> str:
    parsed = requirement(entry, where, FIX)
    assert isinstance(entry, str)  # requirement() refused anything else
    return line(entry, parsed)


def _extra(extras: dict[str, Any], name: str, own: str, where: str, seen: tuple[str, ...]) -> list[str]:
    """An extra's lines; `own[other]` (the project naming its own extras) is expanded in place."""
    if name in seen:
        raise ConfigError(f"{where}: the extras include each other ({' -> '.join((*seen, name))})",
                          fix="remove one of those self-references")
    entries = extras.get(name)
    if not isinstance(entries, list):
        raise ConfigError(f"{where} is {kind(entries)}, not a list of requirements", fix=FIX)
    lines: list[str] = []
    for number, entry in enumerate(entries):
        parsed = requirement(entry, f"{where}[{number}]", FIX)
        if canonical(parsed.name) == own:  # the app itself ships as its own wheel: only its extras matter
            for other in sorted(parsed.extras):
                lines += _extra(extras, other, own, where, (*seen, name))
            continue
        assert isinstance(entry, str)
        lines.append(line(entry, parsed))
    return lines


def _group(groups: dict[str, Any], extras: dict[str, Any], own: str, name: str, where: str,
           seen: tuple[str, ...]) -> list[str]:
    """A PEP 735 group's lines, with `{include-group = "…"}` followed (names compared normalised)."""
    if canonical(name) in seen:
        raise ConfigError(f"{where}: include-group forms a cycle ({' -> '.join((*seen, canonical(name)))})",
                          fix="remove one of those include-group entries")
    by_name = {canonical(key): key for key in groups}
    key = by_name.get(canonical(name))
    if key is None:
        raise ConfigError(f"{where}: include-group \"{clip(name, 80)}\" names no group in [dependency-groups]",
                          fix="correct the group's name")
    entries = groups[key]
    if not isinstance(entries, list):
        raise ConfigError(f"{where} is {kind(entries)}, not a list", fix=FIX)
    lines: list[str] = []
    for number, entry in enumerate(entries):
        if isinstance(entry, dict):
            if set(entry) != {"include-group"} or not isinstance(entry["include-group"], str):
                raise ConfigError(f"{where}[{number}] is a table other than {{include-group = \"NAME\"}}",
                                  fix="write a requirement string or {include-group = \"NAME\"}")
            lines += _group(groups, extras, own, entry["include-group"], where, (*seen, canonical(name)))
            continue
        parsed = requirement(entry, f"{where}[{number}]", FIX)
        if canonical(parsed.name) == own:
            for other in sorted(parsed.extras):
                lines += _extra(extras, other, own, f"pyproject.toml: [project.optional-dependencies] {other}", ())
            continue
        assert isinstance(entry, str)
        lines.append(line(entry, parsed))
    return lines
