"""Which environment, and which of its hosts, a command works on: its name, the command line's
settings laid over pyproject.toml's, and the `--hosts` subset.

Every value from the command line is checked by its setting's own rules (config.SETTINGS), the
same as pyproject.toml's, before anything is read or created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy import config as config_module
from deploy.config import Config, Environment, Host
from deploy.errors import ConfigError
from deploy.render import inert


class UsageError(ConfigError):
    """The command line names something that is not there (an exit code of 2, as for misuse)."""


def typed(overrides: dict[str, Any]) -> dict[str, Any]:
    """Invoke hands over flags whose default is None as text: check each by its setting's rules."""
    return {key: None if value is None else config_module.flag_value(key, value) for key, value in overrides.items()}


def environment(name: str, overrides: dict[str, Any], hosts: str | None) -> tuple[Config, Environment]:
    """The project's config and environment `name`, with the flags' values and host subset."""
    config_module.check_name(name, "--env")  # before anything is read or created
    values = typed(overrides)
    config = config_module.load()
    env = config.environment(name, "--env").override(**values)
    if env.is_local and values.get("path") is not None:
        env = env.override(path=config_module.local_path(values["path"], name, config.root, Path.cwd(), "--path"))
    if hosts is not None:
        env = env.override(hosts=subset(env, hosts))
    if not env.is_local and values.get("path") is not None:
        config_module.remote_path(env.path, "--path")
    if values.get("known_hosts") is not None:
        config_module.inside_root(env.known_hosts or "", config.root, "--known-hosts")
    return config, env


def subset(env: Environment, hosts: str) -> tuple[Host, ...]:
    """The hosts of `env` that --hosts names, in the environment's order. Naming none is refused:
    an empty subset would make an SSH environment a deploy on this machine."""
    wanted = [Host.parse(spec, "--hosts") for spec in hosts.split(",") if spec.strip()]
    shown = inert(hosts, 200)
    if not wanted:
        raise UsageError(f"--hosts {shown!r}: names no host (give one or more hosts of '{env.name}', "
                         "comma-separated)")

    def matches(w: Host, h: Host) -> bool:
        return w.hostname == h.hostname and w.port in (22, h.port) and w.user in (None, h.user)

    strangers = [w for w in wanted if not any(matches(w, h) for h in env.hosts)]
    if strangers:
        known = ", ".join(str(h) for h in env.hosts) or "none (it deploys on this machine)"
        raise UsageError(f"--hosts {shown}: {', '.join(str(w) for w in strangers)} is not a host of '{env.name}' "
                         f"(its hosts: {known})")
    return tuple(h for h in env.hosts if any(matches(w, h) for w in wanted))
