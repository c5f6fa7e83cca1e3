"""Waves and release hooks against real sshd hosts and the real agent: what each host serves
after a wave fails, as `invoke status` and the host's own files say, and how often run-once ran."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deployproject import (
    APP,
    HEALTHCHECK,
    DeployProject,
    assert_unlocked,
    environment_toml,
    live,
    log_lines,
    new_cluster,
    reset,
    sh,
    ssh_project,
)
from tests.support.sshd import SshCluster

pytestmark = pytest.mark.ssh


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    with new_cluster(tmp_path_factory, 4) as started:
        yield started


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, cluster: SshCluster) -> DeployProject:
    return ssh_project(tmp_path_factory, cluster, "waves-project")


def marker(cluster: SshCluster) -> str:
    """A file whose presence on a host makes that host's post-switch check fail."""
    return f"{cluster.deploy_path}/fail-post-switch"


def fleet_settings(project: DeployProject, cluster: SshCluster, **settings: Any) -> None:
    """A new app version to ship, and staging with `settings`; no host fails its check yet."""
    for host in cluster.hosts:
        sh(host, f"rm -f {shlex.quote(marker(cluster))}")
    project.new_version()
    project.configure(environment_toml("staging", cluster, healthcheck=HEALTHCHECK, **settings))


def status_is_clean(project: DeployProject, releases: dict[str, str]) -> None:
    """`invoke status` exits 0 and reports each host on the release given, with no drift."""
    outcome = project.invoke("status", "--env", "staging", "--json")
    assert outcome.code == 0, outcome.output
    found = {entry["host"]: entry for entry in json.loads(outcome.output[outcome.output.index("["):])}
    assert {host: entry["release"] for host, entry in found.items()} == releases
    assert all(not entry["problems"] for entry in found.values()), outcome.output


def test_a_post_switch_failure_in_the_second_wave_puts_every_host_back_on_its_release(
    project: DeployProject, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    first = reset(project, cluster)
    fleet_settings(project, cluster, waves=[1, "50%"], post_switch=f"test ! -e {marker(cluster)}")
    second = cluster.hosts[1]
    sh(second, f"touch {shlex.quote(marker(cluster))}")

    outcome = project.deploy("--yes")

    outcome.assert_clean()
    assert outcome.code == 1, outcome.output
    rows = outcome.summary()
    first_host, failing, *later = (host.spec() for host in cluster.hosts)
    assert rows[first_host]["result"].startswith("switched back: wave 2 failed")
    assert rows[failing]["result"] == "switched back: post-switch check failed"
    assert {rows[name]["result"].split(":")[0] for name in later} == {"not switched"}
    assert f"{failing}: post-switch exit 1" in outcome.output
    assert {row["serves"] for row in rows.values()} == {first}
    status_is_clean(project, {host.spec(): first for host in cluster.hosts})
    for host in cluster.hosts:
        assert live(host, path) == first
        assert_unlocked(host, path)
    switched = [entry for entry in log_lines(second, path) if "post_switch" in entry]
    assert switched[-1]["post_switch"]["exit"] == 1 and switched[-1]["result"] == "switched back"


def test_with_on_wave_failure_keep_the_waves_that_passed_stay_switched(
    project: DeployProject, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    first = reset(project, cluster)
    fleet_settings(project, cluster, waves=[1, "50%"], post_switch=f"test ! -e {marker(cluster)}",
                   on_wave_failure="keep")
    sh(cluster.hosts[1], f"touch {shlex.quote(marker(cluster))}")

    outcome = project.deploy("--yes")

    assert outcome.code == 1, outcome.output
    canary = live(cluster.hosts[0], path)
    assert canary not in (None, first)
    assert [live(host, path) for host in cluster.hosts[1:]] == [first] * 3
    assert "MIXED" in outcome.output
    # status reports the split (and nothing else) until the fleet agrees again.
    outcome = project.invoke("status", "--env", "staging", "--json")
    found = {entry["host"]: entry for entry in json.loads(outcome.output[outcome.output.index("["):])}
    assert outcome.code == 1 and found[cluster.hosts[0].spec()]["release"] == canary
    assert {entry["release"] for name, entry in found.items() if name != cluster.hosts[0].spec()} == {first}
    assert all("while other hosts run" in problem for entry in found.values() for problem in entry["problems"])


def test_run_once_runs_exactly_once_in_the_new_releases_venv_before_any_switch(
    project: DeployProject, cluster: SshCluster, tmp_path: Path
) -> None:
    path = cluster.deploy_path
    first = reset(project, cluster)
    count = tmp_path / "run-once.log"  # outside the deploy path: every host sees the same file
    # What it records: the release it ran in, its venv's Python, and what the first host served then.
    script = (f"import sys, os, {APP}; print(os.environ['PINSHIP_RELEASE'], sys.prefix, "
              f"os.readlink('{path}/current'))")
    fleet_settings(project, cluster, waves=["50%"], run_once=f"python -c {shlex.quote(script)} >> {count}")

    outcome = project.deploy_ok("--yes")

    [line] = count.read_text().splitlines()
    release, prefix, serving = line.split()
    assert release == live(cluster.hosts[0], path) and release != first
    assert prefix == f"{path}/releases/{release}/venv"
    assert serving == f"releases/{first}"  # nobody had switched yet
    assert f"{cluster.hosts[0].spec()}: run-once exit 0" in outcome.output
    assert "waves: 1: " in outcome.output
    [entry] = [e for e in log_lines(cluster.hosts[0], path) if "run_once" in e]
    assert entry["run_once"]["exit"] == 0 and entry["release"] == release


def test_a_failing_run_once_switches_no_host(project: DeployProject, cluster: SshCluster) -> None:
    path = cluster.deploy_path
    first = reset(project, cluster)
    fleet_settings(project, cluster, run_once="echo no database >&2; exit 3")

    outcome = project.deploy("--yes")

    outcome.assert_clean()
    assert outcome.code == 1, outcome.output
    assert "run-once failed (exit 3)" in outcome.output and "no database" in outcome.output
    for host in cluster.hosts:
        assert live(host, path) == first
        assert_unlocked(host, path)


def test_the_dry_run_names_each_waves_hosts_and_the_run_once_host(project: DeployProject,
                                                                  cluster: SshCluster) -> None:
    reset(project, cluster)
    fleet_settings(project, cluster, waves=[1, "50%", "100%"], run_once="true", max_failures="25%")

    outcome = project.deploy_ok("--dry-run")

    names = [host.spec() for host in cluster.hosts]
    assert "waves (each checked before the next; 1 host may fail):" in outcome.output
    assert f'  wave 1 (1): {names[0]}' in outcome.output
    assert f'  wave 2 ("50%"): {names[1]}' in outcome.output
    assert f'  wave 3 ("100%"): {names[2]}, {names[3]}' in outcome.output
    assert f"run-once runs on {names[0]}" in outcome.output


def test_promote_switches_in_waves_and_puts_the_first_wave_back_when_the_second_fails(
    project: DeployProject, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    first = reset(project, cluster)
    source, target = cluster.hosts[:2], cluster.hosts[2:]
    for host in cluster.hosts:
        sh(host, f"rm -f {shlex.quote(marker(cluster))}")
    project.new_version()
    project.configure(environment_toml("staging", cluster, source, healthcheck=HEALTHCHECK)
                      + environment_toml("production", cluster, target, waves=[1],
                                         post_switch=f"test ! -e {marker(cluster)}"))
    project.deploy_ok("--yes")
    promoted = live(source[0], path)
    sh(target[1], f"touch {shlex.quote(marker(cluster))}")

    outcome = project.invoke("promote", "--from", "staging", "--to", "production", "--yes")

    outcome.assert_clean()
    assert outcome.code == 1, outcome.output
    assert [live(host, path) for host in target] == [first, first] and promoted != first
    rows = outcome.summary()
    assert rows[target[0].spec()]["result"].startswith("switched back: wave 2 failed")
    for host in target:
        assert_unlocked(host, path)


def test_a_post_switch_check_that_outlives_hook_timeout_fails_and_its_host_goes_back(
    project: DeployProject, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    first = reset(project, cluster)
    fleet_settings(project, cluster, post_switch="sleep 30", hook_timeout=1, max_failures="100%")

    outcome = project.deploy("--yes", "--hosts", cluster.hosts[0].spec())

    assert outcome.code == 1, outcome.output
    assert "post-switch check failed (exit 124)" in outcome.output and "timed out after 1" in outcome.output
    assert live(cluster.hosts[0], path) == first and outcome.seconds < 25
    assert_unlocked(cluster.hosts[0], path)
