"""Invoke tasks an adopting project exposes from its tasks.py: deploy, rollback, trust.

An explicit flag beats `[tool.deploy]`, which beats the defaults. These functions are entry
points: they turn DeployError into a message and an exit code, and nothing else here has logic.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from deploy import config as config_module
from deploy.config import Environment, Host
from deploy.errors import DeployError, VerifyFailed
from deploy.progress import Board
from deploy.release import engine, report
from deploy.release.run import Summary
from deploy.render import inert

_BOARD = Board(sys.stdout)
_SETTINGS = config_module.SETTINGS
COMMON_HELP = {
    "env": f"environment from [tool.deploy.environments] ('local' needs no config; names: {config_module.NAME_RULE})",
    "hosts": "comma-separated subset of the environment's hosts to work on",
    **{attr: _SETTINGS[attr].described for attr in (
        "path", "known_hosts", "identity", "python", "parallel", "connect_timeout", "command_timeout", "keep_alive",
        "restart")},
    "break_lock": "take over a lock left by a deploy that died (check it is dead first)",
}


def _typed(overrides: dict[str, Any]) -> dict[str, Any]:
    """Invoke hands over flags whose default is None as text: check each by its setting's rules."""
    return {key: None if value is None else config_module.flag_value(key, value) for key, value in overrides.items()}


def _environment(name: str, overrides: dict[str, Any], hosts: str | None) -> tuple[config_module.Config, Environment]:
    config_module.check_name(name, "--env")  # before anything is read or created
    typed = _typed(overrides)
    config = config_module.load()
    env = config.environment(name, "--env").override(**typed)
    if env.is_local and typed.get("path") is not None:
        env = env.override(path=config_module.local_path(typed["path"], name, config.root, Path.cwd(), "--path"))
    if hosts is not None:
        env = env.override(hosts=_subset(env, hosts))
    if not env.is_local and typed.get("path") is not None:
        config_module.remote_path(env.path, "--path")
    if typed.get("known_hosts") is not None:
        config_module.inside_root(env.known_hosts or "", config.root, "--known-hosts")
    return config, env


def _subset(env: Environment, hosts: str) -> tuple[Host, ...]:
    """The hosts of `env` that --hosts names, in the environment's order. Naming none is refused:
    an empty subset would make an SSH environment a deploy on this machine."""
    wanted = [Host.parse(spec, "--hosts") for spec in hosts.split(",") if spec.strip()]
    shown = inert(hosts, 200)
    if not wanted:
        raise Exit(f"--hosts {shown!r}: names no host (give one or more hosts of '{env.name}', comma-separated)",
                   code=2)
    def matches(w: Host, h: Host) -> bool:
        return w.hostname == h.hostname and w.port in (22, h.port) and w.user in (None, h.user)

    strangers = [w for w in wanted if not any(matches(w, h) for h in env.hosts)]
    if strangers:
        known = ", ".join(str(h) for h in env.hosts) or "none (it deploys on this machine)"
        raise Exit(f"--hosts {shown}: {', '.join(str(w) for w in strangers)} is not a host of '{env.name}' "
                   f"(its hosts: {known})", code=2)
    return tuple(h for h in env.hosts if any(matches(w, h) for w in wanted))


def _progress(host: str, message: str) -> None:
    _BOARD(host, message)


def _entry(action: Callable[[], Summary | None]) -> None:
    # A cancelled CI job sends SIGTERM: stop as Ctrl-C stops (finish the steps under way, release
    # every lock), not in the middle of a step with the hosts locked by a dead process.
    main = threading.current_thread() is threading.main_thread()  # only there can a handler be set
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if main else None
    try:
        _report(action)
    except BrokenPipeError:
        # Read through `| head`: the reader went away. Say nothing more (where would it go?).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise Exit(code=1) from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def _report(action: Callable[[], Summary | None]) -> None:
    try:
        summary = action()
    except VerifyFailed as exc:
        raise Exit("refusing to deploy: the locks are not fresh\n" + "\n".join(exc.problems), code=1) from exc
    except DeployError as exc:
        raise Exit(f"error: {exc}", code=1) from exc
    except KeyboardInterrupt:
        raise Exit("interrupted", code=130) from None
    if summary is None:
        return
    print()
    print(report.render_summary(summary))
    if not summary.ok:
        raise Exit(f"\n{summary.action} of '{summary.environment}' did not complete on every host", code=1)


def _ask(prompt: str) -> str:
    try:
        return input(prompt)
    except EOFError:  # no terminal to answer from: that is not a yes
        print()
        return ""


def _confirm(env: Environment, yes: bool, what: str) -> None:
    if not env.confirm or yes:
        return
    if not sys.stdin.isatty():
        raise Exit(f"'{env.name}' asks for confirmation (confirm = true): run again with --yes", code=1)
    answer = input(f"{what} to {env.name} ({len(env.hosts) or 1} hosts)? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise Exit("Aborting.", code=1)


@task(
    auto_shortflags=False,  # letters run out: keep-releases got '-' and hosts '-h' (help)
    help={
        **COMMON_HELP,
        "yes": "do not ask for confirmation",
        **{attr: _SETTINGS[attr].described for attr in ("max_failures", "healthcheck", "keep_releases")},
        "dry_run": "print the plan (hosts, release, package changes, bytes to send) and change nothing",
    }
)
def deploy(
    c: Context,
    env: str = "local",
    hosts: str | None = None,
    yes: bool = False,
    path: str | None = None,
    known_hosts: str | None = None,
    identity: str | None = None,
    python: str | None = None,
    parallel: int | None = None,
    max_failures: int | None = None,
    healthcheck: str | None = None,
    restart: str | None = None,
    keep_releases: int | None = None,
    connect_timeout: float | None = None,
    command_timeout: float | None = None,
    keep_alive: float | None = None,
    break_lock: bool = False,
    dry_run: bool = False,
) -> None:
    """Build the deploy layer's wheels once and ship them to every host of an environment."""
    overrides = dict(
        path=path,
        known_hosts=known_hosts,
        identity=identity,
        python=python,
        parallel=parallel,
        max_failures=max_failures,
        healthcheck=healthcheck,
        restart=restart,
        keep_releases=keep_releases,
        connect_timeout=connect_timeout,
        command_timeout=command_timeout,
        keep_alive=keep_alive,
    )

    def action() -> Summary | None:
        config, environment = _environment(env, overrides, hosts)
        if dry_run:
            from deploy.release import plan

            found = plan.plan(config, environment, progress=_quiet)
            print(report.render_plan(found))
            if not found.goes_ahead:
                raise Exit("\nthe deploy would not go ahead as planned", code=1)
            return None
        _confirm(environment, yes, "deploy")
        return engine.deploy(config, environment, progress=_progress, break_lock=break_lock)

    _entry(action)


@task(
    auto_shortflags=False,
    help={
        **{k: v for k, v in COMMON_HELP.items() if k not in ("python", "parallel")},
        "to": "release id to switch to (default: each host's previous release)",
        "yes": "do not ask for confirmation",
    }
)
def rollback(
    c: Context,
    env: str = "local",
    to: str | None = None,
    hosts: str | None = None,
    yes: bool = False,
    path: str | None = None,
    known_hosts: str | None = None,
    identity: str | None = None,
    restart: str | None = None,
    connect_timeout: float | None = None,
    command_timeout: float | None = None,
    keep_alive: float | None = None,
    break_lock: bool = False,
) -> None:
    """Switch every host back to its previous release, or to the one named with --to."""
    overrides = dict(
        path=path,
        known_hosts=known_hosts,
        identity=identity,
        restart=restart,
        connect_timeout=connect_timeout,
        command_timeout=command_timeout,
        keep_alive=keep_alive,
    )

    def action() -> Summary:
        config, environment = _environment(env, overrides, hosts)
        _confirm(environment, yes, "roll back")
        return engine.rollback(config, environment, to=to, progress=_progress, break_lock=break_lock)

    _entry(action)


@task(
    auto_shortflags=False,
    help={
        "env": COMMON_HELP["env"],
        "hosts": COMMON_HELP["hosts"],
        "known_hosts": COMMON_HELP["known_hosts"],
        "yes": "write the keys without asking (only after checking the fingerprints another way)",
        "connect_timeout": COMMON_HELP["connect_timeout"],
    }
)
def trust(
    c: Context,
    env: str = "local",  # a flag like the other tasks': as a positional, `invoke trust --help` was read as the env
    hosts: str | None = None,
    known_hosts: str | None = None,
    yes: bool = False,
    connect_timeout: float | None = None,
) -> None:
    """Show the hosts' key fingerprints and pin them in known-hosts once you confirm."""

    def action() -> None:
        config, environment = _environment(env, dict(known_hosts=known_hosts, connect_timeout=connect_timeout), hosts)
        if environment.is_local:
            raise DeployError("the local environment has no hosts to trust", fix="run: invoke trust --env NAME")
        from deploy.remote import trust as trust_module  # paramiko: only tasks that connect import it

        trust_module.trust(config.root, environment, ask=None if yes else _ask)

    _entry(action)


@task(
    auto_shortflags=False,
    help={
        "env": COMMON_HELP["env"],
        "hosts": COMMON_HELP["hosts"],
        "json": "print JSON for machines",
        "connect_timeout": COMMON_HELP["connect_timeout"],
    }
)
def status(
    c: Context, env: str = "local", hosts: str | None = None, json: bool = False, connect_timeout: float | None = None
) -> None:
    """Show each host's live release and any drift; exit non-zero unless all are clean and agree."""
    from deploy.release import inspect as live

    def action() -> None:
        config, environment = _environment(env, dict(connect_timeout=connect_timeout), hosts)
        statuses = live.status(config, environment, progress=_quiet)
        print(report.render_status(statuses, json))
        if any(s.problems for s in statuses):
            raise Exit(code=1)

    _entry(action)


@task(auto_shortflags=False, help={"env": COMMON_HELP["env"]})
def disconnect(c: Context, env: str = "local") -> None:
    """Close the connections kept for an environment's next run now (see keep-alive)."""

    def action() -> None:
        config, environment = _environment(env, {}, None)
        if environment.is_local:
            print("the local environment has no connections")
            return
        from deploy.remote import kept as keeper  # its client, which finds and stops the keepers

        closed = keeper.disconnect(environment, config.root)
        print(f"closed the connections kept for {env}" if closed else f"no connections are kept for {env}")

    _entry(action)


@task(auto_shortflags=False, help={"env": COMMON_HELP["env"], "hosts": COMMON_HELP["hosts"]})
def releases(c: Context, env: str = "local", hosts: str | None = None) -> None:
    """List each host's releases, newest first, marking the live and previous ones."""
    from deploy.release import inspect as live

    def action() -> None:
        config, environment = _environment(env, {}, hosts)
        statuses = live.status(config, environment, progress=_quiet)
        print(report.render_releases(statuses))
        if any(s.error for s in statuses):  # a host that could not be read has no list to trust
            raise Exit(code=1)

    _entry(action)


@task(
    name="promote",
    auto_shortflags=False,
    help={
        "from_": "environment whose live release is promoted (e.g. staging)",
        "to": "environment to deploy it to (e.g. production)",
        "yes": "do not ask for confirmation",
        "break_lock": COMMON_HELP["break_lock"],
    },
)
def promote_(c: Context, from_: str, to: str, yes: bool = False, break_lock: bool = False) -> None:
    """Deploy to one environment the exact release live on another: the same wheels, no rebuild."""
    from deploy.release import promote

    def action() -> Summary:
        config_module.check_name(from_, "--from")
        config_module.check_name(to, "--to")
        config = config_module.load()
        source, target = config.environment(from_, "--from"), config.environment(to, "--to")
        _confirm(target, yes, f"promote the release live on {from_}")
        return promote.promote(config, source, target, progress=_progress, break_lock=break_lock)

    _entry(action)


def _quiet(host: str, message: str) -> None:
    """Status and history print one table; per-step progress would only clutter it."""


namespace = Collection(deploy, rollback, trust, status, releases, promote_, disconnect)
