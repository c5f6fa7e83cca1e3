"""A host over SSH (Fabric Connection, paramiko underneath); its keys are checked by deploy/remote/trust.py.

One agent process per host serves every request of a run, a JSON line each way on one channel of
the connection, so a step costs no new session, Python start-up or compile of the agent. The
connection checks host keys against the pinned known_hosts file only, with RejectPolicy instead
of Fabric's default AutoAddPolicy, and every step has a timeout and a watchdog.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import paramiko
from fabric import Connection
from invoke.context import Context

from deploy.agent.protocol import MARK
from deploy.config import Environment, Host
from deploy.errors import HostError
from deploy.remote import jump, stream
from deploy.remote.bundle import first_request
from deploy.remote.handshake import explained
from deploy.remote.target import Target, identity_file, step_budget
from deploy.remote.trust import check_known_hosts, pinned_keys, private_key
from deploy.render import inert, inert_lines

_Method = TypeVar("_Method", bound=Callable[..., Any])


def opens(method: _Method) -> _Method:
    """Connect (once: see SshTarget.open) before a method that needs the connection, as Fabric's
    Connection methods do."""

    @functools.wraps(method)
    def opened(self: SshTarget, *args: Any, **kwargs: Any) -> Any:
        self.open()
        return method(self, *args, **kwargs)

    return cast(_Method, opened)


class SshTarget(Target):
    def __init__(self, env: Environment, host: Host, root: Path) -> None:
        super().__init__(env)
        self.host = host
        self.name = str(host)
        kwargs: dict[str, Any] = {"banner_timeout": env.connect_timeout, "auth_timeout": env.connect_timeout,
                                  "channel_timeout": env.connect_timeout}
        identity = identity_file(env)
        if identity is not None:
            private_key(identity)
            kwargs["key_filename"] = str(identity)
        self.connection = Connection(host.hostname, user=host.user, port=host.port,
                                     connect_timeout=env.connect_timeout, connect_kwargs=kwargs)
        client = self.connection.client
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        known = (root / env.known_hosts) if env.known_hosts else None
        if known is None:
            raise HostError(self.name, "no known-hosts file is set: host keys cannot be checked",
                            fix=f"set known-hosts = \"known_hosts\" for the environment, then run: "
                            f"invoke trust --env {env.name}")
        check_known_hosts(known, env.name)
        pinned_keys(known, env.name)  # a line paramiko cannot read is named, not a traceback
        client.load_host_keys(str(known))
        self.known_hosts = known
        self.hung = False
        self._opening = threading.Lock()
        self._open_failed: HostError | None = None
        self._agent: paramiko.Channel | None = None  # the agent serving this host's requests
        self._no_sftp: paramiko.Transport | None = None  # the connection whose host refused SFTP
        self._bastion = False  # whether this target holds a share of its environment's bastion
        self._output = b""

    def _exchange(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        budget = step_budget(op, request, self.env.command_timeout)
        watchdog = self._watchdog(budget)
        try:
            return self._session_call(op, request, budget)
        except HostError as exc:
            if self.hung:
                raise self._hangs(f"'{op}'", self._limit(budget)) from exc
            if "Timeout opening channel" in str(exc.__cause__):
                raise self._hangs(f"'{op}'", self.env.connect_timeout) from exc
            raise
        finally:
            watchdog.cancel()

    @opens
    def _session_call(self, op: str, request: dict[str, Any], limit: float) -> dict[str, Any]:
        """Send one request line to this host's agent (started with the first one) and read its
        reply line within `limit` seconds. A step that fails to answer ends the session; the next
        step starts another."""
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
            return self._read_reply(op, limit)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self._end_session()
            if isinstance(exc, TimeoutError) and not self.hung:  # socket.timeout is TimeoutError
                raise HostError(self.name, f"'{op}' did not finish within {limit:.0f} s: "
                                "the host hangs", fix="check the host, or raise --command-timeout") from exc
            raise HostError(self.name, f"connection lost during '{op}': {inert(str(exc))}") from exc

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

    def _watchdog(self, budget: float) -> threading.Timer:
        """Hang up when one step outlasts its budget (see step_budget). The read has a timeout,
        but starting a session and SFTP have none, so a host that stops answering while a command
        is being started, or a file sent, would otherwise block the deploy forever."""
        self.hung = False
        timer = threading.Timer(self._limit(budget), self._hang_up)
        timer.daemon = True
        timer.start()
        return timer

    def _limit(self, budget: float) -> float:
        return budget + self.env.connect_timeout

    def _hang_up(self) -> None:
        self.hung = True
        self.connection.close()

    def _hangs(self, what: str, seconds: float) -> HostError:
        return HostError(self.name, f"{what} got no answer within {seconds:.0f} s: the host hangs",
                         fix="check the host, or raise --command-timeout")

    @opens
    def context(self) -> Context:
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
            self._session_call("ping", {}, self.env.connect_timeout)
        except (HostError, OSError, EOFError, paramiko.SSHException):
            self._end_session()
            self.connection.close()

    def _connect(self) -> None:
        # Fabric keeps one SFTP session per Connection, made on the first transfer; a kept
        # connection that died (a host restarted) would hand the new one that dead session.
        self.connection.close()
        self._close_client()
        try:
            self._handshake()
        except HostError:
            # paramiko keeps a refused or half-made connection (its socket and thread) until the
            # client is closed, and a retry would leave it behind: close it now, so an impostor,
            # or a host that refused us, holds nothing of ours (a keeper would keep it for hours).
            self._close_client()
            raise

    def _close_client(self) -> None:
        with contextlib.suppress(Exception):  # closing what is already broken must not raise
            self.connection.client.close()

    def _handshake(self) -> None:
        with explained(self.name, self.env, self.known_hosts):
            if self.env.jump:  # the host is reached through a channel of the bastion's connection
                if not self._bastion:
                    jump.attach(self.env, self.known_hosts)
                    self._bastion = True
                self.connection.connect_kwargs["sock"] = jump.channel(self.env, self.known_hosts, self.host)
            self.connection.open()
            transport = self.connection.transport
            if transport is not None:
                transport.set_keepalive(5)

    @opens
    def put(self, local: Path, remote: str) -> None:
        watchdog = self._watchdog(self.env.command_timeout)
        try:
            if self._has_sftp():
                self.connection.put(str(local), remote)
            else:
                self._copied(stream.send(
                    self._transport(), self.python(), local, remote, self.env.connect_timeout))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if self.hung:
                raise self._hangs(f"the upload of {local.name}", self._limit(self.env.command_timeout)) from exc
            self._remove_partial(remote)
            raise self._upload_failed(local, inert(str(exc)), getattr(exc, "errno", None) == 28) from exc
        finally:
            watchdog.cancel()
        self.sent_bytes += local.stat().st_size

    def _upload_failed(self, local: Path, text: str, full: bool = False) -> HostError:
        # SFTP reports a full disk as a bare "Failure", or (with pipelined writes) as a short file.
        if full or "No space" in text or "Failure" in text or "size mismatch" in text:
            return HostError(self.name, f"upload of {local.name} failed: no space left on the host? ({text})",
                             fix="free disk space on the host, then deploy again")
        return HostError(self.name, f"upload of {local.name} failed: {text}")

    def _has_sftp(self) -> bool:
        """Whether the host serves SFTP (Fabric opens it once per connection). A host whose sshd
        has no `Subsystem sftp` line closes the channel at once: its files then go over an exec
        channel of the same connection (deploy/remote/stream.py) for as long as it lasts."""
        if self._no_sftp is self.connection.transport:
            return False
        try:
            self.connection.sftp()
        except paramiko.SSHException as exc:
            if "Channel closed" not in str(exc) or not self.connection.is_connected:
                raise
            self._no_sftp = self.connection.transport
            return False
        return True

    def _transport(self) -> paramiko.Transport:
        transport = self.connection.transport
        assert transport is not None  # @opens connected it
        return transport

    def _copied(self, copied: stream.Copied) -> None:
        if copied.status != 0:
            detail = " / ".join(inert_lines(copied.output, 3, 200)) or "no output"
            raise OSError(f"copied over an exec channel, as the host has no SFTP subsystem (exit {copied.status}): "
                          f"{detail}")

    def _remove_partial(self, remote: str) -> None:
        # Left behind, a partial upload would keep the disk full for the clean-up that follows
        # (a copy over an exec channel removes its own).
        if self._no_sftp is not self.connection.transport:
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                self.connection.sftp().remove(remote)

    @opens
    def get(self, remote: str, local: Path) -> None:
        try:
            if self._has_sftp():
                self.connection.get(remote, str(local))
            else:
                self._copied(stream.fetch(
                    self._transport(), self.python(), remote, local, self.env.connect_timeout))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise HostError(self.name, f"could not fetch {remote}: {inert(str(exc))}") from exc

    def close(self) -> None:
        self._end_session()  # stdin closes: the agent's loop ends
        self.connection.close()
        self._close_client()  # also a connection Fabric never saw open (a refused host key)
        if self._bastion:
            self._bastion = False
            jump.release(self.env, self.known_hosts)
