"""Fixtures every test gets: no user SSH config, no machine pip config, a local index on demand."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pipenv import isolated_pip_env
from tests.support.pkgindex import PackageIndex


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep ~/.ssh, ssh-agent and this machine's pip.conf / PIP_* variables out of every test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    cache = tmp_path_factory.getbasetemp() / "pip-cache"
    for key in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    for key, value in isolated_pip_env(None, cache).items():
        if key.startswith(("PIP_", "XDG_CACHE_HOME")):
            monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def package_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PackageIndex]:
    """One local PEP 503 index on 127.0.0.1 for the session; tests add the packages they need."""
    with PackageIndex(tmp_path_factory.mktemp("index")) as index:
        yield index


@pytest.fixture
def use_index(package_index: PackageIndex, monkeypatch: pytest.MonkeyPatch) -> PackageIndex:
    """Point pip (and pip-compile) at the local index only."""
    monkeypatch.delenv("PIP_NO_INDEX", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", package_index.url)
    return package_index


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
