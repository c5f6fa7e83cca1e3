"""The keeper: a process that keeps each host's SSH connection and agent open between runs, as
OpenSSH's ControlPersist does (deploy/remote/kept.py finds, starts and stops it for a run).

It connects with the very same code and checks as a direct connection (`SshTarget`: pinned host
keys, RejectPolicy, timeouts, the watchdog), and stays for keep-alive seconds after the last run
that used it. Started as `python -m deploy.remote.keeper <socket> <idle seconds>`, or forked from a
run that has not started any thread yet (`launch`: no interpreter start-up, no imports).

A run talks to it over a Unix socket, one JSON line per step each way (deploy/remote/wire.py);
uploads and downloads name local files, which the keeper (the same user, on the same machine)
reads and writes itself. Errors go back as the HostError or AgentFailure they were.

What is not kept: a connection that failed (a refused host key above all) is closed at once and
tried afresh by the next run. A connection or agent that died between runs is replaced before the
next step; a host that stops answering is handled as on a direct connection.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy.config import Environment, Host
from deploy.errors import DeployError, HostError
from deploy.remote.limits import raise_open_files
from deploy.remote.wire import Do, failed, ok, peer, try_connect
from deploy.render import inert

if TYPE_CHECKING:
    from deploy.remote.ssh import SshTarget

# The keeper's log (its stderr: why it could not start, clients it dropped) is cut back to empty
# with a note when it reaches this size: a keeper used for weeks must not fill the disk.
LOG_LIMIT = 64 * 1024


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
            if peer(conn)[1] != os.getuid():
                return
            reader = conn.makefile("rb")
            entry: _Entry | None = None
            for received in reader:
                message = json.loads(received)
                do = Do(message["do"])  # ValueError: not a request of this wire
                if do is Do.CLOSE:
                    break
                if do is Do.STOP:
                    self.stop()
                    conn.sendall(ok({}))
                    break
                if do in (Do.HELLO, Do.RETIRE):
                    if do is Do.RETIRE:
                        self.retiring = True
                        self._unlink_own()
                    conn.sendall(ok({}))
                    continue
                if do is Do.OPEN:
                    try:
                        env = Environment.from_dict(message["env"])
                        entry = self.entry(env, env.hosts[message["host"]], Path(message["root"]))
                    except DeployError as exc:  # an environment that fails its checks, a known-hosts file missing …
                        conn.sendall(failed(exc))
                        continue
                    self.idle = _idle_time(env.keep_alive, self.idle)
                if entry is None:
                    raise ValueError("a request before 'open', which names the host")
                went_well, reply = self.answer(entry, do, message)
                if do is Do.OPEN and not went_well:
                    self.forget(entry)
                conn.sendall(reply)
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

    def entry(self, env: Environment, host: Host, root: Path) -> _Entry:
        """The host's kept connection, made (not yet opened) for the first run that asks for it."""
        key = json.dumps([host.user, host.hostname, host.port])
        with self.state:
            if key not in self.entries:
                from deploy.remote.ssh import SshTarget  # the keeper, not the runs, needs paramiko

                self.entries[key] = _Entry(key, SshTarget(env, host, root))
            return self.entries[key]

    def forget(self, entry: _Entry) -> None:
        """Drop a host whose connection failed (a refused host key above all): nothing of it is
        kept, and the next run connects afresh, with the pins of its time."""
        with self.state:
            if self.entries.get(entry.key) is entry:
                del self.entries[entry.key]
        with entry.lock, contextlib.suppress(Exception):
            entry.target.close()

    def answer(self, entry: _Entry, do: Do, message: dict[str, Any]) -> tuple[bool, bytes]:
        """Do what a run asks of its host: whether it went well, and the reply line."""
        target = entry.target
        with entry.lock:
            try:
                if do is Do.OPEN:
                    target.refresh()
                    target.open()
                    result: Any = {}
                elif do is Do.CALL:
                    result = target.call(message["op"], **message["request"])
                elif do is Do.PUT:
                    target.put(Path(message["local"]), message["remote"])
                    result = {}
                elif do is Do.GET:
                    target.get(message["remote"], Path(message["local"]))
                    result = {}
                else:
                    raise ValueError(f"unknown request {do.value!r}")
            except DeployError as exc:  # a HostError or AgentFailure above all: sent with its fields
                return False, failed(exc)
            except Exception as exc:  # reported to the run, which names the host
                return False, failed(HostError("keeper", f"unexpected {type(exc).__name__} in the keeper: "
                                               f"{inert(str(exc))}"))
        return True, ok(result)


def _idle_time(value: object, fallback: float) -> float:
    """A run's keep-alive as the keeper's idle time; anything but a finite number >= 0 (which the
    settings refuse) keeps the one it had, so no value makes a keeper that never ends."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return fallback


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
            other = try_connect(path)
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


def launch(path: Path, idle: float, log: Path) -> Callable[[], int | None] | None:
    """Start a keeper that will listen at `path`: forked from this process while it runs no other
    thread (no interpreter start-up, no imports), else a new process of this interpreter. Returns
    how to ask whether that process ended; None when forked (it is then no child of this one)."""
    if hasattr(os, "fork") and threading.active_count() == 1:
        fork(path, idle, log)
        return None
    with os.fdopen(open_log(log), "wb") as errors:
        process = subprocess.Popen(  # this interpreter, this package, fixed arguments
            [sys.executable, "-m", "deploy.remote.keeper", str(path), str(idle)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True,
        )
    return process.poll


def fork(path: Path, idle: float, log: Path) -> None:
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
        errors = open_log(log)
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


def open_log(log: Path) -> int:
    """The keeper's stderr: a fresh log, readable by this user only, never through a symlink."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def main(argv: list[str]) -> int:
    path, idle = Path(argv[1]), float(argv[2])
    raise_open_files()  # each host's connection is a socket here: as many as this machine allows
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
