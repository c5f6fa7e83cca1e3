"""`invoke trust`: pin the hosts' keys, deliberately, after a person has seen the fingerprints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import paramiko

from deploy.config import Environment
from deploy.errors import ConfigError, DeployError, HostError
from deploy.remote.ssh import check_known_hosts, fingerprint, host_key, known_hosts_line, pin_name, pinned_keys
from deploy.render import inert


def trust(root: Path, env: Environment, ask: Callable[[str], str] | None, say: Callable[[str], None] = print) -> int:
    """Fetch each host's key, show it, and append new ones to the known-hosts file if confirmed."""
    assert env.known_hosts is not None
    path = root / env.known_hosts
    # A folder (or anything but a file) there is named before any host is asked, not found by the write.
    exists = path.exists()
    if exists:
        check_known_hosts(path, env.name)
    pinned = pinned_keys(path, env.name) if exists else paramiko.HostKeys()
    new_lines: list[str] = []
    for host in env.hosts:
        have = pinned.lookup(pin_name(host)) or {}
        try:
            key = host_key(host, env.connect_timeout, prefer=list(have.keys()))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            reason = inert(str(exc)) or type(exc).__name__  # banner text comes from the host
            raise HostError(str(host), f"could not read its host key: {reason}",
                            fix="check that the host is up and its sshd answers, or raise --connect-timeout") from exc
        line = known_hosts_line(host, key)
        same = have.get(key.get_name())
        if same is not None and same.get_base64() == key.get_base64():
            say(f"{host}: {key.get_name()} {fingerprint(key)} (already trusted)")
        elif have:
            raise HostError(
                str(host),
                f"offers {fingerprint(key)}, which differs from the key pinned in {path}",
                fix=f"if the host was rebuilt, delete its line from {path} and run trust again",
            )
        elif line not in new_lines:  # a host named twice is pinned once
            say(f"{host}: {key.get_name()} {fingerprint(key)} (new)")
            new_lines.append(line)
    if not new_lines:
        return 0
    if ask is not None and ask(f"pin {len(new_lines)} new key(s) in {path}? [y/N] ").strip().lower() not in (
        "y",
        "yes",
    ):
        raise DeployError("nothing written: the keys were not confirmed")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write("".join(f"{line}\n" for line in new_lines))
    except OSError as exc:
        raise ConfigError(f"nothing written: cannot write the known-hosts file {path}: "
                          f"{exc.strerror or type(exc).__name__}",
                          fix=f"make {path} a file you can write (setting: known-hosts), then run: "
                          f"invoke trust --env {env.name}") from None
    say(f"wrote {len(new_lines)} key(s) to {path}")
    return len(new_lines)
