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
(SO_PEERCRED). Which keeper: its socket is named by the project and environment it serves, then a
digest of everything its connections depend on (the environment's settings, the hosts, the
known-hosts file's content, the identity file's size and mtime, and the code of the agent and
this package), so a changed pin, key or setting never reuses an old connection; the keeper with the
old ones is retired (it ends once no run uses it), and `invoke disconnect` finds every keeper of
the environment by the first part. How long a keeper stays is not part of its name: each run tells
it, so `--keep-alive 300` and `invoke disconnect` meet the same keeper.

What is not kept: a connection that failed (a refused host key above all) is closed at once and
tried afresh by the next run. A connection or agent that died between runs is replaced before the
next step; a host that stops answering is handled as on a direct connection. A socket left by a
keeper that was killed is replaced by the next run, and one whose keeper does not answer within
seconds (stopped, hung) is passed by, never waited on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import io
import json
import math
import os
import signal
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
from deploy.errors import DeployError, HostError
from deploy.remote.bundle import AGENT_DIGEST
from deploy.remote.target import AgentFailure, Target, step_budget
from deploy.render import inert

if TYPE_CHECKING:
    from deploy.remote.ssh import SshTarget

_SPAWNING = threading.Lock()  # one thread of a deploy starts the keeper; the others wait for it
# The keeper runs this package's code as it was when it started: its socket's name changes with any
# of it (every module of deploy/remote/, and config.py and errors.py, whose objects cross its wire).
_OWN_CODE = hashlib.sha256(b"".join(
    entry.read_bytes()
    for entry in sorted((*resources.files("deploy.remote").iterdir(), resources.files("deploy") / "config.py",
                         resources.files("deploy") / "errors.py"), key=lambda entry: entry.name)
    if entry.name.endswith(".py")
)).hexdigest()


# What a kept connection and its agent depend on; the rest (hosts, health check …) goes with each
# step, so `--hosts` or `--healthcheck` on the command line still finds the same keeper. Not
# keep_alive: each run's 'open' tells the keeper how long to stay after it.
_CONNECTION_SETTINGS = ("name", "path", "python", "known_hosts", "identity", "connect_timeout",
                        "command_timeout")


# A Unix socket's path has room for 107 bytes on Linux (103 on macOS): the folder must leave
# room for "/<8 hex digits>-<15 hex digits>.sock".
_MAX_FOLDER = 103 - 30
# How long a keeper may take to answer 'hello' before a run passes it by as hung. It answers from
# a thread of its own, whatever its hosts do, so a live keeper answers in milliseconds.
_ANSWER = 5.0
# How long `invoke disconnect` waits for a keeper to close its connections before it kills it.
_STOP = 20.0
# The keeper's log (its stderr: why it could not start, clients it dropped) is cut back to empty
# with a note when it reaches this size: a keeper used for weeks must not fill the disk.
LOG_LIMIT = 64 * 1024


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
        # The keeper's own watchdog ends a step that hangs (after the same step_budget as a direct
        # connection's); this is for a keeper that died.
        what = message.get("op") or message["do"]
        budget = step_budget(what, message.get("request") or {}, self.env.command_timeout)
        self._socket.settimeout(budget + 2 * self.env.connect_timeout + 30)
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
    """Stop every keeper of this project's environment, whatever keep-alive, pins or timeouts
    started it: each closes its connections and agents first. False if none ran."""
    stopped = [_stop(path) for path in _sockets_of(env, root)]  # a list: stop every one
    return any(stopped)


def _stop(path: Path) -> bool:
    """Ask the keeper at `path` to stop; one that does not answer (stopped, hung) is killed, as
    it could close nothing itself. A socket nothing listens on is removed."""
    client = _try_connect(path)
    if client is None:
        _remove_stale(path)
        return False
    with client, client.makefile("rb") as reader:
        pid, uid = _peer(client)
        client.settimeout(_STOP)
        try:
            client.sendall(b'{"do": "stop"}\n')
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
    client = _try_connect(path)
    if client is None:
        _remove_stale(path)
        return
    with client, contextlib.suppress(OSError):
        client.settimeout(_ANSWER)
        client.sendall(b'{"do": "retire"}\n')
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
        if hasattr(os, "fork") and threading.active_count() == 1:
            _fork(path, idle, log)
            ended = None
        else:
            with os.fdopen(_open_log(log), "wb") as errors:
                process = subprocess.Popen(  # this interpreter, this package, fixed arguments
                    [sys.executable, "-m", "deploy.remote.keeper", str(path), str(idle)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True,
                )
            ended = process.poll
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
    client = _try_connect(path)
    if client is None:
        return _State.ABSENT
    with client, client.makefile("rb") as reader:
        client.settimeout(_ANSWER)
        try:
            client.sendall(b'{"do": "hello"}\n')
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


def _open_log(log: Path) -> int:
    """The keeper's stderr: a fresh log, readable by this user only, never through a symlink."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    return fd


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
        errors = _open_log(log)
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

    def __init__(self, key: str, target: SshTarget) -> None:
        self.key = key
        self.target = target
        self.lock = threading.Lock()


class Keeper:
    def __init__(self, server: socket.socket, path: Path, idle: float) -> None:
        self.server = server
        self.path = path
        self.inode = path.stat().st_ino
        self.log_inode = _inode_of(2)  # its stderr: the log next to the socket (or a terminal)
        self.idle = _idle_time(idle, 0.0)
        self.entries: dict[str, _Entry] = {}
        self.state = threading.Lock()
        self.clients = 0
        self.last_used = time.monotonic()
        self.retiring = False  # a keeper with newer pins or settings took over: end once unused
        self.stopping = threading.Event()
        self.stopped = False
        self.stop_lock = threading.Lock()

    def serve(self) -> None:
        self.server.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                with self.state:
                    if self.clients == 0 and (self.retiring or time.monotonic() - self.last_used >= self.idle):
                        break
                continue
            except OSError:  # closed by 'stop'
                break
            with self.state:
                self.clients += 1
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()
        self.stop()
        deadline = time.monotonic() + 2  # let the client that asked to stop hear that it did
        while self.clients and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        """Remove the socket (no new run finds this keeper) and its log, then close every kept
        connection: the agents' stdin closes and they end. Once: a second caller waits for the first."""
        with self.stop_lock:
            if self.stopped:
                return
            self.stopped = True
            self.stopping.set()
            self._unlink_own()
            log = self.path.with_suffix(".log")
            with contextlib.suppress(OSError):
                if self.log_inode is not None and log.stat().st_ino == self.log_inode:
                    log.unlink()
            self.server.close()
            for entry in list(self.entries.values()):
                with contextlib.suppress(Exception):
                    entry.target.close()

    def _unlink_own(self) -> None:
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self.inode:  # not a successor's socket
                self.path.unlink()

    def handle(self, conn: socket.socket) -> None:
        try:
            if _peer(conn)[1] != os.getuid():
                return
            reader = conn.makefile("rb")
            entry: _Entry | None = None
            for line in reader:
                message = json.loads(line)
                do = message["do"]
                if do == "close":
                    break
                if do == "stop":  # `invoke disconnect`: close every connection now, then answer
                    self.stop()
                    conn.sendall(b'{"ok": true, "result": {}}\n')
                    break
                if do in ("hello", "retire"):  # a run checking that this keeper answers; a newer keeper
                    if do == "retire":
                        self.retiring = True
                        self._unlink_own()
                    conn.sendall(b'{"ok": true, "result": {}}\n')
                    continue
                if do == "open":
                    try:
                        entry = self.entry(message)
                    except DeployError as exc:  # a known-hosts file that is missing or unreadable
                        failed = {"ok": False, "error": {"message": _own(exc), "fix": exc.fix}}
                        conn.sendall((json.dumps(failed) + "\n").encode())
                        continue
                    self.idle = _idle_time(message["env"].get("keep_alive"), self.idle)
                if entry is None:
                    raise ValueError("a request before 'open', which names the host")
                reply = self.answer(entry, message)
                if do == "open" and not reply["ok"]:
                    self.forget(entry)
                conn.sendall((json.dumps(reply) + "\n").encode())
        except OSError as exc:
            print(f"keeper: a client went away: {exc.strerror or type(exc).__name__}", file=sys.stderr, flush=True)
        except Exception as exc:  # a malformed request: named by its kind, never echoed
            print(f"keeper: dropped a client after a malformed request ({type(exc).__name__})",
                  file=sys.stderr, flush=True)
        finally:
            conn.close()
            with self.state:
                self.clients -= 1
                self.last_used = time.monotonic()

    def entry(self, message: dict[str, Any]) -> _Entry:
        key = json.dumps(message["host"], sort_keys=True)
        with self.state:
            if key not in self.entries:
                from deploy.remote.ssh import SshTarget  # the keeper, not the runs, needs paramiko

                env = message["env"]
                env = Environment(**{**env, "hosts": tuple(Host(**h) for h in env["hosts"])})
                self.entries[key] = _Entry(key, SshTarget(env, Host(**message["host"]), Path(message["root"])))
            return self.entries[key]

    def forget(self, entry: _Entry) -> None:
        """Drop a host whose connection failed (a refused host key above all): nothing of it is
        kept, and the next run connects afresh, with the pins of its time."""
        with self.state:
            if self.entries.get(entry.key) is entry:
                del self.entries[entry.key]
        with entry.lock, contextlib.suppress(Exception):
            entry.target.close()

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
                unexpected = f"unexpected {type(exc).__name__} in the keeper: {inert(str(exc))}"
                return {"ok": False, "error": {"message": unexpected}}
        return {"ok": True, "result": result}


def _own(exc: DeployError) -> str:
    """The message without the host's name in front, which the deploying side puts back."""
    prefix = f"{exc.host}: " if isinstance(exc, HostError) else "\0"
    return exc.message[len(prefix):] if exc.message.startswith(prefix) else exc.message


def _idle_time(value: object, fallback: float) -> float:
    """A run's keep-alive as the keeper's idle time; anything but a finite number >= 0 (which the
    settings refuse) keeps the one it had, so no value makes a keeper that never ends."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return fallback


def _peer(conn: socket.socket) -> tuple[int, int]:
    """The other end's pid and uid (for a client, the keeper's: the process that listens)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return 0, os.getuid()  # elsewhere the folder's mode is the only guard
    pid, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return int(pid), int(uid)


def _inode_of(fd: int) -> int | None:
    with contextlib.suppress(OSError):
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            return info.st_ino
    return None


class _CappedLog(io.TextIOBase):
    """The keeper's stderr when it is its log file: cut back to empty, with a note saying so,
    whenever the next line would take it past LOG_LIMIT. Nothing else is ever written there."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "replace")[-LOG_LIMIT // 2:]
        with self.lock, contextlib.suppress(OSError):
            if os.fstat(self.fd).st_size + len(data) > LOG_LIMIT:
                os.ftruncate(self.fd, 0)
                os.lseek(self.fd, 0, os.SEEK_SET)
                note = f"keeper: earlier lines were cut, to keep this log under {LOG_LIMIT} bytes\n"
                os.write(self.fd, note.encode())
            os.write(self.fd, data)
        return len(text)


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
    if _inode_of(2) is not None:
        sys.stderr = _CappedLog(2)
    server = _bind(path)
    if server is None:
        return 0
    keeper = Keeper(server, path, idle)
    # `kill PID` ends it as `invoke disconnect` does: agents closed, socket and log removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: keeper.stopping.set())
    keeper.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
