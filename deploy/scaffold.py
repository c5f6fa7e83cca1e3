"""`python -m deploy init`: adopt the tool in an existing Python project.

It writes small files and says what it wrote; an existing file is left alone unless --force.
Everything is checked before anything is written, so a refusal leaves the project as it was:
each dependency must be one PEP 508 requirement that pip reads back as itself, and no file is
written outside the project or through a symlink.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from deploy.errors import ConfigError
from deploy.lock.reqfile import ENV_VARIABLE, clip, read_text
from deploy.render import inert

NOXFILE = '''"""Nox sessions: lock, verify, upgrade and audit this project's layered requirements."""

# Importing the sessions registers them with nox; `nox -l` lists them.
from deploy.sessions import audit, lock, upgrade, verify

__all__ = ["audit", "lock", "upgrade", "verify"]
'''

TASKS = '''"""Invoke tasks: deploy, rollback, status, promote, releases and trust."""

from deploy.tasks import namespace

ns = namespace
'''

LAYERS = {
    "base.in": "# What the application needs to run, everywhere. Compiled by `nox -s lock`.\n",
    "prod.in": "# The deploy layer: what ships to servers (base plus server-only packages).\n-r base.in\n",
    "test.in": "# What CI installs: exactly what ships, plus the test tools.\n-r prod.in\npytest\n",
    "dev.in": "# A developer's machine: everything CI has, plus the tools that lock and deploy.\n"
    "-r test.in\npinship\n",
}

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


# pip reads a requirements file line by line and gives some text on a line a meaning of its own:
# a token starting with '-' is an option (`--index-url`, `-r`), ' #' starts a comment, a trailing
# backslash joins the next line and ${NAME} is replaced from the environment. packaging accepts
# all of these inside a marker's quoted string or a URL, so each is refused on its own.
_PIP_SYNTAX = (
    (re.compile(r"(?:^|\s)-"), "a word starting with '-' is a pip option there"),
    (re.compile(r"(?:^|\s)#"), "' #' starts a comment there"),
    (re.compile(r"\\$"), "a trailing backslash joins the next line there"),
    (ENV_VARIABLE, "pip replaces ${NAME} with an environment variable there"),
)
# Sources init does not translate yet (issue 13): named loudly rather than dropped.
_REQUIREMENTS_TXT = re.compile(r"requirements[\w.-]*\.txt")

Say = Callable[[str], object]


@dataclass(frozen=True)
class _Write:
    """One file init will write, decided before anything is written."""

    path: Path
    text: str
    replace: bool  # --force over an existing file or symlink: the link itself is replaced, never its target


def init(root: Path, *, force: bool = False, say: Say = print, warn: Say | None = None) -> list[Path]:
    """Write the adoption files into `root`; return the ones written."""
    warn = warn or (lambda line: print(line, file=sys.stderr))
    root = root.absolute()
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        raise ConfigError(
            f"{pyproject} does not exist: init adopts an existing Python project",
            fix="create a pyproject.toml with a [project] table first (name, version, dependencies)",
        )
    text = read_text(pyproject, root)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"pyproject.toml: {clip(str(exc))}", fix="correct that line of pyproject.toml") from None
    project = _table(data, "project", "[project]")
    tool = _table(data, "tool", "[tool]")
    folder = _requirements_folder(root, tool)
    base = LAYERS["base.in"] + "".join(f"{dep}\n" for dep in _dependencies(project))
    layers = {"base.in": base, **{name: body for name, body in LAYERS.items() if name != "base.in"}}
    planned = [(root / "noxfile.py", NOXFILE), (root / "tasks.py", TASKS)]
    planned += [(folder / name, body) for name, body in layers.items()]
    actions = [_plan(root, path, body, force) for path, body in planned]
    append = "deploy" not in tool
    if append:
        _check_appendable(pyproject, text)
    unadopted = _unadopted(root, data, project, tool)

    written: list[Path] = []
    for action in actions:
        if isinstance(action, str):
            say(action)
            continue
        _write(action)
        written.append(action.path)
        say(f"wrote {_shown(action.path, root)}")
    if append:
        with open(pyproject, "a", encoding="utf-8", opener=_no_follow) as handle:
            handle.write(TOOL_TABLE)
        written.append(pyproject)
        say("added [tool.deploy] to pyproject.toml")
    else:
        say("kept pyproject.toml [tool.deploy] (already there)")
    for source, layer in unadopted:
        warn(f"warning: not adopted: {source}; add it to {_shown(folder / layer, root)} by hand")
    say(f"next: nox -s lock, then commit {_shown(folder, root)}/*.in and *.txt")
    return written


def _table(data: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"pyproject.toml: {name} must be a table, not {_type(value)}",
                          fix=f"write {name} as a table header in pyproject.toml")
    return value


def _type(value: object) -> str:
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _dependencies(project: dict[str, Any]) -> list[str]:
    """[project] dependencies, each checked to be one requirement pip will read exactly as written."""
    dependencies = project.get("dependencies", [])
    fix = 'list one PEP 508 requirement per string, e.g. dependencies = ["requests>=2.31"]'
    if not isinstance(dependencies, list):
        raise ConfigError(
            f"pyproject.toml: [project] dependencies must be a list of strings, not {_type(dependencies)}", fix=fix)
    checked: list[str] = []
    for number, entry in enumerate(dependencies):
        where = f"pyproject.toml: [project] dependencies[{number}]"
        if not isinstance(entry, str):
            raise ConfigError(f"{where} is {_type(entry)}, not a string", fix=fix)
        shown = f"{where} \"{inert(entry, 120)}\""
        if not entry.isprintable():  # a line break, a NUL or an escape sequence: never one line of base.in
            raise ConfigError(f"{shown} holds a line break or control character: not one requirement", fix=fix)
        try:
            requirement = Requirement(entry)
        except InvalidRequirement:
            raise ConfigError(f"{shown} is not a PEP 508 requirement", fix=fix) from None
        for pattern, why in _PIP_SYNTAX:
            if pattern.search(entry.strip()):
                raise ConfigError(f"{shown} would not be read by pip as written ({why})",
                                  fix="write the requirement alone; pip options and indexes go in [tool.deploy] "
                                  "compile-options")
        # A URL is written as `name @ url`, the one spelling of it that every reader of .in files
        # (pip's, and the lock's check that inputs stay in the project) takes for a URL.
        checked.append(str(requirement) if requirement.url else entry.strip())
    return checked


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


def _plan(root: Path, path: Path, text: str, force: bool) -> _Write | str:
    """What to do at `path` (a write, or the line saying why it is kept), or a refusal naming it;
    nothing is written or printed here, so a refusal found later leaves no half-told story."""
    shown = _shown(path, root)
    parent = root
    for part in path.relative_to(root).parts[:-1]:
        parent = parent / part
        name = _shown(parent, root)
        if parent.is_symlink():
            raise ConfigError(f"{name} is a symlink: init never writes through one",
                              fix=f"make {name} a real folder, or set [tool.deploy] requirements to one")
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{name} is a file, but init writes {shown} inside it as a folder",
                              fix=f"move {name} away, or set [tool.deploy] requirements to another folder")
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return _Write(path, text, replace=False)
    link = stat.S_ISLNK(mode)
    if not force:
        why = "a symlink; --force replaces the link, never its target" if link else "exists; --force overwrites it"
        return f"kept {shown} ({why})"
    if not (link or stat.S_ISREG(mode)):
        raise ConfigError(f"{shown} exists and is not a file (a folder or a special file): init does not replace it",
                          fix=f"move {shown} away and run python -m deploy init again")
    return _Write(path, text, replace=True)


def _check_appendable(pyproject: Path, text: str) -> None:
    if pyproject.is_symlink():
        raise ConfigError("pyproject.toml is a symlink: init never writes through one",
                          fix="add the [tool.deploy] table by hand, or make pyproject.toml a real file")
    try:
        tomllib.loads(text + TOOL_TABLE)
    except tomllib.TOMLDecodeError:
        raise ConfigError("pyproject.toml: a [tool.deploy] table cannot be appended to it (e.g. [tool] is an inline "
                          "table)", fix="add [tool.deploy] with requirements = \"requirements\" by hand") from None


def _unadopted(root: Path, data: dict[str, Any], project: dict[str, Any], tool: dict[str, Any]
               ) -> list[tuple[str, str]]:
    """Requirement sources init cannot translate yet (issue 13), each with the layer it suggests."""
    found: list[tuple[str, str]] = []

    def names(value: object) -> list[str]:
        return [str(key) for key in value] if isinstance(value, dict) else []

    def layer(name: str) -> str:
        return f"{name}.in" if f"{name}.in" in LAYERS else "<layer>.in"

    dynamic = project.get("dynamic")
    for key, suggested in (("dependencies", "base.in"), ("optional-dependencies", "<layer>.in")):
        if isinstance(dynamic, list) and key in dynamic:  # the build backend reads them, e.g. from a file
            found.append((f"[project] {key} (listed in dynamic, so read by the build backend)", suggested))
    for extra in names(project.get("optional-dependencies")):
        found.append((f'[project.optional-dependencies] "{inert(extra, 80)}"', layer(extra)))
    for group in names(data.get("dependency-groups")):
        found.append((f'[dependency-groups] "{inert(group, 80)}"', layer(group)))
    poetry = tool.get("poetry")
    if isinstance(poetry, dict):
        if set(names(poetry.get("dependencies"))) - {"python"}:  # `python` is the interpreter, not a package
            found.append(("[tool.poetry.dependencies]", "base.in"))
        if poetry.get("dev-dependencies"):
            found.append(("[tool.poetry.dev-dependencies]", "dev.in"))
        groups = poetry.get("group")
        for group in names(groups):
            body = groups[group] if isinstance(groups, dict) else None
            if isinstance(body, dict) and body.get("dependencies"):
                found.append((f'[tool.poetry.group."{inert(group, 80)}".dependencies]', layer(group)))
    for name in ("uv", "pdm"):
        table = tool.get(name)
        if isinstance(table, dict) and table.get("dev-dependencies"):
            found.append((f"[tool.{name}] dev-dependencies", "dev.in"))
    for entry in sorted(os.listdir(root)):
        if _REQUIREMENTS_TXT.fullmatch(entry):
            found.append((entry, "base.in" if entry == "requirements.txt" else "<layer>.in"))
    return found


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW, 0o666)


def _write(write: _Write) -> None:
    """Create a new file (never following a link made since the check), or with --force replace
    what is there by a rename, which swaps a symlink itself and leaves its target untouched."""
    write.path.parent.mkdir(parents=True, exist_ok=True)
    if not write.replace:
        with open(write.path, "x", encoding="utf-8", opener=_no_follow) as handle:
            handle.write(write.text)
        return
    temporary = write.path.with_name(f".{write.path.name}.init-{os.getpid()}")
    created = False
    try:
        with open(temporary, "x", encoding="utf-8", opener=_no_follow) as handle:
            created = True
            handle.write(write.text)
        os.replace(temporary, write.path)
    except BaseException:
        if created:  # something that was already at that name is left alone
            temporary.unlink(missing_ok=True)
        raise


def _shown(path: Path, root: Path) -> str:
    return inert(path.relative_to(root).as_posix() if path != root else ".", 200)
