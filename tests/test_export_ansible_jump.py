"""The Ansible export behind a bastion (jump): ansible-playbook reaches the hosts through it, its
key checked against the same pins, and without it the hosts are not reached at all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deployproject import APP, SHIPPED, environment_toml, installed, live, new_project, require_sshd_or_skip, wipe
from tests.support.sshd import SshCluster, unique_deploy_path
from tests.test_export_ansible import export, playbook

pytestmark = pytest.mark.ssh


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    require_sshd_or_skip()
    with SshCluster(tmp_path_factory.mktemp("sshd"), 2, deploy_path=unique_deploy_path(), first=20) as started:
        yield started


@pytest.fixture(scope="module")
def bastion(tmp_path_factory: pytest.TempPathFactory, hosts: SshCluster) -> Iterator[SshCluster]:
    """One sshd that forwards to the hosts' SSH ports and nowhere else; the same key logs in."""
    allowed = tuple(f"{host.address}:{host.port}" for host in hosts.hosts)
    with SshCluster(tmp_path_factory.mktemp("bastion"), 1, deploy_path=unique_deploy_path(), first=320,
                    permit_open=allowed) as started:
        started.authorized_keys.write_text(hosts.authorized_keys.read_text())
        yield started


def test_behind_a_bastion_the_playbook_reaches_the_hosts_through_it_and_only_through_it(
    tmp_path_factory: pytest.TempPathFactory, hosts: SshCluster, bastion: SshCluster, tmp_path: Path
) -> None:
    project = new_project(tmp_path_factory, "export-behind")
    (project.root / "known_hosts").write_text(hosts.known_hosts.read_text() + bastion.known_hosts.read_text())
    project.configure(environment_toml("staging", hosts, jump=bastion.hosts[0].spec()))
    for host in hosts.hosts:
        wipe(host, hosts.deploy_path)
    out = tmp_path / "ansible"
    export(project, out)
    release = json.loads(next((out / "releases").glob("*/manifest.json")).read_text())["release"]
    gate = bastion.hosts[0]
    gate.kill()
    try:
        down = playbook(project, out)  # the hosts are up, but the way to them is not
    finally:
        gate.start()
    assert down.returncode != 0
    assert down.stdout.count("UNREACHABLE!") == len(hosts.hosts), down.stdout
    # The bastion's key is checked against the pins copied into the export, as each host's is.
    pins = (out / "known_hosts").read_text()
    (out / "known_hosts").write_text(hosts.known_hosts.read_text())
    try:
        unpinned = playbook(project, out)
    finally:
        (out / "known_hosts").write_text(pins)
    # (ssh shows the proxy's refusal as the connection closing; the same pins with its key succeed below)
    assert unpinned.returncode != 0
    assert unpinned.stdout.count("UNREACHABLE!") == len(hosts.hosts), unpinned.stdout
    assert {live(host, hosts.deploy_path) for host in hosts.hosts} == {None}

    done = playbook(project, out)

    assert done.returncode == 0, done.stdout + done.stderr
    for host in hosts.hosts:
        assert live(host, hosts.deploy_path) == release
        assert installed(host, hosts.deploy_path) == {**SHIPPED, APP: "1.0"}
    status = project.invoke("status", "--env", "staging")
    assert status.code == 0, status.output
