"""The host agent's confinement, against real sshd hosts: what a buggy or hostile deploying side
can make it do, and what a host laid out wrongly makes it refuse.

Most tests drive the agent directly (SshTarget.call with crafted requests: what a deploying side
with a bug, or an attacker's, would send); a few run `invoke` where a user sees the behaviour.
Each judges by the files on the host: nothing outside the folders the agent made is ever deleted.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.config import load
from deploy.remote.bundle import AGENT_DIGEST, LOADER, first_request
from deploy.remote.ssh import SshTarget
from deploy.remote.target import MARK, AgentFailure
from tests.deployproject import (
    DeployProject,
    assert_serving_complete_release,
    assert_unlocked,
    live,
    log_lines,
    new_cluster,
    releases,
    reset,
    sh,
    ssh_project,
    tree,
)
from tests.support.sshd import SshCluster, SshHost

pytestmark = pytest.mark.ssh

NOT_IDS = ["..", "../..", "../victim", "../../x", "/", "ABCDEF012345", "0123456789a", "0123456789abc",
           "0123456789ab/..", "", " 0123456789a"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    with new_cluster(tmp_path_factory, 2) as started:
        yield started


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, cluster: SshCluster) -> DeployProject:
    return ssh_project(tmp_path_factory, cluster, "confinement-project")


@pytest.fixture
def host(project: DeployProject, cluster: SshCluster) -> SshHost:
    """The first host, serving the project's 1.0 release, with a victim folder in its deploy path."""
    reset(project, cluster)
    chosen = cluster.hosts[0]
    plant_victim(chosen, cluster.deploy_path)
    return chosen


@pytest.fixture
def agent(project: DeployProject, host: SshHost) -> Iterator[SshTarget]:
    """The first host's agent, called directly as the deploying side does."""
    env = load(project.root).environment("staging")
    target = SshTarget(env, env.hosts[0], project.root)
    yield target
    target.close()


def plant_victim(host: SshHost, path: str) -> None:
    """<path>/victim: what a stray delete would hit, dressed as a finished release of the agent."""
    victim = f"{path}/victim"
    sh(host, f"rm -rf {victim} && mkdir -p {victim}/0123456789ab && touch {victim}/keep "
             f"{victim}/0123456789ab/.pinship-release {victim}/0123456789ab/.complete")


def victim_intact(host: SshHost, path: str) -> None:
    listing = sh(host, f"cd {path}/victim && find . | sort").split()
    assert listing == [".", "./0123456789ab", "./0123456789ab/.complete", "./0123456789ab/.pinship-release",
                       "./keep"], listing


def owner() -> dict[str, Any]:
    return {"user": "mallory", "machine": "laptop", "pid": 4242, "since": "2026-01-02T03:04:05Z",
            "token": secrets.token_hex(8), "action": "deploy"}


def lock(agent: SshTarget) -> str:
    """Take the host's deploy lock as a deploy does; return its token."""
    held = owner()
    agent.call("lock", owner=held)
    return str(held["token"])


def failure(agent: SshTarget, op: str, **request: Any) -> AgentFailure:
    with pytest.raises(AgentFailure) as caught:
        agent.call(op, **request)
    return caught.value


def stage_request(lock_text: str = "alpha==1.0 --hash=sha256:" + "0" * 64 + "\n") -> dict[str, Any]:
    """A stage request whose release id is its lock's, as build.py makes it (and no wheels)."""
    release = hashlib.sha256(lock_text.encode()).hexdigest()[:12]
    return {"release": release, "lock": lock_text, "manifest": {"release": release, "wheels": []}}


LOG = {"action": "deploy", "release": None, "user": "mallory", "machine": "laptop", "time": "now",
       "environment": "staging"}


# A release id has one form, checked on the host before anything is touched.


def test_abort_stage_and_switch_refuse_a_release_that_is_not_an_id_and_delete_nothing(
    agent: SshTarget, host: SshHost, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    token = lock(agent)
    before = tree(host, path)

    for bad in NOT_IDS:
        for op, extra in (("abort", {}), ("switch", {}), ("stage", {"manifest": {"wheels": []}, "lock": ""})):
            caught = failure(agent, op, token=token, release=bad, log=LOG, reason="refused", **extra)
            assert caught.kind == "bad-request", (op, bad, caught)
            assert "is not a release id (12 lowercase hex digits)" in caught.message

    assert tree(host, path) == before
    victim_intact(host, path)
    agent.call("unlock", token=token)


def test_rollback_to_dot_dot_leaves_every_host_as_it_was(
    project: DeployProject, host: SshHost, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    first = assert_serving_complete_release(host, path)
    before = {h.address: tree(h, path) for h in cluster.hosts}

    for bad in ("..", "../victim"):
        outcome = project.invoke("rollback", "--env", "staging", "--to", bad)
        assert outcome.code != 0, outcome.output

    for each in cluster.hosts:
        sh(each, f"rm -rf {path}/.lock")  # a lock the deploying side failed to release is not what is judged
        assert tree(each, path) == before[each.address]
        assert assert_serving_complete_release(each, path) == first
    victim_intact(host, path)


def test_a_stage_request_must_name_wheels_plainly_and_its_release_must_be_its_locks(
    agent: SshTarget, host: SshHost, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    token = lock(agent)
    before = tree(host, path)
    good = "0" * 64
    wheels = [{"sha256": good, "filename": "../victim/keep.whl"}, {"sha256": good, "filename": "/tmp/x.whl"},
              {"sha256": good, "filename": ".hidden.whl"}, {"sha256": good, "filename": "a/b.whl"},
              {"sha256": good, "filename": "nul\0.whl"}, {"sha256": good, "filename": "alpha-1.0.tar.gz"},
              {"sha256": "A" * 64, "filename": "alpha-1.0-py3-none-any.whl"},
              {"sha256": "../" + "0" * 61, "filename": "alpha-1.0-py3-none-any.whl"}]

    for wheel in wheels:
        request = stage_request()
        request["manifest"]["wheels"] = [wheel]
        caught = failure(agent, "stage", token=token, **request)
        assert caught.kind == "bad-request", (wheel, caught)

    mismatched = dict(stage_request(), release="0123456789ab")
    assert "is not the id of the lock sent with it" in failure(agent, "stage", token=token, **mismatched).message
    assert tree(host, path) == before
    agent.call("unlock", token=token)


# Names read from the host that are not release ids are ignored: never deleted, never reported.


def test_prune_deletes_only_release_folders_the_agent_made(
    project: DeployProject, host: SshHost, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    strays = {"notes": "mkdir", "0123456789ab": "mkdir", "abcdefabcdef": f"ln -s {path}/victim/0123456789ab",
              "fedcba987654": "touch"}
    for name, make in strays.items():
        sh(host, f"{make} {path}/releases/{name}")
    first = assert_serving_complete_release(host, path)

    project.new_version()
    project.deploy_ok("--keep-releases", "1")
    project.new_version()
    outcome = project.deploy_ok("--keep-releases", "1")

    third = assert_serving_complete_release(host, path)
    # Kept: the live and the previous release, and everything the agent did not make.
    assert releases(host, path) == {third, live_previous(host, path), *strays}
    assert first not in releases(host, path)
    victim_intact(host, path)
    env = load(project.root).environment("staging")
    probe = SshTarget(env, env.hosts[0], project.root)
    try:
        assert set(probe.call("probe")["releases"]) == {third, live_previous(host, path)}
    finally:
        probe.close()
    assert "Traceback" not in outcome.output
    for name in strays:
        sh(host, f"rm -rf {path}/releases/{name}")


def live_previous(host: SshHost, path: str) -> str:
    return sh(host, f"cat {path}/.previous").strip()


def test_names_on_the_host_that_are_not_release_ids_are_never_reported_as_releases(
    agent: SshTarget, host: SshHost, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    first = assert_serving_complete_release(host, path)
    sh(host, f"echo ../victim > {path}/.previous")
    probe = agent.call("probe")
    assert probe["current"] == first
    assert probe["previous"] is None

    sh(host, f"ln -sfn victim/0123456789ab {path}/current")
    probe = agent.call("probe")
    assert probe["current"] is None
    assert any(f"{path}/current points to victim/0123456789ab" in line for line in probe["unsafe"]), probe["unsafe"]
    assert agent.call("status")["current"] is None
    sh(host, f"ln -sfn releases/{first} {path}/current")
    victim_intact(host, path)


# A deploy path laid out otherwise than the agent makes it: refused for every op that writes.


def swap_for_link(host: SshHost, path: str, name: str) -> None:
    """Replace <path>/<name> with a link to <path>/victim, keeping the real one aside."""
    sh(host, f"mv {path}/{name} {path}/{name}.real && ln -s {path}/victim {path}/{name}")


def restore(host: SshHost, path: str, name: str) -> None:
    sh(host, f"rm -rf {path}/{name} && mv {path}/{name}.real {path}/{name}")


def test_a_symlinked_releases_folder_is_refused_and_nothing_in_its_target_is_deleted(
    agent: SshTarget, host: SshHost, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    for op, request in (("stage", stage_request()), ("switch", {"release": "0123456789ab", "keep": 0}),
                        ("abort", {"release": "0123456789ab"})):
        token = lock(agent)  # taken while releases/ was real: the link appears mid-deploy
        swap_for_link(host, path, "releases")
        try:
            caught = failure(agent, op, token=token, log=LOG, **request)
            assert caught.kind == "unsafe-path", (op, caught)
            assert f"{path}/releases is a symbolic link (to {path}/victim)" in caught.message, caught.message
            if op != "stage":  # switch and abort release the lock they fail under
                assert_unlocked(host, path)
        finally:
            restore(host, path, "releases")
        agent.call("unlock", token=token)
        victim_intact(host, path)

    swap_for_link(host, path, "releases")
    try:
        refused = failure(agent, "lock", owner=owner())
        assert refused.kind == "unsafe-path"
        assert f"{path}/releases is a symbolic link" in refused.message
        status = agent.call("status")
        assert any(f"{path}/releases is a symbolic link" in line for line in status["unsafe"])
        assert status["releases"] == []
    finally:
        restore(host, path, "releases")
    assert_unlocked(host, path)
    victim_intact(host, path)


@pytest.mark.parametrize("name", ["wheels", "wheels/.incoming", "current", "deploy.log", ".agent"])
def test_a_symlinked_store_current_log_or_cache_is_refused_by_name(
    agent: SshTarget, host: SshHost, cluster: SshCluster, name: str
) -> None:
    path = cluster.deploy_path
    swap_for_link(host, path, name)
    try:
        caught = failure(agent, "lock", owner=owner())
        assert caught.kind == "unsafe-path"
        assert f"{path}/{name} " in caught.message
        assert any(line.startswith(f"{path}/{name} ") for line in agent.call("probe")["unsafe"])
    finally:
        restore(host, path, name)
    assert_unlocked(host, path)
    victim_intact(host, path)


def test_a_release_folder_of_another_user_is_refused_and_reported(
    agent: SshTarget, host: SshHost, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    sh(host, f"chown 65534 {path}/releases")
    try:
        caught = failure(agent, "lock", owner=owner())
        assert caught.kind == "unsafe-path"
        assert f"{path}/releases is owned by uid 65534, not by uid 0 that deploys" in caught.message
        assert f"{path}/releases is owned by uid 65534, not by uid 0 that deploys" in agent.call("status")["unsafe"]
    finally:
        sh(host, f"chown 0 {path}/releases")
    assert_unlocked(host, path)


def test_stage_never_deletes_a_folder_it_did_not_make_at_its_release_id(
    agent: SshTarget, host: SshHost, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    request = stage_request()
    sh(host, f"ln -s {path}/victim/0123456789ab {path}/releases/{request['release']}")
    token = lock(agent)
    try:
        caught = failure(agent, "stage", token=token, **request)
        assert caught.kind == "unsafe-path"
        assert f"{path}/releases/{request['release']} was not made by pinship" in caught.message
        victim_intact(host, path)
    finally:
        sh(host, f"rm {path}/releases/{request['release']}")
        agent.call("unlock", token=token)


# A switch that fails releases its lock, logs the attempt and says what the host serves.


def test_a_switch_that_fails_releases_the_lock_logs_it_and_says_what_is_live(
    agent: SshTarget, host: SshHost, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    first = assert_serving_complete_release(host, path)

    token = lock(agent)
    caught = failure(agent, "switch", token=token, release="0123456789ab", keep=5, log=LOG)
    assert caught.kind == "missing"
    assert caught.extra["current"] == first
    assert f"lock released; this host serves release {first}" in caught.message
    assert_unlocked(host, path)
    assert log_lines(host, path)[-1]["result"] == "failed"

    token = lock(agent)
    sh(host, f"rm {path}/current && mkdir {path}/current")  # appeared after the lock was taken
    try:
        caught = failure(agent, "switch", token=token, release=first, keep=5, log=LOG)
        assert caught.kind == "unsafe-path"
        assert caught.extra["current"] is None
        assert f"{path}/current is not a link pinship made" in caught.message
        assert_unlocked(host, path)
        entry = log_lines(host, path)[-1]
        assert (entry["result"], entry["current"]) == ("failed", None)
        assert not [n for n in sh(host, f"ls -a {path}").split() if n.startswith(".current-")]
    finally:
        sh(host, f"rmdir {path}/current && ln -s releases/{first} {path}/current")


# The deploy lock: shown by status, and --break-lock removes a link without following it.


def test_status_reports_a_held_lock_with_its_owner(agent: SshTarget, host: SshHost) -> None:
    assert agent.call("status")["lock"] is None
    held = owner()
    agent.call("lock", owner=held)
    shown = agent.call("status")["lock"]
    assert {key: shown[key] for key in ("user", "machine", "pid", "since", "action")} == {
        key: held[key] for key in ("user", "machine", "pid", "since", "action")}
    agent.call("unlock", token=held["token"])


def test_break_lock_removes_a_symlinked_lock_itself_and_never_its_target(
    project: DeployProject, agent: SshTarget, host: SshHost, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    sh(host, f"ln -s {path}/victim {path}/.lock")
    refused = failure(agent, "lock", owner=owner())
    assert refused.kind == "unsafe-path"
    assert "--break-lock" in refused.message
    victim_intact(host, path)

    project.new_version()
    outcome = project.deploy("--break-lock")

    assert outcome.code == 0, outcome.output
    victim_intact(host, path)
    assert_unlocked(host, path)
    sh(host, f"touch {path}/.lock")  # a plain file, too, is removed itself
    agent.call("lock", owner=owner(), **{"break": True})
    assert sh(host, f"test -d {path}/.lock && echo dir").strip() == "dir"
    sh(host, f"rm -rf {path}/.lock")


# read: three kinds of file, never through a link, never too large.


def test_read_returns_only_the_log_a_manifest_or_a_lock_and_never_through_a_link(
    agent: SshTarget, host: SshHost, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    first = assert_serving_complete_release(host, path)
    manifest = json.loads(agent.call("read", file=f"releases/{first}/manifest.json")["text"])
    assert manifest["release"] == first
    assert agent.call("read", file=f"releases/{first}/requirements.lock")["text"]
    assert agent.call("read", file="deploy.log")["text"]

    for name in ("../victim/keep", "victim/keep", ".lock/owner.json", f"releases/{first}/venv/pyvenv.cfg",
                 f"releases/{first}/../../victim/keep", "/etc/passwd", "releases/../deploy.log", 7):
        assert failure(agent, "read", file=name).kind == "bad-request", name

    sh(host, f"mv {path}/releases/{first}/requirements.lock {path}/keep.lock"
             f" && ln -s {path}/victim/keep {path}/releases/{first}/requirements.lock")
    try:
        caught = failure(agent, "read", file=f"releases/{first}/requirements.lock")
        assert caught.kind == "unsafe-path"
        assert "is a symbolic link: not read" in caught.message
    finally:
        lock_file = f"{path}/releases/{first}/requirements.lock"
        sh(host, f"rm {lock_file} && mv {path}/keep.lock {lock_file}")

    sh(host, f"cp {path}/deploy.log {path}/deploy.log.real && truncate -s 17M {path}/deploy.log")
    try:
        caught = failure(agent, "read", file="deploy.log")
        assert caught.kind == "too-large"
        assert "larger than 16 MB" in caught.message
    finally:
        sh(host, f"mv {path}/deploy.log.real {path}/deploy.log")


def test_releases_lists_nothing_through_a_symlinked_release(
    agent: SshTarget, host: SshHost, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    sh(host, f"ln -s {path}/victim/0123456789ab {path}/releases/0123456789ab")
    try:
        assert "0123456789ab" not in agent.call("probe")["releases"]
        assert "0123456789ab" not in [item["release"] for item in agent.call("status")["releases"]]
        assert failure(agent, "read", file="releases/0123456789ab/manifest.json").kind == "unsafe-path"
    finally:
        sh(host, f"rm {path}/releases/0123456789ab")
    assert live(host, path) in releases(host, path)


# The agent's compiled code is cached in <path>/.agent: loading code is running it.


def run_loader(path: Path) -> dict[str, Any]:
    """One session as a host runs it: the loader, then a probe, on this machine."""
    request = json.dumps({**first_request(), "op": "probe", "path": str(path)}) + "\n"
    done = subprocess.run([sys.executable, "-I", "-S", "-c", LOADER], input=request, capture_output=True,
                          text=True, check=True)
    [line] = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    reply: dict[str, Any] = json.loads(line[len(MARK):])
    return reply


def test_the_agent_cache_is_neither_written_nor_cleaned_through_a_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "code-someone-elses.bin").write_text("not the agent's")
    root = tmp_path / "deploy"
    root.mkdir()
    (root / ".agent").symlink_to(victim)

    reply = run_loader(root)

    assert reply["ok"] is True
    assert sorted(p.name for p in victim.iterdir()) == ["code-someone-elses.bin"]
    assert any(f"{root}/.agent is a symbolic link" in line for line in reply["result"]["unsafe"])


def test_cached_agent_code_of_another_user_is_never_loaded(tmp_path: Path) -> None:
    root = tmp_path / "deploy"
    root.mkdir()
    assert run_loader(root)["ok"] is True
    [cached] = (root / ".agent").glob(f"code-{AGENT_DIGEST[:32]}-*.bin")
    forged = compile("import sys\nsys.stdout.write('FORGED')\n", "pinship-agent", "exec")
    cached.write_bytes(marshal.dumps(forged))
    os.chown(cached, 65534, 65534)

    reply = run_loader(root)

    assert reply["ok"] is True  # the real agent answered, compiled afresh
    assert "FORGED" not in json.dumps(reply)


def test_a_deploy_to_a_host_whose_current_is_a_real_folder_names_it_and_changes_nothing(
    project: DeployProject, host: SshHost, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    first = assert_serving_complete_release(host, path)
    sh(host, f"mv {path}/current {path}/current.real && mkdir {path}/current && touch {path}/current/app.py")
    try:
        before = {h.address: tree(h, path) for h in cluster.hosts}
        project.new_version()

        outcome = project.deploy()

        assert outcome.code != 0
        assert f"{host.spec()}: {path}/current is not a symbolic link" in outcome.output, outcome.output
        assert {h.address: tree(h, path) for h in cluster.hosts} == before
        victim_intact(host, path)
    finally:
        sh(host, f"rm -rf {path}/current && mv {path}/current.real {path}/current")
    assert assert_serving_complete_release(host, path) == first
