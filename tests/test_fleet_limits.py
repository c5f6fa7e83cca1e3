"""The open-file limit (issue 16): a run raises it as far as this machine allows, so a fleet no
longer fails host by host with "[Errno 24] Too many open files"; a fleet that needs more than it
can get is refused in one line before any host is contacted."""

from __future__ import annotations

import resource
import subprocess
from collections.abc import Callable, Iterator

import pytest

from tests.deployproject import (
    INVOKE,
    DeployProject,
    Outcome,
    environment_toml,
    finish,
    live,
    new_cluster,
    new_project,
)
from tests.support.sshd import SshCluster

HOSTS = 20


def limited(soft: int, hard: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def run_limited(project: DeployProject, soft: int, hard: int, *args: str) -> Outcome:
    """`invoke ARGS` started as a shell with `ulimit -Sn soft -Hn hard` would start it."""
    process = subprocess.Popen([INVOKE, *args], cwd=project.root, env=project.env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=limited(soft, hard))
    return finish(process, 300)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    with new_cluster(tmp_path_factory, HOSTS) as started:
        yield started


@pytest.mark.ssh
@pytest.mark.parametrize("keep_alive", [0, 60])
def test_a_fleet_deploys_under_a_low_soft_limit_by_raising_it(
    tmp_path_factory: pytest.TempPathFactory, cluster: SshCluster, keep_alive: int
) -> None:
    project = new_project(tmp_path_factory, f"low-soft-limit-{keep_alive}")
    (project.root / "known_hosts").write_text(cluster.known_hosts.read_text())
    project.configure(environment_toml("fleet", cluster, keep_alive=keep_alive, parallel=10))
    try:
        # 40 files: less than a keeper holds for 20 hosts, or a direct run while it sends wheels.
        outcome = run_limited(project, 40, 4096, "deploy", "--env", "fleet")
    finally:
        project.invoke("disconnect", "--env", "fleet")

    assert outcome.code == 0, outcome.output
    assert "Too many open files" not in outcome.output
    assert len({live(host, cluster.deploy_path) for host in cluster.hosts}) == 1
    assert None not in {live(host, cluster.deploy_path) for host in cluster.hosts}


def test_a_fleet_that_needs_more_files_than_the_hard_limit_is_refused_before_any_host_is_contacted(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    project = new_project(tmp_path_factory, "low-hard-limit")
    # Nothing listens on these: a run that tried them would say "unreachable", not what is checked here.
    hosts = [f"root@127.0.{n // 250 + 10}.{n % 250 + 2}:2222" for n in range(300)]
    (project.root / "known_hosts").write_text("")
    project.configure("\n[tool.deploy.environments.fleet]\npath = \"/srv/app\"\nknown-hosts = \"known_hosts\"\n"
                      f"keep-alive = 0\nhosts = [{', '.join(f'{h!r}' for h in hosts)}]\n".replace("'", '"'))

    for command in (["deploy", "--env", "fleet"], ["status", "--env", "fleet"], ["rollback", "--env", "fleet"]):
        outcome = run_limited(project, 256, 512, *command)

        assert outcome.code == 1, outcome.output
        lines = [line for line in outcome.output.splitlines() if line.strip()]
        assert lines[0].startswith("error: 'fleet' has 300 hosts, which need about"), outcome.output
        assert "this machine lets a process open 512 (hard limit: 512)" in lines[0], outcome.output
        assert "ulimit -n" in outcome.output and "--hosts" in outcome.output
        assert "unreachable" not in outcome.output and "127.0.10.2" not in outcome.output, outcome.output
