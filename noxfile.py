"""Nox sessions for this repository: the adopter sessions plus tests, lint and typecheck."""

from __future__ import annotations

import sys

import nox

from deploy.sessions import add, audit, lock, remove, upgrade, verify

__all__ = ["add", "audit", "lint", "lock", "remove", "tests", "typecheck", "upgrade", "verify"]

nox.options.default_venv_backend = "none"
nox.options.sessions = ["verify", "lint", "typecheck", "tests"]


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Run the test suite (real pip-tools, local index, sshd hosts): nox -s tests -- [pytest args]."""
    session.run(sys.executable, "-m", "pytest", *session.posargs)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff."""
    session.run(sys.executable, "-m", "ruff", "check", ".")


@nox.session(python=False)
def typecheck(session: nox.Session) -> None:
    """Type-check the package, noxfile, tasks and tests with mypy --strict."""
    session.run(sys.executable, "-m", "mypy")
