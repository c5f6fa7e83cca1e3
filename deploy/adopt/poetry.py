"""Poetry's `[tool.poetry]` tables translated to PEP 508 lines, and poetry.lock's versions kept.

Constraints follow Poetry's documented rules (docs/versions.md):
`^1.2.3` is >=1.2.3,<2.0.0 (the left-most non-zero part may not change; `^0.0` is >=0.0,<0.1),
`~1.2.3` and `~1.2` allow patch changes, `~1` minor ones, `1.2.*` a wildcard, `*` anything,
`1.2.3` alone is ==1.2.3, and comparisons may be joined by commas or spaces. An `||` (either of
two ranges) has no PEP 440 spelling and is refused naming its line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy.errors import ConfigError
from deploy.lock.reqfile import canonical, clip

if TYPE_CHECKING:
    from deploy.adopt.entries import Adoption

FIX = "write it as a PEP 440 range (e.g. \">=1.2,<2\"), then run python -m deploy init again"
_PART = re.compile(r"^(\^|~=|~|==|!=|>=|<=|>|<|=)?\s*(\S+)$")
_OPERATOR_SPACE = re.compile(r"(\^|~=|~|==|!=|>=|<=|>|<|=)\s+")


class Untranslatable(Exception):
    """A constraint or table entry with no PEP 508 form; the text says why."""


def read(root: Path, text: str, data: dict[str, Any], adoption: Adoption, *, with_dependencies: bool) -> None:
    """Put [tool.poetry] dependencies, dev-dependencies, groups and extras onto layers."""
    # Here, not at the top: verify's drift check imports this module for requirement_lines alone.
    from deploy.adopt.entries import keep_locked_versions, rank
    from deploy.lock.layernames import layer_for

    poetry = data["tool"]["poetry"]
    table = poetry.get("dependencies", {}) if with_dependencies else {}
    extras = poetry.get("extras", {}) if isinstance(poetry.get("extras"), dict) else {}
    in_extra = {canonical(name): extra for extra, names in extras.items() for name in names or []}
    sections: list[tuple[str, str, Any]] = [("tool.poetry.dependencies", "base", table)]
    sections.append(("tool.poetry.dev-dependencies", "dev", poetry.get("dev-dependencies", {})))
    groups = poetry.get("group", {})
    for group, body in (groups.items() if isinstance(groups, dict) else []):
        header = f'tool.poetry.group.{group}.dependencies'
        sections.append((header, layer_for(group, f"pyproject.toml: [{header}]"), (body or {}).get("dependencies", {})))
    for header, layer, entries in sorted(sections, key=lambda section: rank(section[1])):  # lower layers first
        by_layer: dict[str, list[str]] = {}
        for name, spec in (entries.items() if isinstance(entries, dict) else []):
            where = f"pyproject.toml:{line_of(text, header, name)}"
            if canonical(name) == "python":
                if layer == "base":
                    # Written nowhere else: poetry-core already puts it into the app's wheel.
                    adoption.told.append((None, f"requires-python {_python(spec, where)} (from [{header}] python): "
                                                "it stays there, and poetry-core writes it into the app's wheel, so "
                                                "pip refuses the app on another Python; the locks resolve for the "
                                                "Python that runs nox -s lock: use one in that range"))
                continue
            try:
                lines = requirement_lines(name, spec)
            except Untranslatable as exc:
                adoption.unadopted.append((f"{where} [{header}] {clip(name, 80)}: {exc}", f"{layer}.in"))
                continue
            target = layer
            if optional(spec):
                extra = in_extra.get(canonical(name))
                if extra is None:
                    adoption.unadopted.append((f"{where} {clip(name, 80)} (optional, and in no [tool.poetry.extras])",
                                               "<layer>.in"))
                    continue
                target = layer_for(extra, where)
            by_layer.setdefault(target, []).extend(lines)
        for target, lines in by_layer.items():
            adoption.add(target, lines, f"[{header}]")
    keep_locked_versions(root, adoption, "poetry.lock", _from_index)


def requirement_lines(name: str, spec: object, *, checked: bool = True) -> list[str]:
    """One PEP 508 line per constraint (a list of tables gives one line each, told apart by markers),
    in packaging's normal form; `checked=False`: as translated, neither parsed nor normalised (no
    import of packaging), which is what drift's quick comparison needs."""
    check = _checked if checked else (lambda line: line)
    if isinstance(spec, list):
        return [line for entry in spec for line in requirement_lines(name, entry, checked=checked)]
    if isinstance(spec, str):
        return [check(f"{name}{specifier(spec)}")]
    if not isinstance(spec, dict):
        raise Untranslatable(f"a {type(spec).__name__} is not a Poetry constraint")
    for key in ("git", "path", "url"):
        if key in spec:
            raise Untranslatable(f"a {key} dependency: layer locks pin name==version from an index with a hash "
                                  "(publish it to an index and name a version)")
    if "source" in spec:
        raise Untranslatable(f"from the Poetry source \"{clip(str(spec['source']), 60)}\": give that index in "
                              "[tool.deploy] compile-options and add the line by hand")
    extras = spec.get("extras") or []
    text = name + (f"[{','.join(extras)}]" if extras else "") + specifier(str(spec.get("version", "*")))
    markers = [f"({spec['markers']})"] if spec.get("markers") else []
    if spec.get("python"):
        markers.append(_python_marker(str(spec["python"])))
    if spec.get("platform"):
        markers.append(f'sys_platform == "{spec["platform"]}"')
    return [check(text + (f"; {' and '.join(markers)}" if markers else ""))]


def optional(spec: object) -> bool:
    return isinstance(spec, dict) and bool(spec.get("optional"))


def _checked(line: str) -> str:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return str(Requirement(line))
    except InvalidRequirement as exc:
        raise Untranslatable(f"translates to '{clip(line, 120)}', which is not PEP 508 ({exc})") from None


def specifier(constraint: str) -> str:
    """A Poetry version constraint as a PEP 440 specifier (empty for any version)."""
    constraint = constraint.strip()
    if "||" in constraint or "|" in constraint:
        raise Untranslatable(f"'{clip(constraint, 80)}' allows either of two ranges, which PEP 440 cannot say")
    if constraint in ("", "*"):
        return ""
    parts = [part for part in re.split(r"[\s,]+", _OPERATOR_SPACE.sub(r"\1", constraint)) if part]
    return ",".join(_one(part) for part in parts)


def _one(part: str) -> str:
    match = _PART.match(part)
    if match is None:
        raise Untranslatable(f"'{clip(part, 80)}' is not a version constraint")
    operator, version = match.group(1) or "", match.group(2)
    if version == "*":
        return ">=0"
    release = version.split("+")[0]
    numbers = re.match(r"^(\d+(?:\.\d+)*)", release)
    if numbers is None:
        raise Untranslatable(f"'{clip(part, 80)}' has no version number")
    given = [int(n) for n in numbers.group(1).split(".")]
    if operator in ("^", "~") or (operator == "" and version.endswith(".*")):
        if version.endswith(".*"):
            return f"=={version}"
        if operator == "^":
            index = next((i for i, n in enumerate(given) if n != 0), len(given) - 1)
        else:
            index = 0 if len(given) == 1 else 1
        upper = [*given[:index], given[index] + 1]
        return f">={version},<{'.'.join(map(str, upper))}"
    if operator in ("", "="):
        return f"=={version}"
    return f"{operator}{version}"


def _python(spec: object, where: str) -> str:
    try:
        return specifier(str(spec)).replace(">=0", "") or "any"
    except Untranslatable as exc:
        raise ConfigError(f"{where}: python = {clip(str(spec), 80)}: {exc}", fix=FIX) from None


def _python_marker(constraint: str) -> str:
    """`python = "^3.8"` on one dependency as a marker on its line."""
    specs = [spec for spec in specifier(constraint).split(",") if spec]
    found = []
    for spec in specs:
        operator = re.match(r"^(~=|==|!=|>=|<=|>|<)", spec)
        if operator is None:
            continue
        version = spec[len(operator.group(1)):]
        variable = "python_version" if version.count(".") <= 1 and "*" not in version else "python_full_version"
        found.append(f'{variable} {operator.group(1)} "{version}"')
    return " and ".join(found) or 'python_version >= "0"'


def _from_index(package: Mapping[str, Any]) -> bool:
    """A poetry.lock package from an index (not git, a path or a URL)."""
    source = package.get("source") or {}
    return isinstance(source, dict) and source.get("type") in (None, "legacy")


def line_of(text: str, header: str, key: str) -> int:
    """The line of `key = …` inside the `[header]` table, for messages (1 if it cannot be found)."""
    lines = text.splitlines()
    inside = False
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if stripped.startswith("["):
            inside = stripped.strip("[]").replace('"', "").replace(" ", "") == header
            continue
        if inside and re.match(rf'^["\']?{re.escape(key)}["\']?\s*=', stripped):
            return number
    return 1
