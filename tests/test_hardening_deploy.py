"""The deploying side under hostile input, against real sshd hosts: flags that would become paths
on hosts, a staging host that lies to promote, a switch that fails half-way, a lock left behind.

Each test states what a user would check: the exit code, one clear line, and the files on hosts.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deployproject import (
    APP,
    INVOKE,
    DeployProject,
    assert_serving_complete_release,
    assert_unlocked,
    environment_toml,
    live,
    log_lines,
    new_cluster,
    new_project,
    read,
    reset,
    sh,
    staging_toml,
    tree,
)
from tests.support.sshd import SshCluster, SshHost

pytestmark = pytest.mark.ssh


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    with new_cluster(tmp_path_factory, 3) as started:
        yield started


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, cluster: SshCluster) -> DeployProject:
    made = new_project(tmp_path_factory, "hardening")
    shutil.copyfile(cluster.known_hosts, made.root / "known_hosts")
    made.configure(staging_toml(cluster))
    return made


def trees(cluster: SshCluster) -> dict[str, list[str]]:
    return {host.address: tree(host, cluster.deploy_path) for host in cluster.hosts}


@pytest.mark.parametrize("to", ["..", "../../srv", "/etc", "abc", "0123456789ab/..", "0123456789AB"])
def test_rollback_to_anything_but_a_release_id_is_refused_before_any_host_is_contacted(
    project: DeployProject, cluster: SshCluster, to: str
) -> None:
    reset(project, cluster)
    before = trees(cluster)

    outcome = project.invoke("rollback", "--env", "staging", "--to", to)

    assert outcome.code == 1
    assert f"error: --to {to}: not a release id (12 hex digits" in outcome.output
    assert "connecting" not in outcome.output  # no host was contacted
    assert trees(cluster) == before


def test_a_refused_rollback_to_an_absent_release_deletes_nothing_and_releases_every_lock(
    project: DeployProject, cluster: SshCluster
) -> None:
    first = reset(project, cluster)
    before = trees(cluster)

    outcome = project.invoke("rollback", "--env", "staging", "--to", "0123456789ab")

    assert outcome.code == 1
    assert "release 0123456789ab is not on this host" in outcome.output
    for host in cluster.hosts:
        assert_unlocked(host, cluster.deploy_path)
        assert live(host, cluster.deploy_path) == first
        # Only the log gained a line (the refusal): every release and wheel is still there.
        assert [line for line in tree(host, cluster.deploy_path) if "deploy.log" not in line] == [
            line for line in before[host.address] if "deploy.log" not in line
        ]


def _sabotage_current_on(host: SshHost, path: str) -> str:
    """A health check that, on `host` only, puts a real folder where `current` is: that host's
    switch then fails after staging passed everywhere (its health check runs with the lock held)."""
    quoted = shlex.quote(path)
    return (f"case \"$SSH_CONNECTION\" in *' {host.address} '*) rm {quoted}/current && mkdir {quoted}/current;; "
            f"esac; true")


def test_a_switch_that_fails_on_one_host_after_others_switched_releases_every_lock_and_says_what_each_serves(
    project: DeployProject, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    first = reset(project, cluster)
    broken = cluster.hosts[2]
    project.new_version()
    try:
        outcome = project.deploy("--healthcheck", _sabotage_current_on(broken, path))
        assert outcome.code == 1, outcome.output
        rows = outcome.summary()
        switched = {assert_serving_complete_release(h, path) for h in cluster.hosts[:2]}
        assert len(switched) == 1 and switched != {first}
        second = switched.pop()
        for host in cluster.hosts[:2]:
            assert rows[host.spec()]["result"] == "switched"
            assert rows[host.spec()]["serves"] == second
        assert rows[broken.spec()]["result"] == "switch failed"
        assert "MIXED: the hosts of 'staging' now serve different releases:" in outcome.output
        assert f"  {second}: {cluster.hosts[0].spec()}, {cluster.hosts[1].spec()}" in outcome.output
        assert f"  unknown (see its problem): {broken.spec()}" in outcome.output
        assert rows[broken.spec()]["serves"] == "-"  # a real folder where `current` was: no release
        assert "invoke rollback --env staging --hosts" in outcome.output
        for host in cluster.hosts:
            assert_unlocked(host, path)
        # The folder the agent did not make is left alone, and the failed attempt is logged.
        assert sh(broken, f"test -d {path}/current && ! test -L {path}/current && echo kept").strip() == "kept"
        assert log_lines(broken, path)[-1]["result"] != "ok"
    finally:
        sh(broken, f"rm -rf {path}/current && ln -s releases/{first} {path}/current")


def test_status_shows_a_held_lock_with_its_owner_and_age_and_exits_non_zero(
    project: DeployProject, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    reset(project, cluster)
    held = cluster.hosts[1]
    owner = {"user": "carol\x1b[2K\rroot", "machine": "ci-7", "pid": 4242, "since": "2026-01-02T03:04:05Z",
             "token": "feedface", "action": "deploy"}
    sh(held, f"mkdir {path}/.lock && printf %s {shlex.quote(json.dumps(owner))} > {path}/.lock/owner.json")
    try:
        outcome = project.invoke("status", "--env", "staging")
    finally:
        sh(held, f"rm -rf {path}/.lock")

    assert outcome.code == 1
    lines = [line for line in outcome.output.splitlines() if line.startswith(f"{held.spec()}: locked since")]
    assert len(lines) == 1, outcome.output
    assert "d ago by carol\\x1b[2K\\rroot@ci-7 pid 4242" in lines[0]
    assert "--break-lock" in lines[0]
    assert "\x1b" not in outcome.output and "\r" not in outcome.output
    others = [h for h in cluster.hosts if h is not held]
    assert not any(line.startswith(f"{h.spec()}: locked") for h in others for line in outcome.output.splitlines())


# promote: a staging host that lies


@pytest.fixture
def split(
    project: DeployProject, cluster: SshCluster, tmp_path: Path
) -> Iterator[tuple[list[SshHost], SshHost]]:
    """staging = the first two hosts, production = the third, which starts empty; the local build
    cache is put back afterwards (a test may take wheels out of it)."""
    reset(project, cluster)
    cache = project.root / ".deploy" / "cache"
    shutil.copytree(cache, tmp_path / "cache")
    staging, production = cluster.hosts[:2], cluster.hosts[2]
    sh(production, f"find {cluster.deploy_path} -mindepth 1 -maxdepth 1 -exec rm -rf {{}} +")
    project.configure(environment_toml("staging", cluster, staging) + environment_toml("production", cluster,
                                                                                       [production]))
    yield staging, production
    project.configure(staging_toml(cluster))
    for host in cluster.hosts:  # what a test forged on staging must not reach the next test
        sh(host, f"find {cluster.deploy_path} -mindepth 1 -maxdepth 1 -exec rm -rf {{}} +")
    shutil.rmtree(cache)
    shutil.copytree(tmp_path / "cache", cache)


def _edit_live_manifest(hosts: list[SshHost], path: str, edit: dict[str, object]) -> None:
    for host in hosts:
        manifest_file = f"{path}/current/manifest.json"
        manifest = json.loads(read(host, manifest_file))
        for wheel in manifest["wheels"]:
            if wheel["name"] == edit["name"]:
                wheel.update(edit)
        sh(host, f"printf %s {shlex.quote(json.dumps(manifest))} > {manifest_file}")


def test_promote_refuses_a_staging_manifest_whose_wheel_names_a_path(
    project: DeployProject, cluster: SshCluster, split: tuple[list[SshHost], SshHost], tmp_path: Path
) -> None:
    staging, production = split
    victim = tmp_path / "pwned-1.0-py3-none-any.whl"
    _edit_live_manifest(staging, cluster.deploy_path, {"name": "beta", "filename": str(victim)})
    _forget_beta(project)

    outcome = project.invoke("promote", "--from", "staging", "--to", "production", "--yes")

    assert outcome.code == 1
    assert f"error: {staging[0].spec()}: release " in outcome.output
    assert "manifest lists a malformed wheel entry" in outcome.output
    assert not victim.exists()
    assert live(production, cluster.deploy_path) is None


def test_promote_refuses_a_dependency_wheel_the_local_lock_does_not_vouch_for(
    project: DeployProject, cluster: SshCluster, split: tuple[list[SshHost], SshHost]
) -> None:
    staging, production = split
    path = cluster.deploy_path
    # An attacker on staging swaps beta's wheel for one of their own, store and manifest alike.
    for host in staging:
        original = sh(host, f"ls {path}/wheels/*/beta-1.0-py3-none-any.whl").strip()
        forged = f"{path}/forged.whl"
        sh(host, f"cp {original} {forged} && printf '# forged' >> {forged}")
        digest = sh(host, f"sha256sum {forged}").split()[0]
        sh(host, f"mkdir -p {path}/wheels/{digest} && mv {forged} {path}/wheels/{digest}/beta-1.0-py3-none-any.whl")
        _edit_live_manifest([host], path, {"name": "beta", "sha256": digest})

    outcome = project.invoke("promote", "--from", "staging", "--to", "production", "--yes")

    assert outcome.code == 1
    assert "fetching beta" not in outcome.output  # a wheel the lock does not name is never taken
    assert (f"beta: {staging[0].spec()} has beta-1.0-py3-none-any.whl (sha256 {digest[:16]}…), this checkout "
            "builds beta-1.0-py3-none-any.whl") in outcome.output
    assert live(production, path) is None


def test_promote_refuses_a_wheel_of_a_version_the_local_lock_does_not_pin(
    project: DeployProject, cluster: SshCluster, split: tuple[list[SshHost], SshHost]
) -> None:
    staging, production = split
    _edit_live_manifest(staging, cluster.deploy_path,
                        {"name": "beta", "version": "6.6", "filename": "beta-6.6-py3-none-any.whl"})

    outcome = project.invoke("promote", "--from", "staging", "--to", "production", "--yes")

    assert outcome.code == 1
    assert (f"error: {staging[0].spec()}: release {live(staging[0], cluster.deploy_path)} ships "
            "beta-6.6-py3-none-any.whl (sha256 ") in outcome.output
    assert "which the local deploy lock does not vouch for: refusing to promote it" in outcome.output
    assert live(production, cluster.deploy_path) is None


def test_promote_refuses_a_release_whose_app_wheel_was_forged_on_staging(
    project: DeployProject, cluster: SshCluster, split: tuple[list[SshHost], SshHost]
) -> None:
    staging, production = split
    path = cluster.deploy_path
    release = live(staging[0], path)
    # A consistent forgery: a new release folder whose lock, id and manifest all name another app
    # wheel, and `current` pointing at it; only the deploying side can tell it was never built.
    for host in staging:
        lock = read(host, f"{path}/releases/{release}/requirements.lock")
        forged_sha = "f" * 64
        lines = [line if not line.startswith(f"{APP}==") else f"{line.split(' ')[0]} --hash=sha256:{forged_sha}"
                 for line in lock.splitlines()]
        forged_lock = "\n".join(lines) + "\n"
        forged_id = hashlib.sha256(forged_lock.encode()).hexdigest()[:12]
        manifest = json.loads(read(host, f"{path}/releases/{release}/manifest.json"))
        for wheel in manifest["wheels"]:
            if wheel["name"] == APP:
                wheel["sha256"] = forged_sha
        manifest["release"] = forged_id
        folder = f"{path}/releases/{forged_id}"
        sh(host, f"cp -a {path}/releases/{release} {folder} && printf %s {shlex.quote(forged_lock)} > "
                 f"{folder}/requirements.lock && printf %s {shlex.quote(json.dumps(manifest))} > "
                 f"{folder}/manifest.json && ln -sfn releases/{forged_id} {path}/current")

    outcome = project.invoke("promote", "--from", "staging", "--to", "production", "--yes")

    assert outcome.code == 1
    assert f"live on 'staging' is not what this checkout builds ({release})" in outcome.output
    assert f"{APP}: {staging[0].spec()} has {APP}-1.0-py3-none-any.whl (sha256 ffffffffffffffff…)" in outcome.output
    assert live(production, path) is None


def _forget_beta(project: DeployProject) -> None:
    """Promote then has to ask staging for beta's wheel, as on another machine."""
    for wheel in (project.root / ".deploy" / "cache").glob("wheels/*/beta-*.whl"):
        shutil.rmtree(wheel.parent)


@pytest.mark.parametrize("garbage", ["garbage\\377", "[1,2]", '{\"wheels\": [1]}', '{\"wheels\": \"abc\"}'])
def test_a_dry_run_names_a_host_whose_live_manifest_is_malformed_and_plans_on(
    project: DeployProject, cluster: SshCluster, garbage: str
) -> None:
    release = reset(project, cluster)
    victim = cluster.hosts[0]
    manifest = f"{cluster.deploy_path}/releases/{release}/manifest.json"
    saved = read(victim, manifest)
    project.new_version()
    sh(victim, f"printf {shlex.quote(garbage)} > {manifest}")
    try:
        outcome = project.deploy("--dry-run")
    finally:
        sh(victim, f"printf %s {shlex.quote(saved)} > {manifest}")

    assert outcome.code == 0, outcome.output  # a deploy does not read the live manifest: it would go ahead
    assert f"{victim.spec()}: release {release}" in outcome.output
    assert "(compared as empty)" in outcome.output
    for host in cluster.hosts[1:]:
        assert f"{host.spec()}: {release} → " in outcome.output


@pytest.mark.parametrize("task", ["status", "releases", "deploy"])
def test_output_read_through_head_ends_without_a_traceback(
    project: DeployProject, cluster: SshCluster, task: str
) -> None:
    reset(project, cluster)
    command = " ".join(shlex.quote(part) for part in (INVOKE, task, "--env", "staging"))
    done = subprocess.run(f"{command} | head -c 1", shell=True, cwd=project.root, env=project.env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert "Traceback" not in done.stderr and "Broken pipe" not in done.stderr, done.stderr
    for host in cluster.hosts:
        assert_unlocked(host, cluster.deploy_path)
