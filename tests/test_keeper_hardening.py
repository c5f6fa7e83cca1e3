"""The keeper under faults (issue 11): refused host keys, a keeper killed or hung, and disconnect.

A connection whose host key was refused is closed at once and tried afresh by the next run; a
keeper killed by a signal leaves a socket the next run replaces without a wait; one that hangs
never makes a run hang; `invoke disconnect` stops every keeper of the environment, whatever
keep-alive started it; the keeper's log stays small and holds nothing from the hosts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deployproject import (
    APP,
    HEALTHCHECK,
    DeployProject,
    environment_toml,
    installed,
    new_cluster,
    ssh_project,
)
from tests.support.sshd import SshCluster, SshHost

pytestmark = pytest.mark.ssh


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    with new_cluster(tmp_path_factory, 2) as started:
        yield started


@pytest.fixture(scope="module")
def shared_project(tmp_path_factory: pytest.TempPathFactory, cluster: SshCluster) -> DeployProject:
    return ssh_project(tmp_path_factory, cluster, "keeper-hardening")


@pytest.fixture()
def project(shared_project: DeployProject, cluster: SshCluster) -> Iterator[DeployProject]:
    """The module's project with keep-alive 30, the hosts' current keys pinned, and a socket
    folder of this test's own (short enough for socket paths), whose keepers end with the test."""
    runtime = Path(tempfile.mkdtemp(prefix="pkh-", dir="/tmp"))
    shared_project.env["XDG_RUNTIME_DIR"] = str(runtime)
    cluster.write_known_hosts(shared_project.root / "known_hosts")
    shared_project.configure(environment_toml("staging", cluster, keep_alive=30, healthcheck=HEALTHCHECK))
    yield shared_project
    for sock in sockets(shared_project):
        pid = keeper_pid(sock)
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(runtime, ignore_errors=True)


def sockets(project: DeployProject) -> list[Path]:
    return sorted((Path(project.env["XDG_RUNTIME_DIR"]) / "pinship").glob("*.sock"))


def only_socket(project: DeployProject) -> Path:
    found = sockets(project)
    assert len(found) == 1, found
    return found[0]


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    found.add(link[len("socket:["):-1])
    return found


def keeper_pid(sock: Path) -> int | None:
    """The process listening on a keeper's socket file now, or None when nothing does."""
    with socket.socket(socket.AF_UNIX) as client:
        try:
            client.connect(str(sock))
        except OSError:
            return None
        pid, _, _ = struct.unpack("3i", client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        return int(pid)


def connections_to(pid: int, host: SshHost) -> int:
    """How many ESTABLISHED TCP connections process `pid` holds to the host's sshd."""
    ip = "".join(f"{int(part):02X}" for part in reversed(host.address.split(".")))
    remote = f"{ip}:{host.port:04X}"
    mine = _socket_inodes(pid)
    with open("/proc/net/tcp") as table:
        rows = [row.split() for row in table.read().splitlines()[1:]]
    return sum(1 for cells in rows if cells[2] == remote and cells[3] == "01" and cells[9] in mine)


def swap_key(host: SshHost, saved: Path) -> None:
    """Give the host the key kept in `saved` (a host_key pair), keeping its own there instead."""
    for suffix in ("", ".pub"):
        mine, other = Path(f"{host.host_key}{suffix}"), Path(f"{saved}{suffix}")
        spare = other.with_name(other.name + ".swap")
        shutil.copyfile(mine, spare)
        shutil.copyfile(other, mine)
        shutil.move(spare, other)
    host.kill()
    host.start()


def test_a_host_whose_key_was_refused_is_tried_afresh_by_the_next_run(
    project: DeployProject, cluster: SshCluster, tmp_path: Path
) -> None:
    """The impostor's connection closes at once; while the key is wrong every run fails the same
    clear way, and once the host has its pinned key back the same keeper deploys to it."""
    project.deploy_ok()
    sock = only_socket(project)
    pid = keeper_pid(sock)
    assert pid is not None
    host = cluster.hosts[0]
    pinned = tmp_path / "pinned_key"
    shutil.copyfile(host.host_key, pinned)
    shutil.copyfile(f"{host.host_key}.pub", f"{pinned}.pub")
    host.rotate_host_key()
    try:
        for _ in range(2):
            refused = project.deploy()
            assert refused.code != 0
            assert f"{host.spec()}: HOST KEY CHANGED" in refused.output, refused.output
            assert keeper_pid(sock) == pid  # the same keeper, still serving the other host
            assert connections_to(pid, host) == 0
    finally:
        swap_key(host, pinned)  # the host has its pinned key again

    version = project.new_version()
    project.deploy_ok()
    assert keeper_pid(sock) == pid and connections_to(pid, host) == 1
    for each in cluster.hosts:
        assert installed(each, cluster.deploy_path)[APP] == version


def test_an_unknown_host_is_refused_then_deployed_once_trust_pinned_it(
    project: DeployProject, cluster: SshCluster
) -> None:
    newcomer = cluster.hosts[1]
    cluster.write_known_hosts(project.root / "known_hosts", cluster.hosts[:1])
    refused = project.deploy()
    assert refused.code != 0
    assert f"{newcomer.spec()}: unknown host key" in refused.output, refused.output
    first = keeper_pid(only_socket(project))
    assert first is not None and connections_to(first, newcomer) == 0

    trusted = project.invoke("trust", "--env", "staging", "--yes")
    assert trusted.code == 0, trusted.output
    started = time.monotonic()
    version = project.new_version()
    project.deploy_ok()
    assert time.monotonic() - started < 25  # not after the first keeper's 30 s
    for each in cluster.hosts:
        assert installed(each, cluster.deploy_path)[APP] == version
    # The new pins made a new keeper; the one with the old pins closed its connections and ended.
    sock = only_socket(project)
    assert keeper_pid(sock) not in (None, first)
    assert not Path(f"/proc/{first}").exists() or all(connections_to(first, h) == 0 for h in cluster.hosts)


def kill_keeper(sock: Path) -> None:
    """SIGKILL the keeper listening at `sock` and wait until it is gone; its socket file stays."""
    pid = keeper_pid(sock)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sock.exists() and keeper_pid(sock) is None  # left behind: nothing listens on it
    time.sleep(max(0.0, sock.lstat().st_mtime + 2.5 - time.time()))  # older than a keeper starting up


def test_a_socket_left_by_a_killed_keeper_is_cleaned_up_by_the_next_run(
    project: DeployProject, cluster: SshCluster
) -> None:
    project.deploy_ok()
    sock = only_socket(project)
    kill_keeper(sock)
    version = project.new_version()
    outcome = project.deploy_ok()  # the same settings: a new keeper on the same socket
    assert outcome.seconds < 25, outcome.output
    assert keeper_pid(sock) is not None and only_socket(project) == sock
    for each in cluster.hosts:
        assert installed(each, cluster.deploy_path)[APP] == version

    kill_keeper(sock)
    project.deploy_ok("--command-timeout", "500")  # other settings: another keeper's socket
    assert sock not in sockets(project) and not sock.with_suffix(".log").exists()

    kill_keeper(only_socket(project))
    closed = project.invoke("disconnect", "--env", "staging")
    assert closed.code == 0 and "no connections are kept for staging" in closed.output, closed.output
    assert not sockets(project)


def test_a_hung_keeper_never_makes_a_run_or_disconnect_hang(project: DeployProject, cluster: SshCluster) -> None:
    project.deploy_ok()
    sock = only_socket(project)
    hung = keeper_pid(sock)
    assert hung is not None
    os.kill(hung, signal.SIGSTOP)  # its socket still accepts (the kernel's backlog); it never answers
    try:
        version = project.new_version()
        outcome = project.deploy_ok()
        assert outcome.seconds < 40, outcome.output
        for each in cluster.hosts:
            assert installed(each, cluster.deploy_path)[APP] == version
        replacement = keeper_pid(sock)
        assert replacement not in (None, hung)
    finally:
        os.kill(hung, signal.SIGKILL)


def test_disconnect_stops_a_keeper_started_with_keep_alive_on_the_command_line(
    project: DeployProject, cluster: SshCluster
) -> None:
    project.deploy_ok("--keep-alive", "300")
    pid = keeper_pid(only_socket(project))
    assert pid is not None
    closed = project.invoke("disconnect", "--env", "staging")
    assert closed.code == 0 and "closed the connections kept for staging" in closed.output, closed.output
    assert not sockets(project)
    assert not Path(f"/proc/{pid}").exists() or all(connections_to(pid, h) == 0 for h in cluster.hosts)


def test_disconnect_stops_every_keeper_of_the_environment(project: DeployProject, cluster: SshCluster) -> None:
    """Per-run settings (timeouts here) each get a keeper; disconnect finds them all."""
    project.deploy_ok()
    project.deploy_ok("--command-timeout", "500")
    assert len(sockets(project)) >= 1
    pids = [keeper_pid(sock) for sock in sockets(project)]
    closed = project.invoke("disconnect", "--env", "staging")
    assert closed.code == 0 and "closed the connections kept for staging" in closed.output, closed.output
    assert not sockets(project)
    for pid in pids:
        assert pid is not None
        assert not Path(f"/proc/{pid}").exists() or all(connections_to(pid, h) == 0 for h in cluster.hosts)
    again = project.invoke("disconnect", "--env", "staging")
    assert "no connections are kept for staging" in again.output


def test_disconnect_ends_a_hung_keeper(project: DeployProject) -> None:
    project.deploy_ok()
    sock = only_socket(project)
    hung = keeper_pid(sock)
    assert hung is not None
    os.kill(hung, signal.SIGSTOP)
    try:
        closed = project.invoke("disconnect", "--env", "staging", timeout=60)
        assert closed.code == 0 and "closed the connections kept for staging" in closed.output, closed.output
        assert not sockets(project)
    finally:
        with contextlib.suppress(OSError):
            os.kill(hung, signal.SIGKILL)


def test_the_keepers_log_stays_small_and_holds_nothing_from_the_hosts(project: DeployProject) -> None:
    project.deploy_ok()
    sock = only_socket(project)
    for _ in range(3000):  # clients that send garbage and go away: each one a line in the log
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(sock))
            client.sendall(b"not json SECRET-TOKEN-123\n")
            client.recv(10)
    log = sock.with_suffix(".log")
    assert log.stat().st_size < 100_000
    assert "SECRET-TOKEN-123" not in log.read_text(errors="replace")
    assert oct(log.stat().st_mode & 0o777) == oct(0o600)
    project.deploy_ok()  # it still serves


# The pins every connection is checked against: read the way paramiko reads them, or refused clearly.


@pytest.mark.parametrize("keep_alive", [30, 0])
@pytest.mark.parametrize(("line", "problem"), [
    (b"[127.0.0.9]:22 ssh-ed25519 !!!not-base64", "not a host key paramiko can read"),
    (b"[127.0.0.9]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA", "not a host key paramiko can read"),
    (b"# caf\xe9 \xff", "not UTF-8 text"),
])
def test_an_unreadable_known_hosts_line_is_named_by_file_and_line(
    project: DeployProject, cluster: SshCluster, keep_alive: int, line: bytes, problem: str
) -> None:
    known = project.root / "known_hosts"
    known.write_bytes(known.read_bytes() + line + b"\n")
    project.configure(environment_toml("staging", cluster, keep_alive=keep_alive, healthcheck=HEALTHCHECK))
    outcome = project.deploy()
    assert outcome.code != 0
    assert f"{known}:{len(cluster.hosts) + 1}: {problem}" in outcome.output, outcome.output
    assert "invoke trust --env staging" in outcome.output
    assert line.decode(errors="replace") not in outcome.output


def test_a_missing_known_hosts_file_is_named_with_kept_connections(project: DeployProject) -> None:
    known = project.root / "known_hosts"
    known.unlink()
    outcome = project.deploy()
    assert outcome.code != 0
    assert f"the known-hosts file {known} does not exist" in outcome.output, outcome.output
    assert "invoke trust --env staging" in outcome.output


def test_trust_knows_a_pinned_line_with_a_comment(project: DeployProject, cluster: SshCluster) -> None:
    known = project.root / "known_hosts"
    known.write_text("".join(f"{host.known_hosts_line()} pinned by ops\n" for host in cluster.hosts))
    outcome = project.invoke("trust", "--env", "staging", "--yes")
    assert outcome.code == 0, outcome.output
    assert all(f"{host.spec()}: ssh-ed25519 SHA256:" in outcome.output for host in cluster.hosts)
    assert outcome.output.count("(already trusted)") == len(cluster.hosts), outcome.output


def test_trust_of_a_host_that_does_not_answer_is_one_clear_line(project: DeployProject, cluster: SshCluster) -> None:
    silent = cluster.hosts[0]
    silent.pause(sessions=False)  # it accepts the TCP connection, then never says a word
    try:
        outcome = project.invoke("trust", "--env", "staging", "--yes", "--connect-timeout", "2")
    finally:
        silent.resume()
    assert outcome.code != 0
    assert f"{silent.spec()}: could not read its host key" in outcome.output, outcome.output
    assert "raise --connect-timeout" in outcome.output


def test_a_keeper_ended_by_sigterm_closes_its_connections_and_removes_its_socket(
    project: DeployProject, cluster: SshCluster
) -> None:
    project.deploy_ok()
    sock = only_socket(project)
    pid = keeper_pid(sock)
    assert pid is not None and all(connections_to(pid, h) == 1 for h in cluster.hosts)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not Path(f"/proc/{pid}").exists()
    assert not sock.exists() and not sock.with_suffix(".log").exists()


def test_a_kept_connection_that_sent_files_is_reconnected_after_the_host_restarted(
    project: DeployProject, cluster: SshCluster
) -> None:
    """The reconnected host gets the next version's wheel: no file transfer of the old connection
    (its SFTP session) outlives it."""
    project.new_version()
    project.deploy_ok()  # sends the app's wheel over each kept connection
    restarted = cluster.hosts[0]
    restarted.kill()
    restarted.start()
    version = project.new_version()
    project.deploy_ok()
    for each in cluster.hosts:
        assert installed(each, cluster.deploy_path)[APP] == version


@pytest.mark.parametrize("idle", ["nan", "inf", "-5"])
def test_a_keeper_given_a_keep_alive_that_is_no_time_still_ends_when_unused(tmp_path: Path, idle: str) -> None:
    """Whatever the settings let through, no keep-alive value makes a keeper that never ends."""
    folder = Path(tempfile.mkdtemp(prefix="pki-", dir="/tmp"))
    sock = folder / "k.sock"
    try:
        started = subprocess.Popen([sys.executable, "-m", "deploy.remote.keeper", str(sock), idle],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert started.wait(timeout=10) == 0
        finally:
            started.kill()
            started.wait()
        assert not sock.exists()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
