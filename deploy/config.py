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

LOCAL = "local"
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


_WORD = re.compile(r"(?!-)[^\x00-\x1f\x7f]+")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
WEEK = 7 * 24 * 3600  # the longest wait any setting may ask for: every timer and socket can hold it


@dataclass(frozen=True)
class Setting:
    """One environment setting, declared once: pyproject.toml, the flags and their help read it.

    `kind` is bool, int, float (seconds), str, or tuple (the hosts). Numbers run from `least`
    (excluded when `above`, as for a timeout, where 0 would mean nothing) to `most`.
    """

    key: str
    kind: type
    default: Any
    help: str
    least: float = 0
    above: bool = False
    most: float | None = None
    zero: str = ""  # what 0 means, where it means something
    blank: bool = True  # whether an empty string (or list) means something
    word: bool = False  # a string that must not read as an option ('-…') or hold control characters

    @property
    def attr(self) -> str:
        return self.key.replace("-", "_")

    @property
    def expected(self) -> str:
        if self.kind is bool:
            return "true or false"
        if self.kind is int:
            high = f" and at most {self.most:g}" if self.most is not None else ""
            return (f"a whole number of at least {self.least:g}{high}" if self.least
                    else f"a whole number, 0 or more{high}")
        if self.kind is float:
            low = f"above {self.least:g}" if self.above else f"from {self.least:g}"
            high = f" {'and at most' if self.above else 'to'} {self.most:g}" if self.most is not None else ""
            week = " (a week)" if self.most == WEEK else ""
            return f"a number of seconds {low}{high}{week}" + (f"; 0: {self.zero}" if self.zero else "")
        if self.kind is tuple:
            return "a list of strings" if self.blank else "a list of at least one string"
        if self.word:  # and no control characters: "plain"
            return "a plain non-empty string (no leading '-')"
        return "a string" if self.blank else "a non-empty string"

    @property
    def described(self) -> str:
        """The help text, with the default when there is one worth showing."""
        if self.kind is int:
            return f"{self.help} (default {self.default}; at least {self.least:g})"
        if self.kind is float:
            low = f"above {self.least:g}" if self.above else f"{self.least:g} or more"
            zero = f"; 0: {self.zero}" if self.zero else ""
            high = f", at most {self.most:g}" if self.most is not None else ""
            return f"{self.help} (default {self.default:g}; {low}{high}{zero})"
        return f"{self.help} (default {str(self.default).lower()})" if self.kind is bool else self.help

    def check(self, value: object) -> Any:
        """The value with this setting's type, or ValueError: bool is no number, nan no time."""
        checked = self._check(value)
        if self.kind is int and self.most is not None and checked > self.most:
            raise ValueError(self.expected)
        return checked

    def _check(self, value: object) -> Any:
        if self.kind is tuple:
            if isinstance(value, list) and all(isinstance(v, str) for v in value) and (value or self.blank):
                return value
        elif isinstance(value, bool) or self.kind is bool:
            if isinstance(value, bool) and self.kind is bool:
                return value
        elif self.kind is str:
            if isinstance(value, str) and (value.strip() or self.blank) and (not self.word or _WORD.fullmatch(value)):
                return value
        elif isinstance(value, int) or (self.kind is float and isinstance(value, float)):
            try:
                number = self.kind(value)
            except OverflowError:  # an int too large for a float: no timer holds it either
                raise ValueError(self.expected) from None
            if (math.isfinite(number) and (number > self.least if self.above else number >= self.least)
                    and (self.most is None or number <= self.most)):
                return number
        raise ValueError(self.expected)

    def parse(self, text: str) -> Any:
        """A flag's value: invoke hands over the text of a flag whose default is None."""
        if self.kind not in (int, float):
            return self.check(text)
        # ASCII digits only, as TOML has them: int() would also take full-width digits, '1_0' and ' 5 '.
        if not (_INTEGER if self.kind is int else _DECIMAL).fullmatch(text):
            raise ValueError(self.expected)
        return self.check(self.kind(text))


SETTINGS = {s.attr: s for s in (
    # An empty list would quietly turn a fleet into a deploy on this machine: leave hosts out for that.
    Setting("hosts", tuple, (), "hosts as user@host[:port]; none: deploy on this machine", blank=False),
    Setting("path", str, ".deploy/local", "where releases live on each host (absolute on SSH hosts)",
            blank=False, word=True),
    Setting("known-hosts", str, None, "pinned host keys file, inside the project", blank=False, word=True),
    Setting("identity", str, None, "SSH private key file", blank=False, word=True),
    Setting("python", str, "python3", "interpreter on the hosts used to make release venvs", blank=False,
            word=True),
    Setting("keep-releases", int, 5, "releases kept per host; the live and the previous one are never pruned",
            least=1, most=10_000),
    Setting("parallel", int, 10, "hosts worked on at once", least=1, most=1_000),
    Setting("max-failures", int, 0, "hosts that may fail staging while the others still switch"),
    Setting("healthcheck", str, None, "command run in the new release before the switch"),
    Setting("restart", str, None, "command run after the switch; a failure switches that host back"),
    Setting("confirm", bool, False, "ask before deploying; --yes skips the question"),
    Setting("connect-timeout", float, 15.0, "seconds to wait for a host to answer when connecting",
            above=True, most=WEEK),
    Setting("command-timeout", float, 600.0, "seconds one remote step may take before the host counts as hung",
            above=True, most=WEEK),
    Setting("keep-alive", float, 60.0, "seconds the hosts' connections are kept for the next run",
            most=WEEK, zero="close them at the end"),
)}


def flag_value(attr: str, value: object) -> Any:
    """A command-line value for setting `attr`, checked by the same rules as pyproject.toml."""
    setting = SETTINGS[attr]
    try:
        return setting.parse(value) if isinstance(value, str) else setting.check(value)
    except ValueError:
        raise ConfigError(f"--{setting.key} {_shown(value)}: expected {setting.expected}") from None


def _default(attr: str) -> Any:
    return SETTINGS[attr].default


@dataclass(frozen=True)
class Environment:
    name: str
    hosts: tuple[Host, ...] = _default("hosts")
    path: str = _default("path")
    known_hosts: str | None = _default("known_hosts")
    identity: str | None = _default("identity")
    python: str = _default("python")
    keep_releases: int = _default("keep_releases")
    parallel: int = _default("parallel")
    max_failures: int = _default("max_failures")
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
            except ValueError:
                raise ValueError(f"{setting.key} {_shown(value)}: expected {setting.expected}") from None
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


def local_path(path: str | None, name: str, root: Path, base: Path, where: str) -> str:
    """Where a host-less environment deploys on this machine: `.deploy/<name>` unless set.

    A relative path is taken from `base` (the root for pyproject.toml, the working folder for a
    flag), never from wherever the command happens to run. The project root or a folder above
    it is refused: releases/, wheels/ and current would land among the project's own files, and
    the agent prunes releases/.
    """
    if path is None:
        return str(root / ".deploy" / name)
    folder = (base / Path(path).expanduser()).resolve()
    if folder == root or folder in root.parents:
        what = "the project root" if folder == root else "above the project root"
        raise ConfigError(
            f"{where}: path {_shown(path, quote=True)} is {what} ({folder}): releases, wheels and current would "
            "land among the project's files",
            fix=f'deploy to a folder of its own, e.g. path = ".deploy/{name}"',
        )
    return str(folder)


def remote_path(path: str, where: str) -> str:
    """A deploy path on SSH hosts: absolute (a relative one, or '~', would land in whatever the
    login's home is), and not '/' itself, where releases/ and current would fill the root."""
    if not path.startswith("/") or Path(path) == Path("/") or "/../" in f"{path}/":
        raise ConfigError(f"{where} {_shown(path, quote=True)}: the deploy path on SSH hosts must be an absolute "
                          "folder of its own, without '..'", fix='e.g. path = "/srv/myapp"')
    return path


def inside_root(path: str, root: Path, where: str) -> Path:
    """A place named by a setting that pinship writes (known-hosts: `invoke trust`; the
    requirements folder: `nox -s lock`), which must stay inside the project."""
    resolved = (root / Path(path).expanduser()).resolve()
    if resolved != root and root not in resolved.parents:
        raise ConfigError(f"{where} {_shown(path, quote=True)}: {resolved} is outside the project ({root}), "
                          "and pinship writes there", fix="name a path inside the project")
    return resolved


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
        "requirements", "deploy-layer", "test-layer", "compile-options", "environments", "allow-inputs-outside"}
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
    )


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
        except ValueError:
            raise ConfigError(f"{where}: {key} = {_toml(value)}: expected {setting.expected}") from None
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


def _shown(value: object, quote: bool = False) -> str:
    """A setting's value as an error shows it: at most a line, and ASCII only. Stricter than
    render.inert on purpose: settings are names and numbers, where a non-ASCII character (a
    look-alike letter or digit) is itself what is wrong, so it is shown as its escape."""
    text = str(value)
    plain = text.isprintable() and text.isascii() and text.strip() == text and text
    shown = text if plain and not quote else ascii(text)
    return shown if len(shown) <= 80 else shown[:77] + "..."


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
