"""Where a deploy runs: this machine (invoke Context), a host over SSH (deploy/remote/ssh.py), or a
host whose connection a keeper holds between runs (deploy/remote/keeper.py).

All run the same agent (deploy/agent/*.py, sent as source). Here, one agent process answers one
request; over SSH, one agent process per host serves every request of a run. This module does not
import paramiko or Fabric: a run whose connections a keeper holds never needs them.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shlex
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from invoke.context import Context
from invoke.exceptions import CommandTimedOut

from deploy.agent.protocol import MARK as MARK  # the agent prints its reply after it
from deploy.config import Environment, Host
from deploy.errors import AgentFailure as AgentFailure  # where the engine has always found it
from deploy.errors import ConfigError, HostError, from_wire
from deploy.errors import host_output as host_output  # how the engine shows a host's output
from deploy.remote.bundle import LOADER, first_request
from deploy.remote.replies import FIX, check, failure
from deploy.render import inert, inert_lines

# A shell's complaint about an option it was given (bash, dash, zsh print it so, with exit 2).
_SHELL_USAGE = re.compile(r"(?im)^\S*sh: .*\b(invalid|illegal|bad) option")


def _commands(op: str, request: Mapping[str, Any]) -> int:
    """How many commands of the user's the agent may run within one step, each with the request's
    timeout: a switch runs `restart` up to twice (the new release's, then, after a failed one, the
    old release's again), a stage its health check, status the live venv's inspection."""
    if op == "switch":
        # The post-switch check runs once, with its own timeout (budgeted in step_budget).
        return 2 if request.get("restart") else 0
    if op == "hook":
        return 1
    if op == "stage":
        return 1 if request.get("healthcheck") else 0
    if op == "status":
        return 1 if request.get("inspect", True) else 0
    return 0


# The agent's run() gives up on a command a moment after its timeout; the reply then still has
# to be written, and read from the far end of a connection.
_MARGIN = 5.0


def step_budget(op: str, request: Mapping[str, Any], command_timeout: float) -> float:
    """How long the deploying side waits for the reply to one step: --command-timeout for the
    step's own work, and the request's timeout for each command the agent may run in it.

    Every transport uses it (this machine's run, the SSH read limit and watchdog, the keeper's
    socket): waiting less would call a host "hung" while it does what it was asked, and lose its
    own reply (a restart that timed out, and the switch back), which is what the user needs."""
    commands = _commands(op, request)
    hook = request.get("hook_timeout") if op == "switch" and request.get("post_switch") else None
    extra = float(hook) if isinstance(hook, (int, float)) and not isinstance(hook, bool) and math.isfinite(hook) \
        and hook >= 0 else 0.0
    if not commands:
        return command_timeout + (extra + _MARGIN if extra else 0.0)
    each: object = request.get("timeout", command_timeout)
    if not isinstance(each, (int, float)) or isinstance(each, bool) or not math.isfinite(each) or each < 0:
        each = command_timeout
    return command_timeout + commands * float(each) + extra + _MARGIN


def identity_file(env: Environment) -> Path | None:
    """The identity setting's file, checked before anything connects: it exists, is a regular
    file and can be read. (Whether it holds a private key is for deploy/remote/ssh.py, which has paramiko.)"""
    if not env.identity:
        return None
    path = Path(env.identity).expanduser()
    fix = "point identity at a private key file, e.g. ~/.ssh/id_ed25519 (setting: identity, or --identity)"
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"identity {path}: no such file", fix=fix) from None
    except OSError as exc:
        raise ConfigError(f"identity {path}: cannot be read ({exc.strerror or type(exc).__name__})", fix=fix) from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"identity {path}: {kind_of(info.st_mode)}, not a private key file", fix=fix)
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as exc:
        raise ConfigError(f"identity {path}: cannot be read ({exc.strerror or type(exc).__name__})",
                          fix=f"make it readable by this user (chmod 600 {path}), or {fix}") from None
    return path


def bastion_of(env: Environment) -> Host | None:
    """The environment's bastion (setting: jump), checked before anything connects; None when
    its hosts are reached directly (deploy/remote/jump.py connects through it)."""
    if not env.jump:
        return None
    where = f"pyproject.toml [tool.deploy.environments.{env.name}]: jump"
    host = Host.parse(env.jump, where)
    if host in env.hosts:
        raise ConfigError(f"{where}: {host} is also one of the hosts",
                          fix="name the bastion in jump, and only the hosts behind it in hosts")
    return host


def kind_of(mode: int) -> str:
    """What a path that is not a regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "is a named pipe"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device"
    return "is not a regular file"


class _Payload(io.StringIO):
    """A request stream invoke reads in one go: it asks for one byte per 10 ms from streams
    that are not terminals, which would make a 15 kB request take minutes."""

    def read(self, size: int | None = -1) -> str:
        return super().read(1 << 20)


class Target:
    """One place to deploy to; subclasses supply the context and file transfer."""

    name: str

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.sent_bytes = 0

    def context(self) -> Context:
        raise NotImplementedError

    def put(self, local: Path, remote: str) -> None:
        raise NotImplementedError

    def python(self) -> str:
        return self.env.python

    def open(self) -> None:
        """Connect ahead of the first step, where there is anything to connect to."""

    def get(self, remote: str, local: Path) -> None:
        raise NotImplementedError

    def agent_command(self) -> str:
        # -I -S: the agent needs the standard library only, and starts without the host's
        # site-packages (.pth files run code at every start-up) or PYTHON* variables.
        return shlex.join([self.python(), "-I", "-S", "-c", LOADER])

    def call(self, op: str, **request: Any) -> dict[str, Any]:
        """Ask this place's agent to do `op`; its reply, once checked (everything a host says is
        untrusted). Subclasses differ only in how a request reaches the agent (`_exchange`).
        Every request carries the timeout of the commands the agent may run for it: the agent
        keeps no default of its own, so --command-timeout is the one source of it."""
        request.setdefault("timeout", self.env.command_timeout)
        return check(self.name, op, self._exchange(op, request))

    def _exchange(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        """One agent process for one request (this machine: nothing to save by keeping it)."""
        payload = json.dumps({**first_request(), "op": op, "path": self.env.path, **request}) + "\n"
        command = self.agent_command()
        try:
            result = self.context().run(
                command, in_stream=_Payload(payload), hide=True, warn=True,
                timeout=step_budget(op, request, self.env.command_timeout), echo_stdin=False,
            )
        except CommandTimedOut as exc:
            raise HostError(self.name, f"'{op}' did not finish within {exc.timeout:.0f} s: the host hangs",
                            fix="check the host, or raise --command-timeout") from exc
        except (OSError, EOFError) as exc:
            raise HostError(self.name, f"connection lost during '{op}': {exc}") from exc
        assert result is not None  # run() returns None only with disown=True
        for line in reversed(result.stdout.splitlines()):
            if line.startswith(MARK):
                return self._reply(line)
        raise self._no_reply(op, result.exited, result.stderr or result.stdout)

    def _reply(self, line: str) -> dict[str, Any]:
        """The result in an agent's reply line (its shape is checked by `call`), or the failure
        it reports as an AgentFailure whose text is the host's, made inert."""
        try:
            reply = json.loads(line[len(MARK):])
        except (ValueError, RecursionError):
            raise HostError(self.name, f"the agent's reply is not JSON: {inert(line[len(MARK):], 80)}",
                            fix=FIX) from None
        if isinstance(reply, dict) and reply.get("ok") is True:
            return cast(dict[str, Any], reply.get("result"))  # not yet: `call` checks its shape
        failed = failure(self.name, reply)  # the agent's own envelope, checked; then the one wire format of errors
        raise from_wire(self.name, {"error": "agent", "kind": failed["kind"], "detail": failed["error"],
                                    "fix": None, "extra": failed["extra"]})

    def _no_reply(self, op: str, exited: int | None, output: str) -> HostError:
        """The agent ended without a reply: say why, as far as its exit and output tell."""
        detail = " / ".join(inert_lines(output, 3, 200)) or "no output"
        if exited == 2 and _SHELL_USAGE.search(output):
            # The login shell took the command line's first word (the python setting) for an
            # option of its own, and printed its usage: no interpreter was even started.
            return HostError(self.name, f"'{op}': the host's shell refused the agent's command line (exit 2): "
                             f"{detail}", fix=f"set python to an interpreter on the host, e.g. python3 "
                             f"(now: {inert(self.python(), 60)}; setting: python)")
        if exited in (126, 127) or "SyntaxError" in output:
            return HostError(self.name, f"'{op}': the host could not run the agent (exit {exited}): {detail}",
                             fix=f"check that '{self.python()}' is Python 3.8 or later on the host (setting: python)")
        if exited is None or exited < 0 or exited >= 128:
            signal = (f"signal {exited - 128}" if exited is not None and exited > 128
                      else "a signal, or the session dropped")
            return HostError(self.name, f"'{op}': the agent ended without answering ({signal}; killed, or out of "
                             f"memory?): {detail}", fix="run again; if it happens again, see the host's logs")
        return HostError(self.name, f"'{op}' failed on the host (exit {exited}): {detail}",
                         fix="check the host (disk, permissions on the deploy path), then run again")

    def close(self) -> None:
        """Nothing to close for this machine."""


class LocalTarget(Target):
    name = "local"

    def __init__(self, env: Environment, python: str) -> None:
        super().__init__(env)
        self._python = python
        self._context = Context()

    def python(self) -> str:
        return self._python

    def context(self) -> Context:
        return self._context

    def get(self, remote: str, local: Path) -> None:
        shutil.copyfile(remote, local)

    def put(self, local: Path, remote: str) -> None:
        Path(remote).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, remote)
        self.sent_bytes += local.stat().st_size
