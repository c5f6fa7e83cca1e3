"""`invoke export --to ansible` against real sshd hosts: ansible-playbook (from the dev lock)
installs the release, and `invoke status` then finds every host on it without drift."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deployproject import (
    APP,
    SHIPPED,
    DeployProject,
    Outcome,
    assert_serving_complete_release,
    assert_unlocked,
    environment_toml,
    installed,
    live,
    log_lines,
    new_cluster,
    new_project,
    releases,
    sh,
    store,
    wipe,
)
from tests.support.sshd import SshCluster

pytestmark = pytest.mark.ssh

PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    with new_cluster(tmp_path_factory, 3) as started:
        yield started


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, cluster: SshCluster) -> DeployProject:
    made = new_project(tmp_path_factory, "export-project")
    shutil.copyfile(cluster.known_hosts, made.root / "known_hosts")
    made.configure(environment_toml("staging", cluster, healthcheck=f"python -c 'import {APP}, alpha'",
                                    max_failures=1))
    return made


def fresh_hosts(cluster: SshCluster) -> None:
    for host in cluster.hosts:
        wipe(host, cluster.deploy_path)


def export(project: DeployProject, out: Path, *args: str) -> Outcome:
    outcome = project.invoke("export", "--env", "staging", "--to", "ansible", "--out", str(out), *args)
    assert outcome.code == 0, outcome.output
    return outcome


def playbook(project: DeployProject, out: Path) -> subprocess.CompletedProcess[str]:
    """ansible-playbook as a user runs it, from the project, with nothing of this machine's Ansible
    or SSH configuration (HOME is the test's own)."""
    config = out.parent / "ansible.cfg"
    config.write_text("[defaults]\n")
    env = {**project.env, "HOME": os.environ["HOME"], "ANSIBLE_NOCOLOR": "1", "ANSIBLE_CONFIG": str(config),
           "ANSIBLE_LOCAL_TEMP": str(out.parent / "ansible-tmp"), "ANSIBLE_FORKS": "5"}
    env.pop("SSH_AUTH_SOCK", None)
    return subprocess.run([PLAYBOOK, "-i", str(out / "inventory.ini"), str(out / "playbook.yml")],
                          cwd=project.root, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_the_exported_playbook_installs_the_release_and_status_finds_no_drift(
    project: DeployProject, cluster: SshCluster, tmp_path: Path
) -> None:
    fresh_hosts(cluster)
    out = tmp_path / "ansible"
    outcome = export(project, out)
    manifest = json.loads(next((out / "releases").glob("*/manifest.json")).read_text())
    release = manifest["release"]
    assert f"exported release {release}" in outcome.output
    assert f"ansible-playbook -i {out}/inventory.ini {out}/playbook.yml" in outcome.output
    # The release as content-addressed files: every wheel under its own sha256, nothing else.
    assert {p.parent.name for p in (out / "wheels").glob("*/*.whl")} == {w["sha256"] for w in manifest["wheels"]}
    assert (out / "known_hosts").read_text() == (project.root / "known_hosts").read_text()
    assert "StrictHostKeyChecking=yes" in (out / "inventory.ini").read_text()

    done = playbook(project, out)

    assert done.returncode == 0, done.stdout + done.stderr
    # The wheels went in one archive per host, not one copy per wheel, and nothing of it stays.
    assert "(item=" not in done.stdout, done.stdout
    for host in cluster.hosts:
        assert sh(host, f"ls -A {cluster.deploy_path}/wheels/.incoming") == ""
        assert assert_serving_complete_release(host, cluster.deploy_path) == release
        assert installed(host, cluster.deploy_path) == {**SHIPPED, APP: "1.0"}
        assert store(host, cluster.deploy_path) == {w["sha256"] for w in manifest["wheels"]}
        [entry] = log_lines(host, cluster.deploy_path)
        assert (entry["action"], entry["release"], entry["result"]) == ("deploy", release, "ok")
        assert_unlocked(host, cluster.deploy_path)
    status = project.invoke("status", "--env", "staging")
    assert status.code == 0, status.output
    assert status.output.count(release) == len(cluster.hosts)
    assert "problem" not in status.output

    # The same release again: a deploy finds it live everywhere, and a second playbook run changes nothing.
    again = project.deploy("--yes")
    assert again.code == 0 and {row["result"] for row in again.summary().values()} == {"unchanged"}, again.output
    assert playbook(project, out).returncode == 0
    assert all(len(log_lines(host, cluster.deploy_path)) == 1 for host in cluster.hosts)


def test_a_tampered_wheel_fails_the_hosts_that_need_it_and_past_max_failures_none_switches(
    project: DeployProject, cluster: SshCluster, tmp_path: Path
) -> None:
    fresh_hosts(cluster)
    first, *others = cluster.hosts
    path = cluster.deploy_path
    assert project.deploy("--yes").code == 0  # the app at 1.0 everywhere
    old = live(first, path)
    project.set_version("1.1")
    try:
        # The first host has the 1.1 release staged already (deployed, then rolled back): its store
        # holds the app's wheel, so nothing is sent to it.
        assert project.deploy("--hosts", first.spec()).code == 0
        new = live(first, path)
        assert project.invoke("rollback", "--env", "staging", "--hosts", first.spec()).code == 0
        out = tmp_path / "ansible"
        export(project, out)
        manifest = json.loads((out / "releases" / f"{new}" / "manifest.json").read_text())
        app = next(w for w in manifest["wheels"] if w["name"] == APP)
        (out / "wheels" / app["sha256"] / app["filename"]).write_bytes(b"not the wheel the lock names")

        done = playbook(project, out)
    finally:
        project.set_version("1.0")

    said = done.stdout + done.stderr
    assert done.returncode != 0
    refused = {line.split("]")[0].removeprefix("fatal: [") for line in said.splitlines()
               if line.startswith("fatal: [") and "does not match its sha256" in line}
    assert refused == {host.address for host in others}, said
    assert f"2 of {len(cluster.hosts)} hosts failed staging, more than max-failures = 1: no host switches" in said
    for host in cluster.hosts:
        assert live(host, path) == old  # nobody switched: too many hosts failed staging
        assert app["sha256"] in store(host, path) if host is first else app["sha256"] not in store(host, path)
        assert releases(host, path) == ({old, new} if host is first else {old})  # no half-made release is left
        assert_unlocked(host, path)
    status = project.invoke("status", "--env", "staging")
    assert status.code == 0, status.output


def test_a_host_that_is_down_counts_against_max_failures_and_the_others_switch(
    project: DeployProject, cluster: SshCluster, tmp_path: Path
) -> None:
    fresh_hosts(cluster)
    *up, down = cluster.hosts
    down.kill()
    try:
        out = tmp_path / "ansible"
        outcome = export(project, out)  # max-failures = 1: one host the probe cannot reach is named, not fatal
        assert f"not probed (the playbook still lists it): {down.spec()}" in outcome.output, outcome.output
        release = json.loads(next((out / "releases").glob("*/manifest.json")).read_text())["release"]

        done = playbook(project, out)
    finally:
        down.start()

    said = done.stdout + done.stderr
    assert done.returncode != 0  # a host was unreachable: the run did not complete everywhere
    assert f"fatal: [{down.address}]: UNREACHABLE!" in said, said
    assert "more than max-failures" not in said, said
    for host in up:
        assert live(host, cluster.deploy_path) == release
        assert_unlocked(host, cluster.deploy_path)
    assert live(down, cluster.deploy_path) is None


def test_export_refuses_a_folder_it_did_not_write(project: DeployProject, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")

    outcome = project.invoke("export", "--env", "staging", "--to", "ansible", "--out", str(out))

    assert outcome.code == 1
    assert f"--out {out}: holds files that no export wrote" in outcome.output
    assert (out / "notes.txt").read_text() == "keep me\n"


def test_export_needs_a_folder_and_an_engine_it_knows(project: DeployProject, tmp_path: Path) -> None:
    missing = project.invoke("export", "--env", "staging", "--to", "ansible")
    assert missing.code == 2
    assert "export needs a folder to write" in missing.output
    other = project.invoke("export", "--env", "staging", "--to", "salt", "--out", str(tmp_path / "x"))
    assert other.code == 1
    assert "--to 'salt': pinship exports to ansible" in other.output
    assert not (tmp_path / "x").exists()
