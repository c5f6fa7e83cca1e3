"""Connections and agents kept between runs (deploy/remote/keeper.py), against real sshd hosts.

A run with keep-alive leaves a keeper holding each host's SSH connection and agent; the next run
uses them (the same agent process answers), a host that went away meanwhile is reconnected, new
pins never reuse an old connection, and the keeper ends by itself or on `invoke disconnect`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.config import Environment
from deploy.errors import HostError
from deploy.remote import kept as keeper
from deploy.remote.bundle import LOADER
from tests.deployproject import (
    APP,
    HEALTHCHECK,
    SHIPPED,
    DeployProject,
    assert_serving_complete_release,
    environment_toml,
    installed,
    new_cluster,
    sh,
    ssh_project,
)
from tests.support.sshd import SshCluster, SshHost

pytestmark = pytest.mark.ssh


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    with new_cluster(tmp_path_factory, 2) as started:
        yield started


@pytest.fixture()
def project(tmp_path_factory: pytest.TempPathFactory, cluster: SshCluster) -> Iterator[DeployProject]:
    made = ssh_project(tmp_path_factory, cluster, "keeper-project")
    # This test's keepers only, in a folder short enough for socket paths (pytest's are not).
    runtime = Path(tempfile.mkdtemp(prefix="pk-", dir="/tmp"))
    made.env["XDG_RUNTIME_DIR"] = str(runtime)
    made.configure(environment_toml("staging", cluster, keep_alive=30, healthcheck=HEALTHCHECK))
    yield made
    for sock in (runtime / "pinship").glob("*.sock"):  # every keeper the test started, whatever its pins
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as client:
            client.connect(str(sock))
            client.sendall(b'{"do": "stop"}\n')
            client.recv(100)
    shutil.rmtree(runtime, ignore_errors=True)


def agents(host: SshHost) -> set[int]:
    """Pids of the pinship agents running on a host (its sessions' `python3 -I -S -c LOADER`)."""
    found = set()
    for pid in host.processes():
        with contextlib.suppress(OSError):
            if LOADER in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                found.add(pid)
    return found


def wait_until(condition: object, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_the_next_run_reuses_each_hosts_connection_and_agent(project: DeployProject, cluster: SshCluster) -> None:
    project.deploy_ok()
    first = {host.address: agents(host) for host in cluster.hosts}
    assert all(len(pids) == 1 for pids in first.values()), first  # kept after the run ended

    version = project.new_version()
    project.deploy_ok()
    assert {host.address: agents(host) for host in cluster.hosts} == first  # the same processes answered
    for host in cluster.hosts:
        assert installed(host, cluster.deploy_path)[APP] == version
        assert_serving_complete_release(host, cluster.deploy_path)

    closed = project.invoke("disconnect", "--env", "staging")
    assert closed.code == 0 and "closed the connections kept for staging" in closed.output, closed.output
    assert wait_until(lambda: not any(agents(host) for host in cluster.hosts)), "agents outlived disconnect"
    again = project.invoke("disconnect", "--env", "staging")
    assert "no connections are kept for staging" in again.output


def test_a_host_restarted_between_runs_is_reconnected(project: DeployProject, cluster: SshCluster) -> None:
    project.deploy_ok()
    restarted = cluster.hosts[0]
    before = agents(restarted)
    restarted.kill()  # its sshd and every session, the kept agent too
    restarted.start()

    version = project.new_version()
    project.deploy_ok()
    for host in cluster.hosts:
        assert installed(host, cluster.deploy_path)[APP] == version
    assert agents(restarted) and agents(restarted) != before


def test_a_kept_agent_that_died_or_hangs_is_replaced_before_the_first_step(
    project: DeployProject, cluster: SshCluster
) -> None:
    project.configure(environment_toml("staging", cluster, keep_alive=30, connect_timeout=3, healthcheck=HEALTHCHECK))
    project.deploy_ok()
    (dead,), (hung,) = (agents(host) for host in cluster.hosts)
    os.kill(dead, signal.SIGKILL)
    os.kill(hung, signal.SIGSTOP)  # its connection is up, but it will not answer the keeper's ping
    try:
        version = project.new_version()
        project.deploy_ok()
        for host in cluster.hosts:
            assert installed(host, cluster.deploy_path)[APP] == version
        assert agents(cluster.hosts[0]) - {dead} and agents(cluster.hosts[1]) - {hung}
    finally:
        os.kill(hung, signal.SIGKILL)


def test_a_kept_agent_still_finds_a_wheel_corrupted_in_its_store_between_runs(
    project: DeployProject, cluster: SshCluster
) -> None:
    """The kept agent hashes a file again when its inode, size or mtime changed: an overwrite
    that keeps the size is still caught, and the wheel is sent again."""
    path = cluster.deploy_path
    project.deploy_ok()
    victim = cluster.hosts[1]
    beta = sh(victim, f"ls {path}/wheels/*/beta-1.0-py3-none-any.whl").strip()
    good = sh(victim, f"sha256sum {beta}").split()[0]
    sh(victim, f"dd if=/dev/zero of={beta} bs=1 count=8 seek=40 conv=notrunc status=none")
    assert sh(victim, f"sha256sum {beta}").split()[0] != good

    version = project.new_version()
    outcome = project.deploy_ok()
    assert re.search(rf"{re.escape(victim.spec())}: store had corrupt or missing wheels \(.*beta", outcome.output)
    assert sh(victim, f"sha256sum {beta}").split()[0] == good
    for host in cluster.hosts:
        assert installed(host, path) == {**SHIPPED, APP: version}


def test_new_pins_never_reuse_a_kept_connection(project: DeployProject, cluster: SshCluster) -> None:
    project.deploy_ok()
    known = project.root / "known_hosts"
    good = known.read_text()
    first, second = cluster.hosts
    # The first host pinned with the second's key: only a fresh connection can notice.
    known.write_text(good.replace(first.known_hosts_line().split(" ", 1)[1],
                                  second.known_hosts_line().split(" ", 1)[1]))
    try:
        outcome = project.deploy()
        assert outcome.code != 0
        assert f"{first.spec()}: HOST KEY CHANGED" in outcome.output, outcome.output
    finally:
        known.write_text(good)


def test_the_keeper_ends_after_keep_alive_seconds_unused(project: DeployProject, cluster: SshCluster) -> None:
    project.configure(environment_toml("staging", cluster, keep_alive=3))
    project.deploy_ok()
    sockets = list((Path(project.env["XDG_RUNTIME_DIR"]) / "pinship").glob("*.sock"))
    assert len(sockets) == 1 and all(agents(h) for h in cluster.hosts)  # kept, for now
    assert wait_until(lambda: not sockets[0].exists() and not any(agents(h) for h in cluster.hosts))


def test_a_socket_folder_others_can_enter_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "pinship").mkdir(mode=0o755)
    os.chmod(tmp_path / "pinship", 0o755)
    env = Environment("staging", known_hosts="known_hosts")
    with pytest.raises(HostError) as caught:
        keeper.socket_path(env, tmp_path)
    assert f"{tmp_path / 'pinship'} is not a private folder of this user" in str(caught.value)
    assert "set keep-alive = 0" in str(caught.value)
