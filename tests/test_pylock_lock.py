"""`nox -s lock` writes each layer's `pylock.<layer>.toml` and `verify` checks it (issue 15, PEP 751).

A pylock file says what its layer's `.txt` says, in PEP 751's format: lock writes it after every
lock (a no-op one too, when it is missing or stale), verify fails when it is missing or says
anything else, and `[tool.deploy] pylock = false` turns both off.
"""

from __future__ import annotations

import hashlib
import re
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.lockproject import PYPROJECT, LockProject, Names, pins, publish
from tests.support.pkgindex import PackageIndex, build_wheel

pytestmark = pytest.mark.index

LAYERS = ("base", "prod", "test", "dev")
_PROBLEM = re.compile(r"^requirements/pylock\.[\w-]+\.toml[: ].*; run: nox -s lock$")


@pytest.fixture
def project(use_index: PackageIndex, tmp_path: Path) -> tuple[LockProject, Names]:
    names = Names()
    return LockProject.create(tmp_path / "app", publish(use_index, names)), names


def _packages(path: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (version, sorted sha256 hashes) as a pylock file lists them."""
    found = {}
    for package in tomllib.loads(path.read_text(encoding="utf-8"))["packages"]:
        files = package.get("wheels", []) + ([package["sdist"]] if "sdist" in package else [])
        found[package["name"]] = (package["version"], tuple(sorted(f"sha256:{f['hashes']['sha256']}" for f in files)))
    return found


def _verify_problems(project: LockProject) -> list[str]:
    done = project.run("verify")
    assert done.returncode == 1, done.stdout + done.stderr
    problems = [line.removeprefix("verify: ") for line in done.stderr.splitlines()]
    for problem in problems:
        assert _PROBLEM.match(problem), f"not 'requirements/pylock.x.toml: what; run: nox -s lock': {problem}"
    return problems


def _rewrite(path: Path, change: Callable[[str], str]) -> None:
    """Change a pylock file's body and write a matching content digest: a forgery the digest cannot catch."""
    text = path.read_text(encoding="utf-8")
    head, body = re.split(r"# content: sha256:[0-9a-f]{64}\n", text, maxsplit=1)
    body = change(body)
    path.write_text(f"{head}# content: sha256:{hashlib.sha256(body.encode()).hexdigest()}\n{body}", encoding="utf-8")


def _files(project: LockProject) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(project.requirements.iterdir()) if path.is_file()}


def test_lock_writes_a_pylock_file_per_layer_with_the_versions_and_hashes_of_its_txt_lock(
    project: tuple[LockProject, Names], use_index: PackageIndex
) -> None:
    app, _ = project
    done = app.lock()

    for layer in LAYERS:
        path = app.path(f"pylock.{layer}.toml")
        count = len(pins(app.read(f"{layer}.txt")))
        said = f"{count} package" + ("" if count == 1 else "s")
        assert f"wrote requirements/pylock.{layer}.toml ({said})" in done.stdout.splitlines(), done.stdout
        assert _packages(path) == {name.lower(): value for name, value in pins(app.read(f"{layer}.txt")).items()}
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        # The Python the .txt lock was solved for, as its header says: the one a solve checked.
        assert f"solved for CPython {sys.version_info[0]}.{sys.version_info[1]} on" in app.read(f"{layer}.txt")
        assert data["requires-python"] == f"=={sys.version_info[0]}.{sys.version_info[1]}.*"
        for package in data["packages"]:
            for entry in package.get("wheels", []) + ([package["sdist"]] if "sdist" in package else []):
                assert entry["url"].startswith(use_index.url.removesuffix("simple/")), entry
    assert app.run("verify").returncode == 0
    # A second lock finds everything in place: no index page is read for the pylock files again.
    before = len(use_index.requests)
    again = app.lock()
    assert "wrote" not in again.stdout and len(use_index.requests) == before


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        pytest.param(lambda body: body.replace('\nversion = "1.0"', '\nversion = "1.1"', 1),
                     "{alpha} 1.1, but the .txt lock pins 1.0", id="a version changed"),
        pytest.param(lambda body: re.sub(r'sha256 = "[0-9a-f]', 'sha256 = "x', body, count=1),
                     "allows other files than the .txt lock", id="a hash changed"),
    ],
)
def test_verify_fails_on_a_pylock_file_that_says_another_version_or_hash_and_a_lock_repairs_it(
    project: tuple[LockProject, Names], tamper: Callable[[str], str], expected: str
) -> None:
    app, names = project
    app.lock()
    path = app.path("pylock.base.toml")
    _rewrite(path, tamper)

    [problem] = _verify_problems(app)
    assert problem.startswith("requirements/pylock.base.toml: ") and expected.format(alpha=names.alpha) in problem

    # The .txt locks are fresh: the lock rewrites the pylock file from them without solving.
    repaired = app.lock()
    assert "resolving" not in repaired.stdout and "wrote requirements/pylock.base.toml" in repaired.stdout
    assert app.run("verify").returncode == 0


def test_verify_fails_on_a_hand_edited_or_deleted_pylock_file(project: tuple[LockProject, Names]) -> None:
    app, _ = project
    app.lock()
    path = app.path("pylock.prod.toml")
    path.write_text(path.read_text(encoding="utf-8") + "\n# checked by hand\n", encoding="utf-8")
    assert _verify_problems(app) == [
        "requirements/pylock.prod.toml was edited by hand (its content digest does not match); run: nox -s lock"]

    path.unlink()
    assert _verify_problems(app) == ["requirements/pylock.prod.toml is missing; run: nox -s lock"]


def test_pylock_false_writes_none_and_verify_does_not_ask_for_them_and_turning_it_on_needs_no_solve(
    project: tuple[LockProject, Names],
) -> None:
    app, _ = project
    pyproject = app.root / "pyproject.toml"
    pyproject.write_text(PYPROJECT.format(name="lockproject") + "pylock = false\n", encoding="utf-8")
    app.lock()
    assert sorted(app.requirements.glob("pylock.*")) == []
    assert app.run("verify").returncode == 0
    locks = {layer: app.read(f"{layer}.txt") for layer in LAYERS}

    pyproject.write_text(PYPROJECT.format(name="lockproject") + "pylock = true\n", encoding="utf-8")
    done = app.lock()

    lines = done.stdout.splitlines()
    assert lines[0] == "all 4 layers are up to date: base, prod, test, dev" and "resolving" not in done.stdout
    assert [line.split(" (")[0] for line in lines[1:]] == [f"wrote requirements/pylock.{layer}.toml"
                                                           for layer in LAYERS]
    assert {layer: app.read(f"{layer}.txt") for layer in LAYERS} == locks
    assert app.run("verify").returncode == 0


def test_a_locked_file_the_index_does_not_list_by_hash_leaves_every_file_as_it_was(
    project: tuple[LockProject, Names], use_index: PackageIndex
) -> None:
    app, names = project
    app.lock()
    use_index.add(names.gamma, "1.0")
    # An index that lists gamma's file without its sha256 (pip-compile hashes the download itself):
    # the lock solves, but no pylock file could name the file it locked.
    use_index.unhashed.add(names.gamma)
    app.write("prod.in", app.read("prod.in") + f"{names.gamma}\n")
    before = _files(app)

    done = app.run("lock")

    assert done.returncode == 1, done.stdout + done.stderr
    [error] = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert f"{names.gamma} 1.0" in error and use_index.url in error, done.stderr
    assert "[tool.deploy] pylock = false" in done.stderr and "Traceback" not in done.stderr
    assert _files(app) == before


def test_a_find_links_folder_outside_the_project_gets_no_pylock_file_and_the_lock_says_why(
    tmp_path: Path,
) -> None:
    # With the allow-inputs-outside a project needs for it; the index is off (PIP_NO_INDEX, as in conftest).
    outside = tmp_path / "shared-wheels"
    outside.mkdir()
    build_wheel(outside, "tool", "1.0")
    pyproject = PYPROJECT.format(name="lockproject") + f'allow-inputs-outside = ["{outside}"]\n'
    app = LockProject.create(tmp_path / "app", {"prod.in": f"--find-links {outside}\ntool\n"}, pyproject=pyproject)

    done = app.lock()

    assert (f"warning: requirements/pylock.prod.toml is not written: its find-links folder {outside} is outside the "
            "project, a path on this machine that a committed lock must not name; set [tool.deploy] pylock = false "
            "in pyproject.toml, or lock against an http(s) index") in done.stdout.splitlines(), done.stdout
    assert not app.path("pylock.prod.toml").exists()
    assert _verify_problems(app) == ["requirements/pylock.prod.toml is missing; run: nox -s lock"]


def test_the_pylock_files_of_a_solve_come_from_the_pages_pip_read_and_match_a_fresh_look_up(
    project: tuple[LockProject, Names], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The solve's own pages name every locked file: the pylock step opens no connection of its own.
    A lock that only writes the missing pylock files (no solve) reads the index and writes the same."""
    from deploy.lock import indexfiles
    from deploy.lock.solve import lock

    app, _ = project

    def no_connection(env: object) -> None:
        raise AssertionError("the pylock step read the index again")

    with monkeypatch.context() as patch:
        patch.setattr(indexfiles, "_opener", no_connection)
        lock(app.config(), log=lambda line: None)
    from_pip = {layer: app.read(f"pylock.{layer}.toml") for layer in LAYERS}
    for layer in LAYERS:
        app.path(f"pylock.{layer}.toml").unlink()
    said: list[str] = []
    lock(app.config(), log=said.append)

    assert said[0].startswith("all 4 layers are up to date"), said
    assert {layer: app.read(f"pylock.{layer}.toml") for layer in LAYERS} == from_pip
    assert app.run("verify").returncode == 0
