"""`[tool.deploy]` in pyproject.toml: the one source of truth for configuration.

Precedence, as in invocations: an explicit command-line value beats this file, which beats the
defaults below.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from deploy.errors import ConfigError

LOCAL = "local"
_HOST = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[0-9a-fA-F:.]+\]|[^:@\s\[\]]+)(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class Host:
    user: str | None
    hostname: str
    port: int

    @classmethod
    def parse(cls, spec: str, where: str) -> Host:
        match = _HOST.match(spec.strip())
        if match is None:
            raise ConfigError(f"{where}: host '{spec}' is not of the form user@host[:port]")
        port = int(match.group("port") or 22)
        if not 0 < port < 65536:
            raise ConfigError(f"{where}: host '{spec}' has an invalid port")
        return cls(match.group("user"), match.group("host").strip("[]"), port)

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port != 22 else ""
        return f"{user}{self.hostname}{port}"


@dataclass(frozen=True)
class Environment:
    name: str
    hosts: tuple[Host, ...] = ()
    path: str = ".deploy/local"
    known_hosts: str | None = None
    identity: str | None = None
    python: str = "python3"
    keep_releases: int = 5
    parallel: int = 10
    max_failures: int = 0
    healthcheck: str | None = None
    restart: str | None = None
    confirm: bool = False
    connect_timeout: float = 15.0
    command_timeout: float = 600.0
    keep_alive: float = 60.0  # seconds a keeper holds the connections after a run (0: none)

    @property
    def is_local(self) -> bool:
        return not self.hosts

    def override(self, **values: Any) -> Environment:
        """A copy with the command line's values (None means 'not given') laid over it."""
        given = {key: value for key, value in values.items() if value is not None}
        return replace(self, **given)


@dataclass(frozen=True)
class Config:
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

    def environment(self, name: str) -> Environment:
        if name in self.environments:
            return self.environments[name]
        if name == LOCAL:
            return Environment(LOCAL, path=str(self.root / ".deploy" / "local"))
        known = ", ".join(sorted({LOCAL, *self.environments}))
        raise ConfigError(
            f"unknown environment '{name}' (known: {known})",
            fix=f"add [tool.deploy.environments.{name}] to pyproject.toml",
        )


_KEYS = {f.name.replace("_", "-"): f.name for f in fields(Environment) if f.name != "name"}


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


def load(root: Path | None = None) -> Config:
    root = find_root(root)
    path = root / "pyproject.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"pyproject.toml: {exc}") from exc
    table = data.get("tool", {}).get("deploy", {})
    if not isinstance(table, dict):
        raise ConfigError("pyproject.toml: [tool.deploy] must be a table")
    where = "pyproject.toml [tool.deploy]"
    unknown = set(table) - {
        "requirements", "deploy-layer", "test-layer", "compile-options", "environments", "allow-inputs-outside"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    envs = {
        name: _environment(name, body, root)
        for name, body in _table(table.get("environments", {}), f"{where}.environments").items()
    }
    project = data.get("project", {})
    return Config(
        root=root,
        requirements=(root / _str(table.get("requirements", "requirements"), where, "requirements")),
        deploy_layer=_optional_str(table.get("deploy-layer"), where, "deploy-layer"),
        test_layer=_optional_str(table.get("test-layer"), where, "test-layer"),
        compile_options=tuple(_list(table.get("compile-options", []), where, "compile-options")),
        environments=envs,
        app_name=project.get("name") if isinstance(project, dict) else None,
        inputs_outside=tuple(
            (root / Path(folder).expanduser()).resolve()
            for folder in _list(table.get("allow-inputs-outside", []), where, "allow-inputs-outside")
        ),
    )


def _environment(name: str, body: object, root: Path) -> Environment:
    where = f"pyproject.toml [tool.deploy.environments.{name}]"
    table = _table(body, where)
    unknown = set(table) - set(_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_KEYS))})")
    values: dict[str, Any] = {}
    defaults = Environment(name)
    for key, attr in _KEYS.items():
        if key not in table:
            continue
        value = table[key]
        expected = type(getattr(defaults, attr))
        if attr == "hosts":
            values[attr] = tuple(Host.parse(spec, where) for spec in _list(value, where, key))
        elif expected is bool and not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false")
        elif expected is int and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ConfigError(f"{where}: {key} must be a whole number >= 0")
        elif expected is float and not isinstance(value, int | float):
            raise ConfigError(f"{where}: {key} must be a number of seconds")
        elif expected in (str, type(None)) and not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string")
        else:
            values[attr] = value
    env = Environment(name, **values)
    if env.hosts and not env.known_hosts:
        raise ConfigError(
            f"{where}: known-hosts is required for an SSH environment (host keys are pinned)",
            fix=f'add known-hosts = "deploy/known_hosts" there, then run: invoke trust --env {name}',
        )
    if not env.hosts and name != LOCAL and "path" not in table:
        values["path"] = str(root / ".deploy" / name)
        env = Environment(name, **values)
    if env.parallel < 1:
        raise ConfigError(f"{where}: parallel must be at least 1")
    if env.keep_alive < 0:
        raise ConfigError(f"{where}: keep-alive must be a number of seconds >= 0 (0: do not keep connections)")
    return env


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
