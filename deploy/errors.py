"""One base exception: its message says what happened, where, and the command that fixes it.

Only entry points (the CLI, nox sessions, invoke tasks) turn these into exit codes.
"""

from __future__ import annotations


class DeployError(Exception):
    """Base of every error this package raises on purpose."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message}\n  fix: {self.fix}"
        return self.message


class ConfigError(DeployError):
    """pyproject.toml [tool.deploy] or a command-line override is wrong."""


class LayerError(DeployError):
    """The requirements/*.in graph is broken: a cycle, a missing file, an orphan."""


class LockError(DeployError):
    """pip-compile could not produce consistent locks."""


class VerifyFailed(DeployError):
    """The lock files are stale or inconsistent; one problem per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))

    def __str__(self) -> str:
        return self.message


class HostError(DeployError):
    """Something went wrong on one host. It keeps its fields: `detail` is what went wrong, without
    the host; str() names the host, for a reader who sees this one error alone."""

    def __init__(self, host: str, detail: str, *, fix: str | None = None) -> None:
        super().__init__(f"{host}: {detail}", fix=fix)
        self.host = host
        self.detail = detail
