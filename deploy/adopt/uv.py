"""uv: its dependency groups are PEP 735 (read by pep621); here its legacy `[tool.uv]
dev-dependencies` and uv.lock's versions, kept as the first lock's preferences."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from deploy.adopt.entries import Adoption, line, requirement
from deploy.lock.reqfile import canonical, clip, read_text

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


def preferences(root: Path, adoption: Adoption) -> None:
    """uv.lock's versions of packages from an index (the project itself, git and paths are skipped)."""
    path = root / "uv.lock"
    if not path.is_file():
        return
    try:
        data = tomllib.loads(read_text(path, root))
    except tomllib.TOMLDecodeError as exc:
        adoption.warnings.append(f"uv.lock: {clip(str(exc))}: its versions are not kept")
        return
    for package in data.get("package", []):
        source = package.get("source") if isinstance(package, dict) else None
        if isinstance(source, dict) and "registry" in source and package.get("version"):
            adoption.preferences[canonical(str(package["name"]))] = str(package["version"])
    adoption.preferred_from = "uv.lock"
