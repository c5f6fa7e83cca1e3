"""Numbers in settings: from the command line (invoke hands them over as strings) and from
pyproject.toml, each gets its type and range, and a bad one is named with where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy import config
from deploy.errors import ConfigError
from deploy.tasks import _typed


def test_numbers_get_the_settings_type_and_zero_where_it_means_something() -> None:
    typed = _typed({"keep_alive": "0", "connect_timeout": "2.5", "parallel": "3", "max_failures": "0", "path": "/x"})
    assert typed == {"keep_alive": 0.0, "connect_timeout": 2.5, "parallel": 3, "max_failures": 0, "path": "/x"}


@pytest.mark.parametrize(("key", "value", "message"), [
    ("keep_alive", "-1", "--keep-alive -1: expected a number of seconds, 0 or more"),
    ("keep_alive", "soon", "--keep-alive soon: expected a number of seconds, 0 or more"),
    ("connect_timeout", "0", "--connect-timeout 0: expected a number of seconds above 0"),
    ("parallel", "0", "--parallel 0: expected a whole number of at least 1"),
])
def test_a_number_out_of_range_names_the_flag_and_what_it_takes(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _typed({key: value})
    assert str(caught.value) == message


@pytest.mark.parametrize(("value", "message"), [
    ("-1", "keep-alive must be a number of seconds >= 0 (0: do not keep connections)"),
    ('"soon"', "keep-alive must be a number of seconds"),
])
def test_a_bad_keep_alive_in_pyproject_names_the_table(tmp_path: Path, value: str, message: str) -> None:
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.deploy.environments.staging]\nhosts = ["deploy@app1"]\nknown-hosts = "kh"\nkeep-alive = {value}\n')
    with pytest.raises(ConfigError) as caught:
        config.load(tmp_path)
    assert str(caught.value) == f"pyproject.toml [tool.deploy.environments.staging]: {message}"


def test_keep_alive_defaults_to_a_minute_and_zero_turns_it_off(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.deploy.environments.staging]\nhosts = ["deploy@app1"]\nknown-hosts = "kh"\n')
    assert config.load(tmp_path).environment("staging").keep_alive == 60
    pyproject.write_text(pyproject.read_text() + "keep-alive = 0\n")
    assert config.load(tmp_path).environment("staging").keep_alive == 0
