"""Real OpenSSH ``sshd`` processes on loopback addresses, each one a separate test "host".

Host N listens on 127.0.0.N (from 127.0.0.2) with its own ed25519 host key. Every host runs in
its own mount namespace (``unshare --mount``) where its private folder is bind-mounted over the one
shared deploy path, so a single ``path`` in the deploy config gives each host its own files, the
way separate machines would. Every session the sshd forks inherits that view.

The harness never reads ``~/.ssh``. Tests should point HOME at a temporary folder and pass
``key_filename=cluster.client_key`` and the pinned ``cluster.known_hosts`` explicitly.
Nothing here listens on, or connects to, anything but loopback.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

REQUIRE_ENV = "PINSHIP_REQUIRE_SSH"
READY_TIMEOUT = 10.0
# sshd's built-in PATH for root; the tests' own Python goes in front of it (see session_path).
_SUPERUSER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Mounts the host's folder (or a size-limited tmpfs) over the deploy path inside the new mount
# namespace, then becomes sshd so the listener's pid is the one to signal and nsenter into.
_HOST_SCRIPT = 'sshd=$1 config=$2; shift 2; mount "$@" && exec "$sshd" -D -e -f "$config"'


class SshdError(RuntimeError):
    """A test sshd could not be started, or was used while it was not running."""


def find_sshd() -> str | None:
    """Return the absolute path of sshd (it refuses to start from a relative one), or None."""
    if os.access("/usr/sbin/sshd", os.X_OK):
        return "/usr/sbin/sshd"
    found = shutil.which("sshd")
    return os.path.abspath(found) if found else None


def skip_reason() -> str | None:
    """Say why real-sshd tests cannot run on this machine, or None when they can."""
    if sys.platform != "linux":
        return "sshd tests need Linux mount namespaces"
    if find_sshd() is None:
        return "sshd not found: install openssh-server (apt-get install -y openssh-server)"
    for tool, package in (
        ("ssh-keygen", "openssh-client"),
        ("unshare", "util-linux"),
        ("nsenter", "util-linux"),
    ):
        if shutil.which(tool) is None:
            return f"{tool} not found: install {package}"
    if os.geteuid() != 0:
        return "sshd tests must run as root: each host bind-mounts its folder over the deploy path"
    return _unshare_problem()


@functools.cache
def _unshare_problem() -> str | None:
    # Root inside a container without CAP_SYS_ADMIN still cannot make mount namespaces.
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode:
        return f"unshare --mount does not work here: {probe.stderr.strip()}"
    return None


def require_sshd() -> str | None:
    """Like skip_reason(), but raise when PINSHIP_REQUIRE_SSH is set, so CI cannot skip."""
    reason = skip_reason()
    if reason and os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
        raise SshdError(f"{REQUIRE_ENV} is set, so the sshd tests must run, but: {reason}")
    return reason


def session_path() -> str:
    """PATH inside host sessions: the tests' base interpreter first, so python3 is the same 3.11.

    The base interpreter rather than the venv's: a venv's bin would hand every "host" pytest,
    fabric and the rest, and hide a release that forgot a dependency.
    """
    base_bin = Path(sys.base_prefix) / "bin"
    return f"{base_bin}:{_SUPERUSER_PATH}" if (base_bin / "python3").exists() else _SUPERUSER_PATH


def unique_deploy_path(parent: str = "/srv") -> str:
    """A fresh deploy path, so concurrent or leftover test runs never share a mount point."""
    return f"{parent}/pinship-test-{secrets.token_hex(4)}"


@functools.cache
def _sshd_version() -> tuple[int, int]:
    out = subprocess.run([find_sshd() or "sshd", "-V"], capture_output=True, text=True, check=False)
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", out.stderr + out.stdout)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def _generate_keys(paths: list[Path]) -> None:
    # ssh-keygen asks before overwriting, so old keys go first; all keys are made concurrently.
    jobs = []
    for path in paths:
        path.unlink(missing_ok=True)
        Path(f"{path}.pub").unlink(missing_ok=True)
        command = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)]
        jobs.append(
            (
                path,
                subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                ),
            )
        )
    for path, job in jobs:
        _, err = job.communicate()
        if job.returncode:
            raise SshdError(f"ssh-keygen could not make {path}: {err.decode().strip()}")


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


def _namespace_of(pid: int | str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except OSError:
        return None


def _pids_in(namespace: int) -> set[int]:
    return {
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and _namespace_of(entry) == namespace
    }


def _signal_namespace(namespace: int, signum: int, *, until_quiet: bool) -> None:
    """Signal every process in a host's mount namespace: its sshd, sessions and their commands.

    With until_quiet, look again until no new process shows up, since one may fork meanwhile.
    """
    if namespace == _namespace_of("self"):
        raise SshdError("refusing to signal processes in the test runner's own mount namespace")
    done: set[int] = set()
    while True:
        pids = _pids_in(namespace) - done
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        done |= pids
        if not until_quiet:
            return


def _quote(value: object) -> str:
    return '"' + str(value) + '"'


@dataclass
class SshHost:
    """One test host: an sshd on its own loopback address, with its own view of the deploy path."""

    address: str
    port: int
    user: str
    root: Path
    host_key: Path
    config: Path
    deploy_path: str
    disk_limit_mb: int | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _namespace: int | None = field(default=None, init=False, repr=False)

    @property
    def log(self) -> Path:
        """sshd's stderr (LogLevel ERROR), the first place to look when a host misbehaves."""
        return self.config.with_name("sshd.log")

    @property
    def home(self) -> Path:
        """HOME in this host's sessions: its own, like a separate machine's (see _sshd_config)."""
        return self.config.with_name("home")

    @property
    def pid(self) -> int | None:
        """The listening sshd's pid, or None when it is not running."""
        running = self._process is not None and self._process.poll() is None
        return self._process.pid if running and self._process else None

    def processes(self) -> list[int]:
        """Pids of everything running in this host: its sshd, the sessions and their commands."""
        return sorted(_pids_in(self._namespace)) if self._namespace is not None else []

    def spec(self) -> str:
        """The host as the deploy config writes it: user@host:port."""
        return f"{self.user}@{self.address}:{self.port}"

    def known_hosts_line(self) -> str:
        """This host's current key as a plain (unhashed) known_hosts line."""
        key_type, key = Path(f"{self.host_key}.pub").read_text().split()[:2]
        return f"[{self.address}]:{self.port} {key_type} {key}"

    def start(self) -> None:
        """Start sshd (same key, same port) and wait until it answers with its banner."""
        self._launch()
        self._wait_ready()

    def kill(self) -> None:
        """Take the host down: SIGKILL its sshd and every session; connects are then refused.

        With a disk limit the tmpfs dies with the namespace, so its files are gone after start().
        """
        if self._process is None:
            return
        if self._namespace is not None:
            _signal_namespace(self._namespace, signal.SIGKILL, until_quiet=True)
        self._process.kill()
        self._process.wait()
        self._process = self._namespace = None

    def pause(self, *, sessions: bool = True) -> None:
        """Hang the host with SIGSTOP: TCP connects (kernel backlog) but nothing ever answers.

        sessions=True also freezes established sessions, as a hung machine would mid-deploy;
        sessions=False freezes only the listener, so only new connections hang.
        """
        namespace = self._require_running()
        if sessions:
            _signal_namespace(namespace, signal.SIGSTOP, until_quiet=True)
        elif self.pid is not None:
            os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Undo pause(): SIGCONT everything in the host; queued connections are then served."""
        _signal_namespace(self._require_running(), signal.SIGCONT, until_quiet=False)

    def rotate_host_key(self) -> None:
        """Give the host a new key and restart it: pinned known_hosts entries are now wrong."""
        was_running = self.pid is not None
        self.kill()
        _generate_keys([self.host_key])
        if was_running:
            self.start()

    def run(
        self, command: str, *, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command locally but inside this host's mount namespace, with its PATH.

        This is how to look at a disk-limited host, whose tmpfs is invisible from outside.
        """
        self._require_running()
        nsenter = ["nsenter", "--target", str(self.pid), "--mount", "--", "sh", "-c", command]
        env = {**os.environ, "PATH": session_path(), "HOME": str(self.home)}
        return subprocess.run(
            nsenter, capture_output=True, text=True, check=check, timeout=timeout, env=env
        )

    def _require_running(self) -> int:
        if self.pid is None or self._namespace is None:
            raise SshdError(f"host {self.address}:{self.port} is not running: start() it first")
        return self._namespace

    def _launch(self) -> None:
        if self.pid is not None:
            raise SshdError(f"host {self.address}:{self.port} is already running")
        if self.disk_limit_mb is None:
            mount = ["--bind", str(self.root)]
        else:
            mount = ["-t", "tmpfs", "-o", f"size={self.disk_limit_mb}m", "tmpfs"]
        command = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            _HOST_SCRIPT,
            "sh",
            find_sshd() or "/usr/sbin/sshd",
            str(self.config),
            *mount,
            self.deploy_path,
        ]
        # The listener dies with the test runner even on SIGKILL. Only from the main thread:
        # the kernel fires this when the *thread* that forked exits, not the process.
        if threading.current_thread() is threading.main_thread() and shutil.which("setpriv"):
            command = ["setpriv", "--pdeathsig", "KILL", *command]
        with self.log.open("ab") as log:
            # Own session: a Ctrl-C at the terminal reaches the test runner, not the hosts,
            # so the runner's cleanup decides what happens to them.
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while (code := self._process.poll()) is None:
            # A banner proves sshd runs, which it only does after the mount succeeded.
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.address, self.port), timeout=1) as probe,
            ):
                if probe.recv(64).startswith(b"SSH-2.0"):
                    self._namespace = _namespace_of(self._process.pid)
                    return
            if time.monotonic() > deadline:
                self.kill()
                raise SshdError(
                    f"sshd for {self.address}:{self.port} sent no banner within "
                    f"{READY_TIMEOUT:.0f}s; its log:\n{self._log_text()}"
                )
            time.sleep(0.01)
        self._process = None
        raise SshdError(
            f"sshd for {self.address}:{self.port} exited with status {code}; "
            f"its log ({self.log}):\n{self._log_text()}"
        )

    def _log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:].strip() or "(empty)"


# All of 127.0.0.0/8 is loopback on Linux: past 127.0.0.254 the hosts go on at 127.0.1.2, and so on.
_PER_BLOCK = 253
_MAX_HOSTS = _PER_BLOCK * 255


def host_address(number: int) -> str:
    """The loopback address of the cluster's host `number` (0: 127.0.0.2, 253: 127.0.1.2)."""
    block, offset = divmod(number, _PER_BLOCK)
    return f"127.0.{block}.{offset + 2}"


class SshCluster:
    """`count` test hosts sharing one deploy path, one client key and one known_hosts file.

    Starts on construction; use it as a context manager or call stop(). Anything still running
    at interpreter exit is stopped too.
    """

    def __init__(
        self,
        workdir: Path,
        count: int,
        *,
        deploy_path: str,
        disk_limit_mb: int | None = None,
        sftp: bool = True,
        permit_open: tuple[str, ...] = (),
        first: int = 0,
    ) -> None:
        if not 1 <= count <= _MAX_HOSTS - first or first < 0:
            raise ValueError(f"count must be 1..{_MAX_HOSTS - first} (127.0.0.2 upwards), not {count}")
        if not os.path.isabs(deploy_path):
            raise ValueError(f"deploy_path must be absolute, not {deploy_path!r}")
        self.workdir = workdir.resolve()
        self.deploy_path = deploy_path
        self.client_key = self.workdir / "client_key"
        self.known_hosts = self.workdir / "known_hosts"
        self.authorized_keys = self.workdir / "authorized_keys"
        # Without sftp, no Subsystem line (a host whose admin removed it); with permit_open
        # ("address:port", ...), the hosts open TCP connections to those for a client, and to
        # nothing else (a bastion's direct-tcpip channels).
        self.sftp = sftp
        self.permit_open = permit_open
        self.first = first  # hosts take addresses from the first+1'th on (two clusters side by side)
        self.hosts: list[SshHost] = []
        self._made_mount_point = False
        _LIVE.add(self)
        try:
            self._start(count, disk_limit_mb)
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> SshCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def write_known_hosts(self, path: Path, hosts: list[SshHost] | None = None) -> None:
        """Write the hosts' current keys (all hosts by default) as a known_hosts file."""
        lines = [host.known_hosts_line() for host in (self.hosts if hosts is None else hosts)]
        path.write_text("".join(f"{line}\n" for line in lines))

    def stop(self) -> None:
        """Kill every host with all its sessions and remove the deploy path mount point."""
        for host in self.hosts:
            host.kill()
        _LIVE.discard(self)
        if self._made_mount_point:
            # Mounts lived only in the hosts' namespaces, which died with their last process.
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(self.deploy_path)
            self._made_mount_point = False

    def _start(self, count: int, disk_limit_mb: int | None) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # sshd's privilege separation directory; a fresh container may lack it.
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        self._make_mount_point()
        for number in range(self.first, self.first + count):
            address = host_address(number)
            state = self.workdir / "sshd" / address
            state.mkdir(parents=True, exist_ok=True)
            root = self.workdir / "hosts" / address
            root.mkdir(parents=True, exist_ok=True)
            host = SshHost(
                address=address,
                port=_free_port(address),
                user="root",
                root=root,
                host_key=state / "host_key",
                config=state / "sshd_config",
                deploy_path=self.deploy_path,
                disk_limit_mb=disk_limit_mb,
            )
            host.home.mkdir(exist_ok=True)
            self.hosts.append(host)
        _generate_keys([self.client_key, *(host.host_key for host in self.hosts)])
        self.authorized_keys.write_text(Path(f"{self.client_key}.pub").read_text())
        for host in self.hosts:
            host.config.write_text(self._sshd_config(host))
        # Launch all first and only then wait: start-up cost overlaps across hosts.
        for host in self.hosts:
            host._launch()
        for host in self.hosts:
            host._wait_ready()
        self.write_known_hosts(self.known_hosts)

    def _make_mount_point(self) -> None:
        mount_point = Path(self.deploy_path)
        if mount_point.exists():
            if not mount_point.is_dir() or any(mount_point.iterdir()):
                raise SshdError(
                    f"{mount_point} exists and is not an empty folder; the hosts "
                    "would hide its contents: pick another deploy_path"
                )
            return
        mount_point.mkdir(parents=True)
        self._made_mount_point = True

    def _sshd_config(self, host: SshHost) -> str:
        settings = [
            ("ListenAddress", host.address),
            ("Port", str(host.port)),
            ("HostKey", _quote(host.host_key)),
            ("PidFile", _quote(host.config.with_name("sshd.pid"))),
            ("AuthorizedKeysFile", _quote(self.authorized_keys)),
            ("PermitRootLogin", "prohibit-password"),
            ("PasswordAuthentication", "no"),
            ("KbdInteractiveAuthentication", "no"),
            ("UsePAM", "no"),
            # The workdir is a pytest tmp folder whose modes sshd would otherwise judge.
            ("StrictModes", "no"),
            ("PrintMotd", "no"),
            ("PrintLastLog", "no"),
            # Fabric's put() speaks SFTP (a test may take it away: sftp=False).
            *([("Subsystem", "sftp internal-sftp")] if self.sftp else []),
            # Benchmarks open up to `parallel` connections per host at once.
            ("MaxStartups", "100"),
            ("MaxSessions", "50"),
            ("LogLevel", "ERROR"),
            # Root's real home is out: its ~/.bashrc (bash reads it for ssh commands) could
            # rewrite PATH and slow every command, and hosts would share one ~/.cache.
            ("SetEnv", f"{_quote(f'PATH={session_path()}')} {_quote(f'HOME={host.home}')}"),
            # Loopback only, ever: no forwarding out of a test host, unless it is a bastion
            # (permit_open), and then only to the addresses named.
            ("AllowTcpForwarding", "local" if self.permit_open else "no"),
            *([("PermitOpen", " ".join(self.permit_open))] if self.permit_open else []),
            ("AllowAgentForwarding", "no"),
            ("X11Forwarding", "no"),
            ("PermitTunnel", "no"),
        ]
        if _sshd_version() >= (9, 8):
            # Newer sshd penalises sources whose connections close before auth, which the
            # banner probes and hung-host tests do on purpose from 127.0.0.1.
            settings.append(("PerSourcePenalties", "no"))
        return "".join(f"{key} {value}\n" for key, value in settings)


_LIVE: set[SshCluster] = set()


@atexit.register
def _stop_all() -> None:
    for cluster in list(_LIVE):
        cluster.stop()
