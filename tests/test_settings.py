"""Settings are checked by one set of rules, whether they come from pyproject.toml or a flag.

Each bad value is one line naming where it came from (the pyproject table and key, or the flag)
and what the setting accepts; an environment name is an identifier before anything is created.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from deploy import config
from deploy.errors import ConfigError

STAGING = '[tool.deploy.environments.staging]\nhosts = ["deploy@app1"]\nknown-hosts = "kh"\npath = "/srv/app"\n'
TABLE = "pyproject.toml [tool.deploy.environments.staging]"
SECONDS = "a number of seconds above 0 and at most 604800 (a week)"
KEEP_ALIVE = "a number of seconds from 0 to 604800 (a week); 0: close them at the end"

# (key, value as TOML writes it, value as typed after the flag, what the setting accepts)
BAD = [
    ("connect-timeout", "-5", "-5", SECONDS),
    ("connect-timeout", "0", "0", SECONDS),
    ("connect-timeout", "nan", "nan", SECONDS),
    ("connect-timeout", "inf", "inf", SECONDS),
    ("connect-timeout", "true", "true", SECONDS),
    ("command-timeout", "nan", "nan", SECONDS),
    ("command-timeout", "-inf", "-inf", SECONDS),
    ("command-timeout", "604801", "604801", SECONDS),
    ("command-timeout", '"soon"', "soon", SECONDS),
    ("keep-alive", "true", "true", KEEP_ALIVE),
    ("keep-alive", "nan", "nan", KEEP_ALIVE),
    ("keep-alive", "-1", "-1", KEEP_ALIVE),
    ("keep-alive", "inf", "inf", KEEP_ALIVE),
    ("parallel", "0", "0", "a whole number of at least 1 and at most 1000"),
    ("parallel", "2.5", "2.5", "a whole number of at least 1 and at most 1000"),
    ("parallel", "true", "true", "a whole number of at least 1 and at most 1000"),
    ("keep-releases", "0", "0", "a whole number of at least 1 and at most 10000"),
    ("keep-releases", "-3", "-3", "a whole number of at least 1 and at most 10000"),
    ("max-failures", "-1", "-1", "a whole number, 0 or more"),
    ("max-failures", "nan", "nan", "a whole number, 0 or more"),
]


def project(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(text, encoding="utf-8")
    return tmp_path


def message(caught: pytest.ExceptionInfo[ConfigError]) -> str:
    return str(caught.value)


@pytest.mark.parametrize(("key", "toml", "typed", "expected"), BAD)
def test_a_bad_number_in_pyproject_names_the_table_the_key_and_the_range(
    tmp_path: Path, key: str, toml: str, typed: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(project(tmp_path, f"{STAGING}{key} = {toml}\n"))
    assert message(caught) == f"{TABLE}: {key} = {toml}: expected {expected}"


@pytest.mark.parametrize(("key", "toml", "typed", "expected"), BAD)
def test_the_same_bad_number_as_a_flag_names_the_flag_and_the_same_range(
    key: str, toml: str, typed: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config.flag_value(key.replace("-", "_"), typed)
    assert message(caught) == f"--{key} {typed}: expected {expected}"


@pytest.mark.parametrize(("key", "value", "number"), [
    ("connect-timeout", "0.5", 0.5),
    ("command-timeout", "604800", 604800.0),
    ("keep-alive", "0", 0.0),
    ("parallel", "1", 1),
    ("keep-releases", "1", 1),
    ("max-failures", "0", 0),
])
def test_the_edges_of_each_range_are_accepted_on_both_paths(
    tmp_path: Path, key: str, value: str, number: float
) -> None:
    attr = key.replace("-", "_")
    from_file = getattr(config.load(project(tmp_path, f"{STAGING}{key} = {value}\n")).environment("staging"), attr)
    from_flag = config.flag_value(attr, value)
    assert from_file == from_flag == number
    assert type(from_file) is type(from_flag) is type(config.SETTINGS[attr].default)


def test_numbers_too_large_for_any_timer_are_refused_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.flag_value("command_timeout", "1e400")
    assert message(caught) == f"--command-timeout 1e400: expected {SECONDS}"
    with pytest.raises(ConfigError) as caught:
        config.load(project(tmp_path, f"{STAGING}command-timeout = {10**400}\n"))
    assert message(caught) == f"{TABLE}: command-timeout = {str(10**400)[:77]}...: expected {SECONDS}"


def test_defaults_are_the_tables_own(tmp_path: Path) -> None:
    env = config.load(project(tmp_path, STAGING)).environment("staging")
    assert (env.command_timeout, env.connect_timeout, env.keep_alive) == (600.0, 15.0, 60.0)
    assert (env.parallel, env.keep_releases, env.max_failures, env.confirm) == (10, 5, 0, False)
    for attr, setting in config.SETTINGS.items():
        if attr not in ("hosts", "known_hosts", "path"):
            assert getattr(env, attr) == setting.default, attr


def test_a_boolean_setting_takes_only_true_or_false(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(project(tmp_path, f"{STAGING}confirm = 1\n"))
    assert message(caught) == f"{TABLE}: confirm = 1: expected true or false"


def test_a_bad_value_is_shown_inert_and_short(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.flag_value("parallel", "\x1b[2J1\nhost: switched" + "x" * 200)
    shown = message(caught)
    assert "\x1b" not in shown and "\n" not in shown and len(shown) < 160
    with pytest.raises(ConfigError) as caught:
        config.load(project(tmp_path, f'{STAGING}python = ["{"y" * 500}"]\n'))
    assert "\n" not in message(caught) and len(message(caught)) < 200


def test_help_text_comes_from_the_table_with_default_and_range() -> None:
    from deploy.tasks import COMMON_HELP, deploy

    assert COMMON_HELP["command_timeout"] == (
        "seconds one remote step may take before the host counts as hung (default 600; above 0, at most 604800)")
    assert "default 60; 0 or more" in COMMON_HELP["keep_alive"]
    assert deploy.help["keep_releases"] == config.SETTINGS["keep_releases"].described
    assert not math.isnan(config.SETTINGS["command_timeout"].default)


# Environment names ---------------------------------------------------------------------------

RULE = "use letters, digits, '-' and '_', starting with a letter, at most 64 characters"


@pytest.mark.parametrize("name", ["../x", "a/b", "-x", "1st", "", "x" * 65, "st aging", "prod\x1b[0m", "café"])
def test_an_environment_name_in_pyproject_must_be_an_identifier(tmp_path: Path, name: str) -> None:
    quoted = name.replace("\\", "\\\\").replace('"', '\\"').replace("\x1b", "\\u001b")
    root = project(tmp_path, f'[tool.deploy.environments."{quoted}"]\n')
    with pytest.raises(ConfigError) as caught:
        config.load(root)
    assert message(caught) == (
        f"pyproject.toml [tool.deploy.environments] {name!a}: not an environment name ({RULE})")
    assert not (tmp_path / ".deploy").exists()


def test_an_environment_name_from_a_flag_must_be_an_identifier(tmp_path: Path) -> None:
    loaded = config.load(project(tmp_path, "[tool.deploy]\n"))
    with pytest.raises(ConfigError) as caught:
        loaded.environment("../x", "--env")
    assert message(caught) == f"--env '../x': not an environment name ({RULE})"


def test_identifiers_with_dashes_and_underscores_are_environment_names(tmp_path: Path) -> None:
    loaded = config.load(project(tmp_path, "[tool.deploy.environments.eu-west_2]\n"))
    assert loaded.environment("eu-west_2").path == str(tmp_path.resolve() / ".deploy" / "eu-west_2")


# Where a host-less environment deploys -------------------------------------------------------

def test_a_hostless_environment_deploys_under_dot_deploy_by_default_wherever_it_is_run(tmp_path: Path) -> None:
    root = project(tmp_path, "[tool.deploy.environments.local]\n[tool.deploy.environments.review]\n")
    loaded = config.load(root)
    assert loaded.environment("local").path == str(root.resolve() / ".deploy" / "local")
    assert loaded.environment("review").path == str(root.resolve() / ".deploy" / "review")


def test_a_relative_path_of_a_hostless_environment_is_taken_from_the_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path, '[tool.deploy.environments.review]\npath = "build/review"\n')
    (root / "sub").mkdir()
    monkeypatch.chdir(root / "sub")
    assert config.load().environment("review").path == str(root.resolve() / "build" / "review")


@pytest.mark.parametrize(("path", "what"), [(".", "the project root"), ("..", "above the project root")])
def test_a_hostless_environment_may_not_deploy_into_the_project_root_or_above(
    tmp_path: Path, path: str, what: str
) -> None:
    (tmp_path / "proj").mkdir()
    root = project(tmp_path / "proj", f'[tool.deploy.environments.review]\npath = "{path}"\n')
    with pytest.raises(ConfigError) as caught:
        config.load(root)
    folder = (root / path).resolve()
    assert caught.value.message == (
        f"pyproject.toml [tool.deploy.environments.review]: path '{path}' is {what} ({folder}): "
        "releases, wheels and current would land among the project's files")
    assert caught.value.fix == 'deploy to a folder of its own, e.g. path = ".deploy/review"'


@pytest.mark.parametrize(("key", "toml", "expected"), [
    ("path", '""', "a plain non-empty string (no leading '-')"),
    ("python", '" "', "a plain non-empty string (no leading '-')"),
    ("known-hosts", '""', "a plain non-empty string (no leading '-')"),
    ("hosts", "[]", "a list of at least one string"),
    ("hosts", '"deploy@app1"', "a list of at least one string"),
])
def test_an_empty_value_that_would_mean_nothing_is_refused_on_both_paths(
    tmp_path: Path, key: str, toml: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(project(tmp_path, f'[tool.deploy.environments.review]\n{key} = {toml}\n'))
    assert message(caught) == f"pyproject.toml [tool.deploy.environments.review]: {key} = {toml}: expected {expected}"
    if key != "hosts":
        with pytest.raises(ConfigError) as caught:
            config.flag_value(key.replace("-", "_"), toml.strip('"'))
        assert message(caught) == f"--{key} {toml.strip(chr(34))!a}: expected {expected}"


# pyproject.toml itself -----------------------------------------------------------------------

def test_a_pyproject_that_is_not_utf8_names_the_file_line_and_byte(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_bytes(b'[project]\nname = "demo"\ndescription = "caf\xe9"\n')
    with pytest.raises(ConfigError) as caught:
        config.load(tmp_path)
    where = tmp_path.resolve() / "pyproject.toml"
    assert caught.value.message == f"{where}:3: not UTF-8 text (byte 0xe9 at offset 42)"
    assert caught.value.fix == "save pyproject.toml as UTF-8 (TOML files are UTF-8)"


def test_a_pyproject_with_a_byte_order_mark_is_named_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_bytes(b'\xef\xbb\xbf[project]\nname = "demo"\n')
    with pytest.raises(ConfigError) as caught:
        config.load(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path.resolve() / 'pyproject.toml'}:1: starts with a byte order mark\n"
        "  fix: save pyproject.toml as UTF-8 without a BOM")


@pytest.mark.parametrize("text", ['tool = "deploy"\n', "[tool]\ndeploy = 1\n"])
def test_a_tool_or_tool_deploy_that_is_not_a_table_is_one_line(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(project(tmp_path, text))
    assert message(caught) == "pyproject.toml: [tool.deploy] must be a table"


def test_a_toml_syntax_error_is_one_line_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(project(tmp_path, "[tool.deploy\n"))
    assert message(caught).startswith("pyproject.toml: ") and "line 1" in message(caught)
    assert "\n" not in message(caught)


# Folders lock inputs may come from -----------------------------------------------------------

def test_folders_allowed_for_inputs_outside_the_root_are_resolved_from_the_root(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text('[tool.deploy]\nallow-inputs-outside = ["../shared", "/etc"]\n')
    assert config.load(root).inputs_outside == (tmp_path.resolve() / "shared", Path("/etc"))


def test_no_folder_outside_the_root_is_allowed_by_default(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.deploy]\n")
    assert config.load(tmp_path).inputs_outside == ()


def test_allowed_input_folders_must_be_a_list_of_strings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(project(tmp_path, '[tool.deploy]\nallow-inputs-outside = "../shared"\n'))
    assert message(caught) == "pyproject.toml [tool.deploy]: allow-inputs-outside must be a list of strings"


def test_unknown_keys_and_bad_hosts_are_named_inert(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(project(tmp_path, '[tool.deploy]\n"x\\u001b[2J\\nhost: switched" = 1\n'))
    assert message(caught) == "pyproject.toml [tool.deploy]: unknown key(s) 'x\\x1b[2J\\nhost: switched'"
    with pytest.raises(ConfigError) as caught:
        config.load(project(tmp_path, f'{STAGING}keep-alives = 1\n'))
    assert message(caught).startswith(f"{TABLE}: unknown key(s) keep-alives (known: command-timeout, confirm,")
    with pytest.raises(ConfigError) as caught:
        config.Host.parse("deploy@app1\n:22", "--hosts")
    assert message(caught) == "--hosts: host 'deploy@app1\\n:22' is not of the form user@host[:port]"


@pytest.mark.parametrize("spec", ["-oProxyCommand=x", "deploy@-oProxyCommand=x", "-l@app1", "de ploy@app1",
                                  "deploy@app1:99999999999", "deploy@app1:", "dep\u00e9@app1"])
def test_a_host_spec_is_a_user_a_host_name_and_a_port_and_nothing_else(spec: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.Host.parse(spec, "--hosts")
    assert "is not of the form user@host[:port]" in message(caught) or "invalid port" in message(caught)


@pytest.mark.parametrize(("spec", "parsed"), [
    ("deploy@app1.example.com", ("deploy", "app1.example.com", 22)),
    ("app_2:2222", (None, "app_2", 2222)),
    ("root@127.0.0.2:22022", ("root", "127.0.0.2", 22022)),
    ("deploy@[::1]:2200", ("deploy", "::1", 2200)),
])
def test_ordinary_host_specs_parse(spec: str, parsed: tuple[str | None, str, int]) -> None:
    host = config.Host.parse(spec, "--hosts")
    assert (host.user, host.hostname, host.port) == parsed


SSH = '[tool.deploy.environments.staging]\nhosts = ["deploy@app1"]\nknown-hosts = "kh"\n'


@pytest.mark.parametrize("path", ["srv/app", "~/app", "/", "/srv/../etc", "-oProxyCommand=x"])
def test_the_deploy_path_on_ssh_hosts_must_be_an_absolute_folder_of_its_own(tmp_path: Path, path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(project(tmp_path, f'{SSH}path = "{path}"\n'))
    assert message(caught).startswith(f"{TABLE}: path")
    assert "\n" not in caught.value.message


def test_an_ssh_environment_without_a_path_is_refused_rather_than_deploying_into_the_logins_home(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(project(tmp_path, SSH))
    assert caught.value.message == (
        f"{TABLE}: path is required for an SSH environment (where releases live on the hosts)")


@pytest.mark.parametrize("python", ["-oProxyCommand=x", "python3\nhost: switched", "-"])
def test_an_interpreter_that_reads_as_an_option_or_holds_control_characters_is_refused(
    tmp_path: Path, python: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(project(tmp_path, f"{STAGING}python = {json.dumps(python)}\n"))
    assert message(caught).endswith("expected a plain non-empty string (no leading '-')")
    with pytest.raises(ConfigError):
        config.flag_value("python", python)


@pytest.mark.parametrize("typed", ["\uff11", "1_0", " 5 ", "5\n", "0x10", "1e3"])
def test_a_whole_number_from_a_flag_is_ascii_digits_only(typed: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.flag_value("parallel", typed)
    assert str(caught.value).startswith("--parallel ")


def test_known_hosts_and_the_requirements_folder_stay_inside_the_project(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    with pytest.raises(ConfigError) as caught:
        config.load(project(root, f'{STAGING.replace("kh", "../../escape")}'))
    assert "known-hosts '../../escape'" in caught.value.message and "outside the project" in caught.value.message
    with pytest.raises(ConfigError) as caught:
        config.load(project(root, '[tool.deploy]\nrequirements = "../outside"\n'))
    assert "requirements '../outside'" in caught.value.message and "outside the project" in caught.value.message
