"""Helpers for the adoption tests: run `init` as a user does, and serve the tools init writes.

init puts `pytest` into test.in and pinship (from its vendored wheel) into dev.in, and a freeze
file names real tools; the tests' index holds none of them or of pinship's dependencies, so
`tools()` publishes stand-ins (built deterministically: the same bytes in every test). packaging is
the real one, as `python -m deploy verify` imports it.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import packaging
from packaging.requirements import Requirement

from tests.support.pkgindex import PackageIndex


def init(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy", "init", *args], cwd=root, capture_output=True, text=True, check=False,
    )


def tools(index: PackageIndex) -> None:
    """Stand-ins for the tools init writes into test.in and dev.in by default."""
    names = {path.name for path in index.root.iterdir()}
    for name, requires in (("pytest", []), ("ruff", []), ("pytest-cov", ["pytest"])):
        if not any(entry.startswith(f"{name.replace('-', '_')}-1.0") for entry in names):
            index.add(name, "1.0", requires)
    for requirement in map(Requirement, importlib.metadata.requires("pinship") or []):
        if any(entry.startswith(f"{requirement.name.replace('-', '_')}-") for entry in names):
            continue
        lowest = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if requirement.name == "packaging":
            index.add("packaging", importlib.metadata.version("packaging"), files=_real_packaging())
        else:
            index.add(requirement.name, lowest[0] if lowest else "1.0")


def _real_packaging() -> dict[str, str]:
    folder = Path(packaging.__file__).parent
    return {f"packaging/{path.relative_to(folder).as_posix()}": path.read_text(encoding="utf-8")
            for path in sorted(folder.rglob("*")) if path.is_file() and path.suffix in (".py", ".typed")}


def lines(path: Path) -> list[str]:
    """A layer's requirement lines, without its comments, -r lines and pinship's own two lines in dev.in."""
    text = path.read_text(encoding="utf-8").splitlines()
    return [line for line in text if line.strip() and not line.startswith(("#", "-r ", "--find-links wheels",
                                                                           "pinship=="))]


def new_project(root: Path, pyproject: str) -> Path:
    """A fresh project folder holding only this pyproject.toml, for init to adopt."""
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    return root
