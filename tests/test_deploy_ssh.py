"""`invoke deploy` and `invoke rollback` against real sshd hosts: what lands on each host."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator

import pytest

from tests.deployproject import (
    APP,
    SHIPPED,
    DeployProject,
    assert_serving_complete_release,
    assert_unlocked,
    environment_toml,
    installed,
    live,
    log_lines,
    new_cluster,
    read,
    releases,
    reset,
    ssh_project,
    store,
    tree,
)
from tests.support.sshd import SshCluster

pytestmark = pytest.mark.ssh


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    with new_cluster(tmp_path_factory, 3) as started:
        yield started


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, cluster: SshCluster) -> DeployProject:
    return ssh_project(tmp_path_factory, cluster, "ssh-project")


def test_a_first_deploy_switches_every_host_to_exactly_the_locked_set(
    project: DeployProject, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    release = reset(project, cluster, wipe_hosts=True)

    for host in cluster.hosts:
        assert assert_serving_complete_release(host, path) == release
        assert installed(host, path) == {**project.lock_pins(), APP: "1.0"}
        manifest = json.loads(read(host, f"{path}/current/manifest.json"))
        assert manifest["release"] == release
        shipped = {w["name"]: w for w in manifest["wheels"]}
        assert {name: w["version"] for name, w in shipped.items()} == {**SHIPPED, APP: "1.0"}
        lock = read(host, f"{path}/current/requirements.lock").splitlines()
        assert lock == [f"{n}=={w['version']} --hash=sha256:{w['sha256']}" for n, w in sorted(shipped.items())]
        # The store holds exactly the shipped wheels, by hash: no installer is shipped with them.
        assert store(host, path) == {w["sha256"] for w in shipped.values()}
        for wheel in shipped.values():
            size = host.run(f"stat -c %s {path}/wheels/{wheel['sha256']}/{shlex.quote(wheel['filename'])}")
            assert int(size.stdout) == wheel["size"]
        [entry] = log_lines(host, path)
        assert (entry["action"], entry["environment"], entry["release"], entry["result"]) == (
            "deploy", "staging", release, "ok")
        assert_unlocked(host, path)
    # The wheels' hashes in the release lock are the locked ones (gamma was built from its sdist).
    locked = (project.root / "requirements" / "prod.txt").read_text()
    for name in ("alpha", "beta"):
        sha = json.loads(read(cluster.hosts[0], f"{path}/current/manifest.json"))
        assert next(w["sha256"] for w in sha["wheels"] if w["name"] == name) in locked


def test_a_redeploy_sends_nothing_and_changes_nothing(project: DeployProject, cluster: SshCluster) -> None:
    path = cluster.deploy_path
    release = reset(project, cluster)
    before = {host.address: tree(host, path) for host in cluster.hosts}

    outcome = project.deploy_ok()

    rows = outcome.summary()
    assert {row["release"] for row in rows.values()} == {release}
    assert {row["result"] for row in rows.values()} == {"unchanged"}
    assert {row["sent"] for row in rows.values()} == {"0"}
    assert {host.address: tree(host, path) for host in cluster.hosts} == before


def test_a_new_app_version_sends_exactly_one_wheel_to_each_host(project: DeployProject, cluster: SshCluster) -> None:
    path = cluster.deploy_path
    first = reset(project, cluster)
    stores = {host.address: store(host, path) for host in cluster.hosts}

    version = project.new_version()
    outcome = project.deploy_ok()

    rows = outcome.summary()
    assert len(rows) == 3 and {row["result"] for row in rows.values()} == {"switched"}
    for host in cluster.hosts:
        second = assert_serving_complete_release(host, path)
        assert second != first
        [new] = store(host, path) - stores[host.address]
        manifest = json.loads(read(host, f"{path}/current/manifest.json"))
        assert next(w for w in manifest["wheels"] if w["sha256"] == new)["name"] == APP
        assert installed(host, path) == {**SHIPPED, APP: version}
        assert read(host, f"{path}/.previous").strip() == first
    assert outcome.output.count("sending 1 wheel ") == 3


def test_rollback_returns_every_host_to_the_previous_release_and_to_a_named_one(
    project: DeployProject, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    first = reset(project, cluster)
    version = project.new_version()
    project.deploy_ok()
    second = live(cluster.hosts[0], path)
    project.new_version()
    project.deploy_ok()
    third = live(cluster.hosts[0], path)
    assert len({first, second, third}) == 3

    back = project.invoke("rollback", "--env", "staging")
    assert back.code == 0, back.output
    for host in cluster.hosts:
        assert assert_serving_complete_release(host, path) == second
        assert installed(host, path)[APP] == version
        entry = log_lines(host, path)[-1]
        assert (entry["action"], entry["release"], entry["previous"]) == ("rollback", second, third)
        assert_unlocked(host, path)

    named = project.invoke("rollback", "--env", "staging", "--to", first)
    assert named.code == 0, named.output
    assert {row["release"] for row in named.summary().values()} == {first}
    for host in cluster.hosts:
        assert assert_serving_complete_release(host, path) == first
        assert installed(host, path)[APP] == "1.0"

    unknown = project.invoke("rollback", "--env", "staging", "--to", "0123456789ab")
    assert unknown.code != 0
    assert "release 0123456789ab is not on this host" in unknown.output
    assert {live(host, path) for host in cluster.hosts} == {first}


def test_hosts_limits_a_run_to_the_named_hosts(project: DeployProject, cluster: SshCluster) -> None:
    path = cluster.deploy_path
    first = reset(project, cluster)
    chosen, *others = cluster.hosts
    untouched = {host.address: tree(host, path) for host in others}

    project.new_version()
    outcome = project.deploy_ok("--hosts", chosen.spec())

    assert list(outcome.summary()) == [chosen.spec()]
    assert assert_serving_complete_release(chosen, path) != first
    assert {host.address: tree(host, path) for host in others} == untouched

    wrong = project.deploy("--hosts", "root@127.0.0.99:22")
    assert wrong.code != 0
    assert "root@127.0.0.99 is not a host of 'staging'" in wrong.output


def test_pruning_keeps_the_newest_releases_and_never_current_or_previous(
    project: DeployProject, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    ids = [reset(project, cluster)]
    for _ in range(3):
        project.new_version()
        project.deploy_ok("--keep-releases", "2")
        ids.append(assert_serving_complete_release(cluster.hosts[0], path))
    for host in cluster.hosts:
        assert releases(host, path) == set(ids[2:])

    # Back on the third release, then a new one: the third is now "previous", though the oldest kept.
    assert project.invoke("rollback", "--env", "staging").code == 0
    project.new_version()
    project.deploy_ok("--keep-releases", "1")
    newest = live(cluster.hosts[0], path)
    for host in cluster.hosts:
        assert releases(host, path) == {ids[2], newest}
        assert read(host, f"{path}/.previous").strip() == ids[2]
        assert assert_serving_complete_release(host, path) == newest
    assert project.invoke("rollback", "--env", "staging").code == 0
    assert {live(host, path) for host in cluster.hosts} == {ids[2]}


def test_an_environment_that_asks_for_confirmation_refuses_without_yes_or_a_terminal(
    project: DeployProject, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    reset(project, cluster)
    before = {host.address: tree(host, path) for host in cluster.hosts}
    project.new_version()

    refused = project.deploy(env="production")

    assert refused.code != 0
    assert "'production' asks for confirmation (confirm = true): run again with --yes" in refused.output
    assert {host.address: tree(host, path) for host in cluster.hosts} == before

    accepted = project.deploy_ok("--yes", env="production")
    assert {row["result"] for row in accepted.summary().values()} == {"switched"}


def test_an_ssh_environment_without_known_hosts_is_a_config_error(
    project: DeployProject, cluster: SshCluster
) -> None:
    project.configure(environment_toml("staging", cluster).replace('known-hosts = "known_hosts"\n', ""))
    outcome = project.deploy()
    assert outcome.code != 0
    assert "known-hosts is required for an SSH environment" in outcome.output
    assert "invoke trust --env staging" in outcome.output
