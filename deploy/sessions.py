"""Nox sessions an adopting project imports into its noxfile.py.

They run in the current environment (python=False): locking and verifying need only this
package and pip-tools, which the developer's pinned environment already has. Each session imports
what it needs when it runs: the noxfile imports this module for every session, and `nox -s verify`
should not pay for loading the lock, upgrade and audit machinery.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import nox

from deploy import config as config_module
from deploy.errors import DeployError, VerifyFailed
from deploy.lock.reqfile import unusable_file

# Spelled here, not imported from the lock machinery: the noxfile imports this module for every
# session (lock/rounds.py uses the same word in its messages).
MOVE_LOWER = "--move-lower"

# nox looks for uv before every session, even one that runs in the current environment as all of
# these do, and logs its absence: noise on every command of a project that does not use uv.
logging.getLogger("nox").addFilter(lambda record: record.getMessage() != "uv binary not found.")


@nox.session(python=False)
def lock(session: nox.Session) -> None:
    """Compile requirements/*.in into hash-pinned .txt locks (-- --move-lower: upper layers may move lower)."""
    from deploy.lock.solve import honour_ctrl_c
    from deploy.lock.solve import lock as lock_layers

    move_lower, rest = _move_lower(session.posargs)
    if rest:
        session.error(f"unknown argument(s): {' '.join(rest)}\nUsage: nox -s lock [-- {MOVE_LOWER}]")
    honour_ctrl_c()
    _guard(session, lambda: lock_layers(config_module.load(), move_lower=move_lower, log=session.log))


@nox.session(python=False)
def verify(session: nox.Session) -> None:
    """Check offline that every lock is fresh and consistent."""
    from deploy.lock.verify import unchecked
    from deploy.lock.verify import verify as verify_layers

    def run() -> None:
        config = config_module.load()
        note = unchecked(config)
        if note:
            session.warn(note)
        count = verify_layers(config)
        session.log(f"{count} layers fresh and consistent")

    _guard(session, run)


@nox.session(python=False)
def upgrade(session: nox.Session) -> None:
    """Upgrade the named packages (or all) in every layer: nox -s upgrade -- PKG [PKG==X] [--move-lower]."""
    from deploy.lock.reqfile import display
    from deploy.lock.solve import honour_ctrl_c
    from deploy.lock.solve import lock as lock_layers
    from deploy.render import lock_changes

    honour_ctrl_c()
    move_lower, packages = _move_lower(session.posargs)

    def run() -> None:
        config = config_module.load()
        result = lock_layers(config, upgrade=packages, upgrade_all=not packages, move_lower=move_lower,
                             log=session.log)
        text = lock_changes(result.changes, lambda layer: display(config.requirements / f"{layer}.txt", config.root),
                            result.rewritten)
        if text:
            print(text)

    _guard(session, run)


@nox.session(python=False)
def audit(session: nox.Session) -> None:
    """Check the deploy layer for known vulnerabilities with pip-audit (hash mode)."""
    from deploy.lock.audit import run_audit

    codes: list[int] = []
    _guard(session, lambda: codes.append(run_audit(config_module.load(), _option(session.posargs, "--osv-url"))))
    # Exit with the CLI's own code, so CI can tell "vulnerabilities found" (1) from "could not run" (2).
    if codes and codes[0]:
        sys.exit(codes[0])


@nox.session(python=False)
def add(session: nox.Session) -> None:
    """Add requirements and lock in one step: nox -s add -- [--layer L] 'SPEC' …; a failure changes nothing."""
    from deploy.lock.edit import add as add_specs

    layer, specs = _layer(session.posargs)
    if not specs:
        session.error("Usage: nox -s add -- [--layer LAYER] 'SPEC' …")
    _edit(session, lambda config: add_specs(config, specs, layer=layer, log=session.log))


@nox.session(python=False)
def remove(session: nox.Session) -> None:
    """Remove packages from the layers that ask for them and lock: nox -s remove -- [--layer L] PKG …"""
    from deploy.lock.edit import remove as remove_names

    layer, names = _layer(session.posargs)
    if not names:
        session.error("Usage: nox -s remove -- [--layer LAYER] PKG …")
    _edit(session, lambda config: remove_names(config, names, layer=layer, log=session.log))


def _edit(session: nox.Session, change: Callable[[config_module.Config], object]) -> None:
    from deploy.lock.reqfile import display
    from deploy.lock.solve import LockResult, honour_ctrl_c
    from deploy.render import lock_changes

    honour_ctrl_c()

    def run() -> None:
        config = config_module.load()
        result = change(config)
        if isinstance(result, LockResult):
            text = lock_changes(result.changes, lambda name: display(config.requirements / f"{name}.txt", config.root),
                                result.rewritten)
            if text:
                print(text)

    _guard(session, run)


def _layer(args: list[str]) -> tuple[str | None, list[str]]:
    """`--layer L` / `--layer=L` out of the arguments, and the rest."""
    layer = _option(args, "--layer")
    rest, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--layer":
            skip = True
        elif not arg.startswith("--layer="):
            rest.append(arg)
    return layer, rest


def _move_lower(args: list[str]) -> tuple[bool, list[str]]:
    """Whether `--move-lower` was given (an upper layer's input may move a lower layer's pins), and the rest."""
    return MOVE_LOWER in args, [arg for arg in args if arg != MOVE_LOWER]


def _option(args: list[str], name: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _guard(session: nox.Session, action: Callable[[], object]) -> None:
    try:
        action()
    except VerifyFailed as exc:
        session.error("\n".join(exc.problems))
    except DeployError as exc:
        session.error(str(exc))
    except OSError as exc:
        session.error(unusable_file(exc))
