"""`python -m deploy init`: adopt the tool in an existing Python project.

It writes small files and says what it wrote; an existing file is left alone unless --force.
Everything is checked before anything is written, so a refusal leaves the project as it was:
each dependency must be one PEP 508 requirement that pip reads back as itself, and no file is
written outside the project or through a symlink.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from deploy.adopt import itself, sources
from deploy.adopt.entries import Adoption
from deploy.adopt.safewrite import no_follow, plan, shown, write
from deploy.errors import ConfigError
from deploy.lock.reqfile import clip, read_text
from deploy.render import inert

NOXFILE = '''"""Nox sessions: lock, verify, upgrade, add, remove and audit this project's layered requirements."""

# Importing the sessions registers them with nox; `nox -l` lists them.
from deploy.sessions import add, audit, lock, remove, upgrade, verify

__all__ = ["add", "audit", "lock", "remove", "upgrade", "verify"]
'''

TASKS = '''"""Invoke tasks: deploy, rollback, status, promote, releases and trust."""

from deploy.tasks import namespace

ns = namespace
'''

LAYERS = {
    "base": "# What the application needs to run, everywhere. Compiled by `nox -s lock`.\n",
    "prod": "# The deploy layer: what ships to servers (base plus server-only packages).\n-r base.in\n",
    "test": "# What CI installs: exactly what ships, plus the test tools.\n-r prod.in\n",
    "dev": "# A developer's machine: everything CI has, plus the tools that lock and deploy.\n-r test.in\n",
}
TOP = "dev"  # the layer that includes every other: its lock is seeded with the adopted versions
# pinship's own layer: CI installs the test layer and runs `python -m deploy verify` there, so
# pinship is one of its tools (and reaches dev.in through -r test.in); a lock never lets an upper
# layer move a lower one, so pinship's dependencies never move what ships.
PINSHIP_LAYER = "test"

TOOL_TABLE = '''
[tool.deploy]
requirements = "requirements"   # folder of layers: NAME.in compiled to NAME.txt by `nox -s lock`
deploy-layer = "prod"           # the layer installed on servers

# An environment per target; `local` exists without config and deploys to .deploy/local.
# [tool.deploy.environments.staging]
# hosts = ["deploy@app1.example.com", "deploy@10.0.0.7:2222"]   # user@host[:port]
# path = "/srv/myapp"                  # where releases live on each host
# known-hosts = "known_hosts"          # pinned host keys, a file at the root: fill it with `invoke trust --env staging`
# healthcheck = "python -c 'import myapp'"   # run in the new release before the switch
# restart = "sudo systemctl restart myapp"   # after the switch; a failure switches back
# confirm = false                      # ask before deploying; --yes skips
# keep-alive = 60                      # seconds connections stay open for the next run (0: off)
'''


Say = Callable[[str], object]
ONBOARDING_MARK = "Written by `python -m deploy init`"  # in the onboarding script init writes (adopt/bootstrap.py)


# Made on each machine, never committed: onboard.py's venv, `invoke deploy --env local`'s releases,
# and the metadata setuptools writes beside the sources when onboard installs the app editable.
IGNORED = (".venv/", ".deploy/", "*.egg-info/")


def init(root: Path, *, force: bool = False, source: Path | None = None, say: Say = print,
         warn: Say | None = None) -> list[Path]:
    """Write the adoption files into `root`; return the ones written.

    `source` is the requirements file to adopt (`--from`); without it the project's own
    declaration is read, or a lone requirements.txt.
    """
    warn = warn or (lambda line: print(line, file=sys.stderr))
    root = root.absolute()
    pyproject = root / "pyproject.toml"
    text = read_text(pyproject, root) if pyproject.is_file() else None
    data: dict[str, Any] | None = None
    if text is not None:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"pyproject.toml: {clip(str(exc))}", fix="correct that line of pyproject.toml") from None
        _table(data, "project", "[project]")
    tool = _table(data or {}, "tool", "[tool]")
    folder = _requirements_folder(root, tool)
    # A project adopted already (a fresh clone of one): its layers are its own now, and reading its
    # sources again would only find what they became (pyproject.toml's list beside the old
    # requirements.txt); init then adds what is missing of the rest, and --force adopts it afresh.
    adopted = not force and source is None and "deploy" in tool and any(folder.glob("*.in"))
    adoption = Adoption() if adopted else sources.read(root, text, data, None if source is None else (root / source))
    try:
        wheel: itself.Wheel | None = itself.vendored_wheel(folder / itself.FOLDER)
        not_vendored = ""
    except itself.NotVendored as exc:
        wheel, not_vendored = None, str(exc)
    planned: list[tuple[Path, str | bytes]] = [(root / "noxfile.py", NOXFILE), (root / "tasks.py", TASKS)]
    if adopted:
        say(f"already adopted: {shown(folder, root)}/*.in are the project's layers and stay as they are "
            "(python -m deploy init --force adopts it afresh)")
    else:
        planned += [(folder / f"{name}.in", body) for name, body in _layers(adoption, wheel).items()]
    if wheel is not None:
        planned.append((folder / itself.FOLDER / wheel.filename, wheel.data))
    onboarding = _onboarding(root)
    planned.append((onboarding, resources.files("deploy.adopt").joinpath("bootstrap.py").read_text(encoding="utf-8")))
    if adoption.preferences:
        planned.append((folder / f"{TOP}.txt", _seed(adoption)))
    actions = [plan(root, path, body, force) for path, body in planned]
    kept = {path for (path, _), action in zip(planned, actions, strict=True) if isinstance(action, str)}
    if text is None:
        actions.insert(0, plan(root, pyproject, (adoption.pyproject or "") + TOOL_TABLE, force))
    append = text is not None and "deploy" not in tool
    if append:
        assert text is not None
        _check_appendable(pyproject, text)

    written: list[Path] = []
    for action in actions:
        if isinstance(action, str):
            say(action)
            continue
        write(action)
        written.append(action.path)
        say(f"wrote {shown(action.path, root)}")
    if append:
        with open(pyproject, "a", encoding="utf-8", opener=no_follow) as handle:
            handle.write(TOOL_TABLE)
        written.append(pyproject)
        say("added [tool.deploy] to pyproject.toml")
    elif text is not None:
        say("kept pyproject.toml [tool.deploy] (already there)")
    if (ignored := _ignore_local(root)) is not None:
        written.append(root / ".gitignore")
        say(ignored)
    not_written = "was kept as it was, so it does not hold"
    for layer, told in adoption.told:
        target = folder / f"{layer}.in" if layer else None
        if target in kept:  # what init read is in no file: said as a warning, never as done
            warn(f"warning: {shown(target, root)} {not_written} {told}; add it by hand, or rewrite the file with "
                 "python -m deploy init --force")
        else:
            say(f"  {shown(target, root)}: {told}" if target else f"  {told}")
    if not adopted and not adoption.layers.get("test") and folder / "test.in" not in kept:  # _layers: a runner
        say(f"  {shown(folder / 'test.in', root)}: pytest, as nothing the project declares went to the test layer "
            "(replace it with the project's test tools)")
    if adoption.preferences:
        seed = folder / f"{TOP}.txt"
        versions = f"the {len(adoption.preferences)} versions of {adoption.preferred_from}"
        if seed in kept:
            warn(f"warning: {shown(seed, root)} {not_written} {versions}; rewrite it with python -m deploy init "
                 "--force, or the first lock keeps what it holds")
        else:
            say(f"  {shown(seed, root)}: {versions}, which the first lock keeps where the layers allow")
    for line in adoption.warnings:
        warn(f"warning: {line}")
    for what, layer in adoption.unadopted:
        warn(f"warning: not adopted: {what}; add it to {shown(folder / layer, root)} by hand")
    if wheel is not None and adopted:
        say(f"  pinship=={wheel.version}: {shown(folder / itself.FOLDER / wheel.filename, root)} ({wheel.origin})")
    elif wheel is not None:
        say(f"  {shown(folder, root)}/{PINSHIP_LAYER}.in: pinship=={wheel.version}, from "
            f"{shown(folder / itself.FOLDER / wheel.filename, root)} ({wheel.origin}); commit it with the locks")
    else:
        warn(f"warning: pinship itself is not in {shown(folder, root)}/{PINSHIP_LAYER}.in: {not_vendored}; install "
             f"it beside the layers with: {itself.install_command()}")
    if adopted:
        say("next: nox -s verify checks the locks (commit any file init added above)")
    else:
        say(f"next: nox -s lock, then commit {shown(folder, root)}/ (the .in and .txt files and wheels/) and "
            f"{shown(onboarding, root)}; a fresh clone then needs one command: python3 {shown(onboarding, root)}")
    return written


def _ignore_local(root: Path) -> str | None:
    """Add IGNORED to the project's .gitignore (made if missing) where no line names them yet; the
    line that says so, or None when every one was already there."""
    path = root / ".gitignore"
    text = read_text(path, root) if path.is_file() else ""
    listed = {line.strip().strip("/") for line in text.splitlines()}
    missing = [entry for entry in IGNORED if entry.strip("/") not in listed]
    if not missing:
        return None
    with open(path, "a", encoding="utf-8", opener=no_follow) as handle:
        handle.write(("\n" if text and not text.endswith("\n") else "") + "".join(f"{entry}\n" for entry in missing))
    return (f"{'added to' if text else 'wrote'} .gitignore: {', '.join(missing)} (the dev venv, the local "
            "deploys and the editable install's metadata, made on each machine)")


def _onboarding(root: Path) -> Path:
    """scripts/onboard.py, unless the project has a script of its own by that name: init never takes it."""
    script = root / "scripts" / "onboard.py"
    try:
        own = script.is_file() and ONBOARDING_MARK not in script.read_text(encoding="utf-8", errors="replace")
    except OSError:
        own = True
    return script.with_name("onboard_pinship.py") if own else script


def _layers(adoption: Adoption, wheel: itself.Wheel | None) -> dict[str, str]:
    """Each layer's text: its header, then what was adopted for it (test.in keeps pytest by default);
    test.in starts with pinship from its vendored wheel, or the command that installs it beside."""
    texts: dict[str, str] = {}
    for name, header in LAYERS.items():
        lines = adoption.layers.get(name, [])
        if name == "test" and not lines:
            lines = ["pytest"]
        if name == PINSHIP_LAYER and wheel is not None:
            header += (f"# pinship, from the wheel in {itself.FOLDER}/ (not on the package index; pip reads the "
                       f"folder relative to this file):\n")
            lines = itself.requirement_lines(wheel) + lines
        elif name == PINSHIP_LAYER:
            header += f"# pinship itself is installed beside the locks:\n#   {itself.install_command()}\n"
        texts[name] = header + "".join(f"{line}\n" for line in lines)
    for name, lines in adoption.layers.items():
        if name not in texts:
            texts[name] = (f"# The {name} group: compiled by `nox -s lock`; not shipped unless prod.in includes "
                           "it.\n-r base.in\n" + "".join(f"{line}\n" for line in lines))
    return texts


def _seed(adoption: Adoption) -> str:
    """The top layer's lock, seeded with today's versions: pip-compile keeps a pin it finds in its
    output file wherever the inputs allow, so the first lock moves nothing it need not move."""
    lines = [
        f"# The versions {adoption.preferred_from} pinned, written by `python -m deploy init` (no hashes yet).",
        "# The first `nox -s lock` keeps each where the layers allow, says which it could not keep,",
        "# and replaces this file with the real lock.",
    ]
    lines += [f"{name}=={version}" for name, version in sorted(adoption.preferences.items())]
    return "\n".join(lines) + "\n"


def _table(data: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"pyproject.toml: {name} must be a table, not {_type(value)}",
                          fix=f"write {name} as a table header in pyproject.toml")
    return value


def _type(value: object) -> str:
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _requirements_folder(root: Path, tool: dict[str, Any]) -> Path:
    """The configured folder of layers, which must lie inside the project root."""
    table = tool.get("deploy", {})
    if not isinstance(table, dict):
        raise ConfigError("pyproject.toml: [tool.deploy] must be a table")
    value = table.get("requirements", "requirements")
    if not isinstance(value, str):
        raise ConfigError(f"pyproject.toml [tool.deploy]: requirements must be a string, not {_type(value)}",
                          fix='requirements = "requirements"')
    folder = Path(os.path.normpath(root / value))
    # '..' is refused even when it ends inside: the kernel resolves `link/..` from the link's
    # target, so the folder lock reads could differ from the one checked here.
    outside = not folder.is_relative_to(root)
    if outside or ".." in Path(value).parts:
        where = f"is outside the project root ({inert(str(folder), 200)})" if outside else "climbs with '..'"
        raise ConfigError(
            f"pyproject.toml [tool.deploy]: requirements = \"{inert(value, 120)}\" {where}: init writes only "
            "inside the project",
            fix='use a plain folder inside the project, e.g. requirements = "requirements"',
        )
    return folder


def _check_appendable(pyproject: Path, text: str) -> None:
    if pyproject.is_symlink():
        raise ConfigError("pyproject.toml is a symlink: init never writes through one",
                          fix="add the [tool.deploy] table by hand, or make pyproject.toml a real file")
    try:
        tomllib.loads(text + TOOL_TABLE)
    except tomllib.TOMLDecodeError:
        raise ConfigError("pyproject.toml: a [tool.deploy] table cannot be appended to it (e.g. [tool] is an inline "
                          "table)", fix="add [tool.deploy] with requirements = \"requirements\" by hand") from None
