"""Invoke tasks an adopting project exposes from its tasks.py: deploy, rollback, trust.

An explicit flag beats `[tool.deploy]`, which beats the defaults. These functions are entry
points: they turn DeployError into a message and an exit code, and nothing else here has logic.
Each setting's flag is declared once, in config.SETTINGS: `_task` adds it to a task's signature
with its help, and deploy/release/select.py checks its value by the setting's rules.
"""

from __future__ import annotations

import inspect
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
from invoke.tasks import Task

from deploy import config as config_module
from deploy.config import Environment
from deploy.errors import DeployError, VerifyFailed
from deploy.progress import Board
from deploy.release import engine, report, select
from deploy.release.run import Summary
from deploy.release.select import UsageError
from deploy.remote.limits import raise_open_files

_BOARD = Board(sys.stdout)
_SETTINGS = config_module.SETTINGS
COMMON_HELP = {
    **{attr: setting.described for attr, setting in _SETTINGS.items()},
    "env": f"environment from [tool.deploy.environments] ('local' needs no config; names: {config_module.NAME_RULE})",
    "hosts": "comma-separated subset of the environment's hosts to work on",  # not the setting: a subset of it
    "break_lock": "take over a lock left by a deploy that died (check it is dead first)",
    "yes": "do not ask for confirmation",
}
# The settings a deploy takes as flags: all but the environment's hosts (--hosts picks among
# them) and confirm (--yes answers it). A rollback builds, stages and prunes nothing, so it has
# no flags for that; nor --parallel, which it never had.
DEPLOY_FLAGS = tuple(attr for attr in _SETTINGS if attr not in ("hosts", "confirm"))
ROLLBACK_FLAGS = tuple(attr for attr in DEPLOY_FLAGS
                       if attr not in ("python", "parallel", "max_failures", "healthcheck", "keep_releases", "waves",
                                       "on_wave_failure", "run_once", "post_switch", "hook_timeout"))


def _task(*flags: str, help: dict[str, str], name: str | None = None) -> Callable[[Callable[..., None]], Task[Any]]:
    """An invoke task with a flag per setting in `flags`, typed and checked by that setting and
    helped by its text. Invoke reads a task's flags from its signature, so they are added to the
    signature here, and reach the body in its **settings."""

    def decorate(body: Callable[..., None]) -> Task[Any]:
        own = [p for p in inspect.signature(body).parameters.values() if p.kind is not p.VAR_KEYWORD]
        added = [inspect.Parameter(attr, inspect.Parameter.KEYWORD_ONLY, default=None) for attr in flags]
        body.__signature__ = inspect.Signature([*own, *added])  # type: ignore[attr-defined]
        shared = {p.name: COMMON_HELP[p.name] for p in [*own, *added] if p.name in COMMON_HELP}
        return Task(body, name=name, auto_shortflags=False,  # letters run out, and -h is help's
                    help={**shared, **help})

    return decorate


def _progress(host: str, message: str) -> None:
    _BOARD(host, message)


def _entry(action: Callable[[], Summary | None]) -> None:
    # A cancelled CI job sends SIGTERM: stop as Ctrl-C stops (finish the steps under way, release
    # every lock), not in the middle of a step with the hosts locked by a dead process.
    main = threading.current_thread() is threading.main_thread()  # only there can a handler be set
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if main else None
    # A script's `invoke deploy &` starts it with SIGINT ignored (Python then leaves it so): Ctrl-C
    # or `kill -INT` stops a deploy as it stops a lock (solve.honour_ctrl_c).
    interrupt = signal.signal(signal.SIGINT, signal.default_int_handler) if main else None
    try:
        _report(action)
    except BrokenPipeError:
        # Read through `| head`: the reader went away. Say nothing more (where would it go?).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise Exit(code=1) from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, interrupt)


def _report(action: Callable[[], Summary | None]) -> None:
    try:
        summary = action()
    except VerifyFailed as exc:
        raise Exit("refusing to deploy: the locks are not fresh\n" + "\n".join(exc.problems), code=1) from exc
    except UsageError as exc:
        raise Exit(str(exc), code=2) from exc
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
    """The one question pinship asks at a terminal; no terminal to answer from is not a yes."""
    try:
        return input(prompt)
    except EOFError:
        print()
        return ""


def _confirm(env: Environment, yes: bool, what: str) -> None:
    if not env.confirm or yes:
        return
    if not sys.stdin.isatty():
        raise Exit(f"'{env.name}' asks for confirmation (confirm = true): run again with --yes", code=1)
    if _ask(f"{what} to {env.name} ({len(env.hosts) or 1} hosts)? [y/N] ").strip().lower() not in ("y", "yes"):
        raise Exit("Aborting.", code=1)


@_task(*DEPLOY_FLAGS, help={
    "dry_run": "print the plan (hosts, release, package changes, bytes to send) and change nothing"})
def deploy(c: Context, env: str = "local", hosts: str | None = None, yes: bool = False, break_lock: bool = False,
           dry_run: bool = False, **settings: Any) -> None:
    """Build the deploy layer's wheels once and ship them to every host of an environment."""

    def action() -> Summary | None:
        config, environment = select.environment(env, settings, hosts)
        raise_open_files(environment)
        if dry_run:
            from deploy.release import plan

            found = plan.plan(config, environment, progress=_quiet)
            print(report.render_plan(found))
            if not found.goes_ahead:
                raise Exit("\nthe deploy would not go ahead as planned", code=1)
            return None
        _confirm(environment, yes, "deploy")
        return engine.deploy(config, environment, progress=_progress, break_claim=break_lock)

    _entry(action)


@_task(*ROLLBACK_FLAGS, help={"to": "release id to switch to (default: each host's previous release)"})
def rollback(c: Context, env: str = "local", to: str | None = None, hosts: str | None = None, yes: bool = False,
             break_lock: bool = False, **settings: Any) -> None:
    """Switch every host back to its previous release, or to the one named with --to."""

    def action() -> Summary:
        config, environment = select.environment(env, settings, hosts)
        raise_open_files(environment)
        _confirm(environment, yes, "roll back")
        return engine.rollback(config, environment, to=to, progress=_progress, break_claim=break_lock)

    _entry(action)


@_task("known_hosts", "connect_timeout", help={
    "yes": "write the keys without asking (only after checking the fingerprints another way)"})
def trust(
    c: Context,
    env: str = "local",  # a flag like the other tasks': as a positional, `invoke trust --help` was read as the env
    hosts: str | None = None,
    yes: bool = False,
    **settings: Any,
) -> None:
    """Show the hosts' key fingerprints and pin them in known-hosts once you confirm."""

    def action() -> None:
        config, environment = select.environment(env, settings, hosts)
        if environment.is_local:
            raise DeployError("the local environment has no hosts to trust", fix="run: invoke trust --env NAME")
        from deploy.remote import trust as trust_module  # paramiko: only tasks that connect import it

        trust_module.trust(config.root, environment, ask=None if yes else _ask)

    _entry(action)


@_task("connect_timeout", help={"json": "print JSON for machines"})
def status(c: Context, env: str = "local", hosts: str | None = None, json: bool = False, **settings: Any) -> None:
    """Show each host's live release and any drift; exit non-zero unless all are clean and agree."""
    from deploy.release import inspect as live

    def action() -> None:
        config, environment = select.environment(env, settings, hosts)
        raise_open_files(environment)
        statuses = live.status(config, environment, progress=_quiet)
        print(report.render_status(statuses, json))
        if any(s.problems for s in statuses):
            raise Exit(code=1)

    _entry(action)


@_task(help={})
def disconnect(c: Context, env: str = "local") -> None:
    """Close the connections kept for an environment's next run now (see keep-alive)."""

    def action() -> None:
        config, environment = select.environment(env, {}, None)
        if environment.is_local:
            print("the local environment has no connections")
            return
        from deploy.remote import kept as keeper  # its client, which finds and stops the keepers

        closed = keeper.disconnect(environment, config.root)
        print(f"closed the connections kept for {env}" if closed else f"no connections are kept for {env}")

    _entry(action)


@_task(help={})
def releases(c: Context, env: str = "local", hosts: str | None = None) -> None:
    """List each host's releases, newest first, marking the live and previous ones."""
    from deploy.release import inspect as live

    def action() -> None:
        config, environment = select.environment(env, {}, hosts)
        raise_open_files(environment)
        statuses = live.status(config, environment, progress=_quiet)
        print(report.render_releases(statuses))
        if any(s.error for s in statuses):  # a host that could not be read has no list to trust
            raise Exit(code=1)

    _entry(action)


@_task(name="promote", help={
    "from_": "environment whose live release is promoted (e.g. staging)",
    "to": "environment to deploy it to (e.g. production)",
})
def promote_(c: Context, from_: str | None = None, to: str | None = None, yes: bool = False,
             break_lock: bool = False) -> None:
    """Deploy to one environment the exact release live on another: the same wheels, no rebuild."""
    # --from and --to are flags with no default rather than positionals: invoke reads a required
    # positional's absence before it reads --help, so `invoke promote --help` failed.
    from deploy.release import promote

    def action() -> Summary:
        if from_ is None or to is None:
            raise UsageError("promote needs both environments: invoke promote --from ENV --to ENV "
                             "(e.g. --from staging --to production)")
        config_module.check_name(from_, "--from")
        config_module.check_name(to, "--to")
        config = config_module.load()
        source, target = config.environment(from_, "--from"), config.environment(to, "--to")
        raise_open_files(source if len(source.hosts) > len(target.hosts) else target)
        _confirm(target, yes, f"promote the release live on {from_}")
        return promote.promote(config, source, target, progress=_progress, break_claim=break_lock)

    _entry(action)


@_task(*(attr for attr in DEPLOY_FLAGS if attr != "keep_alive"), help={
    "to": "the engine to hand the release to: ansible",
    "out": "folder to write (new, empty, or an earlier export, which is replaced)"})
def export(c: Context, env: str = "local", to: str = "ansible", out: str | None = None, hosts: str | None = None,
           **settings: Any) -> None:
    """Write the release and an inventory and playbook that install it with ansible-playbook."""
    from deploy.release import export as exporting

    def action() -> None:
        if out is None:
            raise UsageError(f"export needs a folder to write: invoke export --env {env} --to {to} --out DIR")
        config, environment = select.environment(env, settings, hosts)
        raise_open_files(environment)
        done = exporting.export(config, environment, to=to, out=Path(out), progress=_progress)
        print(exporting.render(done, environment.name))

    _entry(action)


def _quiet(host: str, message: str) -> None:
    """Status and history print one table; per-step progress would only clutter it."""


namespace = Collection(deploy, rollback, trust, status, releases, promote_, disconnect, export)
