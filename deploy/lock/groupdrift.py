"""A project's extras and dependency groups, and the layers init put them on, must agree: verify names
each requirement a group declares that no layer at or below the group's own holds.

init puts each `[project.optional-dependencies]` extra, PEP 735 `[dependency-groups]` group and
Poetry group (`[tool.poetry.group.NAME.dependencies]`, `[tool.poetry.dev-dependencies]`, and an
extra of `[tool.poetry.extras]`) on the layer lock/layernames.py names, a dev group's test tools
on test.in, and a line a lower layer holds on that layer alone. So a group's requirement must be on
its layer or on one that layer takes in through `-r`; a line a layer holds that no group declares
is the layer's own (`nox -s add` writes there), never drift. Only that direction is checked: a
requirement taken out of a group but left on its layer is installed still, which is what the lock
says. Lines are compared as drift.py compares base.in's: text first, and packaging's parser only
for a line whose text differs.

Stdlib at import time, like drift.py: verify runs before every deploy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deploy.errors import ConfigError
from deploy.lock import drift
from deploy.lock.layernames import layer_for
from deploy.lock.layers import LayerGraph
from deploy.lock.reqfile import canonical, clip, display, requirement_name

# (where pyproject.toml declares it, as verify names it; the group or extra; each requirement line
# with its line number)
Declared = tuple[str, str, list[tuple[str, int]]]


def check(root: Path, graph: LayerGraph) -> list[str]:
    """One line for each requirement of a group or extra that is on no layer at or below the group's."""
    read = drift.pyproject(root)
    if read is None:
        return []
    text, data = read
    problems = _malformed(text, data)  # what init refuses is never read past in silence
    seen: set[tuple[int, str]] = set()  # (line, layer): a group another includes names its lines once
    for source, group, lines in _declared(text, data):
        try:
            layer = layer_for(group, source)
        except ConfigError:
            continue  # a name no layer file can have: init refused it, and said so
        if layer not in graph.layers:
            if lines:
                problems.append(
                    f"pyproject.toml:{lines[0][1]}: {source} goes on layer {layer}, and there is no "
                    f"{display(graph.folder / f'{layer}.in', root)}; write it (`-r base.in` and the group's lines), "
                    "then run: nox -s lock")
            continue
        held = [line for name in graph.included(layer) for line in graph.layers[name].requirements]
        texts = {drift.compact(line.text) for line in held}
        missing = [(entry, number) for entry, number in lines if drift.compact(entry) not in texts]
        if not missing:
            continue
        keys = {drift.requirement_key(line.text): line for line in held}  # packaging's parser: only now
        where = display(graph.layers[layer].source, root)
        for entry, number in missing:
            key = drift.requirement_key(entry)
            if key in keys or (number, layer) in seen:
                continue
            seen.add((number, layer))
            same_name = [line for other, line in keys.items() if other[0] == key[0]]
            if same_name:
                problems.append(f"{same_name[0].where(root)}: '{clip(same_name[0].text)}' differs from pyproject.toml:"
                                f"{number} '{clip(entry)}' in {source}; make them the same, then run: "
                                "nox -s lock")
            else:
                problems.append(f"pyproject.toml:{number}: '{clip(entry)}' is in {source} but on no layer "
                                f"at or below {layer}; add it to {where} (or take it out of the group), then run: "
                                "nox -s lock")
    return problems


def declaring(root: Path, name: str) -> list[str]:
    """Where a group or extra of pyproject.toml still asks for package `name` (`pyproject.toml:12
    [dependency-groups] dev`): `nox -s remove` leaves those to the user, and says so."""
    read = drift.pyproject(root)
    if read is None:
        return []
    text, data = read
    found: dict[int, str] = {}  # by line: a group another includes names it once, where it is written first
    for source, _name, lines in _declared(text, data):
        for entry, number in lines:
            if canonical(requirement_name(entry) or "") == canonical(name):
                found.setdefault(number, f"pyproject.toml:{number} {source}")
    return list(found.values())


def _declared(text: str, data: dict[str, Any]) -> Iterator[Declared]:
    project = data.get("project")
    project = project if isinstance(project, dict) else {}
    declared = project.get("optional-dependencies")
    extras: dict[str, Any] = declared if isinstance(declared, dict) else {}
    own = canonical(str(project.get("name", "")))
    if "optional-dependencies" not in (project.get("dynamic") or []):
        for extra in extras:
            lines = _numbered(text, _extra(extras, extra, own, ()))
            yield f"[project.optional-dependencies] {clip(extra)}", extra, lines
    groups = data.get("dependency-groups")
    if isinstance(groups, dict):
        for group in groups:
            lines = _numbered(text, _group(groups, extras, own, group, ()))
            yield f"[dependency-groups] {clip(group)}", group, lines
    tool = data.get("tool")
    poetry = tool.get("poetry") if isinstance(tool, dict) else None
    if isinstance(poetry, dict):
        yield from _poetry(text, poetry)


def _malformed(text: str, data: dict[str, Any]) -> list[str]:
    """One line for each extra or PEP 735 group that is not a list of requirements (a group's entry may
    be `{include-group = "NAME"}`, naming another group, in no cycle): other tools refuse those too."""
    project = data.get("project")
    extras = project.get("optional-dependencies") if isinstance(project, dict) else None
    declared = data.get("dependency-groups")
    groups: dict[str, Any] = declared if isinstance(declared, dict) else {}
    wrong: list[tuple[str, str, str]] = []  # (table, key, what is wrong)
    for key, entries in (extras.items() if isinstance(extras, dict) else []):
        if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
            wrong.append(("[project.optional-dependencies]", key, "is not a list of requirement strings"))
    names = {canonical(key): key for key in groups}
    for key, entries in groups.items():
        if not isinstance(entries, list):
            wrong.append(("[dependency-groups]", key, "is not a list"))
            continue
        for entry in entries:
            if isinstance(entry, str):
                continue
            table = isinstance(entry, dict) and set(entry) == {"include-group"}
            included = entry["include-group"] if table else None
            if not isinstance(included, str):
                wrong.append(("[dependency-groups]", key, 'has an entry that is neither a requirement string nor '
                                                           '{include-group = "NAME"}'))
            elif canonical(included) not in names:
                wrong.append(("[dependency-groups]", key, f'includes "{clip(included)}", which names no group'))
            elif _cycles(groups, names, canonical(key)):
                wrong.append(("[dependency-groups]", key, "is in a cycle of include-group"))
                break
    return [f"pyproject.toml:{_key_line(text, key)}: {table} {clip(key)} {what}; correct it as PEP 621 / PEP 735 "
            "say, then run: nox -s verify" for table, key, what in dict.fromkeys(wrong)]


def _cycles(groups: dict[str, Any], names: dict[str, str], start: str) -> bool:
    """Whether following include-group from group `start` comes back to it."""
    stack, seen = [start], set()
    while stack:
        entries = groups.get(names.get(stack.pop(), ""))
        for entry in entries if isinstance(entries, list) else []:
            included = entry.get("include-group") if isinstance(entry, dict) else None
            if isinstance(included, str) and (target := canonical(included)) in names:
                if target == start:
                    return True
                if target not in seen:
                    seen.add(target)
                    stack.append(target)
    return False


def _key_line(text: str, key: str) -> int:
    """The line that sets `key` (`key = …`, quoted or not), else 1."""
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.strip().startswith((f"{key} ", f"{key}=", f'"{key}"', f"'{key}'")):
            return number
    return 1


def _extra(extras: dict[str, Any], name: str, own: str, seen: tuple[str, ...]) -> list[str]:
    """An extra's strings; the project naming its own extras (`app[redis]`) takes theirs in, as init does."""
    entries = extras.get(name)
    if name in seen or not isinstance(entries, list):
        return []  # init refused a cycle, or a table that is not a list, saying so
    found: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            continue
        if (named := _own_extras(entry, own)) is not None:
            for other in named:
                found += _extra(extras, other, own, (*seen, name))
            continue
        found.append(entry.strip())
    return found


def _group(groups: dict[str, Any], extras: dict[str, Any], own: str, name: str, seen: tuple[str, ...]) -> list[str]:
    """A PEP 735 group's strings, its `{include-group = "…"}` entries followed (names compared normalised),
    and the project's own extras taken in where it names itself (`app[redis]`), as init does."""
    by_name = {canonical(key): key for key in groups}
    key = by_name.get(canonical(name))
    if key is None or canonical(name) in seen or not isinstance(groups[key], list):
        return []
    found: list[str] = []
    for entry in groups[key]:
        if isinstance(entry, str) and (named := _own_extras(entry, own)) is not None:
            for other in named:
                found += _extra(extras, other, own, ())
        elif isinstance(entry, str):
            found.append(entry.strip())
        elif isinstance(entry, dict) and isinstance(entry.get("include-group"), str):
            found += _group(groups, extras, own, entry["include-group"], (*seen, canonical(name)))
    return found


def _own_extras(entry: str, own: str) -> list[str] | None:
    """The extras an entry naming the project itself asks for (`app[redis,s3]`), sorted; None for any
    other entry. init ships the app as its own wheel: only those extras' lines reach a layer."""
    name = requirement_name(entry)
    if not own or name is None or canonical(name) != own:
        return None
    inner = entry.partition("[")[2].partition("]")[0]
    return sorted(part.strip() for part in inner.split(",") if part.strip())


def _numbered(text: str, entries: list[str]) -> list[tuple[str, int]]:
    return [(entry, drift.line_number(text, entry)) for entry in entries]


def _poetry(text: str, poetry: dict[str, Any]) -> Iterator[Declared]:
    """A Poetry project's groups and extras, each entry as the PEP 508 line init writes for it."""
    from deploy.adopt import poetry as translate  # Poetry projects only (packaging's parser)

    def lines(header: str, entries: object, *, only: set[str] | None = None) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        for name, spec in (entries.items() if isinstance(entries, dict) else []):
            if canonical(name) == "python" or (only is not None and canonical(name) not in only):
                continue
            if only is None and translate.optional(spec):
                continue  # on its extra's layer, below
            try:
                requirements = translate.requirement_lines(name, spec)
            except translate.Untranslatable:
                continue  # init could not adopt it, and said so
            found += [(line, translate.line_of(text, header, name)) for line in requirements]
        return found

    yield "[tool.poetry.dev-dependencies]", "dev", lines("tool.poetry.dev-dependencies", poetry.get("dev-dependencies"))
    groups = poetry.get("group")
    for group, body in (groups.items() if isinstance(groups, dict) else []):
        header = f"tool.poetry.group.{group}.dependencies"
        yield f"[{clip(header)}]", group, lines(header, body.get("dependencies") if isinstance(body, dict) else None)
    extras = poetry.get("extras")
    for extra, names in (extras.items() if isinstance(extras, dict) else []):
        wanted = {canonical(name) for name in names if isinstance(name, str)} if isinstance(names, list) else set()
        # Named by the entry's own line (its range, its extras), and the extra it is in.
        yield (f"[tool.poetry.dependencies] (optional, in [tool.poetry.extras] {clip(extra)})", extra,
               lines("tool.poetry.dependencies", poetry.get("dependencies"), only=wanted))
