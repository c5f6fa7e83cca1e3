"""A vendored wheel under `requirements/wheels/`, named by `--find-links wheels` in a layer: it locks
with its hash, and the lock carries the line so that a fresh clone installs it (issue 13/14)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.lock.lockfile import parse
from tests.lockproject import LockProject, Names, pins, publish
from tests.support.pipenv import isolated_pip_env
from tests.support.pkgindex import PackageIndex, build_wheel

pytestmark = pytest.mark.index


def _vendored(use_index: PackageIndex, tmp_path: Path) -> tuple[LockProject, Names, Path]:
    """The four-layer project whose dev.in asks for a wheel that lies only in requirements/wheels/."""
    names = Names()
    layers = publish(use_index, names)
    layers["dev.in"] += f"--find-links wheels\n{names.vendored}==0.3\n"
    project = LockProject.create(tmp_path / "project", layers)
    wheel = build_wheel(project.requirements / "wheels", names.vendored, "0.3")
    return project, names, wheel


def test_a_vendored_wheel_locks_with_its_hash_and_the_lock_carries_the_find_links_line(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    project, names, wheel = _vendored(use_index, tmp_path)

    project.lock()

    dev = project.read("dev.txt")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert pins(dev.replace("--find-links wheels\n", ""))[names.vendored] == ("0.3", (f"sha256:{sha}",))
    body = dev.split("# content:", 1)[1].split("\n", 2)[2]
    assert body.startswith("--find-links wheels\n"), "the user's relative line, ahead of the pins"
    assert str(project.root) not in dev
    for lower in ("base", "prod", "test"):
        assert "--find-links" not in project.read(f"{lower}.txt"), f"{lower}.txt holds no wheel from there"
    assert project.run("verify").returncode == 0
    assert parse(project.path("dev.txt")).find_links() == [project.requirements / "wheels"]


def test_a_fresh_clone_installs_the_vendored_wheel_from_the_lock_alone(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    project, names, _ = _vendored(use_index, tmp_path)
    project.lock()
    clone = project.copy(tmp_path / "clone")
    shutil.rmtree(project.root)
    # The other packages come from the index's archives, as a wheelhouse on disk: no index at all.
    archives = tmp_path / "archives"
    shutil.copytree(use_index.root, archives)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = isolated_pip_env(None, tmp_path / "cache")

    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--require-hashes", "--no-index", "--find-links", str(archives),
         "--target", str(tmp_path / "target"), "-r", os.path.relpath(clone.path("dev.txt"), elsewhere)],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    installed = {path.name.split("-")[0] for path in (tmp_path / "target").glob("*.dist-info")}
    assert names.vendored.replace("-", "_") in installed


def test_a_hand_removed_find_links_line_fails_verify(use_index: PackageIndex, tmp_path: Path) -> None:
    project, _, _ = _vendored(use_index, tmp_path)
    project.lock()
    project.write("dev.txt", project.read("dev.txt").replace("--find-links wheels\n", ""))

    done = project.run("verify")

    assert done.returncode == 1
    expected = "requirements/dev.txt: lacks the line '--find-links wheels' that its inputs give it; run: nox -s lock"
    assert f"verify: {expected}" in done.stderr.splitlines(), done.stderr


def test_a_find_links_folder_that_is_not_beside_the_layer_is_named_with_the_folder_pip_reads_it_from(
    tmp_path: Path,
) -> None:
    project = LockProject.create(tmp_path / "project", {"base.in": "--find-links wheels\nalpha\n"})
    (project.root / "wheels").mkdir()  # beside pyproject.toml: not where pip looks from requirements/base.in

    for command in ("lock", "verify"):
        done = project.run(command)
        assert done.returncode == 1
        first = done.stderr.splitlines()[0]
        assert first.endswith(
            "requirements/base.in:1: '--find-links wheels': requirements/wheels does not exist; pip reads a relative "
            "find-links path from the folder of the file that names it (requirements/)"
        ), first
        assert "write the path from requirements/" in done.stderr
        assert "Traceback" not in done.stderr
