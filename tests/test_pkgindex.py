"""The local package index and pip isolation that the lock and deploy tests stand on."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pipenv import isolated_pip_env
from tests.support.pkgindex import PackageIndex, build_sdist, build_wheel

# Direct connections only: a proxy from the environment must not see loopback traffic.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def index(tmp_path: Path) -> Iterator[PackageIndex]:
    with PackageIndex(tmp_path / "index") as served:
        yield served


def _get(url: str) -> tuple[str, bytes]:
    """Return the final URL and body of a GET, or raise HTTPError."""
    with _OPENER.open(url, timeout=10) as response:
        return str(response.geturl()), bytes(response.read())


def _pip(tmp_path: Path, env: dict[str, str], *args: str) -> str:
    command = [sys.executable, "-m", *args]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_same_arguments_build_the_same_bytes(tmp_path: Path) -> None:
    args = ("Acme.Widgets", "1.2", ["beta>=2"], ">=3.8", {"acme_widgets/data.txt": "x"})
    for build in (build_wheel, build_sdist):
        first, second = build(tmp_path / "a", *args), build(tmp_path / "b", *args)
        assert first.name == second.name
        assert first.read_bytes() == second.read_bytes()
    assert build_wheel(tmp_path / "a", "acme-widgets", "1.3").name == (
        "acme_widgets-1.3-py3-none-any.whl"
    )


def test_a_wheel_records_the_hash_and_size_of_every_file(tmp_path: Path) -> None:
    with zipfile.ZipFile(build_wheel(tmp_path, "alpha", "1.0", ["beta"])) as wheel:
        record = wheel.read("alpha-1.0.dist-info/RECORD").decode()
        rows = list(csv.reader(io.StringIO(record)))
        assert sorted(path for path, _, _ in rows) == sorted(wheel.namelist())
        for path, digest, size in rows:
            if path.endswith("/RECORD"):
                continue
            data = wheel.read(path)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert (digest, int(size)) == (f"sha256={expected.decode()}", len(data))
        assert "Requires-Dist: beta\n" in wheel.read("alpha-1.0.dist-info/METADATA").decode()


def test_the_index_serves_pep_503_pages_and_files_added_after_start(
    index: PackageIndex,
) -> None:
    with pytest.raises(urllib.error.HTTPError, match="404"):
        _get(index.url + "acme-widgets/")
    wheel = index.add("Acme_Widgets", "1.0", python_requires=">=3.8,<4")
    root = index.url.removesuffix("simple/")

    final_url, body = _get(index.url + "Acme.Widgets")
    page = body.decode()
    assert final_url == index.url + "acme-widgets/"
    assert f'href="../../files/{wheel.name}#sha256={_sha256(wheel)}"' in page
    assert 'data-requires-python="&gt;=3.8,&lt;4"' in page
    assert b'<a href="acme-widgets/">' in _get(index.url)[1]
    assert _get(root + "files/" + wheel.name)[1] == wheel.read_bytes()

    index.remove("acme-widgets", "1.0")
    with pytest.raises(urllib.error.HTTPError, match="404"):
        _get(root + "files/" + wheel.name)
    assert index.requests[0] == "/simple/acme-widgets/"


@pytest.mark.index
def test_pip_downloads_a_served_wheel_in_hash_checking_mode(
    index: PackageIndex, tmp_path: Path
) -> None:
    wheel = index.add("alpha", "1.0")
    (tmp_path / "lock.txt").write_text(f"alpha==1.0 --hash=sha256:{_sha256(wheel)}\n")
    env = isolated_pip_env(index.url, tmp_path / "cache")

    _pip(tmp_path, env, "pip", "download", "--no-deps", "--require-hashes", "-r", "lock.txt",
         "-d", "downloads")  # fmt: skip

    assert (tmp_path / "downloads" / wheel.name).read_bytes() == wheel.read_bytes()


@pytest.mark.index
def test_pip_compile_locks_a_wheel_and_its_sdist_only_dependency_offline(
    index: PackageIndex, tmp_path: Path
) -> None:
    wheel = index.add("alpha", "1.0", ["beta>=2"])
    sdist = index.add("beta", "2.0", sdist_only=True)
    (tmp_path / "app.in").write_text("alpha\n")
    env = isolated_pip_env(index.url, tmp_path / "cache")

    _pip(tmp_path, env, "piptools", "compile", "--generate-hashes", "--no-emit-index-url",
         "--strip-extras", "--no-config", "-o", "app.txt", "app.in")  # fmt: skip

    lock = (tmp_path / "app.txt").read_text()
    assert f"alpha==1.0 \\\n    --hash=sha256:{_sha256(wheel)}\n" in lock
    # The lock pins the sdist's own hash: pip-compile ran the in-tree backend only for metadata.
    assert f"beta==2.0 \\\n    --hash=sha256:{_sha256(sdist)}\n" in lock
    assert "127.0.0.1" not in lock


@pytest.mark.index
def test_a_wheel_pip_builds_from_an_sdist_equals_the_one_built_directly(
    index: PackageIndex, tmp_path: Path
) -> None:
    index.add("beta", "2.0", ["gamma"], sdist_only=True, files={"beta/data.txt": "d"})
    env = isolated_pip_env(index.url, tmp_path / "cache")

    _pip(tmp_path, env, "pip", "wheel", "--no-deps", "-w", "built", "beta==2.0")

    direct = build_wheel(
        tmp_path / "direct", "beta", "2.0", ["gamma"], files={"beta/data.txt": "d"}
    )
    assert (tmp_path / "built" / direct.name).read_bytes() == direct.read_bytes()


def test_isolated_env_drops_pip_variables_virtualenv_and_proxies(tmp_path: Path) -> None:
    machine = {"PATH": "/bin", "PIP_FIND_LINKS": "/opt", "VIRTUAL_ENV": "/v", "http_proxy": "p"}
    env = isolated_pip_env(None, tmp_path, base=machine)
    assert env == {
        "PATH": "/bin",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "PIP_CACHE_DIR": str(tmp_path / "pip"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


@pytest.mark.index
def test_pip_under_isolated_env_reads_no_config_file(tmp_path: Path) -> None:
    # A user config planted here proves the point on machines that have no pip.conf of their own.
    home = tmp_path / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text("[global]\nfind-links = /planted\n")
    machine = {k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"} | {"HOME": str(home)}
    plain = {k: v for k, v in machine.items() if not k.startswith("PIP_")}
    assert "/planted" in _pip(tmp_path, plain, "pip", "config", "list")

    listed = _pip(tmp_path, isolated_pip_env(None, tmp_path, machine), "pip", "config", "list")

    # What is left are the variables isolated_pip_env sets itself, none from a file.
    names = {line.partition("=")[0] for line in listed.splitlines()}
    assert names == {
        f":env:.{name}"
        for name in (
            "cache-dir",
            "config-file",
            "disable-pip-version-check",
            "no-index",
            "no-input",
        )
    }
