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
from typing import Any

from deploy.lock.reqfile import Line, canonical, clip, display, read_text


def pyproject(root: Path) -> tuple[str, dict[str, Any]] | None:
    """pyproject.toml's text and table; None when there is none or it does not parse (config loading
    reports that, with its line)."""
    path = root / "pyproject.toml"
    if not path.is_file():
        return None
    text = read_text(path, root)
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


def check(root: Path, base: list[Line]) -> list[str]:
    """Where base.in and `[project] dependencies` disagree, one line each naming both places.

    Only a static list is compared: dynamic dependencies are the build backend's to read. Text is
    compared first (a Poetry table's as translated, part by part), so a project whose two lists
    match never pays for packaging's parser.
    """
    read = pyproject(root)
    if read is None:
        return []
    text, data = read
    project = data.get("project")
    if isinstance(project, dict) and isinstance(project.get("dependencies"), list):
        if "dependencies" in (project.get("dynamic") or []):
            return []
        table = "[project] dependencies"
        # (entry as written, its line in pyproject.toml)
        declared = [(entry, line_number(text, entry)) for entry in project["dependencies"] if isinstance(entry, str)]
        if not base and not declared:
            return []
        if [compact(entry) for entry, _ in declared] == [compact(line.text) for line in base]:
            return []
    else:
        tool = data.get("tool")
        poetry = tool.get("poetry") if isinstance(tool, dict) else None
        dependencies = poetry.get("dependencies") if isinstance(poetry, dict) else None
        if not isinstance(dependencies, dict):
            return []
        table = "[tool.poetry.dependencies]"
        # As translated, unparsed: when they match base.in's lines part for part, no parser is loaded.
        quick = _poetry_lines(text, dependencies, checked=False)
        if sorted(_loose(entry) for entry, _ in quick) == sorted(_loose(line.text) for line in base):
            return []
        declared = _poetry_lines(text, dependencies, checked=True)
    wanted = {requirement_key(entry): (entry, number) for entry, number in declared}
    written = {requirement_key(line.text): line for line in base}
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


def _poetry_lines(text: str, dependencies: dict[str, object], *, checked: bool) -> list[tuple[str, int]]:
    """The PEP 508 lines init writes to base.in for a Poetry table, each with its key's line
    (`checked=False`: as translated, before packaging's normal form)."""
    from deploy.adopt import poetry  # Poetry projects only

    found: list[tuple[str, int]] = []
    for name, spec in dependencies.items():
        if canonical(name) == "python" or poetry.optional(spec):
            continue
        try:
            lines = poetry.requirement_lines(name, spec, checked=checked)
        except poetry.Untranslatable:
            continue
        number = poetry.line_of(text, "tool.poetry.dependencies", name)
        found += [(line, number) for line in lines]
    return found


def compact(text: str) -> str:
    return "".join(text.split())


def _loose(text: str) -> tuple[str, ...]:
    """A requirement's name, extras and specifiers each in order, and its marker as written: equal
    forms are the same requirement (`web>=1,<2` and `web<2,>=1`); unequal ones go to the parser."""
    requirement, _, marker = compact(text).partition(";")
    name, _, rest = requirement.partition("[")
    extras, _, specifiers = rest.partition("]") if rest else ("", "", "")
    if not rest:
        split = next((at for at, char in enumerate(name) if char in "<>=!~"), len(name))
        name, specifiers = name[:split], name[split:]
    return (canonical(name), ",".join(sorted(canonical(e) for e in extras.split(",") if e)),
            ",".join(sorted(part for part in specifiers.split(",") if part)), marker)


def same_requirement(one: str, other: str) -> bool:
    """Whether two requirement lines say the same, as verify compares them."""
    return requirement_key(one) == requirement_key(other)


def requirement_key(text: str) -> tuple[str, str]:
    """A requirement as (name, normal form): `Flask >= 3` and `flask>=3` are the same requirement, and
    so are `redis<6,>=5.0` (Poetry's `^5.0`) and `redis>=5.0,<6.0`: versions compare as PEP 440 says."""
    from packaging.requirements import InvalidRequirement, Requirement  # only when the texts differ
    from packaging.utils import canonicalize_version

    try:
        parsed = Requirement(text.split(" --")[0])
    except InvalidRequirement:
        return (compact(text), compact(text))
    name = canonical(parsed.name)
    # `~=` keeps its trailing zeros: ~=1.0 and ~=1 allow different releases.
    specifiers = ",".join(sorted(
        spec.operator + canonicalize_version(spec.version, strip_trailing_zero=spec.operator != "~=")
        if "*" not in spec.version else str(spec) for spec in parsed.specifier))
    extras = ",".join(sorted(canonical(extra) for extra in parsed.extras))
    normal = f"{name}[{extras}]{specifiers};{parsed.marker or ''}{parsed.url or ''}"
    return (name, compact(normal))


def line_number(text: str, entry: str) -> int:
    for number, raw in enumerate(text.splitlines(), start=1):
        if f'"{entry}"' in raw or f"'{entry}'" in raw:
            return number
    return 1
