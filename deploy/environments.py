"""`[tool.deploy.environments.NAME]`: where a project deploys, read and checked once.

Apart from config.py (the project's own table) because only the deploying commands need it:
`python -m deploy verify`, the pre-commit hook's path, loads none of this (nor the settings table
it reads) for a project without environments. config.py still offers these names, so a caller
imports them from there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from deploy.errors import ConfigError
from deploy.places import inside_root, local_path, remote_path
from deploy.render import names, shown, toml
from deploy.settings import SETTINGS

# A user or host name starting with '-' would read as an option to whatever takes it; names hold
# only what DNS names and login names hold, so a spec cannot smuggle in text either.
_NAME_PART = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
_HOST = re.compile(
    rf"(?:(?P<user>{_NAME_PART})@)?(?P<host>\[[0-9a-fA-F:.]+\]|{_NAME_PART})(?::(?P<port>[0-9]{{1,5}}))?")
_USER = re.compile(_NAME_PART)
_HOSTNAME = re.compile(rf"[0-9a-fA-F:.]+|{_NAME_PART}")  # as Host.parse leaves it: an address without brackets
_KEYS = {setting.key: setting for setting in SETTINGS.values()}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
NAME_RULE = "letters, digits, '-' and '_', starting with a letter, at most 64 characters"


@dataclass(frozen=True)
class Host:
    """One SSH host of an environment, as `user@host[:port]` names it."""

    user: str | None
    hostname: str
    port: int

    @classmethod
    def parse(cls, spec: str, where: str) -> Host:
        match = _HOST.fullmatch(spec.strip())
        if match is None:
            raise ConfigError(f"{where}: host {shown(spec, quote=True)} is not of the form user@host[:port]")
        port = int(match.group("port") or 22)
        if not 0 < port < 65536:
            raise ConfigError(f"{where}: host {shown(spec, quote=True)} has an invalid port")
        return cls(match.group("user"), match.group("host").strip("[]"), port)

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port != 22 else ""
        return f"{user}{self.hostname}{port}"


def _default(attr: str) -> Any:
    return SETTINGS[attr].default


@dataclass(frozen=True)
class Environment:
    """One environment's settings (deploy/settings.py declares each), defaults filled in."""

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
        raise ValueError(f"missing {names(missing) or 'nothing'}, unknown {names(unknown) or 'nothing'}")
    if not isinstance(data["name"], str) or not _NAME.fullmatch(data["name"]):
        raise ValueError(f"name {shown(data['name'])}: expected {NAME_RULE}")
    fields: dict[str, Any] = {"name": data["name"]}
    for attr, setting in SETTINGS.items():
        value = data[attr]
        if attr == "hosts":
            if not isinstance(value, list):
                raise ValueError(f"hosts {shown(value)}: expected a list")
            fields[attr] = tuple(_host(each) for each in value)
        elif value is None and setting.default is None:
            fields[attr] = None
        else:
            try:
                fields[attr] = setting.check(value)
            except ValueError as exc:
                raise ValueError(f"{setting.key} {shown(value)}: expected {exc}") from None
    return fields


def _host(value: object) -> Host:
    """A host in to_dict's form: {"user": name or None, "hostname": name, "port": 1-65535}."""
    if (isinstance(value, dict) and set(value) == {"user", "hostname", "port"}
            and (value["user"] is None or (isinstance(value["user"], str) and _USER.fullmatch(value["user"])))
            and isinstance(value["hostname"], str) and _HOSTNAME.fullmatch(value["hostname"])
            and isinstance(value["port"], int) and not isinstance(value["port"], bool) and 0 < value["port"] < 65536):
        return Host(value["user"], value["hostname"], value["port"])
    raise ValueError(f"host {shown(value)}: expected user, hostname and port")


def check_name(name: str, where: str) -> str:
    """An environment name becomes a folder (.deploy/<name>) and part of commands: an identifier only."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where} {shown(name, quote=True)}: not an environment name (use {NAME_RULE})")
    return name


def read(name: str, table: object, root: Path) -> Environment:
    """`[tool.deploy.environments.<name>]`, each key checked by its setting (deploy/settings.py)."""
    check_name(name, "pyproject.toml [tool.deploy.environments]")
    where = f"pyproject.toml [tool.deploy.environments.{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(table) - set(_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {names(unknown)} (known: {', '.join(sorted(_KEYS))})")
    values: dict[str, Any] = {}
    for key, value in table.items():
        setting = _KEYS[key]
        try:
            values[setting.attr] = setting.check(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {key} = {toml(value)}: expected {exc}") from None
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
