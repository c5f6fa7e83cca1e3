"""The invoke tasks' flags: each gets its setting's type and rules (invoke hands them over as
text), and a bad one is one line naming the flag, through the real `invoke` command line too."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.config import Environment, Host
from deploy.errors import ConfigError
from deploy.release.select import UsageError, environment, subset, typed
from tests.deployproject import INVOKE, Outcome


def test_numbers_get_the_settings_type_and_zero_where_it_means_something() -> None:
    checked = typed({"keep_alive": "0", "connect_timeout": "2.5", "parallel": "3", "max_failures": "0", "path": "/x"})
    assert checked == {"keep_alive": 0.0, "connect_timeout": 2.5, "parallel": 3, "max_failures": 0, "path": "/x"}
    assert typed({"parallel": None, "keep_releases": "1"}) == {"parallel": None, "keep_releases": 1}


@pytest.mark.parametrize(("key", "value", "message"), [
    ("keep_alive", "-1", "--keep-alive -1: expected a number of seconds from 0 to 604800 (a week); "
                         "0: close them at the end"),
    ("keep_alive", "nan", "--keep-alive nan: expected a number of seconds from 0 to 604800 (a week); "
                          "0: close them at the end"),
    ("connect_timeout", "0", "--connect-timeout 0: expected a number of seconds above 0 and at most 604800 (a week)"),
    ("connect_timeout", "nan", "--connect-timeout nan: expected a number of seconds above 0 and at most 604800 "
                               "(a week)"),
    ("command_timeout", "inf", "--command-timeout inf: expected a number of seconds above 0 and at most 604800 "
                               "(a week)"),
    ("parallel", "0", "--parallel 0: expected a whole number of at least 1 and at most 1000"),
    ("keep_releases", "0", "--keep-releases 0: expected a whole number of at least 1 and at most 10000"),
    ("max_failures", "-2", "--max-failures -2: expected a whole number, 0 or more"),
])
def test_a_number_out_of_range_names_the_flag_and_what_it_takes(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        typed({key: value})
    assert str(caught.value) == message


@pytest.fixture
def adopter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project that adopted the tool: pyproject.toml with one host-less environment, a tasks.py."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "demo"\n\n[tool.deploy.environments.review]\n')
    (tmp_path / "tasks.py").write_text("from deploy.tasks import namespace\n\nns = namespace\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_an_environment_name_that_is_not_an_identifier_is_refused_before_the_config_is_read(adopter: Path) -> None:
    (adopter / "pyproject.toml").write_text("not toml at all [")
    with pytest.raises(ConfigError) as caught:
        environment("../x", {}, None)
    assert str(caught.value) == (
        "--env '../x': not an environment name "
        "(use letters, digits, '-' and '_', starting with a letter, at most 64 characters)")


def test_a_path_flag_for_a_hostless_environment_is_taken_from_the_working_folder(adopter: Path) -> None:
    (adopter / "sub").mkdir()
    os.chdir(adopter / "sub")
    _, env = environment("review", {"path": "out"}, None)
    assert env.path == str(adopter.resolve() / "sub" / "out")
    with pytest.raises(ConfigError) as caught:
        environment("local", {"path": ".."}, None)
    assert str(caught.value).startswith(f"--path: path '..' is the project root ({adopter.resolve()})")


def run_invoke(root: Path, *args: str) -> Outcome:
    done = subprocess.run([INVOKE, *args], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    return Outcome(done.returncode, done.stdout + done.stderr, 0.0)


def test_invoke_with_a_nan_timeout_prints_one_line_and_exits_1(adopter: Path) -> None:
    outcome = run_invoke(adopter, "deploy", "--env", "review", "--command-timeout", "nan")
    outcome.assert_clean()
    assert outcome.code == 1
    assert outcome.output.strip() == (
        "error: --command-timeout nan: expected a number of seconds above 0 and at most 604800 (a week)")
    assert not (adopter / ".deploy").exists()


def test_invoke_with_an_environment_name_that_climbs_out_prints_one_line_and_creates_nothing(adopter: Path) -> None:
    (adopter / "pyproject.toml").write_text('[project]\nname = "demo"\n\n[tool.deploy.environments."../x"]\n')
    for args in (["deploy", "--env", "../x"], ["status", "--env", "../x"], ["promote", "--from", "../x", "--to", "y"]):
        outcome = run_invoke(adopter, *args)
        outcome.assert_clean()
        assert outcome.code == 1, outcome.output
        flag = "--from" if "--from" in args else "--env"
        assert outcome.output.strip() == (
            f"error: {flag} '../x': not an environment name "
            "(use letters, digits, '-' and '_', starting with a letter, at most 64 characters)")
    assert sorted(p.name for p in adopter.iterdir()) == ["pyproject.toml", "tasks.py"]


def test_invoke_help_shows_each_settings_default_and_range(adopter: Path) -> None:
    outcome = run_invoke(adopter, "deploy", "--help")
    assert outcome.code == 0
    flat = " ".join(outcome.output.split())
    assert "(default 600; above 0, at most 604800)" in flat
    assert "(default 5; at least 1)" in flat


def _fleet() -> Environment:
    return Environment("staging", hosts=(Host("deploy", "app1", 22), Host("deploy", "app2", 2222)), path="/srv/a")


@pytest.mark.parametrize("hosts", [",", ",,,", " , "])
def test_a_hosts_flag_that_names_no_host_is_refused_never_a_deploy_on_this_machine(hosts: str) -> None:
    with pytest.raises(UsageError) as caught:
        subset(_fleet(), hosts)
    assert "names no host" in str(caught.value.message)


def test_a_host_named_twice_or_without_its_port_is_one_host_of_the_environment() -> None:
    assert subset(_fleet(), "app1,deploy@app1,app2") == _fleet().hosts
    with pytest.raises(UsageError) as caught:
        subset(_fleet(), "app1,app3")
    assert "app3 is not a host of 'staging'" in str(caught.value.message)


def test_every_task_shows_its_help_even_one_with_required_environments(adopter: Path) -> None:
    listing = run_invoke(adopter, "--list")
    tasks = re.findall(r"(?m)^  ([a-z][a-z-]*)  ", listing.output)
    assert "promote" in tasks and "deploy" in tasks, listing.output
    for task in tasks:
        shown = run_invoke(adopter, task, "--help")
        shown.assert_clean()
        assert shown.code == 0, f"invoke {task} --help:\n{shown.output}"
        assert f"{task} [--options]" in shown.output or f"{task} [" in shown.output, shown.output
    promote = run_invoke(adopter, "promote", "--help")
    assert "--from=STRING" in promote.output and "--to=STRING" in promote.output


def test_promote_without_both_environments_says_how_to_call_it(adopter: Path) -> None:
    outcome = run_invoke(adopter, "promote", "--from", "review")
    outcome.assert_clean()
    assert outcome.code == 2, outcome.output
    assert outcome.output.strip() == ("promote needs both environments: invoke promote --from ENV --to ENV "
                                      "(e.g. --from staging --to production)")


def test_python_m_deploy_help_tells_a_user_what_it_does_and_where_deploys_are() -> None:
    shown = subprocess.run([sys.executable, "-m", "deploy", "--help"], capture_output=True, text=True, timeout=60,
                           check=False)
    assert shown.returncode == 0, shown.stderr
    flat = " ".join(shown.stdout.split())
    assert "locked with hashes" in flat and "invoke --list" in flat
    assert "DeployError" not in flat and "entry point" not in flat
