"""A host over SSH (Fabric Connection, paramiko underneath), and the host-key helpers of `trust`.

One agent process per host serves every request of a run, a JSON line each way on one channel of
the connection, so a step costs no new session, Python start-up or compile of the agent. The
connection checks host keys against the pinned known_hosts file only, with RejectPolicy instead
of Fabric's default AutoAddPolicy, and every step has a timeout and a watchdog.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any

import paramiko
from fabric import Connection
from invoke.context import Context
from paramiko.hostkeys import HostKeyEntry

from deploy.config import Environment, Host
from deploy.errors import ConfigError, HostError
from deploy.remote.bundle import first_request
from deploy.remote.target import MARK, Target, identity_file, kind_of, step_budget
from deploy.render import inert

# paramiko logs a failed handshake, traceback and all, from its own thread; the HostError raised
# for it here says the same once, naming the host.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


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

    def _session_call(self, op: str, request: dict[str, Any], limit: float) -> dict[str, Any]:
        """Send one request line to this host's agent (started with the first one) and read its
        reply line within `limit` seconds. A step that fails to answer ends the session; the next
        step starts another."""
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
        except paramiko.PasswordRequiredException as exc:  # before its base class, AuthenticationException
            identity = Path(self.env.identity or "").expanduser()
            raise HostError(self.name, f"authentication failed: the identity {identity} is encrypted, and pinship "
                            "cannot ask for its passphrase (no key from an ssh-agent was accepted either)",
                            fix=f"add it to your ssh-agent (ssh-add {identity}), or point identity at a key "
                            "without a passphrase") from exc
        except paramiko.AuthenticationException as exc:
            raise HostError(self.name, f"authentication failed: {inert(str(exc))}",
                            fix="check the user, identity (setting: identity) or your ssh-agent") from exc
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise HostError(self.name, f"unknown host key: the host is not in {self.known_hosts}; nothing was sent",
                                fix=f"check its fingerprint and run: invoke trust --env {env}") from exc
            if "No existing session" in str(exc) or "banner" in str(exc):  # the handshake got no answer
                raise HostError(self.name, f"no SSH answer within {self.env.connect_timeout:.0f} s: the host hangs",
                                fix="check the host, or raise --connect-timeout") from exc
            raise HostError(self.name,
                            f"SSH failed: {inert(str(exc))} (no answer within {self.env.connect_timeout:.0f} s?)",
                            fix="check that the host is up and its sshd responds") from exc
        except TimeoutError as exc:
            raise HostError(self.name, f"timed out after {self.env.connect_timeout:.0f} s while connecting",
                            fix="check that the host is up, or raise --connect-timeout") from exc
        except OSError as exc:
            raise HostError(self.name, f"unreachable: {exc.strerror or exc}",
                            fix="check the address and port in [tool.deploy.environments]") from exc

    def put(self, local: Path, remote: str) -> None:
        self.open()
        watchdog = self._watchdog(self.env.command_timeout)
        try:
            self.connection.put(str(local), remote)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if self.hung:
                raise self._hangs(f"the upload of {local.name}", self._limit(self.env.command_timeout)) from exc
            self._remove_partial(remote)
            text = inert(str(exc))  # SFTP status text comes from the host
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
            raise HostError(self.name, f"could not fetch {remote}: {inert(str(exc))}") from exc

    def close(self) -> None:
        self._end_session()  # stdin closes: the agent's loop ends
        self.connection.close()
        self._close_client()  # also a connection Fabric never saw open (a refused host key)


def check_known_hosts(path: Path, env: str) -> None:
    """The known-hosts setting names a regular file: say what it is instead, never a traceback."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"the known-hosts file {path} does not exist",
                          fix=f"run: invoke trust --env {env}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the known-hosts file {path}: {exc.strerror or type(exc).__name__}",
                          fix=f"run: invoke trust --env {env}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"the known-hosts setting names {path}, which {kind_of(info.st_mode)}, not a file",
                          fix=f"move {path} away (or set known-hosts to a file at the project root), "
                          f"then run: invoke trust --env {env}")


def private_key(path: Path) -> None:
    """Refuse an identity file that holds no private key paramiko can use, naming the file and
    what it holds instead; never its contents. An encrypted key passes: the ssh-agent may hold it."""
    info = path.stat()
    _check_key(str(path), info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _check_key(path: str, size: int, mtime_ns: int) -> None:  # size and mtime: a changed file is read again
    fix = "point identity at a private key file, e.g. ~/.ssh/id_ed25519 (setting: identity, or --identity)"
    try:
        paramiko.PKey.from_path(path)
    except (paramiko.PasswordRequiredException, TypeError):
        return  # TypeError: the cryptography package's word for an encrypted key read without a password
    except paramiko.UnknownKeyType:  # its text holds the key's bytes: never shown
        raise ConfigError(f"identity {path}: a private key of a type paramiko does not support (DSA?)",
                          fix=fix) from None
    except OSError as exc:
        raise ConfigError(f"identity {path}: cannot be read ({exc.strerror or type(exc).__name__})", fix=fix) from None
    except Exception:  # ValueError, SSHException …: not a key file; their text may quote it
        head = b""
        with contextlib.suppress(OSError), open(path, "rb") as handle:
            head = handle.read(64)
        if path.endswith(".pub") or head.startswith((b"ssh-", b"ecdsa-", b"sk-")):
            raise ConfigError(f"identity {path}: a public key, not the private key", fix=fix) from None
        raise ConfigError(f"identity {path}: not a private key file (no key paramiko can read)", fix=fix) from None


def fingerprint(key: paramiko.PKey) -> str:
    return str(key.fingerprint) if hasattr(key, "fingerprint") else str(key.get_base64())[:16]


def host_key(host: Host, timeout: float, prefer: list[str] | None = None) -> paramiko.PKey:
    """The key a host offers, read without logging in (for `invoke trust`). Key types already
    pinned for it come first (`prefer`), as a connection asks for them: a host with an RSA key
    pinned and a new ed25519 key then shows its RSA key, not a false "changed"."""
    sock = socket.create_connection((host.hostname, host.port), timeout=timeout)
    try:
        transport = paramiko.Transport(sock)
    except BaseException:
        sock.close()
        raise
    try:
        options = transport.get_security_options()
        wanted = [kind for name in prefer or [] for kind in _negotiated(name) if kind in options.key_types]
        options.key_types = tuple(dict.fromkeys([*wanted, *options.key_types]))
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    finally:
        transport.close()


def _negotiated(key_type: str) -> list[str]:
    """The algorithm names a pinned key type is asked for by (an RSA key signs with SHA-2)."""
    return ["rsa-sha2-512", "rsa-sha2-256", key_type] if key_type == "ssh-rsa" else [key_type]


def pin_name(host: Host) -> str:
    """A host's name in known_hosts, as OpenSSH and paramiko look it up."""
    return host.hostname if host.port == 22 else f"[{host.hostname}]:{host.port}"


def known_hosts_line(host: Host, key: paramiko.PKey) -> str:
    return f"{pin_name(host)} {key.get_name()} {key.get_base64()}"


def pinned_keys(path: Path, env: str) -> paramiko.HostKeys:
    """The host keys pinned in a known_hosts file. A key of a type paramiko does not know is
    skipped, as paramiko and OpenSSH do (its host stays unpinned, so it is refused); a line that
    cannot be read at all is an error naming the file and line, never a traceback or its text."""
    fix = f"delete that line (or fix it), then run: invoke trust --env {env}"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the known-hosts file {path}: {exc.strerror or exc}",
                          fix=f"run: invoke trust --env {env}") from exc
    keys = paramiko.HostKeys()
    for number, raw in enumerate(data.splitlines(), 1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ConfigError(f"{path}:{number}: not UTF-8 text", fix=fix) from None
        if not line or line.startswith("#"):
            continue
        try:
            entry = HostKeyEntry.from_line(line, number)
        except Exception as exc:  # InvalidHostKey (bad base64), ValueError (a key of the wrong size) …
            raise ConfigError(f"{path}:{number}: not a host key paramiko can read ({type(exc).__name__})",
                              fix=fix) from None
        if entry is not None:
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)
    return keys
