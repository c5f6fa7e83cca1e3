"""The Ansible export's waves and hooks against real sshd hosts: `waves` become `serial`, run-once
runs on one host before any switch, and a failed post-switch check stops the rollout."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deployproject import (
    APP,
    DeployProject,
    assert_unlocked,
    environment_toml,
    installed,
    live,
    log_lines,
    new_cluster,
    new_project,
    sh,
    wipe,
)
from tests.support.sshd import SshCluster, SshHost
from tests.test_export_ansible import export, playbook

pytestmark = pytest.mark.ssh

# Each command runs in a release (cwd releases/<id>, or current): ../.. is the host's deploy path,
# where a test leaves a file to make one host's hook fail.
RUN_ONCE = "test ! -e ../../fail-once && echo once >> ../../run-once.log"
POST_SWITCH = "test ! -e ../../fail-post"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    with new_cluster(tmp_path_factory, 3) as started:
        yield started


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, cluster: SshCluster) -> DeployProject:
    made = new_project(tmp_path_factory, "export-waves")
    cluster.write_known_hosts(made.root / "known_hosts")
    made.configure(environment_toml("staging", cluster, waves=[1, "50%"], run_once=RUN_ONCE,
                                    post_switch=POST_SWITCH))
    return made


def runs_of_run_once(host: SshHost, path: str) -> int:
    return len(sh(host, f"cat {shlex.quote(path)}/run-once.log 2>/dev/null || true").split())


def release_of(out: Path) -> str:
    release: str = json.loads(next((out / "releases").glob("*/manifest.json")).read_text())["release"]
    return release


def fail_the_second_wave(project: DeployProject, cluster: SshCluster, out: Path) -> tuple[str, str, str]:
    """From 1.0 everywhere, export 1.1 and run it with the second wave's host failing its
    post-switch check: the output, the old release and the new one."""
    path = cluster.deploy_path
    for host in cluster.hosts:
        wipe(host, path)
    export(project, out / "v1")
    # waves = [1, "50%"] of 3 hosts: one host, then one more (50% rounded up is 2), then the rest.
    assert "  serial: [1, 1, 1]\n" in (out / "v1" / "playbook.yml").read_text()
    done = playbook(project, out / "v1")
    assert done.returncode == 0, done.stdout + done.stderr
    old = release_of(out / "v1")
    assert {live(host, path) for host in cluster.hosts} == {old}
    assert [runs_of_run_once(host, path) for host in cluster.hosts] == [1, 0, 0]  # once, on the first host

    project.set_version("1.1")
    try:
        export(project, out / "v2")
        sh(cluster.hosts[1], f"touch {shlex.quote(path)}/fail-post")
        done = playbook(project, out / "v2")
    finally:
        project.set_version("1.0")
        sh(cluster.hosts[1], f"rm -f {shlex.quote(path)}/fail-post")
    said = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"post-switch check failed (exit 1), switched back to {old}" in said, said
    assert "1 of 3 hosts failed, more than max-failures = 0: the later waves did not switch" in said, said
    assert [runs_of_run_once(host, path) for host in cluster.hosts] == [2, 0, 0]
    for host in cluster.hosts:
        assert_unlocked(host, path)
    return said, old, release_of(out / "v2")


def test_a_failed_wave_stops_the_later_waves_and_puts_the_switched_hosts_back(
    project: DeployProject, cluster: SshCluster, tmp_path: Path
) -> None:
    path = cluster.deploy_path
    said, old, new = fail_the_second_wave(project, cluster, tmp_path)

    assert "each host this run switched went back to the release it served" in said
    # The first wave passed, then went back with the rest (on-wave-failure = rollback, the default).
    assert {live(host, path) for host in cluster.hosts} == {old}
    entry = log_lines(cluster.hosts[0], path)[-1]
    assert (entry["action"], entry["release"], entry["previous"], entry["result"]) == ("rollback", old, new, "ok")
    assert {installed(host, path)[APP] for host in cluster.hosts} == {"1.0"}
    status = project.invoke("status", "--env", "staging")
    assert status.code == 0, status.output


def test_with_on_wave_failure_keep_the_waves_that_passed_keep_the_release(
    project: DeployProject, cluster: SshCluster, tmp_path: Path
) -> None:
    path = cluster.deploy_path
    first, second, third = cluster.hosts
    project.configure(environment_toml("staging", cluster, waves=[1, "50%"], run_once=RUN_ONCE,
                                       post_switch=POST_SWITCH, on_wave_failure="keep"))
    try:
        said, old, new = fail_the_second_wave(project, cluster, tmp_path)
    finally:
        project.configure(environment_toml("staging", cluster, waves=[1, "50%"], run_once=RUN_ONCE,
                                           post_switch=POST_SWITCH))

    assert "each host this run switched keeps the release" in said
    assert live(first, path) == new  # the first wave passed and keeps it
    assert installed(first, path)[APP] == "1.1"
    assert live(second, path) == old  # switched back by its failed check
    assert live(third, path) == old  # the third wave never started


def test_a_failed_run_once_switches_no_host(project: DeployProject, cluster: SshCluster, tmp_path: Path) -> None:
    path = cluster.deploy_path
    for host in cluster.hosts:
        wipe(host, path)
    sh(cluster.hosts[0], f"touch {shlex.quote(path)}/fail-once")
    try:
        export(project, tmp_path / "out")
        done = playbook(project, tmp_path / "out")
    finally:
        sh(cluster.hosts[0], f"rm -f {shlex.quote(path)}/fail-once")

    assert done.returncode != 0
    assert "run-once failed (exit 1)" in done.stdout + done.stderr
    for host in cluster.hosts:
        assert live(host, path) is None  # staged, never switched
        assert_unlocked(host, path)
