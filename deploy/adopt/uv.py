"""uv: its dependency groups are PEP 735 (read by pep621); here its legacy `[tool.uv]
dev-dependencies` and uv.lock's versions, kept as the first lock's preferences."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deploy.adopt.entries import Adoption, keep_locked_versions, line, requirement

FIX = 'list one PEP 508 requirement per string, e.g. dev-dependencies = ["pytest>=8"]'


def read(root: Path, data: dict[str, Any], adoption: Adoption) -> None:
    table = data.get("tool", {}).get("uv", {})
    entries = table.get("dev-dependencies", []) if isinstance(table, dict) else []
    lines = []
    for number, entry in enumerate(entries if isinstance(entries, list) else []):
        parsed = requirement(entry, f"pyproject.toml: [tool.uv] dev-dependencies[{number}]", FIX)
        assert isinstance(entry, str)
        lines.append(line(entry, parsed))
    adoption.add("dev", lines, "[tool.uv] dev-dependencies")
    preferences(root, adoption)


def _from_index(package: Mapping[str, Any]) -> bool:
    """A uv.lock package from a registry (the project itself, git and paths are not)."""
    source = package.get("source")
    return isinstance(source, dict) and "registry" in source


def preferences(root: Path, adoption: Adoption) -> None:
    """uv.lock's versions of packages from an index, as the first lock's preferences."""
    keep_locked_versions(root, adoption, "uv.lock", _from_index)
