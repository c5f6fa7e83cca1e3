"""A bastion per environment (issue 16): `jump = "user@bastion:port"`, its key pinned in
known-hosts like any host's (`invoke trust` offers it first), never added on sight; the hosts'
connections run through it. Two real sshd clusters on loopback: the hosts, and a bastion allowed
to forward to them only."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deployproject import (
    APP,
    SHIPPED,
    DeployProject,
    environment_toml,
    installed,
    live,
    new_project,
    require_sshd_or_skip,
)
from tests.support.sshd import SshCluster, unique_deploy_path


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    require_sshd_or_skip()
    with SshCluster(tmp_path_factory.mktemp("sshd"), 2, deploy_path=unique_deploy_path()) as started:
        yield started


@pytest.fixture(scope="module")
def bastion(tmp_path_factory: pytest.TempPathFactory, hosts: SshCluster) -> Iterator[SshCluster]:
    """One sshd on 127.0.1.x that forwards to the hosts' SSH ports and nowhere else; the
    deploying user's key (the hosts' cluster's) logs in there too."""
    allowed = tuple(f"{host.address}:{host.port}" for host in hosts.hosts)
    with SshCluster(tmp_path_factory.mktemp("bastion"), 1, deploy_path=unique_deploy_path(), first=300,
                    permit_open=allowed) as started:
        started.authorized_keys.write_text(hosts.authorized_keys.read_text())
        yield started


def through(project: DeployProject, hosts: SshCluster, bastion: SshCluster, name: str = "behind",
            **settings: object) -> None:
    project.configure(environment_toml(name, hosts, None, jump=bastion.hosts[0].spec(), **settings))


def owners_of_connections_to(address: str, port: int) -> set[int]:
    """Pids of the processes holding an established TCP connection to address:port (from /proc)."""
    wanted = f"{struct.unpack('<I', socket.inet_aton(address))[0]:08X}:{port:04X}"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == wanted and fields[3] == "01":
            inodes.add(f"socket:[{fields[9]}]")
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
            except OSError:
                continue
            if links & inodes:
                found.add(int(entry.name))
    return found


@pytest.mark.ssh
def test_the_hosts_are_reached_through_the_bastion(
    tmp_path_factory: pytest.TempPathFactory, hosts: SshCluster, bastion: SshCluster
) -> None:
    project = new_project(tmp_path_factory, "through-bastion")
    (project.root / "known_hosts").write_text(hosts.known_hosts.read_text() + bastion.known_hosts.read_text())
    through(project, hosts, bastion, keep_alive=60)  # the keeper holds the connections after the run
    try:
        outcome = project.deploy(env="behind")
        # Who holds each host's SSH connection now: through a bastion, the bastion's sshd does.
        owners = {host.address: owners_of_connections_to(host.address, host.port) for host in hosts.hosts}
        inside_bastion = set(bastion.hosts[0].processes())
    finally:
        project.invoke("disconnect", "--env", "behind")

    assert outcome.code == 0, outcome.output
    for host in hosts.hosts:
        assert owners[host.address], f"no connection to {host.address} is open: {owners}"
        assert owners[host.address] <= inside_bastion, f"{host.address} was reached directly: {owners}"
        assert installed(host, hosts.deploy_path) == {**SHIPPED, APP: "1.0"}
    assert len({live(host, hosts.deploy_path) for host in hosts.hosts}) == 1


@pytest.mark.ssh
def test_trust_offers_the_bastions_key_first_and_reads_the_hosts_through_it(
    tmp_path_factory: pytest.TempPathFactory, hosts: SshCluster, bastion: SshCluster
) -> None:
    project = new_project(tmp_path_factory, "trust-bastion")
    known = project.root / "known_hosts"
    known.write_text("")
    through(project, hosts, bastion)

    unpinned = project.deploy(env="behind")
    trusted = project.invoke("trust", "--env", "behind", "--yes")
    deployed = project.deploy(env="behind")

    gate = bastion.hosts[0]
    assert unpinned.code == 1, unpinned.output
    assert f"the bastion {gate.spec()}: unknown host key: the host is not in {known}" in unpinned.output
    assert "invoke trust --env behind" in unpinned.output
    assert trusted.code == 0, trusted.output
    lines = trusted.output.splitlines()
    assert lines[0].startswith(f"{gate.spec()}: ssh-ed25519 SHA256:") and "(the bastion's key, new)" in lines[0]
    for host in hosts.hosts:
        assert any(line.startswith(f"{host.spec()}: ssh-ed25519 SHA256:") for line in lines), trusted.output
    assert set(known.read_text().splitlines()) == set(
        (hosts.known_hosts.read_text() + bastion.known_hosts.read_text()).splitlines())
    assert deployed.code == 0, deployed.output


@pytest.mark.ssh
def test_a_bastion_with_a_changed_key_is_refused_and_nothing_is_sent(
    tmp_path_factory: pytest.TempPathFactory, hosts: SshCluster, bastion: SshCluster
) -> None:
    project = new_project(tmp_path_factory, "impostor-bastion")
    gate = bastion.hosts[0]
    # Pinned: another key for the bastion's name, as after a man in the middle took its place.
    forged = hosts.hosts[0].known_hosts_line().split(" ", 1)[1]
    pins = hosts.known_hosts.read_text() + f"[{gate.address}]:{gate.port} {forged}\n"
    (project.root / "known_hosts").write_text(pins)
    through(project, hosts, bastion)

    outcome = project.deploy(env="behind")

    assert outcome.code == 1, outcome.output
    assert f"the bastion {gate.spec()}: HOST KEY CHANGED" in outcome.output, outcome.output
    rows = outcome.summary()
    for host in hosts.hosts:
        assert rows[host.spec()]["result"] == "failed", outcome.output


@pytest.mark.ssh
def test_a_bastion_that_will_not_forward_to_a_host_says_so(
    tmp_path_factory: pytest.TempPathFactory, hosts: SshCluster, bastion: SshCluster
) -> None:
    project = new_project(tmp_path_factory, "closed-bastion")
    (project.root / "known_hosts").write_text(hosts.known_hosts.read_text() + bastion.known_hosts.read_text())
    other = hosts.hosts[0]
    # A host at a port the bastion may not forward to.
    project.configure(environment_toml("behind", hosts, jump=bastion.hosts[0].spec()).replace(
        other.spec(), f"{other.user}@{other.address}:{other.port + 1 if other.port < 65535 else 1}"))

    outcome = project.deploy(env="behind")

    assert outcome.code == 1, outcome.output
    assert f"the bastion {bastion.hosts[0].spec()} refused to forward to it" in outcome.output, outcome.output
    assert "AllowTcpForwarding, PermitOpen" in outcome.output
