#!/usr/bin/env python3
"""Turn a fresh clone into an exactly-pinned dev environment: python3 scripts/onboard.py

Makes .venv, installs requirements/dev.txt in hash-checking mode, removes anything the lock does
not list, installs the project editable, checks the locks are fresh, and says what to run next.
Run it again at any time: it only does what changed, and nothing at all when nothing did.

Standard library only, and importable by old interpreters so that it can tell them they are too
old rather than fail with a traceback. It reads requirement files, locks, specifiers and markers
with the package's own stdlib-only modules (deploy/lock/), loaded from this checkout: nothing is
installed yet when it runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The checkout's own package, ahead of any pinship installed elsewhere. What this imports is stdlib
# only and parses as Python 3.7, the oldest that reads `from __future__ import annotations`
# (tests/test_onboard.py checks both), so an old python3 still gets as far as check_python and is
# told in one line that it is too old.
CHECKOUT = Path(__file__).resolve().parent.parent
if sys.path[:1] != [str(CHECKOUT)]:
    sys.path.insert(0, str(CHECKOUT))

from deploy.errors import DeployError  # noqa: E402
from deploy.lock.lockfile import REGENERATE, Pin, read_pin_line  # noqa: E402
from deploy.lock.markers import MarkerError, evaluate_marker, marker_environment  # noqa: E402
from deploy.lock.reqfile import Line, canonical, clip, hides_reference, logical_lines, parse_reference, read_text  # noqa: E402
from deploy.lock.specifiers import SpecifierError, clause_ok, pad, parse_release, parse_specifier, release_of, satisfies  # noqa: E402
from deploy.render import inert_lines  # noqa: E402

LAYER = "dev"
STAMP = ".onboard-stamp"
NEXT_COMMANDS = (("invoke", "deploy", "--env", "local"), ("nox", "-s", "tests"), ("nox", "-l"))
# pip's own fallback when pyproject.toml has no [build-system] table.
DEFAULT_BUILD_REQUIRES = ("setuptools>=40.8.0", "wheel")
PIP = ("-m", "pip", "--disable-pip-version-check", "--no-input")
PIP_TAIL_LINES = 20
NETWORK_SIGNS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ProxyError",
    "SSLError",
    "Connection refused",
    "Max retries exceeded",
)
WHERE_PIP_LOOKS = "(pip config list shows where pip looks)"
# Runs inside the venv's interpreter; -I keeps the current directory off sys.path.
PROBE = """\
import importlib.metadata as m, json, sys
dists = {}
for dist in m.distributions():
    name = dist.metadata["Name"]
    if name:
        dists.setdefault(name, dist.version)
print(json.dumps({"python": ".".join(map(str, sys.version_info[:3])), "dists": dists}))
"""


class OnboardError(DeployError):
    """A problem the user can fix: str() is one line naming the file or command and the fix."""


# --- requires-python: checked before anything else is done --------------------------------------


def python_mismatch(version: tuple[int, ...], specifier: str) -> str | None:
    """Why this Python does not satisfy requires-python, or None when it does."""
    running = ".".join(map(str, version))
    for op, target in parse_specifier(specifier):
        if clause_ok(version, op, target):
            continue
        where = f"pyproject.toml requires-python {specifier}"
        if op == "!=":
            return f"Python {running} is excluded by {where}. Run this script with another python"
        wanted = release_of(target[:-2] if target.endswith(".*") else target)
        if pad(version, len(wanted)) > wanted:
            return f"Python {running} is too new: {where}. Run this script with an older python"
        suggested = list(pad(wanted, 2)[:2])
        if op == ">":
            suggested[-1] += 1
        command = " ".join(map(shlex.quote, ["python{}.{}".format(*suggested), *sys.argv]))
        return (
            f"Python {running} is too old: {where}. "
            f"Run this script with a newer python, e.g. {command}"
        )
    return None


def _toml(path: Path) -> dict[str, Any]:
    import tomllib  # 3.11+: imported here so older interpreters get the requires-python message

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise OnboardError(f"{path.name}: invalid TOML ({error}): fix the file") from None


def check_python(pyproject: Path) -> None:
    """Refuse to go on under a Python that the project's requires-python excludes."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this branch is why the script runs on 3.8
        # No tomllib: enough of a reader to find requires-python and say what to do.
        found = re.search(r"""(?m)^requires-python\s*=\s*["']([^"']*)""", pyproject.read_text())
        spec = found.group(1) if found else ">=3.11"
    else:
        spec = _toml(pyproject).get("project", {}).get("requires-python")
    if spec is None:
        warn("pyproject.toml has no [project] requires-python: not checking the Python version")
        return
    try:
        problem = python_mismatch(tuple(sys.version_info[:3]), spec)
    except SpecifierError as error:
        raise OnboardError(f"pyproject.toml: requires-python {spec!r}: {error}: fix it") from None
    if problem is None and sys.version_info < (3, 11):
        problem = (
            f"this script needs Python 3.11 or newer (for tomllib), not {platform.python_version()}"
        )
    if problem:
        raise OnboardError(problem)


# --- the lock, as pip installs it on this machine -------------------------------------------------


@dataclass
class Lock:
    path: Path
    pins: dict[str, Pin]
    undecided: set[str]  # names behind markers this script could not evaluate: left to pip


def parse_lock(root: Path, name: str, env: dict[str, str]) -> Lock:
    """Read the compiled lock `root/name` and refuse what hash-checking mode cannot install.

    The lines, names and pins are read by deploy.lock (as verify reads them); what is decided
    here is this machine's view: which markers hold, and which lines pip could not install.
    """
    path = root / name
    if not path.exists():
        raise OnboardError(
            f"{name} not found: generate the locks with nox -s lock "
            "(before .venv exists: pipx run nox -s lock) and commit them"
        )
    text = read_text(path, root, fix=f"regenerate it with {REGENERATE}")
    lock = Lock(path, {}, set())
    for line in logical_lines(path, text):
        where = line.where(root)
        if line.text.startswith(("-e", "--editable")):
            raise OnboardError(
                f"{where}: editable requirements cannot be hash-checked: "
                f"remove -e lines from the .in file and run {REGENERATE}"
            )
        if parse_reference(line) or hides_reference(line):
            raise OnboardError(
                f"{where}: a compiled lock must be complete on its own, without "
                f"-r or -c: run {REGENERATE}"
            )
        if line.text.startswith("-"):
            continue  # index and pip options: pip reads them from the same file
        pin, applies = _read_pin(where, line, env)
        if applies is None:
            lock.undecided.add(pin.name)
        elif applies:
            other = lock.pins.get(pin.name)
            if other and other.version != pin.version:
                raise OnboardError(
                    f"{where}: {pin.name} is pinned twice ({other.version} on "
                    f"line {other.line}, {pin.version} here): run {REGENERATE}"
                )
            lock.pins[pin.name] = pin
    return lock


def _read_pin(where: str, line: Line, env: dict[str, str]) -> tuple[Pin, bool | None]:
    """The pin on one requirement line, and whether its marker applies (None: cannot tell)."""
    read = read_pin_line(line.text)
    if read.name is None:
        raise OnboardError(
            f"{where}: {clip(read.requirement)!r} is not pinned with ==: "
            f"regenerate the lock with {REGENERATE}"
        )
    if not read.hashes:
        raise OnboardError(
            f"{where}: {clip(read.requirement)} has no --hash, so it cannot be installed in "
            f"hash-checking mode: regenerate the lock with {REGENERATE}"
        )
    pin = Pin(read.name, read.version, read.hashes, line=line.number)
    if read.marker is None:
        return pin, True
    try:
        return pin, evaluate_marker(read.marker, env)
    except MarkerError as error:
        warn(
            f"{where}: cannot evaluate the marker {clip(read.marker)!r} ({error}): "
            f"leaving {pin.name} to pip"
        )
        return pin, None


# --- pyproject.toml -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    name: str
    build_requires: tuple[str, ...]
    requirements_dir: str


def read_project(pyproject: Path) -> Project:
    data = _toml(pyproject)
    name = data.get("project", {}).get("name")
    if not name:
        raise OnboardError("pyproject.toml has no [project] name: add one")
    build = data.get("build-system", {}).get("requires", DEFAULT_BUILD_REQUIRES)
    folder = data.get("tool", {}).get("deploy", {}).get("requirements", "requirements")
    return Project(canonical(name), tuple(build), folder)


def check_build_requires(project: Project, lock: Lock, shown: str, env: dict[str, str]) -> None:
    """The editable install runs without build isolation, so the lock must pin the build tools."""
    for requirement in project.build_requires:
        match = re.fullmatch(
            r"\s*([A-Za-z0-9][\w.-]*)\s*(?:\[[^\]]*\])?\s*([^;]*?)\s*(?:;(.*))?", requirement
        )
        if match is None:
            continue  # pip reports build requirements it cannot read
        name, spec, marker = canonical(match[1]), match[2], match[3]
        try:
            if marker and not evaluate_marker(marker, env):
                continue
        except MarkerError:
            continue
        pin = lock.pins.get(name)
        if pin is None and name not in lock.undecided:
            raise OnboardError(
                f"{shown} does not pin {name}, which pyproject.toml [build-system] requires: "
                f"add it to the .in file and run nox -s lock (pip-compile --allow-unsafe)"
            )
        release = parse_release(pin.version) if pin else None
        try:
            fits = release is None or not spec or satisfies(release, spec)
        except SpecifierError:
            fits = True  # pip will judge what this script cannot parse
        if not fits and pin:
            raise OnboardError(
                f"{shown}:{pin.line} pins {name}=={pin.version}, but pyproject.toml "
                f"[build-system] requires {requirement}: run nox -s lock"
            )


# --- the virtual environment ----------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    python: str
    dists: dict[str, str]  # normalized name -> version


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_command(tool: str) -> str:
    """How to run one of the venv's commands from the project root."""
    return str(Path(".venv", "Scripts" if os.name == "nt" else "bin", tool))


def probe(venv: Path) -> Probe | None:
    """Python version and installed distributions of the venv, or None if it does not run."""
    python = venv_python(venv)
    if not python.exists():
        return None
    try:
        result = subprocess.run(
            [str(python), "-I", "-c", PROBE], capture_output=True, text=True, timeout=60
        )
        data = json.loads(result.stdout) if result.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    if not isinstance(data, dict):
        return None
    dists = {canonical(name): version for name, version in data["dists"].items()}
    return Probe(data["python"], dists)


def _recreate_reason(venv: Path, found: Probe | None, stamp: dict[str, str]) -> str | None:
    running = "{}.{}".format(*sys.version_info[:2])
    if not venv.exists():
        return "creating .venv"
    if found is None:
        return "recreating .venv: its python does not run"
    if found.python.rsplit(".", 1)[0] != running:
        return f"recreating .venv: it has Python {found.python}, this script runs {running}"
    if "pip" not in found.dists:
        return "recreating .venv: it has no pip"
    if stamp.get("venv", str(venv)) != str(venv):
        return f"recreating .venv: it was made at {stamp['venv']} and its scripts still point there"
    return None


def create_venv(venv: Path) -> Probe:
    import importlib.util

    apt = (
        "Python cannot create virtual environments here (no ensurepip): install "
        "python3-venv, e.g. sudo apt-get install python3-venv (or python{}.{}-venv), "
        "then run this script again"
    ).format(*sys.version_info[:2])
    if importlib.util.find_spec("venv") is None or importlib.util.find_spec("ensurepip") is None:
        raise OnboardError(apt)
    if venv.is_symlink() or venv.is_file():
        venv.unlink()
    elif venv.exists():
        shutil.rmtree(venv)
    code, output = run([sys.executable, "-m", "venv", str(venv)], venv.parent)
    if code != 0:
        if "ensurepip" in output or "python3-venv" in output:
            raise OnboardError(apt)
        show_tail(output)
        raise OnboardError(f"{sys.executable} -m venv .venv failed (exit {code}): see above")
    found = probe(venv)
    if found is None:
        raise OnboardError(
            f"the new .venv does not run ({venv_python(venv)}): remove .venv and "
            "run this script again with another python"
        )
    return found


# --- pip ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkout:
    """The project being set up, and how to talk about it."""

    root: Path
    lock_name: str  # the dev lock relative to root, as messages and pip's command line show it
    echo: bool  # show pip's output as it runs

    @property
    def venv(self) -> Path:
        return self.root / ".venv"

    @property
    def python(self) -> str:
        return str(venv_python(self.venv))


def run(command: list[str], cwd: Path, echo: bool = False) -> tuple[int, str]:
    """Run a command, capturing stdout and stderr together; echo them live when asked."""
    try:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as error:
        raise OnboardError(f"cannot run {shlex.join(command)}: {error}") from None
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if echo:
            print(f"  {line}", end="", flush=True)
    return process.wait(), "".join(lines)


def show_tail(output: str) -> None:
    for line in inert_lines(output, PIP_TAIL_LINES):  # the package's one rule for quoted output
        print(f"  {line}", file=sys.stderr)


def pip_failure(output: str, shown: str) -> str | None:
    """A one-line explanation of a pip failure this script recognizes."""
    if "DO NOT MATCH THE HASHES" in output:
        which = re.search(r"^\s*(\S+) from \S+", output, re.MULTILINE)
        expected = re.search(r"Expected sha256 (\w+)", output)
        got = re.search(r"Got\s+(\w+)", output)
        detail = (
            f" for {clip(which[1]) if which else 'a file'}: the lock says sha256 "
            f"{expected[1] if expected else '?'}, the index serves {got[1] if got else '?'}"
        )
        return (
            f"{shown} and the package index disagree on a file's hash{detail}: "
            "if the lock is right the file on the index changed; if not, run nox -s lock"
        )
    if any(sign in output for sign in NETWORK_SIGNS):
        return f"could not reach the package index: check your network or proxy {WHERE_PIP_LOOKS}"
    missing = re.search(r"satisfies the requirement (\S+) \(from versions: ([^)]*)\)", output)
    if missing and missing[2] == "none":
        # Also what pip says when it never got an answer (with retries off it logs no cause).
        return (
            f"the package index has no {clip(missing[1])}, or could not be reached: check your "
            f"network or proxy and the index pip uses {WHERE_PIP_LOOKS}"
        )
    if missing:
        return (
            f"the package index has no {clip(missing[1])} (it has {clip(missing[2])}): check the index pip "
            f"uses {WHERE_PIP_LOOKS}, or re-lock with nox -s lock"
        )
    return None


def pip(checkout: Checkout, arguments: list[str], what: str) -> None:
    code, output = run([checkout.python, *PIP, *arguments], checkout.root, checkout.echo)
    if code == 0:
        return
    known = pip_failure(output, checkout.lock_name)
    if known:
        raise OnboardError(known)
    if not checkout.echo:
        show_tail(output)
    raise OnboardError(
        f"{what} failed (exit {code}, pip's output above): fix the cause and run this script again"
    )


# --- syncing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    remove: list[str]
    install: list[str]  # "name version" or "name old -> new"


def make_plan(lock: Lock, installed: dict[str, str], keep: set[str]) -> Plan:
    extra = set(installed) - set(lock.pins) - lock.undecided - keep
    install = []
    for name, pin in sorted(lock.pins.items()):
        have = installed.get(name)
        if have is None:
            install.append(f"{name} {pin.version}")
        elif have != pin.version:
            install.append(f"{name} {have} -> {pin.version}")
    return Plan(sorted(extra), install)


def _listing(items: list[str], limit: int = 8) -> str:
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f", ... ({more} more)" if more > 0 else "")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def make_stamp(venv: Path, found: Probe, lock: Lock, pyproject: Path) -> dict[str, str]:
    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    return {
        "lock": digest(lock.path),
        "pyproject": digest(pyproject),
        "python": found.python,
        "venv": str(venv),
    }


def read_stamp(venv: Path) -> dict[str, str]:
    try:
        data = json.loads((venv / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def sync(
    checkout: Checkout, project: Project, lock: Lock, found: Probe, stamp: dict[str, str]
) -> None:
    """Make the venv hold exactly the lock's pins plus pip and the project, editable."""
    venv, name = checkout.venv, checkout.lock_name
    (venv / STAMP).unlink(missing_ok=True)  # an interrupted sync must not look finished
    plan = make_plan(lock, found.dists, {"pip", project.name})
    if plan.remove:
        count = _plural(len(plan.remove), "package")
        print(f"onboard: removing {count} not in {name}: {_listing(plan.remove)}")
        pip(checkout, ["uninstall", "--yes", *plan.remove], "pip uninstall")
    if plan.install:
        count = _plural(len(plan.install), "package")
        print(f"onboard: installing {count} from {name}: {_listing(plan.install)}")
        # --no-deps: the lock is complete, so anything pip would pull in is a hole in the lock.
        arguments = ["install", "--require-hashes", "--no-deps", "-r", name]
        pip(checkout, arguments, f"pip install -r {name}")
    wanted = make_stamp(venv, found, lock, checkout.root / "pyproject.toml")
    if project.name not in found.dists or stamp.get("pyproject") != wanted["pyproject"]:
        print(f"onboard: installing {project.name} in editable mode")
        # No build isolation: the build tools come from the lock at exact, hash-checked versions
        # instead of an unpinned download from the index on every run.
        arguments = ["install", "--no-deps", "--no-build-isolation", "--no-index", "-e", "."]
        pip(checkout, arguments, "pip install -e .")
    code, output = run([checkout.python, *PIP, "check"], checkout.root)
    if code != 0:
        first = output.strip().splitlines()[0] if output.strip() else "no output"
        raise OnboardError(
            f"pip check in .venv failed ({clip(first)}): {name} is incomplete; "
            f"run {venv_command('nox')} -s lock and commit the result"
        )
    (venv / STAMP).write_text(json.dumps(wanted, indent=1) + "\n", encoding="utf-8")


def verify(checkout: Checkout) -> None:
    """Run the project's own lock check; stale locks stop onboarding."""
    command = [checkout.python, "-m", "deploy", "verify"]
    shown = shlex.join([venv_command("python"), *command[1:]])
    print(f"onboard: checking the locks: {shown}")
    code, output = run(command, checkout.root)
    if code == 0:
        for line in output.splitlines():
            print(f"  {line}")
    else:
        print(output.rstrip(), file=sys.stderr)
        raise OnboardError(
            f"the lock files are stale ({shown} failed, output above): "
            f"run {venv_command('nox')} -s lock and commit the result"
        )


# --- entry point ----------------------------------------------------------------------------------


def warn(message: str) -> None:
    print(f"onboard: warning: {message}", file=sys.stderr)


def onboard(root: Path, echo: bool) -> None:
    started = time.monotonic()
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        raise OnboardError(
            f"{pyproject} not found: run this script in a checkout of the project, "
            "or pass --root DIR"
        )
    check_python(pyproject)
    project = read_project(pyproject)
    env = marker_environment()
    checkout = Checkout(root, f"{project.requirements_dir}/{LAYER}.txt", echo)
    lock = parse_lock(root, checkout.lock_name, env)
    check_build_requires(project, lock, checkout.lock_name, env)
    stamp = read_stamp(checkout.venv)
    found = probe(checkout.venv)
    reason = _recreate_reason(checkout.venv, found, stamp)
    if reason or found is None:
        print(f"onboard: {reason}")
        found, stamp = create_venv(checkout.venv), {}
    plan = make_plan(lock, found.dists, {"pip", project.name})
    current = stamp == make_stamp(checkout.venv, found, lock, pyproject)
    if current and not plan.remove and not plan.install and project.name in found.dists:
        print(f"onboard: up to date ({time.monotonic() - started:.1f} s)")
    else:
        sync(checkout, project, lock, found, stamp)
        print(f"onboard: .venv matches {checkout.lock_name} ({time.monotonic() - started:.1f} s)")
    verify(checkout)
    print("onboard: ready. Next:")
    if Path.cwd().resolve() != root:
        print(f"  cd {shlex.quote(str(root))}")
    for tool, *arguments in NEXT_COMMANDS:
        print(f"  {shlex.join([venv_command(tool), *arguments])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--root",
        type=Path,
        default=CHECKOUT,
        help="the project to set up (default: the checkout holding this script)",
    )
    parser.add_argument("--verbose", action="store_true", help="show pip's output as it runs")
    args = parser.parse_args(argv)
    try:
        onboard(args.root.resolve(), args.verbose)
    except DeployError as error:  # OnboardError, or the package's (a lock that is not UTF-8)
        fix = f": {error.fix}" if error.fix else ""
        print(f"onboard: error: {error.message}{fix}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("onboard: interrupted: run this script again to finish", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into head: the reader left, nothing to report to
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
