"""A host without SFTP (its sshd has no `Subsystem sftp` line) gets its wheels over an exec channel
of the same connection, and gives files back the same way (issue 16); it used to fail with
"Channel closed" on the first upload."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.deployproject import (
    APP,
    SHIPPED,
    environment_toml,
    installed,
    live,
    new_project,
    require_sshd_or_skip,
)
from tests.support.sshd import SshCluster, unique_deploy_path


@pytest.fixture(scope="module")
def no_sftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    require_sshd_or_skip()
    with SshCluster(tmp_path_factory.mktemp("sshd"), 2, deploy_path=unique_deploy_path(), sftp=False) as started:
        yield started


@pytest.mark.ssh
@pytest.mark.parametrize("keep_alive", [0, 60])
def test_a_host_without_sftp_gets_its_wheels_over_the_connection_it_has(
    tmp_path_factory: pytest.TempPathFactory, no_sftp: SshCluster, keep_alive: int
) -> None:
    for host in no_sftp.hosts:
        host.run(f"rm -rf {no_sftp.deploy_path}/* {no_sftp.deploy_path}/.[!.]*")
    project = new_project(tmp_path_factory, f"no-sftp-{keep_alive}")
    (project.root / "known_hosts").write_text(no_sftp.known_hosts.read_text())
    project.configure(environment_toml("bare", no_sftp, keep_alive=keep_alive)
                      + environment_toml("copy", no_sftp, keep_alive=keep_alive))
    try:
        deployed = project.deploy(env="bare")
        status = project.invoke("status", "--env", "bare")
        # promote fetches the wheels the local cache lacks from the source environment's hosts
        for wheel in (project.root / ".deploy" / "cache" / "wheels").glob("*/alpha-*.whl"):
            shutil.rmtree(wheel.parent)
        promoted = project.invoke("promote", "--from", "bare", "--to", "copy")
    finally:
        project.invoke("disconnect", "--env", "bare")
        project.invoke("disconnect", "--env", "copy")

    assert deployed.code == 0, deployed.output
    assert "Channel closed" not in deployed.output
    assert status.code == 0, status.output
    assert promoted.code == 0, promoted.output
    assert "fetching alpha-1.0-py3-none-any.whl from the source release" in promoted.output, promoted.output
    releases = {live(host, no_sftp.deploy_path) for host in no_sftp.hosts}
    assert len(releases) == 1 and None not in releases
    for host in no_sftp.hosts:
        assert installed(host, no_sftp.deploy_path) == {**SHIPPED, APP: "1.0"}
