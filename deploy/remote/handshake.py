"""What a failed SSH handshake means, in one line naming the host: for a host (deploy/remote/ssh.py)
and for the bastion a host is reached through (deploy/remote/jump.py) alike."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import paramiko

from deploy.config import Environment
from deploy.errors import HostError
from deploy.render import inert


def fingerprint(key: paramiko.PKey) -> str:
    return str(key.fingerprint) if hasattr(key, "fingerprint") else str(key.get_base64())[:16]


@contextlib.contextmanager
def explained(name: str, env: Environment, known: Path) -> Iterator[None]:
    """Turn what paramiko raises while connecting to `name` into a HostError saying what to do."""
    try:
        yield
    except paramiko.BadHostKeyException as exc:
        raise HostError(
            name,
            f"HOST KEY CHANGED: it offered {exc.key.get_name()} {fingerprint(exc.key)}, which is not the key "
            f"pinned in {known} — someone may be intercepting the connection; nothing was sent",
            fix=f"if the host was rebuilt, delete its line from {known} and run: invoke trust --env {env.name}",
        ) from exc
    except paramiko.PasswordRequiredException as exc:  # before its base class, AuthenticationException
        identity = Path(env.identity or "").expanduser()
        raise HostError(name, f"authentication failed: the identity {identity} is encrypted, and pinship "
                        "cannot ask for its passphrase (no key from an ssh-agent was accepted either)",
                        fix=f"add it to your ssh-agent (ssh-add {identity}), or point identity at a key "
                        "without a passphrase") from exc
    except paramiko.AuthenticationException as exc:
        raise HostError(name, f"authentication failed: {inert(str(exc))}",
                        fix="check the user, identity (setting: identity) or your ssh-agent") from exc
    except paramiko.SSHException as exc:
        if "not found in known_hosts" in str(exc):
            raise HostError(name, f"unknown host key: the host is not in {known}; nothing was sent",
                            fix=f"check its fingerprint and run: invoke trust --env {env.name}") from exc
        if "No existing session" in str(exc) or "banner" in str(exc):  # the handshake got no answer
            raise HostError(name, f"no SSH answer within {env.connect_timeout:.0f} s: the host hangs",
                            fix="check the host, or raise --connect-timeout") from exc
        raise HostError(name, f"SSH failed: {inert(str(exc))} (no answer within {env.connect_timeout:.0f} s?)",
                        fix="check that the host is up and its sshd responds") from exc
    except TimeoutError as exc:
        raise HostError(name, f"timed out after {env.connect_timeout:.0f} s while connecting",
                        fix="check that the host is up, or raise --connect-timeout") from exc
    except OSError as exc:
        raise HostError(name, f"unreachable: {exc.strerror or exc}",
                        fix="check the address and port in [tool.deploy.environments]") from exc
