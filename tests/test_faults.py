"""Faults during a deploy, for real: each gives one clear message naming the host, and nothing is lost.

Under every fault here each host still serves a complete release: the one it served before, or
the new one if that host had already switched.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import time
from collections.abc import Iterator

import pytest

from tests.deployproject import (
    APP,
    SHIPPED,
    DeployProject,
    assert_serving_complete_release,
    assert_unlocked,
    finish,
    installed,
    log_lines,
    new_cluster,
    reset,
    sh,
    ssh_project,
    tree,
    wait_for_output,
)
from tests.support.sshd import SshCluster, SshHost

pytestmark = pytest.mark.ssh


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    with new_cluster(tmp_path_factory, 3) as started:
        yield started


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, cluster: SshCluster) -> DeployProject:
    return ssh_project(tmp_path_factory, cluster, "faults-project")


def assert_every_host_serves(cluster: SshCluster, expected: dict[str, str]) -> None:
    """Each host's `current` points at a complete release: the expected one; no lock is left."""
    for host in cluster.hosts:
        assert assert_serving_complete_release(host, cluster.deploy_path) == expected[host.address], host.address
        assert_unlocked(host, cluster.deploy_path)


def everywhere(cluster: SshCluster, release: str) -> dict[str, str]:
    return {host.address: release for host in cluster.hosts}


def agents_running(host: SshHost) -> bool:
    """Whether an agent (from a deploy that died, say) still works on this host."""
    for pid in host.processes():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if b"pinship-agent" in handle.read():
                    return True
        except OSError:
            continue
    return False


def wait_until_agents_finish(cluster: SshCluster, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while any(agents_running(host) for host in cluster.hosts):
        assert time.monotonic() < deadline, "agents of a dead deploy still run on the hosts"
        time.sleep(0.2)


def test_a_host_missing_from_known_hosts_fails_before_anything_is_sent(
    project: DeployProject, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    first = reset(project, cluster)
    stranger = cluster.hosts[2]
    cluster.write_known_hosts(project.root / "known_hosts", cluster.hosts[:2])
    before = tree(stranger, path)
    project.new_version()

    outcome = project.deploy()

    assert outcome.code != 0
    assert f"{stranger.spec()}: unknown host key" in outcome.output
    assert "invoke trust --env staging" in outcome.output
    assert tree(stranger, path) == before
    assert_every_host_serves(cluster, everywhere(cluster, first))


def test_a_changed_host_key_fails_loudly_and_nothing_is_sent(project: DeployProject, cluster: SshCluster) -> None:
    path = cluster.deploy_path
    first = reset(project, cluster)
    impostor = cluster.hosts[1]
    impostor.rotate_host_key()
    before = tree(impostor, path)
    project.new_version()

    outcome = project.deploy()

    assert outcome.code != 0
    assert f"{impostor.spec()}: HOST KEY CHANGED" in outcome.output
    assert tree(impostor, path) == before
    assert_every_host_serves(cluster, everywhere(cluster, first))


def test_an_unreachable_host_fails_and_max_failures_decides_whether_the_others_switch(
    project: DeployProject, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    first = reset(project, cluster)
    down = cluster.hosts[0]
    down.kill()
    project.new_version()

    outcome = project.deploy()

    assert outcome.code != 0
    assert f"{down.spec()}: unreachable" in outcome.output
    down.start()
    assert_every_host_serves(cluster, everywhere(cluster, first))

    down.kill()
    tolerant = project.deploy("--max-failures", "1")
    down.start()
    assert tolerant.code != 0
    assert f"{down.spec()}: unreachable" in tolerant.output
    second = assert_serving_complete_release(cluster.hosts[1], path)
    assert second != first
    assert_every_host_serves(cluster, {down.address: first, **{h.address: second for h in cluster.hosts[1:]}})


def test_a_host_that_hangs_before_answering_fails_in_bounded_time(
    project: DeployProject, cluster: SshCluster
) -> None:
    first = reset(project, cluster)
    hung = cluster.hosts[2]
    project.new_version()
    hung.pause()
    try:
        outcome = project.deploy("--connect-timeout", "3", "--command-timeout", "10", timeout=60)
    finally:
        hung.resume()

    assert outcome.code != 0
    assert outcome.seconds < 60
    assert f"{hung.spec()}: no SSH answer within 3 s: the host hangs" in outcome.output
    assert_every_host_serves(cluster, everywhere(cluster, first))


def test_a_host_that_hangs_in_the_middle_fails_in_bounded_time(project: DeployProject, cluster: SshCluster) -> None:
    path = cluster.deploy_path
    first = reset(project, cluster)
    hung = cluster.hosts[1]
    project.new_version()
    started = time.monotonic()
    process = project.start("deploy", "--env", "staging", "--connect-timeout", "3", "--command-timeout", "12")
    seen = wait_for_output(process, f"{hung.spec()}: installing")
    hung.pause()
    try:
        outcome = finish(process, timeout=60)
    finally:
        hung.resume()

    assert time.monotonic() - started < 60
    assert outcome.code != 0
    output = seen + outcome.output
    assert re.search(rf"{re.escape(hung.spec())}: 'stage' .* within \d+ s: the host hangs", output), output
    # Nobody switched. The hung host could not even be told to unlock, and the message says what to do.
    assert "its lock could not be released" in output and "--break-lock" in output
    for host in cluster.hosts:
        assert assert_serving_complete_release(host, path) == first
        if host is not hung:
            assert_unlocked(host, path)


def test_a_failing_health_check_switches_nobody(project: DeployProject, cluster: SshCluster) -> None:
    path = cluster.deploy_path
    first = reset(project, cluster)
    sick = cluster.hosts[0]
    sh(sick, f"touch {path}/sick")
    project.new_version()

    outcome = project.deploy("--healthcheck", f"test ! -e {path}/sick || exit 3")

    assert outcome.code != 0
    assert f"{sick.spec()}: health check failed (exit 3)" in outcome.output
    rows = outcome.summary()
    assert rows[sick.spec()]["result"] == "failed"
    assert {rows[h.spec()]["result"] for h in cluster.hosts[1:]} == {"not switched: 1 host(s) failed staging"}
    assert_every_host_serves(cluster, everywhere(cluster, first))
    # The failed release is not left half-made on the sick host.
    new = rows[sick.spec()]["release"]
    assert sick.run(f"test -e {path}/releases/{new}").returncode != 0
    sh(sick, f"rm {path}/sick")

    everyone = project.deploy("--healthcheck", "exit 3")
    assert everyone.code != 0
    assert everyone.output.count("health check failed (exit 3)") == 3
    assert_every_host_serves(cluster, everywhere(cluster, first))


def test_a_python_setting_that_is_not_python_fails_each_host_by_name_and_changes_nothing(
    project: DeployProject, cluster: SshCluster
) -> None:
    first = reset(project, cluster)
    before = {host.address: tree(host, cluster.deploy_path) for host in cluster.hosts}
    project.new_version()

    outcome = project.deploy("--python", "/nonexistent/python3")

    outcome.assert_clean()
    assert outcome.code != 0
    for host in cluster.hosts:
        assert f"{host.spec()}: 'probe': the host could not run the agent (exit 127)" in outcome.output, outcome.output
    assert "check that '/nonexistent/python3' is Python 3.8 or later on the host (setting: python)" in outcome.output
    assert {host.address: tree(host, cluster.deploy_path) for host in cluster.hosts} == before
    assert_every_host_serves(cluster, everywhere(cluster, first))


def test_an_agent_that_dies_mid_stage_fails_that_step_and_a_new_session_releases_the_lock(
    project: DeployProject, cluster: SshCluster
) -> None:
    first = reset(project, cluster)
    project.new_version()

    # The health check's shell kills its parent, the agent serving the deploy's steps on that host.
    outcome = project.deploy("--healthcheck", "kill -9 $PPID")

    outcome.assert_clean()
    assert outcome.code != 0
    for host in cluster.hosts:
        assert f"{host.spec()}: 'stage': the agent ended without answering" in outcome.output, outcome.output
    # A killed agent is not a wrong interpreter: no advice to check the python setting.
    assert "setting: python" not in outcome.output
    # Releasing the locks needed a fresh agent on each host: none is left locked or serving anything new.
    assert_every_host_serves(cluster, everywhere(cluster, first))
    wait_until_agents_finish(cluster)


def test_a_failing_restart_switches_that_host_back_and_the_others_stay(
    project: DeployProject, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    first = reset(project, cluster)
    broken = cluster.hosts[0]
    sh(broken, f"touch {path}/broken")
    version = project.new_version()

    outcome = project.deploy("--restart", f"test ! -e {path}/broken")

    sh(broken, f"rm {path}/broken")
    assert outcome.code != 0
    assert f"{broken.spec()}: restart failed (exit 1), switched back to {first}" in outcome.output
    second = assert_serving_complete_release(cluster.hosts[1], path)
    assert second != first
    assert_every_host_serves(cluster, {broken.address: first, **{h.address: second for h in cluster.hosts[1:]}})
    assert log_lines(broken, path)[-1]["result"] == "switched back"
    assert installed(broken, path)[APP] == "1.0"
    assert installed(cluster.hosts[1], path)[APP] == version


def test_a_corrupt_wheel_in_a_hosts_store_is_detected_and_never_installed(
    project: DeployProject, cluster: SshCluster
) -> None:
    path = cluster.deploy_path
    reset(project, cluster)
    victim = cluster.hosts[1]
    beta = sh(victim, f"ls {path}/wheels/*/beta-1.0-py3-none-any.whl").strip()
    good = sh(victim, f"sha256sum {beta}").split()[0]
    sh(victim, f"printf 'not a wheel' > {beta}")
    version = project.new_version()

    outcome = project.deploy_ok()

    assert re.search(rf"{re.escape(victim.spec())}: store had corrupt or missing wheels \(.*beta", outcome.output)
    assert sh(victim, f"sha256sum {beta}").split()[0] == good
    for host in cluster.hosts:
        assert installed(host, path) == {**SHIPPED, APP: version}


def test_a_lock_line_without_a_hash_is_refused_by_the_verify_gate(
    project: DeployProject, cluster: SshCluster
) -> None:
    first = reset(project, cluster)
    before = {host.address: tree(host, cluster.deploy_path) for host in cluster.hosts}
    lock = project.root / "requirements" / "prod.txt"
    good = lock.read_text()
    lock.write_text(re.sub(r"(beta==1\.0) \\\n\s+--hash=sha256:[0-9a-f]+", r"\1", good))
    project.new_version()
    try:
        outcome = project.deploy()
    finally:
        lock.write_text(good)

    assert outcome.code != 0
    assert "refusing to deploy: the locks are not fresh" in outcome.output
    assert re.search(r"requirements/prod\.txt:\d+: .*hash", outcome.output), outcome.output
    assert "nox -s lock" in outcome.output
    assert {host.address: tree(host, cluster.deploy_path) for host in cluster.hosts} == before
    assert_every_host_serves(cluster, everywhere(cluster, first))


def test_two_racing_deploys_one_is_refused_naming_the_owner(project: DeployProject, cluster: SshCluster) -> None:
    reset(project, cluster)
    project.new_version()
    racers = [project.start("deploy", "--env", "staging", "--healthcheck", "sleep 3") for _ in range(2)]
    outcomes = [finish(racer) for racer in racers]

    codes = sorted(outcome.code for outcome in outcomes)
    assert codes[0] == 0 and codes[1] != 0, [o.output for o in outcomes]
    winner, loser = sorted(outcomes, key=lambda o: o.code)
    assert re.search(r"another deploy holds the lock \(root@\S+ pid \d+ since \S+ \(deploy\)\)", loser.output), (
        loser.output)
    release = {row["release"] for row in winner.summary().values()}.pop()
    assert_every_host_serves(cluster, everywhere(cluster, release))


# SIGTERM is what a cancelled CI job sends: it must stop a run as cleanly as Ctrl-C does.
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_in_the_middle_leaves_no_host_half_switched_and_no_lock(
    project: DeployProject, cluster: SshCluster, signum: int
) -> None:
    first = reset(project, cluster)
    project.new_version()
    process = project.start("deploy", "--env", "staging", "--healthcheck", "sleep 3")
    seen = wait_for_output(process, "installing")
    process.send_signal(signum)
    outcome = finish(process)

    assert outcome.code != 0, seen + outcome.output
    assert "interrupted" in outcome.output
    assert_every_host_serves(cluster, everywhere(cluster, first))
    for host in cluster.hosts:
        assert log_lines(host, cluster.deploy_path)[-1]["result"] == "interrupted"

    again = project.deploy_ok()
    assert "lock" not in again.output
    second = assert_serving_complete_release(cluster.hosts[0], cluster.deploy_path)
    assert second != first
    assert_every_host_serves(cluster, everywhere(cluster, second))


def test_a_stale_lock_from_a_killed_deploy_is_taken_over_only_with_break_lock(
    project: DeployProject, cluster: SshCluster
) -> None:
    first = reset(project, cluster)
    project.new_version()
    process = project.start("deploy", "--env", "staging", "--healthcheck", "sleep 2")
    wait_for_output(process, "installing")
    process.send_signal(signal.SIGKILL)
    process.communicate()
    # What --break-lock's help asks of a user: make sure the dead deploy's remote steps are over.
    wait_until_agents_finish(cluster)

    refused = project.deploy()
    assert refused.code != 0
    assert re.search(rf"another deploy holds the lock \(root@\S+ pid {process.pid} since", refused.output)
    assert "--break-lock" in refused.output
    for host in cluster.hosts:
        assert assert_serving_complete_release(host, cluster.deploy_path) == first

    taken = project.deploy_ok("--break-lock")
    assert "took over a stale lock" in taken.output
    second = assert_serving_complete_release(cluster.hosts[0], cluster.deploy_path)
    assert second != first
    assert_every_host_serves(cluster, everywhere(cluster, second))


def test_trust_pins_new_host_keys_only_when_confirmed_and_refuses_a_changed_one(
    project: DeployProject, cluster: SshCluster
) -> None:
    reset(project, cluster)
    known = project.root / "known_hosts"
    newcomer = cluster.hosts[2]
    cluster.write_known_hosts(known, cluster.hosts[:2])
    pinned = known.read_text()

    unconfirmed = project.invoke("trust", "--env", "staging")
    assert unconfirmed.code != 0
    assert re.search(rf"{re.escape(newcomer.spec())}: ssh-ed25519 SHA256:\S+ \(new\)", unconfirmed.output)
    assert "nothing written" in unconfirmed.output
    assert known.read_text() == pinned

    confirmed = project.invoke("trust", "--env", "staging", "--yes")
    assert confirmed.code == 0, confirmed.output
    assert known.read_text().splitlines() == [*pinned.splitlines(), newcomer.known_hosts_line()]
    again = project.invoke("trust", "--env", "staging", "--yes")
    assert again.code == 0 and again.output.count("(already trusted)") == 3
    assert project.deploy_ok().code == 0

    newcomer.rotate_host_key()
    pinned = known.read_text()
    changed = project.invoke("trust", "--env", "staging", "--yes")
    assert changed.code != 0
    assert f"{newcomer.spec()}: offers SHA256:" in changed.output and "differs from the key pinned" in changed.output
    assert known.read_text() == pinned


# A full disk needs hosts with a size-limited deploy path: a cluster of its own.


@pytest.fixture(scope="module")
def small_disks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    with new_cluster(tmp_path_factory, 2, disk_limit_mb=40) as started:
        yield started


def test_a_full_disk_during_upload_fails_that_host_and_keeps_its_current(
    tmp_path_factory: pytest.TempPathFactory, small_disks: SshCluster
) -> None:
    path = small_disks.deploy_path
    project = ssh_project(tmp_path_factory, small_disks, "disk-project")
    first = reset(project, small_disks)
    full, roomy = small_disks.hosts
    free = int(sh(full, f"df --output=avail -B1 {path} | tail -1"))
    sh(full, f"head -c {free - 1_000_000} /dev/zero > {path}/filler")
    # A 3 MB app wheel that does not compress: it cannot fit in the 1 MB left.
    (project.root / APP / "blob.txt").write_text(base64.b64encode(os.urandom(2_300_000)).decode())
    project.set_version("2.0")

    outcome = project.deploy()

    assert outcome.code != 0
    assert re.search(rf"{re.escape(full.spec())}: .*(no space|disk full)", outcome.output), outcome.output
    for host in small_disks.hosts:
        assert assert_serving_complete_release(host, path) == first
        assert installed(host, path)[APP] == "1.0"
    assert_unlocked(roomy, path)

    assert_unlocked(full, path)

    sh(full, f"rm {path}/filler")
    project.deploy_ok()
    for host in small_disks.hosts:
        assert installed(host, path)[APP] == "2.0"
