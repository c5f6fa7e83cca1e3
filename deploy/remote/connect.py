"""The one place that chooses how a run reaches its hosts: this machine, a keeper's connections,
or direct SSH. paramiko and Fabric are imported only by runs that connect directly.
"""

from __future__ import annotations

from pathlib import Path

from deploy.config import Environment
from deploy.remote import kept as keeper_client
from deploy.remote.kept import KeptTarget
from deploy.remote.target import LocalTarget, Target, bastion_of, identity_file


def start_keeper(env: Environment, root: Path) -> Path | None:
    """Start the process that keeps this environment's connections between runs (see kept.py),
    if it keeps them and none runs yet; return its socket (None: connections are not kept)."""
    if env.is_local or env.keep_alive <= 0:
        return None
    return keeper_client.start(env, root)


def connect(env: Environment, root: Path, python: str, kept: Path | None = None) -> list[Target]:
    """A target per host of `env`. `kept` is the socket of a keeper the caller started already
    (start_keeper); without it, one is started here if the environment keeps connections."""
    if env.is_local:
        return [LocalTarget(env, python)]
    identity_file(env)  # once for the run, before a keeper starts or any host is contacted
    bastion_of(env)
    path = kept or start_keeper(env, root)  # on the run's only thread so far, not in a step
    if path is not None:
        return [KeptTarget(env, host, root, path) for host in env.hosts]
    from deploy.remote.ssh import SshTarget  # paramiko and Fabric: imported only by runs that connect

    return [SshTarget(env, host, root) for host in env.hosts]
