"""A `pip freeze` file (or any requirements.txt) read into layers, its versions kept.

Top-level packages are those no other listed package requires. Who requires whom comes from each
package's metadata on the index the lock will use, read by `pip install --dry-run --no-deps
--report` for exactly the listed versions: the environment the file came from is often gone (a
server, a colleague's laptop, a Docker image), the index is what the lock reads anyway, and pip
fetches only metadata where the index offers it (PEP 658). A dependency that only an extra of a
listed package brings in is written as that extra (`uvicorn[standard]`) when every requirement of
the extra is listed, so nothing the app ran with falls out of the base layer.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement

from deploy.adopt import newproject, tools
from deploy.adopt.entries import Adoption
from deploy.errors import ConfigError
from deploy.lock.reqfile import Line, canonical, clip, display, logical_lines, read_text

PINSHIP = "pinship"
# pip's words for a pinned version the index does not have.
_NOT_FOUND = re.compile(r"(?:No matching distribution found for|satisfies the requirement) ([A-Za-z0-9][\w.-]*)")


@dataclass
class _Listed:
    """One requirement line of the file."""

    line: Line
    requirement: Requirement
    version: str | None  # the frozen version, for `name==version`
    requires: list[Requirement] = field(default_factory=list)
    extras: dict[str, list[Requirement]] = field(default_factory=dict)
    known: bool = False  # its metadata was read


def read(root: Path, path: Path, data: dict[str, Any] | None, adoption: Adoption) -> None:
    """Adopt `path`: top-level packages to base.in, tools to test.in/dev.in, versions as preferences."""
    shown = display(path, root)
    listed = _parse(root, path, adoption)
    if not listed:
        raise ConfigError(f"{shown}: lists no requirement to adopt", fix="name the file pip freeze wrote")
    problem, missing = _read_metadata(listed)
    if problem:
        adoption.warnings.append(f"{shown}: {clip(problem)}; the packages whose metadata pip could not read count "
                                 "as top-level: move to where they belong any that another package requires")
    wanted: dict[str, set[str]] = {}
    required = _required(listed, wanted)
    beside = _beside(listed, required, wanted)
    if beside:
        adoption.told.append((None, f"not in the layers: pinship and the {len(beside) - 1} packages only it requires "
                                    "(it is installed beside them)"))
    if gone := [key for key in missing if key not in beside]:
        versions = ", ".join(f"{key}=={listed[key].version}" for key in gone)
        adoption.warnings.append(f"{shown}: the index offers no file of {versions}, so the lock will pick other "
                                 "versions")
    # pip-compile takes a preferred version as a constraint: one the index lacks would stop the lock.
    adoption.preferences.update({key: item.version for key, item in listed.items()
                                 if item.version and key not in missing and key not in beside})
    adoption.preferred_from = shown
    layers: dict[str, list[str]] = {"base": [], "test": [], "dev": []}
    only_tools: list[str] = []
    for key, item in listed.items():
        if key in beside:
            continue
        if key in tools.INSTALLERS:
            adoption.unadopted.append((f"{item.line.where(root)} {clip(item.line.text)} (an installer tool; a "
                                       "layer needs it only if the app imports it)", "base.in"))
            continue
        if key in required:
            if not any(tools.layer_of(parent) is None for parent in required[key]):
                only_tools.append(item.requirement.name)
            continue
        layers[tools.layer_of(key) or "base"].append(_written(item, wanted.get(key, set())))
    adoption.add("base", layers["base"], f"{shown} (top-level: no other listed package requires them)")
    adoption.add("test", layers["test"], f"{shown} (test tools: move any your app needs to base.in)")
    adoption.add("dev", layers["dev"], f"{shown} (development tools: move any your app needs to base.in)")
    if only_tools:
        adoption.told.append((None, f"not in base.in, as only test and dev tools require them: {', '.join(only_tools)} "
                             "(add any your app imports to base.in)"))
    if data is None:
        name, version, source = newproject.declared(root)
        adoption.pyproject = newproject.text(root, layers["base"], name, version)
        where = (f"from {source}, which stays: the dependencies are pyproject.toml's [project] list now, so take "
                 f"any install_requires out of it" if source else
                 "from the folder's name and a first version: change them there if the app is known by others")
        adoption.told.append((None, f'pyproject.toml: name "{name}", version "{version}", {where}'))
    elif "project" not in data and "poetry" not in (data.get("tool") or {}):
        adoption.warnings.append("pyproject.toml has no [project] table, so the app's wheel cannot be built: add one "
                                 "with name, version and dependencies = base.in's requirements")
    adoption.told.append((None, f"{shown}: read once; the layers' .in files are what the locks come from now (delete "
                                "it once nothing else reads it)"))


def _parse(root: Path, path: Path, adoption: Adoption) -> dict[str, _Listed]:
    listed: dict[str, _Listed] = {}
    for line in logical_lines(path, read_text(path, root)):
        where = f"{line.where(root)} '{clip(line.text, 120)}'"
        if line.text.startswith("-"):
            why = ("an editable install cannot be locked with hashes; pinship builds the project's own wheel"
                   if line.text.startswith(("-e", "--editable")) else "a pip option: give indexes in [tool.deploy] "
                   "compile-options")
            adoption.unadopted.append((f"{where} ({why})", "base.in"))
            continue
        text = line.text.split(" --")[0].strip()
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            adoption.unadopted.append((f"{where} (not a PEP 508 requirement)", "base.in"))
            continue
        if canonical(requirement.name) == PINSHIP:  # however it was installed: its requirements are known here
            listed[PINSHIP] = _Listed(line, Requirement(PINSHIP), None)
            continue
        if requirement.url:
            adoption.unadopted.append((f"{where} (a direct reference: layer locks pin name==version from an "
                                       "index; publish it to one, or install it beside the lock)", "base.in"))
            continue
        version = None
        specs = list(requirement.specifier)
        if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
            version = specs[0].version
        listed[canonical(requirement.name)] = _Listed(line, requirement, version)
    return listed


def _read_metadata(listed: dict[str, _Listed]) -> tuple[str | None, list[str]]:
    """Fill each item's requirements from the index; return why not, when pip could not, and the
    packages whose listed version the index does not offer.

    A version the index does not offer (yanked files are still offered, removed ones are not) is
    left out and tried without: the rest still gets its metadata, and the lock says it moved.
    """
    # The installers are named as not adopted anyway; pinship's requirements are read where it runs.
    left = {key: item for key, item in listed.items() if key != PINSHIP and key not in tools.INSTALLERS}
    if PINSHIP in listed:
        listed[PINSHIP].requires = _installed_requirements(PINSHIP)
    missing: list[str] = []
    for _ in range(10):
        done = _dry_run(left)
        if done.returncode == 0:
            break
        gone = {canonical(match.group(1)) for match in _NOT_FOUND.finditer(done.stderr)} & set(left)
        if not gone:
            errors = [raw.strip() for raw in done.stderr.splitlines() if raw.startswith("ERROR")]
            return (errors or done.stderr.strip().splitlines()[-1:] or ["pip failed"])[0], missing
        missing += sorted(gone)
        left = {key: item for key, item in left.items() if key not in gone}
    else:
        return "pip could not read them", missing
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        return "pip's report was not JSON", missing
    for entry in report.get("install", []):
        metadata = entry.get("metadata", {})
        item = listed.get(canonical(str(metadata.get("name", ""))))
        if item is None:
            continue
        item.known = True
        for text in metadata.get("requires_dist", []) or []:
            try:
                dependency = Requirement(text)
            except InvalidRequirement:
                continue
            for extra in _extras_of(dependency):
                item.extras.setdefault(extra, []).append(dependency)
            if _applies(dependency, ""):
                item.requires.append(dependency)
    return None, missing


def _installed_requirements(name: str) -> list[Requirement]:
    try:
        texts = importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    return [requirement for requirement in map(Requirement, texts) if _applies(requirement, "")]


def _beside(listed: dict[str, _Listed], required: dict[str, list[str]], wanted: dict[str, set[str]]) -> set[str]:
    """pinship and what only it requires: installed beside the layers (deploy.adopt.itself), not in them."""
    if PINSHIP not in listed:
        return set()
    others = [key for key in listed if key not in required and key != PINSHIP]
    return _reach([PINSHIP], listed, wanted) - _reach(others, listed, wanted)


def _dry_run(listed: dict[str, _Listed]) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="pinship-adopt-") as work:
        wanted = Path(work) / "frozen.txt"
        wanted.write_text("".join(f"{item.requirement}\n" for item in listed.values()), encoding="utf-8")
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
                   "--quiet", "--disable-pip-version-check", "--report", "-", "-r", str(wanted)]
        return subprocess.run(command, capture_output=True, text=True, check=False, cwd=work, env=dict(os.environ))


def _extras_of(requirement: Requirement) -> list[str]:
    marker = str(requirement.marker or "")
    if "extra" not in marker:
        return []
    found: list[str] = []
    for part in marker.replace("'", '"').split('"')[1::2]:
        if _applies(requirement, part) and not _applies(requirement, ""):
            found.append(canonical(part))
    return found


def _applies(requirement: Requirement, extra: str) -> bool:
    if requirement.marker is None:
        return True
    try:
        return requirement.marker.evaluate({"extra": extra})
    except UndefinedEnvironmentName:
        return False


def _required(listed: dict[str, _Listed], wanted: dict[str, set[str]]) -> dict[str, list[str]]:
    """Each listed package some other listed package requires -> those packages' names.

    An extra counts when every requirement of it is listed: its parent is then written with that
    extra (`wanted`), which keeps its dependencies in the same layer. Packages that require each
    other in a circle would all be "required": the first of such a circle stays top-level.
    """
    required: dict[str, list[str]] = {}
    for key, item in listed.items():
        reached = [canonical(dep.name) for dep in item.requires]
        for extra, deps in item.extras.items():
            names = [canonical(dep.name) for dep in deps]
            if names and all(name in listed for name in names) and any(name not in reached for name in names):
                wanted.setdefault(key, set()).add(extra)
                reached += names
        for name in reached:
            if name in listed and name != key:
                required.setdefault(name, []).append(key)
    tops = [key for key in listed if key not in required]
    seen = _reach(tops, listed, wanted)
    for key in listed:
        if key not in seen:  # a circle nobody outside it requires
            required.pop(key, None)
            seen |= _reach([key], listed, wanted)
    return required


def _reach(start: list[str], listed: dict[str, _Listed], wanted: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(start)
    while stack:
        key = stack.pop()
        if key in seen or key not in listed:
            continue
        seen.add(key)
        item = listed[key]
        stack += [canonical(dep.name) for dep in item.requires]
        for extra in wanted.get(key, ()):
            stack += [canonical(dep.name) for dep in item.extras.get(extra, [])]
    return seen


def _written(item: _Listed, extras: set[str]) -> str:
    """The base.in line: the name (with its extras and marker), a frozen `==` left to the preferences,
    any other constraint kept as the user wrote it."""
    requirement = Requirement(str(item.requirement))
    requirement.extras |= extras
    if item.version is not None:
        requirement.specifier = type(requirement.specifier)()
    return str(requirement)
