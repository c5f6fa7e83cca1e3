"""The sshd harness gives each loopback host its own files, key and faults, over real SSH."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from tests.support import sshd
from tests.support.sshd import SshCluster, SshdError, SshHost, require_sshd, unique_deploy_path


def _cluster(workdir: Path, count: int, disk_limit_mb: int | None = None) -> SshCluster:
    reason = require_sshd()
    if reason:
        pytest.skip(reason)
    return SshCluster(workdir, count, deploy_path=unique_deploy_path(), disk_limit_mb=disk_limit_mb)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    with _cluster(tmp_path_factory.mktemp("sshd"), 3) as started:
        yield started


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    with _cluster(tmp_path_factory.mktemp("sshd-small"), 1, disk_limit_mb=5) as started:
        yield started


def connect(
    cluster: SshCluster,
    host: SshHost,
    *,
    known_hosts: Path | None = None,
    banner_timeout: float = 10,
) -> paramiko.SSHClient:
    """Connect the way the deploy tool must: pinned keys only, our key only, nothing from ~."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts or cluster.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            host.address,
            port=host.port,
            username=host.user,
            key_filename=str(cluster.client_key),
            allow_agent=False,
            look_for_keys=False,
            timeout=5,
            banner_timeout=banner_timeout,
            auth_timeout=5,
        )
    except BaseException:
        client.close()
        raise
    return client


def ssh_run(client: paramiko.SSHClient, command: str) -> tuple[int, str, str]:
    _, stdout, stderr = client.exec_command(command, timeout=30)
    out, err = stdout.read().decode(), stderr.read().decode()
    status: int = stdout.channel.recv_exit_status()
    return status, out, err


@pytest.mark.ssh
def test_each_host_has_its_own_files_at_the_shared_deploy_path(cluster: SshCluster) -> None:
    host_a, host_b = cluster.hosts[:2]
    marker = f"{cluster.deploy_path}/marker"
    with connect(cluster, host_a) as a, connect(cluster, host_b) as b:
        assert ssh_run(a, f"echo from-a > {marker}")[0] == 0
        assert ssh_run(a, f"cat {marker}")[1] == "from-a\n"
        assert ssh_run(b, f"test -e {marker}")[0] == 1
    assert (host_a.root / "marker").read_text() == "from-a\n"
    assert not (host_b.root / "marker").exists()
    assert host_a.run(f"cat {marker}").stdout == "from-a\n"
    # Outside every host the deploy path is only an empty mount point.
    assert list(Path(cluster.deploy_path).iterdir()) == []


@pytest.mark.ssh
def test_sftp_put_lands_in_the_hosts_own_folder(cluster: SshCluster, tmp_path: Path) -> None:
    host = cluster.hosts[1]
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(os.urandom(100_000))
    with connect(cluster, host) as client, client.open_sftp() as sftp:
        sftp.mkdir(f"{cluster.deploy_path}/wheels")
        sftp.put(str(wheel), f"{cluster.deploy_path}/wheels/{wheel.name}")
    assert (host.root / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()


@pytest.mark.ssh
def test_sessions_run_the_tests_python_and_can_make_a_venv(cluster: SshCluster) -> None:
    venv = f"{cluster.deploy_path}/venv-probe"
    with connect(cluster, cluster.hosts[0]) as client:
        status, out, err = ssh_run(client, "python3 -c 'import sys; print(sys.base_prefix)'")
        assert (status, out.strip()) == (0, sys.base_prefix), err
        status, out, err = ssh_run(client, f"python3 -m venv {venv} && {venv}/bin/pip --version")
        assert status == 0, err
    assert (cluster.hosts[0].root / "venv-probe" / "bin" / "python").exists()


@pytest.mark.ssh
def test_a_paused_host_times_out_the_handshake_and_recovers(cluster: SshCluster) -> None:
    host = cluster.hosts[2]
    established = connect(cluster, host)
    host.pause()
    try:
        started = time.monotonic()
        # TCP still connects (the kernel queues it) but no banner ever comes.
        with pytest.raises(paramiko.SSHException, match="banner"):
            connect(cluster, host, banner_timeout=2)
        assert time.monotonic() - started < 6
        # An established session hangs as well, as on a frozen machine.
        with pytest.raises(paramiko.SSHException, match="Timeout opening channel"):
            established.exec_command("true", timeout=1)
    finally:
        host.resume()
        established.close()
    with connect(cluster, host) as client:
        assert ssh_run(client, "true")[0] == 0


@pytest.mark.ssh
def test_a_rotated_host_key_is_rejected_by_the_pinned_known_hosts(
    cluster: SshCluster, tmp_path: Path
) -> None:
    host = cluster.hosts[2]
    pinned = host.known_hosts_line()
    try:
        host.rotate_host_key()
        assert host.known_hosts_line() != pinned
        with pytest.raises(paramiko.BadHostKeyException):
            connect(cluster, host)
        cluster.write_known_hosts(tmp_path / "known_hosts", [host])
        with connect(cluster, host, known_hosts=tmp_path / "known_hosts") as client:
            assert ssh_run(client, "true")[0] == 0
    finally:
        # Later tests use this host with the cluster's known_hosts.
        cluster.write_known_hosts(cluster.known_hosts)


@pytest.mark.ssh
def test_a_killed_host_refuses_connections_and_comes_back_as_it_was(cluster: SshCluster) -> None:
    host = cluster.hosts[2]
    (host.root / "kept").write_text("still here\n")
    host.kill()
    try:
        assert host.pid is None
        with pytest.raises(paramiko.ssh_exception.NoValidConnectionsError):
            connect(cluster, host)
    finally:
        host.start()
    with connect(cluster, host) as client:
        assert ssh_run(client, f"cat {cluster.deploy_path}/kept")[1] == "still here\n"


@pytest.mark.ssh
def test_a_disk_limit_makes_writes_fail_with_no_space_left(
    small_disk: SshCluster, tmp_path: Path
) -> None:
    host = small_disk.hosts[0]
    big = tmp_path / "big.whl"
    big.write_bytes(b"\0" * 10 * 1024 * 1024)
    with connect(small_disk, host) as client:
        status, _, err = ssh_run(
            client, f"head -c 10485760 /dev/zero > {small_disk.deploy_path}/big"
        )
        assert status != 0
        assert "No space left" in err
        with client.open_sftp() as sftp, pytest.raises(OSError):
            sftp.put(str(big), f"{small_disk.deploy_path}/big.whl")
    # The tmpfs exists only inside the host: look at it through run().
    assert "tmpfs" in host.run(f"df {small_disk.deploy_path}", check=True).stdout
    assert list(Path(small_disk.deploy_path).iterdir()) == []


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a killed orphan stays a zombie until pid 1 reaps it


@pytest.mark.ssh
def test_stop_leaves_no_process_and_no_mount_point(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path, 2)
    with connect(cluster, cluster.hosts[0]) as client:
        client.exec_command("sleep 60")
        time.sleep(0.2)
        pids = [pid for host in cluster.hosts for pid in host.processes()]
        # Two listeners, plus the session's sshd processes and its sleep.
        assert len(pids) >= 4
        cluster.stop()
    assert [pid for pid in pids if running(pid)] == []
    assert not Path(cluster.deploy_path).exists()


@pytest.mark.ssh
def test_an_sshd_that_cannot_start_raises_with_its_log(tmp_path: Path) -> None:
    with _cluster(tmp_path, 1) as cluster:
        host = cluster.hosts[0]
        host.kill()
        host.host_key.write_text("not a key\n")
        with pytest.raises(SshdError, match="no hostkeys available"):
            host.start()


def test_require_sshd_turns_a_skip_into_an_error_when_ci_asks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sshd, "skip_reason", lambda: "sshd not found")
    monkeypatch.delenv(sshd.REQUIRE_ENV, raising=False)
    assert require_sshd() == "sshd not found"
    monkeypatch.setenv(sshd.REQUIRE_ENV, "1")
    with pytest.raises(SshdError, match="sshd not found"):
        require_sshd()
