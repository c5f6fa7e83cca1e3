"""status, releases, deploy --dry-run and promote against real sshd hosts."""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deployproject import (
    APP,
    HEALTHCHECK,
    DeployProject,
    assert_serving_complete_release,
    environment_toml,
    live,
    new_cluster,
    new_project,
    read,
    sh,
    store,
    tree,
    wipe,
)
from tests.support.sshd import SshCluster

pytestmark = pytest.mark.ssh
SITE = "current/venv/lib/python3*/site-packages"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    with new_cluster(tmp_path_factory, 3) as started:
        yield started


@pytest.fixture
def project(tmp_path_factory: pytest.TempPathFactory, cluster: SshCluster) -> DeployProject:
    """staging = the first two hosts, production = the third; every host starts empty."""
    for host in cluster.hosts:
        wipe(host, cluster.deploy_path)
    made = new_project(tmp_path_factory, "ops")
    cluster.write_known_hosts(made.root / "known_hosts")
    made.configure(
        environment_toml("staging", cluster, cluster.hosts[:2], healthcheck=HEALTHCHECK)
        + environment_toml("production", cluster, cluster.hosts[2:], confirm=True, healthcheck=HEALTHCHECK)
    )
    return made


def _on_every_staging_host(project: DeployProject, cluster: SshCluster) -> str:
    project.deploy_ok()
    ids = {assert_serving_complete_release(h, cluster.deploy_path) for h in cluster.hosts[:2]}
    assert len(ids) == 1
    return ids.pop()


def test_status_is_clean_and_exits_0_when_every_host_runs_its_release_untouched(
    project: DeployProject, cluster: SshCluster
) -> None:
    release = _on_every_staging_host(project, cluster)
    outcome = project.invoke("status", "--env", "staging")
    assert outcome.code == 0, outcome.output
    for host in cluster.hosts[:2]:
        row = next(line for line in outcome.output.splitlines() if line.startswith(host.spec().split(":")[0]))
        assert release in row and row.rstrip().endswith("clean")
    as_json = json.loads(project.invoke("status", "--env", "staging", "--json").output)
    assert {entry["release"] for entry in as_json} == {release}
    assert all(entry["problems"] == [] and entry["deployed_by"] for entry in as_json)


def test_status_names_the_host_whose_venv_lost_a_package_or_had_a_file_edited(
    project: DeployProject, cluster: SshCluster
) -> None:
    _on_every_staging_host(project, cluster)
    first, second = cluster.hosts[:2]
    path = shlex.quote(cluster.deploy_path)
    sh(first, f"cd {path} && rm -rf {SITE}/beta {SITE}/beta-1.0.dist-info")
    sh(second, f"cd {path} && echo 'tampered = True' >> $(echo {SITE}/alpha/__init__.py)")

    outcome = project.invoke("status", "--env", "staging")

    assert outcome.code == 1
    assert f"{first.spec()}: missing from the live venv: beta 1.0" in outcome.output
    assert f"{second.spec()}: file changed after install: alpha/__init__.py (alpha, changed)" in outcome.output


def test_status_flags_a_host_left_on_an_older_release_and_a_lock_that_moved_on(
    project: DeployProject, cluster: SshCluster
) -> None:
    old = _on_every_staging_host(project, cluster)
    project.set_version("2.0")
    first, second = cluster.hosts[:2]
    assert project.deploy("--hosts", second.spec()).code == 0
    new = live(second, cluster.deploy_path)

    outcome = project.invoke("status", "--env", "staging")

    assert outcome.code == 1
    assert f"{first.spec()}: on release {old} while other hosts run {new}" in outcome.output
    assert f"{second.spec()}: on release {new} while other hosts run {old}" in outcome.output


def test_status_says_when_the_local_lock_no_longer_matches_what_is_live(
    project: DeployProject, cluster: SshCluster
) -> None:
    _on_every_staging_host(project, cluster)
    lock = project.root / "requirements" / "prod.txt"
    # As if gamma had been dropped from the deploy layer and relocked since the deploy.
    kept = lock.read_text().split("gamma==")[0]
    lock.write_text(kept)

    outcome = project.invoke("status", "--env", "staging")

    assert outcome.code == 1
    for host in cluster.hosts[:2]:
        assert f"{host.spec()}: live release differs from the local lock: - gamma 1.0" in outcome.output


def test_releases_lists_newest_first_and_marks_live_and_previous(project: DeployProject, cluster: SshCluster) -> None:
    first = _on_every_staging_host(project, cluster)
    project.set_version("2.0")
    second = _on_every_staging_host(project, cluster)

    outcome = project.invoke("releases", "--env", "staging")

    assert outcome.code == 0, outcome.output
    host_block = outcome.output.split(f"{cluster.hosts[0].spec()}:")[1].split(f"{cluster.hosts[1].spec()}:")[0]
    lines = [line.split() for line in host_block.strip().splitlines()]
    assert [line[0] for line in lines] == [second, first]
    assert lines[0][-1] == "live" and lines[1][-1] == "previous"
    assert lines[0][2] == "2.0" and lines[1][2] == "1.0"


def test_a_dry_run_shows_the_plan_and_leaves_every_host_byte_identical(
    project: DeployProject, cluster: SshCluster
) -> None:
    _on_every_staging_host(project, cluster)
    project.set_version("2.0")
    before = {h.address: tree(h, cluster.deploy_path) for h in cluster.hosts}
    local_before = _files(project.root / ".deploy")

    outcome = project.deploy("--dry-run")

    assert outcome.code == 0, outcome.output
    for host in cluster.hosts[:2]:
        assert f"{host.spec()}: " in outcome.output
    assert outcome.output.count("send 1 wheel ") == 2
    assert f"~ {APP} 1.0 → 2.0" in outcome.output
    assert {h.address: tree(h, cluster.deploy_path) for h in cluster.hosts} == before
    # The new app wheel was built for the plan, but into a scratch folder: the cache is as it was.
    assert _files(project.root / ".deploy") == local_before


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def _forget_cached(project: DeployProject, *names: str) -> None:
    """The local build cache without these packages' wheels: another machine's checkout."""
    cache = project.root / ".deploy" / "cache"
    for wheel in cache.glob("wheels/*/*.whl"):
        if wheel.name.split("-")[0] in names:
            shutil.rmtree(wheel.parent)
    built = json.loads((cache / "built.json").read_text())
    (cache / "built.json").write_text(json.dumps({k: v for k, v in built.items() if not k.startswith("app ")}))


def test_promote_ships_the_staging_release_fetching_the_wheels_the_local_lock_vouches_for(
    project: DeployProject, cluster: SshCluster
) -> None:
    release = _on_every_staging_host(project, cluster)
    manifest = json.loads(read(cluster.hosts[0], f"{cluster.deploy_path}/current/manifest.json"))
    # Another checkout of the same commit, offline: it lacks the locked wheels and the app's.
    _forget_cached(project, "alpha", "beta", APP)
    production = cluster.hosts[2]

    outcome = project.invoke("promote", "--from", "staging", "--to", "production", "--yes")

    assert outcome.code == 0, outcome.output
    assert "fetching alpha-1.0" in outcome.output and "fetching beta-1.0" in outcome.output
    assert f"fetching {APP}" not in outcome.output  # the app's wheel is rebuilt here, byte for byte
    assert assert_serving_complete_release(production, cluster.deploy_path) == release
    promoted = json.loads(read(production, f"{cluster.deploy_path}/current/manifest.json"))
    assert [(w["name"], w["sha256"]) for w in promoted["wheels"]] == [
        (w["name"], w["sha256"]) for w in manifest["wheels"]
    ]
    assert store(production, cluster.deploy_path) == {w["sha256"] for w in manifest["wheels"]}


def test_promote_refuses_a_release_this_checkout_does_not_build(project: DeployProject, cluster: SshCluster) -> None:
    release = _on_every_staging_host(project, cluster)
    project.set_version("9.9")  # the source moved on: its app wheel is not the one on staging

    outcome = project.invoke("promote", "--from", "staging", "--to", "production", "--yes")

    assert outcome.code == 1
    assert f"release {release} live on 'staging' is not what this checkout builds" in outcome.output
    assert f"{APP}: {cluster.hosts[0].spec()} has {APP}-1.0-" in outcome.output
    assert f"this checkout builds {APP}-9.9-" in outcome.output
    assert "fix: check out the commit it was deployed from" in outcome.output
    assert live(cluster.hosts[2], cluster.deploy_path) is None


def test_promote_refuses_a_source_whose_hosts_disagree(project: DeployProject, cluster: SshCluster) -> None:
    _on_every_staging_host(project, cluster)
    project.set_version("2.0")
    assert project.deploy("--hosts", cluster.hosts[1].spec()).code == 0

    outcome = project.invoke("promote", "--from", "staging", "--to", "production", "--yes")

    assert outcome.code == 1
    assert "do not agree on one live release" in outcome.output
    assert live(cluster.hosts[2], cluster.deploy_path) is None


def test_an_unreachable_host_is_named_once_on_each_of_its_lines_in_status_and_in_the_plan(
    project: DeployProject, cluster: SshCluster
) -> None:
    _on_every_staging_host(project, cluster)
    down = cluster.hosts[0]
    project.new_version()
    down.kill()
    try:
        status = project.invoke("status", "--env", "staging")
        planned = project.deploy("--dry-run")
    finally:
        down.start()

    name = down.spec()
    assert status.code == 1, status.output
    assert f"{name}: unreachable" in status.output
    assert planned.code == 1, planned.output
    assert f"{name}: cannot plan: unreachable" in planned.output
    assert f"{cluster.hosts[1].spec()}: " in planned.output  # the host that answered is still planned for
    for output in (status.output, planned.output):
        lines = [line for line in output.splitlines() if name in line]
        assert lines and all(line.count(name) == 1 for line in lines), output
