"""The run's side of a keeper (deploy/remote/keeper.py): finding or starting the keeper of an
environment, stopping it, and KeptTarget, a host whose steps go through it.

With `keep-alive = N` (seconds; the default is 60, 0 turns it off) an SSH environment's steps go
through a keeper process that holds each host's connection and agent between runs, as OpenSSH's
ControlPersist does. A run within N seconds of the last pays no SSH handshake, no session, no
Python start-up and no agent compile per host: for a new app version that was most of the work.

Who may use a keeper: its socket is in a folder only this user can enter (checked before use, a
classic /tmp trap otherwise), is itself 0600, and the keeper serves only its own uid
(SO_PEERCRED). Which keeper: its socket is named by the project and environment it serves, then a
digest of everything its connections depend on (the environment's settings, the hosts, the
known-hosts file's content, the identity file's size and mtime, and the code of the agent and
this package), so a changed pin, key or setting never reuses an old connection; the keeper with the
old ones is retired (it ends once no run uses it), and `invoke disconnect` finds every keeper of
the environment by the first part. How long a keeper stays is not part of its name: each run tells
it, so `--keep-alive 300` and `invoke disconnect` meet the same keeper.

A socket left by a keeper that was killed is replaced by the next run, and one whose keeper does
not answer within seconds (stopped, hung) is passed by, never waited on.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import os
import signal
import socket
import stat
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

from deploy.config import Environment, Host
from deploy.errors import HostError, from_wire
from deploy.remote import keeper
from deploy.remote.bundle import AGENT_DIGEST
from deploy.remote.target import Target, step_budget
from deploy.remote.wire import Do, peer, request, try_connect

_SPAWNING = threading.Lock()  # one thread of a deploy starts the keeper; the others wait for it
# The keeper runs this package's code as it was when it started: its socket's name changes with any
# of it (every module of deploy/remote/; config.py, settings.py and errors.py, whose objects cross its wire; and
# render.py, which makes the hosts' text in those errors inert).
_OWN_CODE = hashlib.sha256(b"".join(
    entry.read_bytes()
    for entry in sorted((*resources.files("deploy.remote").iterdir(),
                         *(resources.files("deploy") / name
                           for name in ("config.py", "settings.py", "errors.py", "render.py"))),
                        key=lambda entry: entry.name)
    if entry.name.endswith(".py")
)).hexdigest()


# What a kept connection and its agent depend on; the rest (hosts, health check …) goes with each
# step, so `--hosts` or `--healthcheck` on the command line still finds the same keeper. Not
# keep_alive: each run's 'open' tells the keeper how long to stay after it.
_CONNECTION_SETTINGS = ("name", "path", "python", "known_hosts", "identity", "jump", "connect_timeout",
                        "command_timeout")


# A Unix socket's path has room for 107 bytes on Linux (103 on macOS): the folder must leave
# room for "/<8 hex digits>-<15 hex digits>.sock".
_MAX_FOLDER = 103 - 30
# How long a keeper may take to answer 'hello' before a run passes it by as hung. It answers from
# a thread of its own, whatever its hosts do, so a live keeper answers in milliseconds.
_ANSWER = 5.0
# How long `invoke disconnect` waits for a keeper to close its connections before it kills it.
_STOP = 20.0


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


def _scope(env: Environment, root: Path) -> str:
    """The first part of the socket names of this project's keepers for this environment."""
    return hashlib.sha256(json.dumps([str(root), env.name]).encode()).hexdigest()[:8]


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
    return runtime_dir() / f"{_scope(env, root)}-{digest[:15]}.sock"


def _sockets_of(env: Environment, root: Path) -> list[Path]:
    """Every keeper socket of this project's environment, whatever settings or pins made it."""
    return sorted(runtime_dir().glob(f"{_scope(env, root)}-*.sock"))

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
                # The host by its place in the environment: the keeper connects to no other.
                self._rpc(Do.OPEN, env=self.env.to_dict(), root=str(self.root), host=self.env.hosts.index(self.host))
            except HostError as exc:
                self._open_failed = exc
                self._drop()
                raise

    def _exchange(self, op: str, request: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._step(Do.CALL, op=op, request=request)
        return result

    def put(self, local: Path, remote: str) -> None:
        self._step(Do.PUT, local=str(local.resolve()), remote=remote)
        self.sent_bytes += local.stat().st_size

    def get(self, remote: str, local: Path) -> None:
        self._step(Do.GET, remote=remote, local=str(local.resolve()))

    def close(self) -> None:
        """The keeper keeps the connection and the agent; this run just stops using them."""
        with self._lock:
            if self._socket is not None:
                with contextlib.suppress(OSError):
                    self._socket.sendall(request(Do.CLOSE))
            self._drop()

    def _step(self, do: Do, **fields: Any) -> Any:
        with self._lock:
            self.open()
            return self._rpc(do, **fields)

    def _rpc(self, do: Do, **fields: Any) -> Any:
        assert self._socket is not None
        # The keeper's own watchdog ends a step that hangs (after the same step_budget as a direct
        # connection's); this is for a keeper that died.
        what = fields.get("op") or do.value
        budget = step_budget(what, fields.get("request") or {}, self.env.command_timeout)
        self._socket.settimeout(budget + 2 * self.env.connect_timeout + 30)
        try:
            self._socket.sendall(request(do, **fields))
            line = self._reader.readline()
        except OSError as exc:
            self._drop()
            raise HostError(self.name, f"the connection keeper stopped answering during '{what}': {exc}",
                            fix="run again; if it keeps happening, set keep-alive = 0") from exc
        if not line:
            self._drop()
            raise HostError(self.name, f"the connection keeper ended during '{what}'",
                            fix="run again; if it keeps happening, set keep-alive = 0")
        try:
            reply = json.loads(line)
        except ValueError:
            reply = None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            raise HostError(self.name, f"the connection keeper's answer to '{what}' is not one pinship sends",
                            fix="run again; if it keeps happening, set keep-alive = 0")
        if reply["ok"]:
            return reply.get("result")
        raise from_wire(self.name, reply.get("error"))

    def _drop(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
        self._socket = self._reader = None


def disconnect(env: Environment, root: Path) -> bool:
    """Stop every keeper of this project's environment, whatever keep-alive, pins or timeouts
    started it: each closes its connections and agents first. False if none ran."""
    stopped = [_stop(path) for path in _sockets_of(env, root)]  # a list: stop every one
    return any(stopped)


def _stop(path: Path) -> bool:
    """Ask the keeper at `path` to stop; one that does not answer (stopped, hung) is killed, as
    it could close nothing itself. A socket nothing listens on is removed."""
    client = try_connect(path)
    if client is None:
        _remove_stale(path)
        return False
    with client, client.makefile("rb") as reader:
        pid, uid = peer(client)
        client.settimeout(_STOP)
        try:
            client.sendall(request(Do.STOP))
            reader.readline()  # it answers once its connections are closed, or ends as it stops
        except TimeoutError:
            if pid > 0 and uid == os.getuid():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            _remove(path)
        except OSError:
            pass  # it ended meanwhile
    return True


def start(env: Environment, root: Path) -> Path:
    """Make sure a keeper serves this environment's connections, starting one if none does;
    return its socket. Keepers of this environment with other pins or settings are retired: they
    end as soon as no run uses them.

    Called before a run starts any thread, the keeper is forked from the deploying process: it
    then costs no interpreter start-up and no imports. Otherwise it is started as a new process.
    """
    path = socket_path(env, root)
    _start_at(path, env.keep_alive)
    for other in _sockets_of(env, root):
        if other != path:
            _retire(other)
    return path


def _retire(path: Path) -> None:
    client = try_connect(path)
    if client is None:
        _remove_stale(path)
        return
    with client, contextlib.suppress(OSError):
        client.settimeout(_ANSWER)
        client.sendall(request(Do.RETIRE))
        client.recv(100)


def _start_at(path: Path, idle: float) -> None:
    if _probe(path) is _State.ALIVE:
        return
    with _SPAWNING:
        state = _probe(path)
        if state is _State.ALIVE:
            return
        if state is _State.HUNG:
            # Its keeper keeps what it holds (`invoke disconnect` ends it); this run starts a new
            # one at the same name, which that keeper never removes (it checks the inode).
            _remove(path)
        log = path.with_suffix(".log")
        ended = keeper.launch(path, idle, log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if _probe(path) is _State.ALIVE:
                return
            if not path.exists() and (ended() is not None if ended else _has_output(log)):
                break  # it ended, or (forked) wrote why it could not start
            time.sleep(0.005)
        tail: list[str] = []
        with contextlib.suppress(OSError):
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise HostError("keeper", f"the connection keeper did not start: {' / '.join(tail) or 'no output'}",
                        fix="set keep-alive = 0 for this environment to connect directly")


class _State(enum.Enum):
    ALIVE = "alive"
    ABSENT = "absent"  # no socket, or nothing listens on it (its keeper was killed)
    HUNG = "hung"  # something accepts, but does not answer


def _probe(path: Path) -> _State:
    """Whether a keeper answers at `path`: a 'hello' answered within seconds, never a long wait."""
    client = try_connect(path)
    if client is None:
        return _State.ABSENT
    with client, client.makefile("rb") as reader:
        client.settimeout(_ANSWER)
        try:
            client.sendall(request(Do.HELLO))
            answered = reader.readline()
        except TimeoutError:
            return _State.HUNG
        except OSError:
            return _State.ABSENT
    return _State.ALIVE if answered else _State.ABSENT  # no answer: it is ending


def _remove(path: Path) -> None:
    """Remove a keeper's socket and log (a keeper still running never removes a successor's)."""
    for each in (path, path.with_suffix(".log")):
        each.unlink(missing_ok=True)


def _remove_stale(path: Path) -> None:
    """Remove a socket nothing listens on: left by a keeper that was killed. A young one may be a
    keeper between bind and listen, so it is left alone."""
    with contextlib.suppress(OSError):
        if time.time() - path.lstat().st_mtime > 2:
            _remove(path)


def _has_output(log: Path) -> bool:
    try:
        return log.stat().st_size > 0
    except OSError:  # not made yet
        return False


def _connect_keeper(path: Path, idle: float) -> socket.socket:
    """A connection to the keeper listening at `path`, started first if none is (it ended
    between the run's start and this host's first step)."""
    found = try_connect(path)
    if found:
        return found
    _start_at(path, idle)
    found = try_connect(path)
    if found is None:
        raise HostError("keeper", "the connection keeper stopped at once",
                        fix="set keep-alive = 0 for this environment")
    return found
