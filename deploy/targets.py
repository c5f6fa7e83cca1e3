"""Where a deploy runs: this machine (invoke Context) or a host over SSH (Fabric Connection).

Both run the same agent (deploy/agent*.py, sent as source). Here, one agent process answers one
request; over SSH, one agent process per host serves every request of a run, a JSON line each
way on one channel of the Fabric connection, so a step costs no new session, Python start-up or
compile of the agent. SSH connections check host keys against the pinned known_hosts file only,
with RejectPolicy instead of Fabric's default AutoAddPolicy, and every step has a timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shlex
import shutil
import socket
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import paramiko
from fabric import Connection
from invoke.context import Context
from invoke.exceptions import CommandTimedOut

from deploy.config import Environment, Host
from deploy.errors import HostError

MARK = "PINSHIP-RESULT:"
# Runs the agent from stdin, so nothing has to be installed on a host first.
# The first request line carries the agent's source; the agent then serves further lines.
LOADER = (
    "import sys,json;d=json.loads(sys.stdin.readline());"
    "exec(compile(d.pop('agent'),'pinship-agent','exec'),{'__name__':'__agent__','REQUEST':d})"
)
# Sent as one script: the venv helpers first, then the agent whose last lines run the request.
AGENT_PARTS = ("agent_venv.py", "agent_install.py", "agent_status.py", "agent.py")
AGENT = "\n".join(resources.files("deploy").joinpath(name).read_text(encoding="utf-8") for name in AGENT_PARTS)
AGENT_DIGEST = hashlib.sha256(AGENT.encode()).hexdigest()
# What the loader runs: it compiles AGENT, or loads the code an earlier run compiled on that host.
BOOT = resources.files("deploy").joinpath("agent_boot.py").read_text(encoding="utf-8")
# paramiko logs a failed handshake, traceback and all, from its own thread; the HostError raised
# for it here says the same once, naming the host.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def first_request() -> dict[str, str]:
    """What a session's first request carries besides the request: the agent and its loader."""
    return {"agent": BOOT, "source": AGENT, "digest": AGENT_DIGEST}


class _Payload(io.StringIO):
    """A request stream invoke reads in one go: it asks for one byte per 10 ms from streams
    that are not terminals, which would make a 15 kB request take minutes."""

    def read(self, size: int | None = -1) -> str:
        return super().read(1 << 20)


class AgentFailure(HostError):
    """The agent ran and reported a failure of a known kind ('locked', 'corrupt', 'stage' …)."""

    def __init__(self, host: str, kind: str, message: str, extra: dict[str, Any]) -> None:
        super().__init__(host, message)
        self.kind = kind
        self.extra = extra


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
        """One agent process for one request (this machine: nothing to save by keeping it)."""
        payload = json.dumps({**first_request(), "op": op, "path": self.env.path, **request}) + "\n"
        command = self.agent_command()
        try:
            result = self.context().run(
                command, in_stream=_Payload(payload), hide=True, warn=True,
                timeout=self.env.command_timeout, echo_stdin=False,
            )
        except CommandTimedOut as exc:
            raise HostError(self.name, f"'{op}' did not finish within {exc.timeout:.0f} s: the host hangs",
                            fix="check the host, or raise --command-timeout") from exc
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise HostError(self.name, f"connection lost during '{op}': {exc}") from exc
        assert result is not None  # run() returns None only with disown=True
        for line in reversed(result.stdout.splitlines()):
            if line.startswith(MARK):
                return self._reply(line)
        raise self._no_reply(op, result.exited, result.stderr or result.stdout)

    def _reply(self, line: str) -> dict[str, Any]:
        reply: dict[str, Any] = json.loads(line[len(MARK):])
        if not reply["ok"]:
            raise AgentFailure(self.name, reply["kind"], reply["error"], reply.get("extra") or {})
        return dict(reply["result"])

    def _no_reply(self, op: str, exited: int | None, output: str) -> HostError:
        detail = output.strip().splitlines()[-3:]
        return HostError(self.name, f"'{op}' failed on the host (exit {exited}): {' / '.join(detail)}",
                         fix=f"check that '{self.python()}' is Python 3 on the host (setting: python)")

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


class SshTarget(Target):
    def __init__(self, env: Environment, host: Host, root: Path) -> None:
        super().__init__(env)
        self.host = host
        self.name = str(host)
        kwargs: dict[str, Any] = {"banner_timeout": env.connect_timeout, "auth_timeout": env.connect_timeout,
                                  "channel_timeout": env.connect_timeout}
        if env.identity:
            kwargs["key_filename"] = str(Path(env.identity).expanduser())
        self.connection = Connection(host.hostname, user=host.user, port=host.port,
                                     connect_timeout=env.connect_timeout, connect_kwargs=kwargs)
        client = self.connection.client
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        known = (root / env.known_hosts) if env.known_hosts else None
        if known is None or not known.is_file():
            raise HostError(self.name, f"the known-hosts file {known} does not exist",
                            fix=f"run: invoke trust --env {env.name}")
        client.load_host_keys(str(known))
        self.known_hosts = known
        self.hung = False
        self._opening = threading.Lock()
        self._open_failed: HostError | None = None
        self._agent: paramiko.Channel | None = None  # the agent serving this host's requests
        self._output = b""

    def call(self, op: str, **request: Any) -> dict[str, Any]:
        watchdog = self._watchdog()
        try:
            return self._session_call(op, request)
        except HostError as exc:
            if self.hung:
                raise self._hangs(f"'{op}'", self._limit) from exc
            if "Timeout opening channel" in str(exc.__cause__):
                raise self._hangs(f"'{op}'", self.env.connect_timeout) from exc
            raise
        finally:
            watchdog.cancel()

    def _session_call(self, op: str, request: dict[str, Any], limit: float | None = None) -> dict[str, Any]:
        """Send one request line to this host's agent (started with the first one) and read its
        reply line. A step that fails to answer ends the session; the next step starts another."""
        self.open()
        message = {"op": op, "path": self.env.path, **request}
        try:
            if self._agent is None:
                transport = self.connection.transport
                assert transport is not None
                channel = transport.open_session(timeout=self.env.connect_timeout)
                channel.set_combine_stderr(True)  # a traceback must not fill an unread stderr window
                channel.exec_command(self.agent_command())
                self._agent, self._output = channel, b""
                message.update(first_request())
            try:
                self._agent.sendall((json.dumps(message) + "\n").encode())
            except OSError:
                if not self._agent.exit_status_ready():
                    raise
                # The agent ended before reading (no Python there?): its output says why.
            return self._read_reply(op, limit or self.env.command_timeout)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self._end_session()
            if isinstance(exc, TimeoutError) and not self.hung:  # socket.timeout is TimeoutError
                raise HostError(self.name, f"'{op}' did not finish within {self.env.command_timeout:.0f} s: "
                                "the host hangs", fix="check the host, or raise --command-timeout") from exc
            raise HostError(self.name, f"connection lost during '{op}': {exc}") from exc

    def _read_reply(self, op: str, limit: float) -> dict[str, Any]:
        channel = self._agent
        assert channel is not None
        deadline = time.monotonic() + limit
        while True:
            lines = self._output.split(b"\n")
            for index, line in enumerate(lines[:-1]):  # complete lines only
                if line.startswith(MARK.encode()):
                    self._output = b"\n".join(lines[index + 1:])
                    return self._reply(line.decode())
            channel.settimeout(max(0.05, deadline - time.monotonic()))
            data = channel.recv(1 << 16)
            if not data:  # the agent ended without answering: a crash, or no Python 3 there
                channel.status_event.wait(2)  # the exit status may follow the end of the output
                exited = channel.exit_status if channel.exit_status_ready() and channel.exit_status >= 0 else None
                output = self._output.decode("utf-8", "replace")
                self._end_session()
                raise self._no_reply(op, exited, output)
            self._output += data

    def _end_session(self) -> None:
        if self._agent is not None:
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                self._agent.close()
        self._agent, self._output = None, b""

    def _watchdog(self) -> threading.Timer:
        """Hang up when one step outlasts its timeout. invoke's timeout only starts once a command
        runs and SFTP has none, so a host that stops answering while a command is being started,
        or a file sent, would otherwise block the deploy forever."""
        self.hung = False
        timer = threading.Timer(self._limit, self._hang_up)
        timer.daemon = True
        timer.start()
        return timer

    @property
    def _limit(self) -> float:
        return self.env.command_timeout + self.env.connect_timeout

    def _hang_up(self) -> None:
        self.hung = True
        self.connection.close()

    def _hangs(self, what: str, seconds: float) -> HostError:
        return HostError(self.name, f"{what} got no answer within {seconds:.0f} s: the host hangs",
                         fix="check the host, or raise --command-timeout")

    def context(self) -> Context:
        self.open()
        connection: Context = self.connection
        return connection

    def open(self) -> None:
        """Connect, once: a second thread asking meanwhile (the engine connects ahead of need)
        waits for the first, and a host that failed to connect fails every later step the same way."""
        with self._opening:
            if self._open_failed is not None:
                raise self._open_failed
            if self.connection.is_connected:
                return
            try:
                self._connect()
            except HostError as exc:
                self._open_failed = exc
                raise

    def refresh(self) -> None:
        """Before a new run's first step on a kept connection: forget a failed connect (it is
        tried again), and make sure the kept agent still answers. A connection that died since
        (the host rebooted, a network dropped it) is closed, so the step connects afresh rather
        than failing on it; a host that is up but hung fails the ping, then the connect."""
        with self._opening:
            self._open_failed = None
        if self._agent is None:
            return
        if not self.connection.is_connected or self._agent.exit_status_ready():
            self._end_session()  # open() connects afresh where needed; the first step starts an agent
            return
        try:
            self._session_call("ping", {}, limit=self.env.connect_timeout)
        except (HostError, OSError, EOFError, paramiko.SSHException):
            self._end_session()
            self.connection.close()

    def _connect(self) -> None:
        env = self.env.name
        try:
            self.connection.open()
            transport = self.connection.transport
            if transport is not None:
                transport.set_keepalive(5)
        except paramiko.BadHostKeyException as exc:
            raise HostError(
                self.name,
                f"HOST KEY CHANGED: it offered {exc.key.get_name()} {fingerprint(exc.key)}, which is not the key "
                f"pinned in {self.known_hosts} — someone may be intercepting the connection; nothing was sent",
                fix=f"if the host was rebuilt, delete its line from {self.known_hosts} and run: "
                f"invoke trust --env {env}",
            ) from exc
        except paramiko.AuthenticationException as exc:
            raise HostError(self.name, f"authentication failed: {exc}",
                            fix="check the user, identity (setting: identity) or your ssh-agent") from exc
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise HostError(self.name, f"unknown host key: the host is not in {self.known_hosts}; nothing was sent",
                                fix=f"check its fingerprint and run: invoke trust --env {env}") from exc
            if "No existing session" in str(exc) or "banner" in str(exc):  # the handshake got no answer
                raise HostError(self.name, f"no SSH answer within {self.env.connect_timeout:.0f} s: the host hangs",
                                fix="check the host, or raise --connect-timeout") from exc
            raise HostError(self.name, f"SSH failed: {exc} (no answer within {self.env.connect_timeout:.0f} s?)",
                            fix="check that the host is up and its sshd responds") from exc
        except TimeoutError as exc:
            raise HostError(self.name, f"timed out after {self.env.connect_timeout:.0f} s while connecting",
                            fix="check that the host is up, or raise --connect-timeout") from exc
        except OSError as exc:
            raise HostError(self.name, f"unreachable: {exc.strerror or exc}",
                            fix="check the address and port in [tool.deploy.environments]") from exc

    def put(self, local: Path, remote: str) -> None:
        self.open()
        watchdog = self._watchdog()
        try:
            self.connection.put(str(local), remote)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if self.hung:
                raise self._hangs(f"the upload of {local.name}", self._limit) from exc
            self._remove_partial(remote)
            text = str(exc)
            # SFTP reports a full disk as a bare "Failure", or (with pipelined writes) as a short file.
            if "No space" in text or getattr(exc, "errno", None) == 28 or "Failure" in text or "size mismatch" in text:
                raise HostError(self.name, f"upload of {local.name} failed: no space left on the host? ({text})",
                                fix="free disk space on the host, then deploy again") from exc
            raise HostError(self.name, f"upload of {local.name} failed: {text}") from exc
        finally:
            watchdog.cancel()
        self.sent_bytes += local.stat().st_size

    def _remove_partial(self, remote: str) -> None:
        # Left behind, a partial upload would keep the disk full for the clean-up that follows.
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            self.connection.sftp().remove(remote)

    def get(self, remote: str, local: Path) -> None:
        self.open()
        try:
            self.connection.get(remote, str(local))
        except OSError as exc:
            raise HostError(self.name, f"could not fetch {remote}: {exc}") from exc

    def close(self) -> None:
        self._end_session()  # stdin closes: the agent's loop ends
        self.connection.close()


def fingerprint(key: paramiko.PKey) -> str:
    return str(key.fingerprint) if hasattr(key, "fingerprint") else str(key.get_base64())[:16]


def start_keeper(env: Environment, root: Path) -> None:
    """Start the process that keeps this environment's connections between runs (see keeper.py),
    if it keeps them and none runs yet."""
    if not env.is_local and env.keep_alive > 0:
        from deploy import keeper

        keeper.start(env, root)


def connect(env: Environment, root: Path, python: str) -> list[Target]:
    if env.is_local:
        return [LocalTarget(env, python)]
    if env.keep_alive > 0:
        from deploy.keeper import KeptTarget  # the keeper runs this module's SshTarget

        start_keeper(env, root)  # here, on the run's only thread so far, rather than in a step
        return [KeptTarget(env, host, root) for host in env.hosts]
    return [SshTarget(env, host, root) for host in env.hosts]


def host_key(host: Host, timeout: float) -> paramiko.PKey:
    """The key a host offers, read without logging in (for `invoke trust`)."""
    sock = socket.create_connection((host.hostname, host.port), timeout=timeout)
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    finally:
        transport.close()


def known_hosts_line(host: Host, key: paramiko.PKey) -> str:
    name = host.hostname if host.port == 22 else f"[{host.hostname}]:{host.port}"
    return f"{name} {key.get_name()} {key.get_base64()}"
