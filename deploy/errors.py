"""One base exception: its message says what happened, where, and the command that fixes it.

Only entry points (the CLI, nox sessions, invoke tasks) turn these into exit codes. Errors stay
objects with their fields until printed, also across a process boundary: to_wire and from_wire
are the one format in which the keeper sends them back and an agent's failure is read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from deploy.render import inert, inert_lines


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


class AgentFailure(HostError):
    """The agent ran and reported a failure of a known kind ('locked', 'corrupt', 'stage' …);
    `extra` holds what that kind carries (the lock's owner, the corrupt files …)."""

    def __init__(self, host: str, kind: str, detail: str, extra: dict[str, Any], *, fix: str | None = None) -> None:
        super().__init__(host, detail, fix=fix)
        self.kind = kind
        self.extra = extra


# An error crossing a process boundary (the keeper's socket; an agent's failure, once translated)
# is a dict of its fields, never its text: {"error": one of these words, "detail", "fix", and for
# "agent" its "kind" and "extra"}. The receiver names the host: it knows which one it asked.
_WIRE: dict[type[DeployError], str] = {AgentFailure: "agent", HostError: "host", ConfigError: "config"}
_KIND = r"[a-z][a-z0-9-]{0,31}"  # compiled by re on first use: only a keeper or an agent sends one
GUTTER = "    | "
WIRE_FIX = ("the error did not come back the way pinship sends one: run again; if it keeps happening, "
            "set keep-alive = 0")


def to_wire(exc: DeployError) -> dict[str, Any]:
    """An error's fields, for the other end of a pipe to rebuild it with from_wire."""
    word = next((word for cls, word in _WIRE.items() if isinstance(exc, cls)), "deploy")
    wire: dict[str, Any] = {"error": word, "detail": exc.detail if isinstance(exc, HostError) else exc.message,
                            "fix": exc.fix}
    if isinstance(exc, AgentFailure):
        wire.update(kind=exc.kind, extra=exc.extra)
    return wire


def from_wire(host: str, wire: object) -> HostError:
    """The error `wire` describes, as `host`'s: an AgentFailure, or a HostError for anything else
    that went wrong in reaching that host. What arrives is not trusted: a wrong shape is itself
    one line naming the host, and the texts are made inert (see host_output)."""
    problem = _misshapen(wire)
    if problem is not None:
        return HostError(host, f"an error came back in a shape pinship does not send ({problem})", fix=WIRE_FIX)
    assert isinstance(wire, Mapping)
    detail = host_output(wire["detail"])
    fix = inert(wire["fix"], 1000) if wire.get("fix") is not None else None
    if wire["error"] == "agent":
        return AgentFailure(host, wire["kind"], detail, dict(wire.get("extra") or {}), fix=fix)
    return HostError(host, detail, fix=fix)


def _misshapen(wire: object) -> str | None:
    """What is wrong with an error's wire form, or None."""
    if not isinstance(wire, Mapping):
        return f"not a mapping but {type(wire).__name__}"
    if wire.get("error") not in (*_WIRE.values(), "deploy"):
        return "no kind of error pinship knows"
    if not isinstance(wire.get("detail"), str):
        return "its detail is not text"
    if not isinstance(wire.get("fix"), (str, type(None))):
        return "its fix is not text"
    if wire["error"] == "agent":
        if not isinstance(wire.get("kind"), str) or not re.fullmatch(_KIND, wire["kind"]):
            return "an agent failure without a short word for its kind"
        if not isinstance(wire.get("extra") or {}, Mapping):
            return "an agent failure whose extra is not a mapping"
    return None


def host_output(text: str, max_lines: int = 8) -> str:
    """A host's message, with any output it quotes, as inert lines: the first as it is, the rest
    behind a gutter, so that nothing a host prints can pass for a line of ours. Applied to its own
    result it changes nothing, so an error rebuilt from the wire shows as it did where it was made."""
    first, _, rest = text.partition("\n")
    lines = "\n".join(line.removeprefix(GUTTER) for line in rest.split("\n")) if rest else ""
    return "\n".join([inert(first, 500), *(GUTTER + line for line in inert_lines(lines, max_lines, 300))])
