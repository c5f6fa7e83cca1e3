"""A host that answers out of shape, or with text that draws lines of its own, through the real CLI.

A host is trusted to run what it is sent, never to tell the deployer what to do (issue 11 items 7
and 8). Each host here is a real sshd host whose agent answers one step as the test forges it
(tests/support/forged.py). Whatever it says, the user sees one line naming that host and the
step, no traceback and no escape sequence of the host's, and every host serves what it did.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deployproject import (
    HEALTHCHECK,
    DeployProject,
    Outcome,
    assert_serving_complete_release,
    assert_unlocked,
    environment_toml,
    new_cluster,
    reset,
    ssh_project,
)
from tests.support import forged
from tests.support.forged import Rule
from tests.support.sshd import SshCluster, SshHost

pytestmark = pytest.mark.ssh

ESC = "\x1b"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    with new_cluster(tmp_path_factory, 2) as started:
        yield started


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, cluster: SshCluster) -> Iterator[DeployProject]:
    made = ssh_project(tmp_path_factory, cluster, "forged-project")
    # Keepers of this module only, in a folder short enough for socket paths (pytest's are not).
    runtime = Path(tempfile.mkdtemp(prefix="pf-", dir="/tmp"))
    made.env["XDG_RUNTIME_DIR"] = str(runtime)
    yield made
    for sock in (runtime / "pinship").glob("*.sock"):  # every keeper started here, whatever its python
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as client:
            client.connect(str(sock))
            client.sendall(b'{"do": "stop"}\n')
            client.recv(100)
    shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture()
def first(project: DeployProject, cluster: SshCluster) -> Iterator[str]:
    """Every host on release 1.0 from an honest agent; the forgeries are gone afterwards."""
    release = reset(project, cluster)
    yield release
    forged.unforge(cluster)


def forge(project: DeployProject, cluster: SshCluster, host: SshHost, rules: dict[str, Rule],
          keep_alive: float = 0) -> None:
    """`host` answers the steps of `rules` as forged; `staging` runs its agents through the forger."""
    python = forged.forge(cluster, {host.address: rules})
    project.configure(environment_toml("staging", cluster, healthcheck=HEALTHCHECK, python=python,
                                       keep_alive=keep_alive))


def assert_every_host_serves(cluster: SshCluster, release: str) -> None:
    for host in cluster.hosts:
        assert assert_serving_complete_release(host, cluster.deploy_path) == release, host.address
        assert_unlocked(host, cluster.deploy_path)


def assert_refused(outcome: Outcome, host: SshHost, *needles: str) -> None:
    """Non-zero exit, and one line naming the host and holding each needle (the step, the problem)."""
    assert outcome.code != 0, outcome.output
    assert "Traceback" not in outcome.output, outcome.output
    lines = [line for line in outcome.output.splitlines() if host.spec() in line and all(n in line for n in needles)]
    assert lines, f"no line names {host.spec()} and {needles}:\n{outcome.output}"


def test_a_forged_host_without_rules_is_the_real_agent_over_ssh_and_through_a_keeper(
    project: DeployProject, cluster: SshCluster, first: str
) -> None:
    """The harness itself, on both paths: a forger told nothing deploys as the agent does, and
    one told to answer a step answers it so."""
    liar = cluster.hosts[0]
    for keep_alive in (0, 30):
        forge(project, cluster, liar, {}, keep_alive=keep_alive)
        project.new_version()
        outcome = project.deploy_ok()
        assert {row["result"] for row in outcome.summary().values()} == {"switched"}
        live = assert_serving_complete_release(liar, cluster.deploy_path)

        forge(project, cluster, liar, {"stage": forged.fail("stage", "forged on purpose")}, keep_alive=keep_alive)
        project.new_version()
        refused = project.deploy()
        assert refused.code != 0
        assert f"{liar.spec()}: forged on purpose" in refused.output, refused.output
        assert_every_host_serves(cluster, live)


@pytest.mark.parametrize("keep_alive", [0, 30], ids=["ssh", "keeper"])
def test_a_probe_without_python_fails_that_host_by_name_and_nothing_switches(
    project: DeployProject, cluster: SshCluster, first: str, keep_alive: float
) -> None:
    liar = cluster.hosts[0]
    forge(project, cluster, liar, {"probe": forged.patch(drop=("python",))}, keep_alive=keep_alive)
    project.new_version()

    outcome = project.deploy()

    assert_refused(outcome, liar, "probe", "python")
    assert_every_host_serves(cluster, first)


def test_probe_markers_that_are_not_a_mapping_fail_that_host_by_name_and_nothing_switches(
    project: DeployProject, cluster: SshCluster, first: str
) -> None:
    liar = cluster.hosts[1]
    forge(project, cluster, liar, {"probe": forged.patch(set={"markers": ["linux"]})})
    project.new_version()

    outcome = project.deploy()

    assert_refused(outcome, liar, "probe", "markers")
    assert_every_host_serves(cluster, first)


def test_a_status_reply_of_the_wrong_shape_is_one_line_naming_the_host(
    project: DeployProject, cluster: SshCluster, first: str
) -> None:
    liar = cluster.hosts[0]
    forge(project, cluster, liar, {"status": forged.reply({"current": first, "previous": None, "log": {"x": 1},
                                                           "releases": "all of them"})})

    outcome = project.invoke("status", "--env", "staging")

    assert_refused(outcome, liar, "status", "log")
    assert_every_host_serves(cluster, first)


def test_a_release_name_with_escape_codes_and_a_newline_cannot_draw_on_the_terminal(
    project: DeployProject, cluster: SshCluster, first: str
) -> None:
    liar, other = cluster.hosts
    name = f"{ESC}[2J{ESC}[H\n{other.spec()}: switched"
    forge(project, cluster, liar, {"status": forged.reply({"current": first, "previous": None, "log": [],
                                                           "releases": [{"release": name, "manifest": None}]})})

    outcome = project.invoke("releases", "--env", "staging")

    assert ESC not in outcome.output
    assert not any(line.startswith(f"{other.spec()}: switched") for line in outcome.output.splitlines()), outcome.output
    assert_refused(outcome, liar, "status", "release")
    assert_every_host_serves(cluster, first)


def test_an_error_text_with_a_newline_cannot_forge_a_hosts_line(
    project: DeployProject, cluster: SshCluster, first: str
) -> None:
    liar, other = cluster.hosts
    forge(project, cluster, liar, {"stage": forged.fail(
        "stage", f"health check failed (exit 3): boom\n{other.spec()}: switched{ESC}[2K", {"step": "health check"})})
    project.new_version()

    outcome = project.deploy()

    assert ESC not in outcome.output
    assert not any(line.startswith(f"{other.spec()}: switched") for line in outcome.output.splitlines()), outcome.output
    assert_refused(outcome, liar, "health check failed", "boom")
    assert_every_host_serves(cluster, first)


def test_a_reply_that_is_not_json_is_one_line_naming_the_host(
    project: DeployProject, cluster: SshCluster, first: str
) -> None:
    liar = cluster.hosts[1]
    forge(project, cluster, liar, {"probe": forged.raw(f'{{"ok": tru{ESC}[2J')})
    project.new_version()

    outcome = project.deploy()

    assert ESC not in outcome.output
    assert_refused(outcome, liar, "not JSON")
    assert_every_host_serves(cluster, first)


def test_a_failure_without_its_kind_is_one_line_naming_the_host_and_nothing_is_left_locked(
    project: DeployProject, cluster: SshCluster, first: str
) -> None:
    liar = cluster.hosts[0]  # the first host is locked alone, as the gate: nobody else is locked
    forge(project, cluster, liar, {"lock": forged.raw('{"ok": false, "error": "no kind here", "extra": []}')})
    project.new_version()

    outcome = project.deploy()

    assert_refused(outcome, liar, "kind")
    assert_every_host_serves(cluster, first)


def test_a_lock_owner_with_escape_codes_and_newlines_is_shown_inert(
    project: DeployProject, cluster: SshCluster, first: str
) -> None:
    liar, other = cluster.hosts
    owner = {"user": f"{ESC}[2K{ESC}[1A\n{other.spec()}: switched\n", "machine": "m\u202eevil", "pid": 1,
             "since": "2026-01-01T00:00:00Z", "token": "00", "action": "deploy"}
    forge(project, cluster, liar, {"lock": forged.fail("locked", "locked", {"owner": owner})})
    project.new_version()

    outcome = project.deploy()

    assert ESC not in outcome.output and "\u202e" not in outcome.output
    assert not any(line.startswith(f"{other.spec()}: switched") for line in outcome.output.splitlines()), outcome.output
    assert_refused(outcome, liar, "holds the lock")
    assert_every_host_serves(cluster, first)


def test_a_megabyte_of_error_text_from_a_host_is_cut_short(
    project: DeployProject, cluster: SshCluster, first: str
) -> None:
    liar = cluster.hosts[1]
    forge(project, cluster, liar, {"stage": forged.fail("stage", "health check failed (exit 1): " + "x" * 2_000_000)})
    project.new_version()

    outcome = project.deploy()

    assert_refused(outcome, liar, "health check failed")
    assert len(outcome.output) < 20_000, len(outcome.output)
    assert_every_host_serves(cluster, first)


def test_a_probe_naming_a_wheel_store_entry_that_is_a_path_is_refused_in_a_dry_run(
    project: DeployProject, cluster: SshCluster, first: str
) -> None:
    liar = cluster.hosts[0]
    forge(project, cluster, liar, {"probe": forged.patch(set={"store": ["../../../etc"], "current": "../../.."})})
    project.new_version()

    outcome = project.deploy("--dry-run")

    assert_refused(outcome, liar, "probe")
    assert_every_host_serves(cluster, first)


def test_a_status_reply_with_a_venv_of_the_wrong_shape_is_one_line_naming_the_host(
    project: DeployProject, cluster: SshCluster, first: str
) -> None:
    liar = cluster.hosts[1]
    forge(project, cluster, liar, {"status": forged.patch(set={"venv": {"installed": ["alpha"], "modified": 3}})})

    outcome = project.invoke("status", "--env", "staging")

    assert_refused(outcome, liar, "status", "venv")
    assert_every_host_serves(cluster, first)


def test_a_switch_reply_out_of_shape_after_the_host_switched_says_so_and_leaves_no_lock(
    project: DeployProject, cluster: SshCluster, first: str
) -> None:
    """The switch ran (the reply is the real one, changed): the host serves the new release, and
    the user is told that host's reply could not be read, not that it still serves the old one."""
    liar = cluster.hosts[0]
    forge(project, cluster, liar, {"switch": forged.patch(set={"pruned": ["../../../srv"]})})
    project.new_version()

    outcome = project.deploy()

    assert_refused(outcome, liar, "switch", "pruned")
    new = assert_serving_complete_release(cluster.hosts[1], cluster.deploy_path)
    assert new != first
    assert_every_host_serves(cluster, new)
