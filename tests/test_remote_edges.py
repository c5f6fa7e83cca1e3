"""The remote side at its edges (issue 11), against real sshd hosts: a restart that outlasts
--command-timeout, a known-hosts setting that names a folder, an identity that is no private key,
and a python setting the host's shell takes for an option of its own.

Each gives one line that says what really happened, naming the file or the host, with its fix.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.config import Environment
from deploy.errors import HostError
from deploy.remote.target import LocalTarget, step_budget
from tests.deployproject import (
    HEALTHCHECK,
    DeployProject,
    assert_serving_complete_release,
    assert_unlocked,
    environment_toml,
    log_lines,
    new_cluster,
    reset,
    ssh_project,
    staging_toml,
)
from tests.support.sshd import SshCluster

pytestmark = pytest.mark.ssh

IDENTITY_FIX = "point identity at a private key file, e.g. ~/.ssh/id_ed25519"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    with new_cluster(tmp_path_factory, 2) as started:
        yield started


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, cluster: SshCluster) -> Iterator[DeployProject]:
    made = ssh_project(tmp_path_factory, cluster, "remote-edges")
    runtime = Path(tempfile.mkdtemp(prefix="pre-", dir="/tmp"))  # keeper sockets of this module only
    made.env["XDG_RUNTIME_DIR"] = str(runtime)
    yield made
    with contextlib.suppress(Exception):
        made.invoke("disconnect", "--env", "staging", timeout=60)
    shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture()
def staging(project: DeployProject, cluster: SshCluster) -> Iterator[DeployProject]:
    """The project as the module made it, again after a test that changed its settings."""
    yield project
    cluster.write_known_hosts(project.root / "known_hosts")
    project.configure(staging_toml(cluster))


# A restart that outlasts --command-timeout


@pytest.mark.parametrize("keep_alive", [0, 30], ids=["direct", "kept"])
def test_a_restart_that_times_out_is_reported_as_the_switch_back_it_was(
    staging: DeployProject, cluster: SshCluster, keep_alive: int
) -> None:
    before = reset(staging, cluster)
    staging.configure(environment_toml("staging", cluster, healthcheck=HEALTHCHECK, keep_alive=keep_alive))
    staging.new_version()

    outcome = staging.deploy("--restart", "sleep 60", "--command-timeout", "4")

    assert outcome.code == 1, outcome.output
    # Each host's own reply reaches the user: its restart timed out and it switched back.
    assert "did not finish within" not in outcome.output, outcome.output
    assert "unknown: no valid reply" not in outcome.output, outcome.output
    for host in cluster.hosts:
        row = outcome.summary()[host.spec()]
        assert row["result"] == "switched back", outcome.output
        assert f"{host.spec()}: restart failed (exit 124), switched back to {before}" in outcome.output
        assert "timed out after 4" in outcome.output
        assert assert_serving_complete_release(host, cluster.deploy_path) == before
        assert_unlocked(host, cluster.deploy_path)
        assert log_lines(host, cluster.deploy_path)[-1]["result"] == "switched back"


def test_a_restart_that_times_out_on_this_machine_is_reported_as_the_switch_back_it_was(
    staging: DeployProject,
) -> None:
    staging.new_version()
    staging.deploy_ok(env="local")
    current = staging.root / ".deploy" / "local" / "current"
    before = current.readlink()
    staging.new_version()

    outcome = staging.deploy("--restart", "sleep 60", "--command-timeout", "4", env="local")

    assert outcome.code == 1, outcome.output
    assert "did not finish within" not in outcome.output, outcome.output
    assert f"restart failed (exit 124), switched back to {before.name}" in outcome.output, outcome.output
    assert current.readlink() == before


def test_a_health_check_that_times_out_is_reported_as_the_failed_health_check_it_was(
    staging: DeployProject, cluster: SshCluster
) -> None:
    before = reset(staging, cluster)
    staging.new_version()

    outcome = staging.deploy("--healthcheck", "sleep 60", "--command-timeout", "4")

    assert outcome.code == 1, outcome.output
    assert "did not finish within" not in outcome.output, outcome.output
    assert "health check failed (exit 124): timed out after 4" in outcome.output, outcome.output
    for host in cluster.hosts:
        assert assert_serving_complete_release(host, cluster.deploy_path) == before
        assert_unlocked(host, cluster.deploy_path)


def test_each_step_waits_for_the_commands_the_agent_may_run_in_it() -> None:
    assert step_budget("switch", {"restart": "x", "timeout": 4}, 4) >= 3 * 4
    assert step_budget("switch", {"restart": None, "timeout": 4}, 4) == 4
    assert step_budget("stage", {"healthcheck": "x", "timeout": 4}, 4) >= 2 * 4
    assert step_budget("lock", {}, 4) == 4
    # A hook runs with its own timeout, and a switch's post-switch check adds hook-timeout once.
    assert step_budget("hook", {"timeout": 300}, 4) >= 4 + 300
    assert step_budget("switch", {"restart": None, "post_switch": "curl x", "hook_timeout": 300, "timeout": 4},
                       4) >= 4 + 300
    assert step_budget("switch", {"restart": "x", "post_switch": "curl x", "hook_timeout": 300, "timeout": 4},
                       4) >= 3 * 4 + 300


# known-hosts that names a folder


@pytest.mark.parametrize("command", [("trust", "--yes"), ("status",), ("deploy",)])
def test_a_known_hosts_folder_is_named_as_a_folder(
    staging: DeployProject, cluster: SshCluster, command: tuple[str, ...]
) -> None:
    (staging.root / "pins").mkdir(exist_ok=True)
    staging.configure(environment_toml("staging", cluster, known_hosts="pins"))

    outcome = staging.invoke(command[0], "--env", "staging", *command[1:])

    assert outcome.code == 1, outcome.output
    assert f"{staging.root / 'pins'}, which is a directory, not a file" in outcome.output, outcome.output
    assert "invoke trust --env staging" in outcome.output
    assert "does not exist" not in outcome.output
    assert list((staging.root / "pins").iterdir()) == []


def test_trust_names_a_known_hosts_pipe_rather_than_waiting_on_it(staging: DeployProject, cluster: SshCluster) -> None:
    pipe = staging.root / "pins.fifo"
    pipe.unlink(missing_ok=True)
    os.mkfifo(pipe)
    staging.configure(environment_toml("staging", cluster, known_hosts="pins.fifo"))

    outcome = staging.invoke("trust", "--env", "staging", "--yes", timeout=60)

    assert outcome.code == 1, outcome.output
    assert f"{pipe}, which is a named pipe, not a file" in outcome.output, outcome.output


# identity that is no private key


def _identity_cases(root: Path, cluster: SshCluster) -> dict[str, tuple[str, str]]:
    """name -> (identity setting, what the message must say)."""
    folder = root / "keys"
    folder.mkdir(exist_ok=True)
    public = root / "id_test.pub"
    shutil.copyfile(f"{cluster.client_key}.pub", public)
    return {
        "missing": (str(root / "no_such_key"), f"identity {root / 'no_such_key'}: no such file"),
        "folder": (str(folder), f"identity {folder}: is a directory, not a private key file"),
        "passwd": ("/etc/passwd", "identity /etc/passwd: not a private key file"),
        "public": (str(public), f"identity {public}: a public key, not the private key"),
    }


@pytest.mark.parametrize("case", ["missing", "folder", "passwd", "public"])
@pytest.mark.parametrize("keep_alive", [0, 30], ids=["direct", "kept"])
def test_an_identity_that_is_no_private_key_is_named_before_connecting(
    staging: DeployProject, cluster: SshCluster, case: str, keep_alive: int
) -> None:
    identity, said = _identity_cases(staging.root, cluster)[case]
    staging.configure(environment_toml("staging", cluster, identity=identity, keep_alive=keep_alive))

    outcome = staging.invoke("status", "--env", "staging")

    assert outcome.code == 1, outcome.output
    assert said in outcome.output, outcome.output
    assert IDENTITY_FIX in outcome.output
    for wrong in ("unreachable", "check the address", "no answer within", "check that the host is up"):
        assert wrong not in outcome.output, outcome.output
    public_key = Path(f"{cluster.client_key}.pub").read_text().split()[1]
    assert public_key[:40] not in outcome.output  # never a key's contents
    assert "root:x:0:0" not in outcome.output


def test_an_encrypted_identity_is_not_taken_for_a_broken_one(staging: DeployProject, cluster: SshCluster) -> None:
    key = staging.root / "id_encrypted"
    key.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret-phrase", "-f", str(key)], check=True)
    staging.configure(environment_toml("staging", cluster, identity=str(key)))

    outcome = staging.invoke("status", "--env", "staging")

    # No agent holds it and no passphrase is given: the hosts refuse the login, as they should.
    assert outcome.code == 1, outcome.output
    assert f"authentication failed: the identity {key} is encrypted" in outcome.output, outcome.output
    assert f"fix: add it to your ssh-agent (ssh-add {key})" in outcome.output
    assert "not a private key" not in outcome.output


# python that the shell takes for an option


def test_a_python_setting_the_shell_takes_for_an_option_names_the_setting(tmp_path: Path) -> None:
    env = Environment(name="local", path=str(tmp_path / "deploy"), command_timeout=30)
    target = LocalTarget(env, "-y")  # the host's shell: bash -c '-y -I -S -c ...'

    with pytest.raises(HostError) as raised:
        target.call("probe")

    message = str(raised.value)
    assert "the host's shell refused the agent's command line (exit 2)" in message, message
    assert "set python to an interpreter on the host, e.g. python3" in message
    assert "(disk, permissions" not in message
