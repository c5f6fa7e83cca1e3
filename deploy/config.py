"""`[tool.deploy]` in pyproject.toml: the one source of truth for configuration.

Precedence, as in invocations: an explicit command-line value beats this file, which beats the
defaults below.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deploy.errors import ConfigError
from deploy.places import inside_root as inside_root
from deploy.places import local_path as local_path
from deploy.places import remote_path as remote_path
from deploy.settings import SETTINGS as SETTINGS
from deploy.settings import flag_value as flag_value
from deploy.settings import shown as _shown

LOCAL = "local"
# The joint solve's resolver ([tool.deploy] resolver): pip-compile, or `uv pip compile` (lock/resolver.py).
RESOLVERS = ("pip-tools", "uv")
# A user or host name starting with '-' would read as an option to whatever takes it; names hold
# only what DNS names and login names hold, so a spec cannot smuggle in text either.
_NAME_PART = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
_HOST = re.compile(
    rf"(?:(?P<user>{_NAME_PART})@)?(?P<host>\[[0-9a-fA-F:.]+\]|{_NAME_PART})(?::(?P<port>[0-9]{{1,5}}))?")
_USER = re.compile(_NAME_PART)
_HOSTNAME = re.compile(rf"[0-9a-fA-F:.]+|{_NAME_PART}")  # as Host.parse leaves it: an address without brackets


@dataclass(frozen=True)
class Host:
    user: str | None
    hostname: str
    port: int

    @classmethod
    def parse(cls, spec: str, where: str) -> Host:
        match = _HOST.fullmatch(spec.strip())
        if match is None:
            raise ConfigError(f"{where}: host {_shown(spec, quote=True)} is not of the form user@host[:port]")
        port = int(match.group("port") or 22)
        if not 0 < port < 65536:
            raise ConfigError(f"{where}: host {_shown(spec, quote=True)} has an invalid port")
        return cls(match.group("user"), match.group("host").strip("[]"), port)

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port != 22 else ""
        return f"{user}{self.hostname}{port}"


def _default(attr: str) -> Any:
    return SETTINGS[attr].default


@dataclass(frozen=True)
class Environment:
    name: str
    hosts: tuple[Host, ...] = _default("hosts")
    path: str = _default("path")
    known_hosts: str | None = _default("known_hosts")
    identity: str | None = _default("identity")
    jump: str | None = _default("jump")
    python: str = _default("python")
    keep_releases: int = _default("keep_releases")
    parallel: int = _default("parallel")
    max_failures: int | str = _default("max_failures")  # a count, or a percentage "10%" (deploy/portions.py)
    waves: tuple[int | str, ...] = _default("waves")
    on_wave_failure: str = _default("on_wave_failure")
    run_once: str | None = _default("run_once")
    post_switch: str | None = _default("post_switch")
    hook_timeout: float = _default("hook_timeout")
    healthcheck: str | None = _default("healthcheck")
    restart: str | None = _default("restart")
    confirm: bool = _default("confirm")
    connect_timeout: float = _default("connect_timeout")
    command_timeout: float = _default("command_timeout")
    keep_alive: float = _default("keep_alive")

    @property
    def is_local(self) -> bool:
        return not self.hosts

    def override(self, **values: Any) -> Environment:
        """A copy with the command line's values (None means 'not given') laid over it."""
        given = {key: value for key, value in values.items() if value is not None}
        return replace(self, **given)

    def to_dict(self) -> dict[str, Any]:
        """This environment as JSON values (the keeper's socket carries it): from_dict reads it back."""
        return {"name": self.name, **{attr: getattr(self, attr) for attr in SETTINGS if attr != "hosts"},
                "hosts": [{"user": host.user, "hostname": host.hostname, "port": host.port} for host in self.hosts]}

    @classmethod
    def from_dict(cls, data: object) -> Environment:
        """The environment to_dict gave, each value checked by its setting's rule: one line naming
        the first thing wrong, never a traceback or an environment with a value of the wrong type."""
        try:
            return cls(**_environment_fields(data))
        except ValueError as exc:
            raise ConfigError(f"an environment sent between pinship's processes is not one: {exc}",
                              fix="run again; if it keeps happening, set keep-alive = 0") from None


def _environment_fields(data: object) -> dict[str, Any]:
    """Environment's fields from to_dict's form, or ValueError saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError(f"not a mapping but {type(data).__name__}")
    missing, unknown = {"name", *SETTINGS} - set(data), {str(key) for key in data} - {"name", *SETTINGS}
    if missing or unknown:
        raise ValueError(f"missing {_names(missing) or 'nothing'}, unknown {_names(unknown) or 'nothing'}")
    if not isinstance(data["name"], str) or not _NAME.fullmatch(data["name"]):
        raise ValueError(f"name {_shown(data['name'])}: expected {NAME_RULE}")
    fields: dict[str, Any] = {"name": data["name"]}
    for attr, setting in SETTINGS.items():
        value = data[attr]
        if attr == "hosts":
            if not isinstance(value, list):
                raise ValueError(f"hosts {_shown(value)}: expected a list")
            fields[attr] = tuple(_host(each) for each in value)
        elif value is None and setting.default is None:
            fields[attr] = None
        else:
            try:
                fields[attr] = setting.check(value)
            except ValueError as exc:
                raise ValueError(f"{setting.key} {_shown(value)}: expected {exc}") from None
    return fields


def _host(value: object) -> Host:
    """A host in to_dict's form: {"user": name or None, "hostname": name, "port": 1-65535}."""
    if (isinstance(value, dict) and set(value) == {"user", "hostname", "port"}
            and (value["user"] is None or (isinstance(value["user"], str) and _USER.fullmatch(value["user"])))
            and isinstance(value["hostname"], str) and _HOSTNAME.fullmatch(value["hostname"])
            and isinstance(value["port"], int) and not isinstance(value["port"], bool) and 0 < value["port"] < 65536):
        return Host(value["user"], value["hostname"], value["port"])
    raise ValueError(f"host {_shown(value)}: expected user, hostname and port")


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
    resolver: str = RESOLVERS[0]
    # Each layer's lock also as PEP 751 `pylock.<layer>.toml` ([tool.deploy] pylock): written by lock,
    # checked by verify.
    pylock: bool = True

    def environment(self, name: str, where: str = "environment") -> Environment:
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


_KEYS = {setting.key: setting for setting in SETTINGS.values()}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
NAME_RULE = "letters, digits, '-' and '_', starting with a letter, at most 64 characters"


def check_name(name: str, where: str) -> str:
    """An environment name becomes a folder (.deploy/<name>) and part of commands: an identifier only."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where} {_shown(name, quote=True)}: not an environment name (use {NAME_RULE})")
    return name


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
        raise ConfigError(f"{where}: unknown key(s) {_names(unknown)}")
    envs = {
        name: _environment(name, body, root)
        for name, body in _table(table.get("environments", {}), f"{where}.environments").items()
    }
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
        raise ConfigError(f"{where}: resolver = {_toml(value)}: expected one of {', '.join(map(_toml, RESOLVERS))}",
                          fix='resolver = "pip-tools" (the default) or resolver = "uv" (needs uv installed)')
    return str(value)


def _pylock(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: pylock = {_toml(value)}: expected true or false",
                          fix="pylock = true (the default: each layer also as pylock.<layer>.toml) or pylock = false")
    return value


def _environment(name: str, body: object, root: Path) -> Environment:
    check_name(name, "pyproject.toml [tool.deploy.environments]")
    where = f"pyproject.toml [tool.deploy.environments.{name}]"
    table = _table(body, where)
    unknown = set(table) - set(_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {_names(unknown)} (known: {', '.join(sorted(_KEYS))})")
    values: dict[str, Any] = {}
    for key, value in table.items():
        setting = _KEYS[key]
        try:
            values[setting.attr] = setting.check(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {key} = {_toml(value)}: expected {exc}") from None
    values["hosts"] = tuple(Host.parse(spec, where) for spec in values.get("hosts", ()))
    if not values["hosts"]:
        values["path"] = local_path(values.get("path"), name, root, root, where)
    env = Environment(name, **values)
    if env.hosts and "path" not in values:
        raise ConfigError(f"{where}: path is required for an SSH environment (where releases live on the hosts)",
                          fix='add e.g. path = "/srv/myapp" there')
    if env.hosts:
        remote_path(env.path, f"{where}: path")
    if env.known_hosts:
        inside_root(env.known_hosts, root, f"{where}: known-hosts")
    if env.hosts and not env.known_hosts:
        raise ConfigError(
            f"{where}: known-hosts is required for an SSH environment (host keys are pinned)",
            fix=f'add known-hosts = "known_hosts" there, then run: invoke trust --env {name}',
        )
    return env


def _names(keys: set[str]) -> str:
    more = f" and {len(keys) - 10} more" if len(keys) > 10 else ""
    return ", ".join(_shown(key) for key in sorted(keys)[:10]) + more


def _toml(value: object) -> str:
    """A pyproject value written back as TOML would have it, so the message quotes the file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # nan, inf, -inf: TOML spells them the same
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


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
