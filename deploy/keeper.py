"""Keeps each host's SSH connection and agent open between runs, as OpenSSH's ControlPersist does.

With `keep-alive = N` (seconds; the default is 60, 0 turns it off) an SSH environment's steps go
through a keeper process. The first run starts it; it connects with the very same code and checks
as a direct connection (`SshTarget`: pinned host keys, RejectPolicy, timeouts, the watchdog), and
it stays for N seconds after the last run that used it. A run within that time pays no SSH
handshake, no session, no Python start-up and no agent compile per host: for a new app version
that was most of the work.

The deploying process talks to the keeper over a Unix socket, one JSON line per step each way;
uploads and downloads name local files, which the keeper (the same user, on the same machine)
reads and writes itself. Errors come back as the HostError or AgentFailure they were.

Who may use a keeper: the socket is in a folder only this user can enter (checked before use, a
classic /tmp trap otherwise), is itself 0600, and the keeper serves only its own uid
(SO_PEERCRED). Which keeper: its socket is named by a digest of everything its connections depend
on (the environment's settings, the hosts, the known-hosts file's content, the identity file's
size and mtime, and the code of the agent and this package), so a changed pin, key or setting
never reuses an old connection. A connection or agent that died between runs is replaced before
the next step; a host that stops answering is handled as on a direct connection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy.config import Environment, Host
from deploy.errors import HostError
from deploy.targets import AGENT_DIGEST, AgentFailure, Target

if TYPE_CHECKING:
    from deploy.ssh import SshTarget

_SPAWNING = threading.Lock()  # one thread of a deploy starts the keeper; the others wait for it
_OWN_CODE = hashlib.sha256(
    "".join(resources.files("deploy").joinpath(name).read_text(encoding="utf-8")
            for name in ("keeper.py", "targets.py", "ssh.py")).encode()
).hexdigest()


# What a kept connection and its agent depend on; the rest (hosts, health check …) goes with each
# step, so `--hosts` or `--healthcheck` on the command line still finds the same keeper.
_CONNECTION_SETTINGS = ("name", "path", "python", "known_hosts", "identity", "connect_timeout",
                        "command_timeout", "keep_alive")


# A Unix socket's path has room for 107 bytes on Linux (103 on macOS): the folder must leave
# room for "/<24 hex digits>.sock".
_MAX_FOLDER = 103 - 30


def runtime_dir() -> Path:
    """A folder for keeper sockets that only this user can enter; refused if anyone else could."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(base, "pinship") if base and os.path.isdir(base) else None
    if folder is None or len(os.fsencode(folder)) > _MAX_FOLDER:
        folder = Path(tempfile.gettempdir(), f"pinship-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise HostError("keeper", f"{folder} is not a private folder of this user (mode "
                        f"{stat.filemode(info.st_mode)}, uid {info.st_uid}); connections are not kept there",
                        fix=f"remove {folder}, or set keep-alive = 0 for this environment")
    return folder


def socket_path(env: Environment, root: Path) -> Path:
    known = root / env.known_hosts if env.known_hosts else None
    identity = Path(env.identity).expanduser() if env.identity else None
    settings = {name: getattr(env, name) for name in _CONNECTION_SETTINGS}
    facts = {
        "env": settings, "root": str(root), "agent": AGENT_DIGEST, "code": _OWN_CODE,
        "known_hosts": hashlib.sha256(known.read_bytes()).hexdigest() if known and known.is_file() else None,
        "identity": [identity.stat().st_size, identity.stat().st_mtime_ns]
        if identity and identity.is_file() else None,
    }
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()
    return runtime_dir() / f"{digest[:24]}.sock"


class KeptTarget(Target):
    """A host reached through the keeper, which holds its connection and agent between runs."""

    def __init__(self, env: Environment, host: Host, root: Path, path: Path) -> None:
        super().__init__(env)
        self.host = host
        self.name = str(host)
        self.root = root
        self.path = path  # the keeper's socket: start() worked it out once for the run
        self._socket: socket.socket | None = None
        self._reader: Any = None
        self._lock = threading.RLock()
        self._open_failed: HostError | None = None

    def open(self) -> None:
        with self._lock:
            if self._open_failed is not None:
                raise self._open_failed
            if self._socket is not None:
                return
            try:
                self._socket = _connect_keeper(self.path, self.env.keep_alive)
                self._reader = self._socket.makefile("rb")
                self._rpc({"do": "open", "env": dataclasses.asdict(self.env), "root": str(self.root),
                           "host": dataclasses.asdict(self.host)})
            except HostError as exc:
                self._open_failed = exc
                self._drop()
                raise

    def _exchange(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._step({"do": "call", "op": op, "request": request})
        return result

    def put(self, local: Path, remote: str) -> None:
        self._step({"do": "put", "local": str(local.resolve()), "remote": remote})
        self.sent_bytes += local.stat().st_size

    def get(self, remote: str, local: Path) -> None:
        self._step({"do": "get", "remote": remote, "local": str(local.resolve())})

    def close(self) -> None:
        """The keeper keeps the connection and the agent; this run just stops using them."""
        with self._lock:
            if self._socket is not None:
                with contextlib.suppress(OSError):
                    self._socket.sendall(b'{"do": "close"}\n')
            self._drop()

    def _step(self, message: dict[str, Any]) -> Any:
        with self._lock:
            self.open()
            return self._rpc(message)

    def _rpc(self, message: dict[str, Any]) -> Any:
        assert self._socket is not None
        # The keeper's own watchdog ends a step that hangs; this is for a keeper that died.
        self._socket.settimeout(self.env.command_timeout + 2 * self.env.connect_timeout + 30)
        what = message.get("op") or message["do"]
        try:
            self._socket.sendall((json.dumps(message) + "\n").encode())
            line = self._reader.readline()
        except OSError as exc:
            self._drop()
            raise HostError(self.name, f"the connection keeper stopped answering during '{what}': {exc}",
                            fix="run again; if it keeps happening, set keep-alive = 0") from exc
        if not line:
            self._drop()
            raise HostError(self.name, f"the connection keeper ended during '{what}'",
                            fix="run again; if it keeps happening, set keep-alive = 0")
        reply = json.loads(line)
        if reply["ok"]:
            return reply["result"]
        error = reply["error"]
        if error.get("kind") is not None:
            raise AgentFailure(self.name, error["kind"], error["message"], error.get("extra") or {})
        raise HostError(self.name, error["message"], fix=error.get("fix"))

    def _drop(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
        self._socket = self._reader = None


def disconnect(env: Environment, root: Path) -> bool:
    """Ask the keeper of this environment's connections to close them and end; False if none runs."""
    path = socket_path(env, root)
    client = _try_connect(path)
    if client is None:
        return False
    with client, client.makefile("rb") as reader:
        client.settimeout(env.connect_timeout + 10)
        client.sendall(b'{"do": "stop"}\n')
        reader.readline()
    deadline = time.monotonic() + 10
    while path.exists() and time.monotonic() < deadline:  # it closes the agents, then the socket
        time.sleep(0.01)
    return True


def start(env: Environment, root: Path) -> Path:
    """Make sure a keeper serves this environment's connections, starting one if none does;
    return its socket.

    Called before a run starts any thread, the keeper is forked from the deploying process: it
    then costs no interpreter start-up and no imports. Otherwise it is started as a new process.
    """
    path = socket_path(env, root)
    _start_at(path, env.keep_alive)
    return path


def _start_at(path: Path, idle: float) -> None:
    if _alive(path):
        return
    with _SPAWNING:
        if _alive(path):
            return
        log = path.with_suffix(".log")
        if hasattr(os, "fork") and threading.active_count() == 1:
            _fork(path, idle, log)
            ended = None
        else:
            with open(log, "wb") as errors:
                process = subprocess.Popen(  # this interpreter, this package, fixed arguments
                    [sys.executable, "-m", "deploy.keeper", str(path), str(idle)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True,
                )
            ended = process.poll
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if _alive(path):
                return
            if not path.exists() and (ended() is not None if ended else _has_output(log)):
                break  # it ended, or (forked) wrote why it could not start
            time.sleep(0.005)
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise HostError("keeper", f"the connection keeper did not start: {' / '.join(tail) or 'no output'}",
                        fix="set keep-alive = 0 for this environment to connect directly")


def _alive(path: Path) -> bool:
    found = _try_connect(path)
    if found is not None:
        found.close()
    return found is not None


def _has_output(log: Path) -> bool:
    try:
        return log.stat().st_size > 0
    except OSError:  # not made yet
        return False


def _fork(path: Path, idle: float, log: Path) -> None:
    """Fork the keeper off this process, detached (its own session, no inherited files)."""
    child = os.fork()
    if child:
        os.waitpid(child, 0)  # the middle process exits at once; the keeper is init's
        return
    code = 1
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        errors = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(errors, 2)
        os.closerange(3, 1 << 16)  # never hold the caller's pipes open: it would wait for us
        with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
            comm.write("pinship-keeper")  # what top and `ps -o comm` show; its argv is still the run's
        code = main(["keeper", str(path), str(idle)])
    except BaseException:  # the keeper's own process: say why it ended, then end
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def _connect_keeper(path: Path, idle: float) -> socket.socket:
    """A connection to the keeper listening at `path`, started first if none is (it ended
    between the run's start and this host's first step)."""
    found = _try_connect(path)
    if found:
        return found
    _start_at(path, idle)
    found = _try_connect(path)
    if found is None:
        raise HostError("keeper", "the connection keeper stopped at once",
                        fix="set keep-alive = 0 for this environment")
    return found


def _try_connect(path: Path) -> socket.socket | None:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(str(path))
    except OSError:
        client.close()
        return None
    return client


class _Entry:
    """One host's kept SshTarget; steps on it (from any run) take turns."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self.lock = threading.Lock()


class Keeper:
    def __init__(self, server: socket.socket, path: Path, idle: float) -> None:
        self.server = server
        self.path = path
        self.inode = path.stat().st_ino
        self.idle = idle
        self.entries: dict[str, _Entry] = {}
        self.state = threading.Lock()
        self.clients = 0
        self.last_used = time.monotonic()
        self.stopping = threading.Event()

    def serve(self) -> None:
        self.server.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                with self.state:
                    if self.clients == 0 and time.monotonic() - self.last_used >= self.idle:
                        break
                continue
            with self.state:
                self.clients += 1
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()
        self.stop()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self.inode:  # not a successor's socket
                self.path.unlink()
        self.server.close()
        for entry in list(self.entries.values()):
            with contextlib.suppress(Exception):
                entry.target.close()  # the agents' stdin closes: they end

    def handle(self, conn: socket.socket) -> None:
        try:
            if _peer_uid(conn) != os.getuid():
                return
            reader = conn.makefile("rb")
            entry: _Entry | None = None
            for line in reader:
                message = json.loads(line)
                if message["do"] == "close":
                    break
                if message["do"] == "stop":  # `invoke disconnect`: close every connection now
                    self.stopping.set()
                    conn.sendall(b'{"ok": true, "result": {}}\n')
                    break
                if message["do"] == "open":
                    entry = self.entry(message)
                if entry is None:
                    raise ValueError(f"{message['do']!r} before 'open', which names the host")
                reply = self.answer(entry, message)
                conn.sendall((json.dumps(reply) + "\n").encode())
        except (OSError, ValueError) as exc:
            print(f"keeper: a client went away: {exc}", file=sys.stderr, flush=True)
        finally:
            conn.close()
            with self.state:
                self.clients -= 1
                self.last_used = time.monotonic()

    def entry(self, message: dict[str, Any]) -> _Entry:
        key = json.dumps(message["host"], sort_keys=True)
        with self.state:
            if key not in self.entries:
                from deploy.ssh import SshTarget  # the keeper, not the runs, needs paramiko

                env = message["env"]
                env = Environment(**{**env, "hosts": tuple(Host(**h) for h in env["hosts"])})
                self.entries[key] = _Entry(SshTarget(env, Host(**message["host"]), Path(message["root"])))
            return self.entries[key]

    def answer(self, entry: _Entry, message: dict[str, Any]) -> dict[str, Any]:
        target = entry.target
        with entry.lock:
            try:
                if message["do"] == "open":
                    target.refresh()
                    target.open()
                    result: Any = {}
                elif message["do"] == "call":
                    result = target.call(message["op"], **message["request"])
                elif message["do"] == "put":
                    target.put(Path(message["local"]), message["remote"])
                    result = {}
                elif message["do"] == "get":
                    target.get(message["remote"], Path(message["local"]))
                    result = {}
                else:
                    raise ValueError(f"unknown request {message['do']!r}")
            except AgentFailure as exc:
                return {"ok": False, "error": {"kind": exc.kind, "message": _own(exc), "extra": exc.extra}}
            except HostError as exc:
                return {"ok": False, "error": {"message": _own(exc), "fix": exc.fix}}
            except Exception as exc:  # reported to the run, which names the host
                return {"ok": False, "error": {"message": f"unexpected {type(exc).__name__} in the keeper: {exc}"}}
        return {"ok": True, "result": result}


def _own(exc: HostError) -> str:
    """The message without the host's name in front, which the deploying side puts back."""
    prefix = f"{exc.host}: "
    return exc.message[len(prefix):] if exc.message.startswith(prefix) else exc.message


def _peer_uid(conn: socket.socket) -> int:
    if not hasattr(socket, "SO_PEERCRED"):
        return os.getuid()  # elsewhere the folder's mode is the only guard
    _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return int(uid)


def _bind(path: Path) -> socket.socket | None:
    """Listen at `path`, or None when a live keeper already does (two runs started one each)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        try:
            server.bind(str(path))
        except OSError:
            other = _try_connect(path)
            if other is not None:
                other.close()
                server.close()
                return None
            path.unlink(missing_ok=True)  # left by a keeper that was killed
            server.bind(str(path))
    finally:
        os.umask(previous)
    server.listen(64)
    return server


def main(argv: list[str]) -> int:
    path, idle = Path(argv[1]), float(argv[2])
    server = _bind(path)
    if server is None:
        return 0
    Keeper(server, path, idle).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
