"""How many files a run may hold open, raised as far as this machine allows before any host is
contacted: a fleet that needs more fails at once in one line, not host by host with
"[Errno 24] Too many open files" halfway through a deploy.

A run keeps every host's connection open until it ends (steps go host by host, `parallel` at a
time, but the connections stay), so what it needs grows with the hosts, not with `parallel`.
Measured on loopback hosts (benchmarks/deploy.py reports it): a direct connection holds one
socket per host in the deploying process; with a keeper, the run holds one Unix socket per host
and the keeper two (the host's TCP socket and the run's Unix socket). Files are opened one at a
time per step (an upload streams its wheel and closes it), so those grow with `parallel`.
"""

from __future__ import annotations

import resource

from deploy.config import Environment
from deploy.errors import ConfigError

PER_HOST = 3  # the most any one process holds per host (the keeper: 2), with room to spare
PER_STEP = 2  # a wheel being sent, or read for its hash, and a pipe, per step under way
BASE = 64  # the interpreter, its imports, stdio, the keeper's log and listening socket, the build's pipes
# With no hard limit, as far as Linux lets any process go by default (fs.nr_open).
_UNLIMITED = 1 << 20


def needed(env: Environment) -> int:
    """Files one process of a run on `env` may hold open at once (an upper estimate)."""
    return BASE + PER_HOST * len(env.hosts) + PER_STEP * env.parallel


def raise_open_files(env: Environment | None = None) -> int:
    """Raise this process's soft limit on open files as far as its hard limit allows (processes
    it starts, the keeper among them, inherit it); the limit it got. With `env`, refuse a fleet
    that needs more than that, before any host is contacted."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = _UNLIMITED if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY:
        soft = ceiling
    for wanted in (ceiling, needed(env) if env else 0):
        if wanted <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):  # beyond fs.nr_open with an unlimited hard limit: try what is needed
            continue
        soft = wanted
        break
    if env is not None and not env.is_local and needed(env) > soft:
        raise ConfigError(
            f"'{env.name}' has {len(env.hosts)} hosts, which need about {needed(env)} open files, and this "
            f"machine lets a process open {soft} (hard limit: {_shown(hard)})",
            fix=f"raise the limit (ulimit -n {needed(env)}; a hard limit is set in /etc/security/limits.conf or "
                f"systemd's LimitNOFILE), or deploy to fewer hosts at a time (--hosts)")
    return soft


def _shown(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)
