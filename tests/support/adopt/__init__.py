"""Helpers for the adoption tests: run `init` as a user does, and serve the tools init writes.

init puts `pytest` into test.in, and a freeze file names real tools; the
tests' index holds none of them, so `tools()` publishes stand-ins (built deterministically: the
same bytes in every test).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def lines(path: Path) -> list[str]:
    """A layer's requirement lines, without its comments and -r lines."""
    text = path.read_text(encoding="utf-8").splitlines()
    return [line for line in text if line.strip() and not line.startswith(("#", "-r "))]
