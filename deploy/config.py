"""`[tool.deploy]` in pyproject.toml: the one source of truth for configuration.

Precedence, as in invocations: an explicit command-line value beats this file, which beats the
defaults below. The environments' tables are read by deploy/environments.py, loaded only for a
project that has them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy.errors import ConfigError
from deploy.places import inside_root as inside_root
from deploy.places import local_path as local_path
from deploy.places import remote_path as remote_path
from deploy.render import names, toml

if TYPE_CHECKING:
    from deploy.environments import NAME_RULE as NAME_RULE
    from deploy.environments import Environment as Environment
    from deploy.environments import Host as Host
    from deploy.environments import check_name as check_name
    from deploy.settings import SETTINGS as SETTINGS
    from deploy.settings import flag_value as flag_value

LOCAL = "local"
# The joint solve's resolver ([tool.deploy] resolver): pip-compile, or `uv pip compile` (lock/resolver.py).
RESOLVERS = ("pip-tools", "uv")


def __getattr__(name: str) -> object:
    """The environments' side (deploy/environments.py, deploy/settings.py), offered here too but
    loaded on first use (PEP 562): the lock commands, `verify` above all, never need it."""
    if name in ("Environment", "Host", "NAME_RULE", "check_name"):
        from deploy import environments

        return getattr(environments, name)
    if name in ("SETTINGS", "flag_value"):
        from deploy import settings

        return getattr(settings, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Config:
    """The project's `[tool.deploy]`, defaults filled in; `environment()` picks where to deploy."""

    root: Path
    requirements: Path
    deploy_layer: str | None = None
    test_layer: str | None = None  # None: the layer named "test", when there is one
    compile_options: tuple[str, ...] = ()
    environments: dict[str, Environment] = field(default_factory=dict)
    app_name: str | None = None
    # Folders outside the root that -r/-c may still read (resolved, absolute): lock inputs stay
    # inside the project unless the project says otherwise.
    inputs_outside: tuple[Path, ...] = ()
    resolver: str = RESOLVERS[0]
    # Each layer's lock also as PEP 751 `pylock.<layer>.toml` ([tool.deploy] pylock): written by lock,
    # checked by verify.
    pylock: bool = True

    def environment(self, name: str, where: str = "environment") -> Environment:
        from deploy.environments import Environment, check_name

        check_name(name, where)
        if name in self.environments:
            return self.environments[name]
        if name == LOCAL:
            return Environment(LOCAL, path=local_path(None, LOCAL, self.root, self.root, where))
        known = ", ".join(sorted({LOCAL, *self.environments}))
        raise ConfigError(
            f"unknown environment '{name}' (known: {known})",
            fix=f"add [tool.deploy.environments.{name}] to pyproject.toml",
        )


def find_root(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` holding a pyproject.toml."""
    here = (start or Path.cwd()).resolve()
    for folder in [here, *here.parents]:
        if (folder / "pyproject.toml").is_file():
            return folder
    raise ConfigError(
        f"no pyproject.toml in {here} or above",
        fix="run this from your project, or adopt the tool there with: python -m deploy init",
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            fix=f"save {path.name} as UTF-8 (TOML files are UTF-8)",
        ) from None
    if text.startswith("\ufeff"):  # tomllib, and so pip building this project, refuses it too
        raise ConfigError(f"{path}:1: starts with a byte order mark", fix=f"save {path.name} as UTF-8 without a BOM")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"pyproject.toml: {exc}") from exc


def load(root: Path | None = None) -> Config:
    root = find_root(root)
    data = _read(root / "pyproject.toml")
    tool = data.get("tool", {})
    table = tool.get("deploy", {}) if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        raise ConfigError("pyproject.toml: [tool.deploy] must be a table")
    where = "pyproject.toml [tool.deploy]"
    unknown = set(table) - {
        "requirements", "deploy-layer", "test-layer", "compile-options", "environments", "allow-inputs-outside",
        "resolver", "pylock"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {names(unknown)}")
    envs = _environments(_table(table.get("environments", {}), f"{where}.environments"), root)
    project = data.get("project", {})
    requirements = _str(table.get("requirements", "requirements"), where, "requirements")
    return Config(
        root=root,
        # Where locks are written: inside the project, whatever else inputs may read.
        requirements=inside_root(requirements, root, f"{where}: requirements"),
        deploy_layer=_optional_str(table.get("deploy-layer"), where, "deploy-layer"),
        test_layer=_optional_str(table.get("test-layer"), where, "test-layer"),
        compile_options=tuple(_list(table.get("compile-options", []), where, "compile-options")),
        environments=envs,
        app_name=project.get("name") if isinstance(project, dict) else None,
        inputs_outside=tuple(
            (root / Path(folder).expanduser()).resolve()
            for folder in _list(table.get("allow-inputs-outside", []), where, "allow-inputs-outside")
        ),
        resolver=_resolver(table.get("resolver", RESOLVERS[0]), where),
        pylock=_pylock(table.get("pylock", True), where),
    )


def _resolver(value: object, where: str) -> str:
    if value not in RESOLVERS:
        raise ConfigError(f"{where}: resolver = {toml(value)}: expected one of {', '.join(map(toml, RESOLVERS))}",
                          fix='resolver = "pip-tools" (the default) or resolver = "uv" (needs uv installed)')
    return str(value)


def _pylock(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: pylock = {toml(value)}: expected true or false",
                          fix="pylock = true (the default: each layer also as pylock.<layer>.toml) or pylock = false")
    return value


def _environments(tables: dict[str, Any], root: Path) -> dict[str, Environment]:
    if not tables:
        return {}
    from deploy import environments  # the deploying side: a project that only locks never loads it

    return {name: environments.read(name, body, root) for name, body in tables.items()}


def _table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table")
    return value


def _list(value: object, where: str, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a list of strings")
    return value


def _optional_str(value: object, where: str, key: str) -> str | None:
    return None if value is None else _str(value, where, key)


def _str(value: object, where: str, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} must be a string")
    return value
