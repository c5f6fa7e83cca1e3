"""`[project] dependencies` (or a Poetry project's `[tool.poetry.dependencies]`) and base.in must say
the same: verify names both places when they drift.

Why a check and not pyproject.toml as the layer's input: the layers stay plain `.in` files that
pip-compile reads and each lock's header digests, and a version bump or a tool setting in
pyproject.toml does not make every lock stale. The app's wheel declares one list and the servers
install the other, so the two must agree; the check is how they stay so.

A Poetry table is read as init read it (adopt/poetry.py: `^1.2` is `>=1.2,<2`): its entries that
init put on base.in, that is all but `python`, the optional ones (on their extra's layer) and the
ones init could not adopt (git, path, url, another source: it said so then), each compared as
the PEP 508 line init writes for it.

Stdlib at import time: verify runs before every deploy, and packaging's parser (with the Poetry
translation) is imported only when the two lists differ in their text, or the project is Poetry's.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from deploy.lock.reqfile import Line, canonical, clip, display, read_text


def check(root: Path, base: list[Line]) -> list[str]:
    """Where base.in and `[project] dependencies` disagree, one line each naming both places.

    Only a static list is compared: dynamic dependencies are the build backend's to read. Text is
    compared first, so a project whose two lists match never pays for packaging's parser.
    """
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return []
    text = read_text(pyproject, root)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return []  # config loading reports that, with its line
    project = data.get("project")
    table = "[project] dependencies"
    if isinstance(project, dict) and isinstance(project.get("dependencies"), list):
        if "dependencies" in (project.get("dynamic") or []):
            return []
        # (entry as written, its line in pyproject.toml)
        declared = [(entry, _line_number(text, entry)) for entry in project["dependencies"] if isinstance(entry, str)]
    else:
        tool = data.get("tool")
        poetry = tool.get("poetry") if isinstance(tool, dict) else None
        dependencies = poetry.get("dependencies") if isinstance(poetry, dict) else None
        if not isinstance(dependencies, dict):
            return []
        table = "[tool.poetry.dependencies]"
        declared = _poetry_lines(text, dependencies)
    if not base and not declared:
        return []
    if [_compact(entry) for entry, _ in declared] == [_compact(line.text) for line in base]:
        return []
    wanted = {_key(entry): (entry, number) for entry, number in declared}
    written = {_key(line.text): line for line in base}
    base_name = display(base[0].path, root) if base else "requirements/base.in"
    problems: list[str] = []
    for key, (entry, number) in wanted.items():
        if key in written:
            continue
        place = f"pyproject.toml:{number}"
        same_name = [line for other, line in written.items() if other[0] == key[0]]
        if same_name:
            problems.append(f"{same_name[0].where(root)}: '{clip(same_name[0].text)}' differs from {place} "
                            f"'{clip(entry)}' in {table}; make them the same, then run: nox -s lock")
        else:
            problems.append(f"{place}: '{clip(entry)}' is in {table} but not in {base_name}; add it "
                            "there, then run: nox -s lock")
    for key, base_line in written.items():
        if key not in wanted and not any(other[0] == key[0] for other in wanted):
            problems.append(f"{base_line.where(root)}: '{clip(base_line.text)}' is not in pyproject.toml {table}, "
                            "so the app's wheel does not declare it; add it there (or move it to prod.in), then "
                            "run: nox -s lock")
    return problems


def _poetry_lines(text: str, dependencies: dict[str, object]) -> list[tuple[str, int]]:
    """The PEP 508 lines init writes to base.in for a Poetry table, each with its key's line."""
    from deploy.adopt import poetry  # Poetry projects only

    found: list[tuple[str, int]] = []
    for name, spec in dependencies.items():
        if canonical(name) == "python" or poetry.optional(spec):
            continue
        try:
            lines = poetry.requirement_lines(name, spec)
        except poetry.Untranslatable:
            continue
        number = poetry.line_of(text, "tool.poetry.dependencies", name)
        found += [(line, number) for line in lines]
    return found


def _compact(text: str) -> str:
    return "".join(text.split())


def _key(text: str) -> tuple[str, str]:
    """A requirement as (name, normal form): `Flask >= 3` and `flask>=3` are the same requirement."""
    from packaging.requirements import InvalidRequirement, Requirement  # only when the texts differ

    try:
        parsed = Requirement(text.split(" --")[0])
    except InvalidRequirement:
        return (_compact(text), _compact(text))
    name = canonical(parsed.name)
    normal = str(parsed).replace(parsed.name, name, 1)
    return (name, _compact(normal))


def _line_number(text: str, entry: str) -> int:
    for number, raw in enumerate(text.splitlines(), start=1):
        if f'"{entry}"' in raw or f"'{entry}'" in raw:
            return number
    return 1
