#!/usr/bin/env python3
"""Turn a fresh clone into the exact dev environment in one command: python3 scripts/onboard.py

Makes .venv (again when its Python does not run or is another version), installs the dev layer's
lock in hash-checking mode, pinship included (from the wheel in the requirements folder), then
hands over to pinship's own `python -m deploy sync`: what the lock does not list is removed and the
project is installed editable. Run it again at any time to get back in sync with the lock.

Written by `python -m deploy init` (pinship's deploy/adopt/bootstrap.py, verbatim): standard library
only, since nothing is installed when it runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYER = "dev"
TAIL = 15


class Refused(Exception):
    """One line saying what failed and what to do."""


def main() -> int:
    try:
        onboard(ROOT)
    except Refused as exc:
        print(f"onboard: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("onboard: interrupted: run this script again to finish", file=sys.stderr)
        return 130
    return 0


def onboard(root: Path) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - the script is written for any python3 a user has
        raise Refused("pinship needs Python 3.11 or newer, not {}.{}: run this script with one, e.g. python3.11 "
                      "scripts/onboard.py".format(*sys.version_info[:2]))
    lock = root / requirements_folder(root) / f"{LAYER}.txt"
    shown = lock.relative_to(root).as_posix()
    if not lock.is_file():
        raise Refused(f"{shown} not found: generate the locks with nox -s lock and commit them")
    venv = root / ".venv"
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    reason = stale(python)
    if reason:
        print(f"onboard: {reason}")
        make_venv(venv)
    print(f"onboard: installing {shown} into .venv (hash-checked)")
    run([str(python), "-m", "pip", "--disable-pip-version-check", "--no-input", "install", "--require-hashes",
         "--no-deps", "-r", str(lock)], root, f"pip install -r {shown}")
    has_pinship = subprocess.run([str(python), "-I", "-c", "import deploy.adopt.sync"], capture_output=True,
                                 check=False).returncode == 0
    if not has_pinship:
        raise Refused(f"{shown} does not bring pinship, which finishes onboarding: add '--find-links wheels' and "
                      "'pinship==VERSION' to test.in (python -m deploy init does) and run nox -s lock")
    # -I: the project's own folders never shadow pinship's `deploy` package.
    run([str(python), "-I", "-m", "deploy", "--root", str(root), "sync"], root, "python -m deploy sync", echo=True)


def requirements_folder(root: Path) -> str:
    import tomllib  # 3.11+: imported after the version check

    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise Refused(f"pyproject.toml cannot be read ({exc}): run this script in a clone of the project") from None
    folder = data.get("tool", {}).get("deploy", {}).get("requirements", "requirements")
    if not isinstance(folder, str):
        raise Refused("pyproject.toml [tool.deploy] requirements must be a folder name")
    return folder


def stale(python: Path) -> str | None:
    """Why .venv must be made (again), or None when its Python runs and is this one's version."""
    if not python.exists():
        return "creating .venv"
    try:
        done = subprocess.run([str(python), "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "recreating .venv: its python does not run"
    if done.returncode != 0:
        return "recreating .venv: its python does not run"
    running = "{}.{}".format(*sys.version_info[:2])
    if done.stdout.strip() != running:
        return f"recreating .venv: it has Python {done.stdout.strip()}, this script runs {running}"
    return None


def make_venv(venv: Path) -> None:
    if venv.is_symlink() or venv.is_file():
        venv.unlink()
    elif venv.exists():
        shutil.rmtree(venv)
    run([sys.executable, "-m", "venv", str(venv)], venv.parent,
        f"{sys.executable} -m venv .venv (on Debian or Ubuntu: apt-get install python3-venv)")


def run(command: list[str], cwd: Path, what: str, echo: bool = False) -> None:
    """Run one step; on failure show its last lines and refuse in one line."""
    try:
        done = subprocess.run(command, cwd=cwd, stdout=None if echo else subprocess.PIPE,
                              stderr=None if echo else subprocess.STDOUT, text=True, errors="replace", check=False)
    except OSError as exc:
        raise Refused(f"cannot run {what}: {exc}") from None
    if done.returncode != 0:
        for line in (done.stdout or "").splitlines()[-TAIL:]:
            print(f"  {line.encode('ascii', 'backslashreplace').decode()}", file=sys.stderr)
        raise Refused(f"{what} failed (exit {done.returncode}): fix the cause and run this script again")


if __name__ == "__main__":
    sys.exit(main())
