"""Which of a project's requirement sources init reads, and what it names as not adopted.

One source gives the layers: `--from FILE` when given (`--from pyproject.toml`: the project's own
declaration), else the only one there is: the project's declaration ([project], then [tool.poetry])
or a requirements.txt (also beside a [project] table that declares no requirement at all, only the
name and version to build the app under). Two or more of those and no --from is a refusal naming
them, as init cannot know which one the project really installs from. Every other source found is named in a warning,
so nothing a project declares is passed over in silence.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from deploy.adopt import freeze, pep621, poetry, uv
from deploy.adopt.entries import Adoption
from deploy.errors import ConfigError
from deploy.render import inert

_REQUIREMENTS_TXT = re.compile(r"requirements[\w.-]*\.txt")


def read(root: Path, text: str | None, data: dict[str, Any] | None, chosen: Path | None) -> Adoption:
    """The adoption of `root` (`text`/`data`: its pyproject.toml and what it parses to, None when it has none)."""
    adoption = Adoption()
    project = (data or {}).get("project")
    declared = data is not None and (isinstance(project, dict) or isinstance(_poetry(data), dict))
    if chosen is not None and chosen.absolute() == root / "pyproject.toml":
        if not declared:
            raise ConfigError("--from pyproject.toml: it has no [project] or [tool.poetry] table to adopt",
                              fix="name a requirements file instead, e.g. --from requirements.txt")
        chosen = None  # the declaration, with the other sources named as not adopted
    elif chosen is not None:
        if not chosen.is_file():
            what = "is a folder, not a file" if chosen.is_dir() else "no such file"
            shown = chosen.relative_to(root) if chosen.is_relative_to(root) else chosen
            raise ConfigError(f"--from {inert(str(shown), 200)}: {what}",
                              fix="name the requirements file to adopt, e.g. --from requirements.txt")
        freeze.read(root, chosen, data, adoption)
        adoption.unadopted += _unadopted(root, data or {}, chosen)
        return adoption
    else:
        _only_one(root, data)
        if declared and _declares_nothing(data or {}) and (root / "requirements.txt").is_file():
            # A [project] table there only to build the app (name, version): the frozen file is the one source.
            freeze.read(root, root / "requirements.txt", data, adoption)
            adoption.unadopted += _unadopted(root, data or {}, root / "requirements.txt")
            return adoption
    if declared:
        assert data is not None
        if isinstance(project, dict):
            pep621.read(data, adoption)
        if isinstance(_poetry(data), dict):  # Poetry 2 keeps groups in [tool.poetry] beside [project]
            poetry.read(root, text or "", data, adoption, with_dependencies=not isinstance(project, dict))
        uv.read(root, data, adoption)
    elif (root / "requirements.txt").is_file():
        freeze.read(root, root / "requirements.txt", data, adoption)
    elif data is None:
        raise ConfigError(
            f"{root / 'pyproject.toml'} does not exist: init adopts an existing Python project",
            fix="create a pyproject.toml with a [project] table first (name, version, dependencies), or run "
            "init --from requirements.txt",
        )
    adoption.unadopted += _unadopted(root, data or {}, chosen)
    return adoption


def _only_one(root: Path, data: dict[str, Any] | None) -> None:
    """Refuse to guess between two sources of the app's dependencies."""
    found = []
    project = (data or {}).get("project")
    dynamic = project.get("dynamic") if isinstance(project, dict) else None
    if isinstance(project, dict) and (project.get("dependencies") or
                                      (isinstance(dynamic, list) and "dependencies" in dynamic)):
        found.append("pyproject.toml [project] dependencies")
    table = _poetry(data or {})
    poetry_dependencies = table.get("dependencies") if isinstance(table, dict) else None
    if isinstance(poetry_dependencies, dict) and set(poetry_dependencies) - {"python"}:
        found.append("pyproject.toml [tool.poetry.dependencies]")
    if (root / "requirements.txt").is_file():
        found.append("requirements.txt")
    if len(found) > 1:
        raise ConfigError(
            f"init found {len(found)} sources of the app's dependencies: {', '.join(found)}; it adopts one",
            fix="name it with --from, e.g. python -m deploy init --from requirements.txt (or --from pyproject.toml "
            "for the project's own declaration); the others are then listed as not adopted",
        )


def _declares_nothing(data: dict[str, Any]) -> bool:
    """Whether the project's declaration names no requirement init would adopt: no dependencies (nor
    dynamic ones), optional dependencies, dependency groups, Poetry or uv dependencies."""
    project = data.get("project") if isinstance(data.get("project"), dict) else {}
    tool = data.get("tool") if isinstance(data.get("tool"), dict) else {}
    assert isinstance(project, dict) and isinstance(tool, dict)
    dynamic = project.get("dynamic")
    dynamic = dynamic if isinstance(dynamic, list) else []
    return not (project.get("dependencies") or project.get("optional-dependencies") or data.get("dependency-groups")
                or "dependencies" in dynamic or "optional-dependencies" in dynamic or tool.get("poetry")
                or (isinstance(tool.get("uv"), dict) and tool["uv"].get("dev-dependencies")))


def _unadopted(root: Path, data: dict[str, Any], chosen: Path | None) -> list[tuple[str, str]]:
    """Requirement sources init has not read, each with the layer it suggests."""
    found: list[tuple[str, str]] = []
    tool = data.get("tool") if isinstance(data.get("tool"), dict) else {}
    assert isinstance(tool, dict)

    project = data.get("project")
    # --from a file: [project]'s own list is the user's to reconcile with what was adopted.
    if chosen is not None and isinstance(project, dict) and project.get("dependencies"):
        found.append(("pyproject.toml [project] dependencies (adopted from the file given with --from "
                      "instead)", "base.in"))
    table = tool.get("poetry")
    if chosen is not None and isinstance(table, dict) and set(table.get("dependencies") or {}) - {"python"}:
        found.append(("[tool.poetry.dependencies] (adopted from the file given with --from instead)", "base.in"))
    elif isinstance(project, dict) and isinstance(table, dict) and set(table.get("dependencies") or {}) - {"python"}:
        found.append(("[tool.poetry.dependencies] (beside [project] dependencies, which base.in follows)", "base.in"))
    pdm = tool.get("pdm")
    if isinstance(pdm, dict) and pdm.get("dev-dependencies"):
        found.append(("[tool.pdm] dev-dependencies", "dev.in"))
    adopted = chosen.resolve() if chosen is not None else None
    for entry in sorted(os.listdir(root)):
        if not _REQUIREMENTS_TXT.fullmatch(entry) or (root / entry).resolve() == adopted:
            continue
        if entry == "requirements.txt" and chosen is None and not isinstance(project, dict) and table is None:
            continue  # it was the source
        found.append((f"{entry} (adopt it with: python -m deploy init --from {entry})",
                      "base.in" if entry == "requirements.txt" else "<layer>.in"))
    return found


def _poetry(data: dict[str, Any]) -> object:
    tool = data.get("tool")
    return tool.get("poetry") if isinstance(tool, dict) else None
