"""`python -m deploy sync`: make the virtual environment it runs in hold exactly the dev lock.

As pip-sync does: the lock is installed in hash-checking mode, whatever it does not list is removed
(pip itself and the project stay), and the project is installed editable without its dependencies,
which the lock already holds. An adopting project's `python3 scripts/onboard.py` (deploy/adopt/
bootstrap.py) makes .venv and installs the lock, which brings pinship, then hands over to this.
"""

from __future__ import annotations

import importlib.metadata
import os
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

from deploy.config import Config
from deploy.errors import ConfigError
from deploy.lock.lockfile import REGENERATE, read_pin_line
from deploy.lock.markers import MarkerError, evaluate_marker, marker_environment
from deploy.lock.reqfile import canonical, clip, display, logical_lines, read_text
from deploy.render import inert_lines

LAYER = "dev"
KEPT = {"pip"}  # what a venv needs to install anything, though no lock lists it
PIP = ("-m", "pip", "--disable-pip-version-check", "--no-input")
NEXT = (("nox", "-s", "lock"), ("python", "-m", "deploy", "verify"), ("invoke", "--list"))

Say = Callable[[str], object]


class SyncError(ConfigError):
    """A step of sync that failed: one line naming the command, pip's last lines shown above it."""


def sync(config: Config, *, layer: str = LAYER, say: Say = print) -> None:
    """Install the lock of `layer` into this interpreter's venv, remove the rest, install the project."""
    if sys.prefix == sys.base_prefix:
        raise ConfigError(f"sync changes the environment it runs in, and {sys.executable} is not a virtual "
                          "environment's python", fix="run it with a venv's: .venv/bin/python -m deploy sync "
                          "(python3 scripts/onboard.py makes .venv from a fresh clone)")
    lock = config.requirements / f"{layer}.txt"
    shown = display(lock, config.root)
    if not lock.is_file():
        raise ConfigError(f"{shown} not found", fix=f"generate the locks with {REGENERATE} and commit them")
    wanted, undecided = _pins(lock, config.root)
    say(f"sync: installing {shown} (hash-checked)")
    _pip(config.root, ["install", "--require-hashes", "--no-deps", "-r", str(lock)], f"pip install -r {shown}")
    project = _project_name(config.root)
    extra = sorted(set(_installed()) - set(wanted) - undecided - KEPT - {project or ""})
    if extra:
        say(f"sync: removing {len(extra)} not in {shown}: {', '.join(extra)}")
        _pip(config.root, ["uninstall", "--yes", *extra], "pip uninstall")
    if project is None:
        say("sync: pyproject.toml names no project ([project] or [tool.poetry]), so none is installed")
    else:
        say(f"sync: installing {project} itself, editable, without dependencies (the lock holds them)")
        _pip(config.root, ["install", "--no-deps", "-e", str(config.root)], "pip install --no-deps -e .")
    say(f"sync: this environment matches {shown}. Next:")
    bin_folder = Path(sys.executable).parent
    prefix = os.path.relpath(bin_folder, config.root) if bin_folder.is_relative_to(config.root) else str(bin_folder)
    for tool, *arguments in NEXT:
        say("  " + shlex.join([os.path.join(prefix, tool), *arguments]))


def _pins(lock: Path, root: Path) -> tuple[dict[str, str], set[str]]:
    """The lock's pins whose markers hold here, and the names behind markers this cannot evaluate."""
    env = marker_environment()
    wanted: dict[str, str] = {}
    undecided: set[str] = set()
    for line in logical_lines(lock, read_text(lock, root)):
        if line.text.startswith("-"):
            continue  # --find-links and other options: pip reads them from the same file
        pin = read_pin_line(line.text)
        if pin.name is None:
            raise ConfigError(f"{line.where(root)}: {clip(pin.requirement)!r} is not pinned with ==",
                              fix=f"regenerate the lock: {REGENERATE}")
        try:
            applies = pin.marker is None or evaluate_marker(pin.marker, env)
        except MarkerError:
            undecided.add(pin.name)  # left installed: pip decides it at install time
            continue
        if applies:
            wanted[pin.name] = pin.version
    return wanted, undecided


def _installed() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist.version)
    return found


def _project_name(root: Path) -> str | None:
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    for table in (data.get("project"), (data.get("tool") or {}).get("poetry")):
        if isinstance(table, dict) and isinstance(table.get("name"), str):
            return canonical(table["name"])
    return None


def _pip(root: Path, arguments: list[str], what: str) -> None:
    done = subprocess.run([sys.executable, *PIP, *arguments], cwd=root, capture_output=True, text=True,
                          errors="replace", check=False)
    if done.returncode != 0:
        for line in inert_lines(done.stdout + done.stderr, 15):
            print(f"  {line}", file=sys.stderr)
        raise SyncError(f"{what} failed (exit {done.returncode}, pip's last lines above)",
                        fix="fix the cause, then run again: python3 scripts/onboard.py (or .venv/bin/python -m "
                        "deploy sync)")
