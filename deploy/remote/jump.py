"""A bastion (jump host): `jump = "user@bastion:port"` per environment, for hosts this machine
cannot reach directly.

Each host's SSH connection runs inside a direct-tcpip channel of one connection to the bastion,
as Fabric's gateway and OpenSSH's ProxyJump do, so the host's own key is checked end to end
against its pin and the bastion sees only encrypted bytes. The bastion's key is pinned in the
same known-hosts file as any host (`invoke trust` offers it first) and checked the same way: never
added on first sight. One connection to the bastion serves every host of the environment in a
process (a run, or the keeper), opened on first need and closed when the last host lets go.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from deploy.config import Environment, Host
from deploy.errors import HostError
from deploy.remote.handshake import explained
from deploy.remote.target import bastion_of, identity_file
from deploy.render import inert


@dataclass
class _Bastion:
    host: Host
    env: Environment
    known: Path
    users: int = 0
    client: paramiko.SSHClient | None = None
    failed: HostError | None = None
    failed_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def transport(self) -> paramiko.Transport:
        """The bastion's connection, made on first need (again if it dropped). A failure is
        kept for connect-timeout seconds, so a fleet behind a dead bastion fails at once, not
        one connect timeout per host."""
        with self.lock:
            transport = self.client.get_transport() if self.client else None
            if transport is not None and transport.is_active():
                return transport
            if self.failed is not None and time.monotonic() - self.failed_at < self.env.connect_timeout:
                raise self.failed
            self.close()
            try:
                return self._connect()
            except HostError as exc:
                self.close()
                self.failed, self.failed_at = exc, time.monotonic()
                raise

    def _connect(self) -> paramiko.Transport:
        client = self.client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())  # pinned, never added on sight
        client.load_host_keys(str(self.known))
        identity = identity_file(self.env)
        timeout = self.env.connect_timeout
        with explained(str(self.host), self.env, self.known):
            client.connect(self.host.hostname, self.host.port, username=self.host.user,
                           key_filename=str(identity) if identity else None, timeout=timeout,
                           banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout)
        transport = client.get_transport()
        assert transport is not None  # connect() made it
        transport.set_keepalive(5)
        return transport

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


_BASTIONS: dict[tuple[str, str, str | None], _Bastion] = {}
_REGISTRY = threading.Lock()


def _key(env: Environment, known: Path) -> tuple[str, str, str | None]:
    return (str(env.jump), str(known), env.identity)


def attach(env: Environment, known: Path) -> None:
    """A host of `env` will use the bastion's connection (shared with its other hosts)."""
    host = bastion_of(env)
    assert host is not None
    with _REGISTRY:
        bastion = _BASTIONS.setdefault(_key(env, known), _Bastion(host, env, known))
        bastion.users += 1


def release(env: Environment, known: Path) -> None:
    """A host no longer uses the bastion; the last one to let go closes its connection."""
    with _REGISTRY:
        bastion = _BASTIONS.get(_key(env, known))
        if bastion is None:
            return
        bastion.users -= 1
        if bastion.users > 0:
            return
        del _BASTIONS[_key(env, known)]
    bastion.close()


def channel(env: Environment, known: Path, host: Host) -> paramiko.Channel:
    """A channel through the bastion to `host`'s SSH port (attach first), for its connection's socket."""
    with _REGISTRY:
        bastion = _BASTIONS[_key(env, known)]
    try:
        transport = bastion.transport()
    except HostError as exc:  # the bastion's, told as this host's (the run reports it per host)
        raise HostError(str(host), f"the bastion {bastion.host}: {exc.detail}", fix=exc.fix) from exc
    try:
        return transport.open_channel("direct-tcpip", (host.hostname, host.port), ("127.0.0.1", 0),
                                      timeout=env.connect_timeout)
    except paramiko.ChannelException as exc:  # the bastion's answer: refused by its config, or unreachable
        reason = inert(exc.text) or f"code {exc.code}"
        if exc.code == paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
            raise HostError(str(host), f"the bastion {bastion.host} refused to forward to it ({reason})",
                            fix="allow it in the bastion's sshd_config (AllowTcpForwarding, PermitOpen)") from exc
        raise HostError(str(host), f"the bastion {bastion.host} could not reach it ({reason})",
                        fix="check the host's address and port as the bastion sees them, and that it is up") from exc
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise HostError(str(host), f"the connection to the bastion {bastion.host} failed: "
                        f"{inert(str(exc)) or type(exc).__name__}",
                        fix="check the bastion, then run again") from exc
