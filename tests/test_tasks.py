"""Command-line numbers: invoke hands them over as strings; each setting gets its type and range."""

from __future__ import annotations

import pytest

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
