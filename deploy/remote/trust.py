"""Which keys are trusted: the hosts' keys pinned in the known-hosts file, the identity key, and
`invoke trust`, which pins the hosts' keys deliberately, after a person has seen the fingerprints.

Both the SSH connection (deploy/remote/ssh.py) and `invoke trust` read the pins through here: a
known-hosts file that is not a file, or a line paramiko cannot read, is one clear error for both.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

import paramiko
from paramiko.hostkeys import HostKeyEntry

from deploy.config import Environment, Host
from deploy.errors import ConfigError, DeployError, HostError
from deploy.remote import jump
from deploy.remote.handshake import fingerprint as fingerprint
from deploy.remote.target import bastion_of, kind_of
from deploy.render import inert

# paramiko logs a failed handshake, traceback and all, from its own thread; the HostError raised
# for it (a connection's, in ssh.py, or trust's, reading a key) says the same once, naming the host.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def trust(root: Path, env: Environment, ask: Callable[[str], str] | None, say: Callable[[str], None] = print) -> int:
    """Fetch each host's key, show it, and append new ones to the known-hosts file if confirmed.
    With a bastion (setting: jump), its key comes first, pinned before anything is sent to it; the
    hosts' keys are then read through it, over a connection that checks that pin."""
    assert env.known_hosts is not None
    path = root / env.known_hosts
    timeout = env.connect_timeout
    bastion = bastion_of(env)
    if bastion is None:
        return _pin(path, env, env.hosts, lambda host, prefer: host_key(host, timeout, prefer), ask, say)
    written = _pin(path, env, [bastion], lambda host, prefer: host_key(host, timeout, prefer), ask, say,
                   what="the bastion's key")
    jump.attach(env, path)
    try:
        return written + _pin(path, env, env.hosts, lambda host, prefer: host_key(
            host, timeout, prefer, sock=jump.channel(env, path, host)), ask, say)
    finally:
        jump.release(env, path)


def _pin(path: Path, env: Environment, hosts: Iterable[Host], read: Callable[[Host, list[str]], paramiko.PKey],
         ask: Callable[[str], str] | None, say: Callable[[str], None], what: str = "") -> int:
    """Show the keys `read` finds for `hosts`, and append the new ones to `path` once confirmed."""
    # A folder (or anything but a file) there is named before any host is asked, not found by the write.
    exists = path.exists()
    if exists:
        check_known_hosts(path, env.name)
    pinned = pinned_keys(path, env.name) if exists else paramiko.HostKeys()
    new_lines: list[str] = []
    for host in hosts:
        have = pinned.lookup(pin_name(host)) or {}
        try:
            key = read(host, list(have.keys()))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            reason = inert(str(exc)) or type(exc).__name__  # banner text comes from the host
            raise HostError(str(host), f"could not read its host key: {reason}",
                            fix="check that the host is up and its sshd answers, or raise --connect-timeout") from exc
        line = known_hosts_line(host, key)
        same = have.get(key.get_name())
        if same is not None and same.get_base64() == key.get_base64():
            say(f"{host}: {key.get_name()} {fingerprint(key)} (already trusted)")
        elif have:
            raise HostError(
                str(host),
                f"offers {fingerprint(key)}, which differs from the key pinned in {path}",
                fix=f"if the host was rebuilt, delete its line from {path} and run trust again",
            )
        elif line not in new_lines:  # a host named twice is pinned once
            say(f"{host}: {key.get_name()} {fingerprint(key)} ({what + ', ' if what else ''}new)")
            new_lines.append(line)
    if not new_lines:
        return 0
    asked = what or f"{len(new_lines)} new key(s)"
    if ask is not None and ask(f"pin {asked} in {path}? [y/N] ").strip().lower() not in ("y", "yes"):
        raise DeployError(f"nothing written: {what or 'the keys'} {'was' if what else 'were'} not confirmed")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write("".join(f"{line}\n" for line in new_lines))
    except OSError as exc:
        raise ConfigError(f"nothing written: cannot write the known-hosts file {path}: "
                          f"{exc.strerror or type(exc).__name__}",
                          fix=f"make {path} a file you can write (setting: known-hosts), then run: "
                          f"invoke trust --env {env.name}") from None
    say(f"wrote {len(new_lines)} key(s) to {path}")
    return len(new_lines)


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


def host_key(host: Host, timeout: float, prefer: list[str] | None = None,
             sock: socket.socket | paramiko.Channel | None = None) -> paramiko.PKey:
    """The key a host offers, read without logging in (for `invoke trust`), over `sock` (a channel
    through a bastion) or a connection of its own. Key types already pinned for it come first
    (`prefer`), as a connection asks for them: a host with an RSA key pinned and a new ed25519
    key then shows its RSA key, not a false "changed"."""
    if sock is None:
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
