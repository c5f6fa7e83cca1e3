"""An adopted project, end to end: init vendors pinship, the lock holds it with its hash, and a fresh
clone becomes the exact dev environment with `python3 scripts/onboard.py` (issue 13)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import virtualenv

from tests.lockproject import LockProject, Names, pins
from tests.support.adopt import init, tools
from tests.support.pipenv import isolated_pip_env
from tests.support.pkgindex import PackageIndex

pytestmark = pytest.mark.index

WHEELHOUSES = (Path(virtualenv.__file__).parent / "seed" / "wheels" / "embed", Path("/opt/pypi/files"))


def _serve(index: PackageIndex, pattern: str) -> None:
    """A real build backend's wheel from this machine (there is no network), or skip."""
    for folder in WHEELHOUSES:
        found = sorted(folder.glob(pattern)) if folder.is_dir() else []
        if found:
            shutil.copy(found[-1], index.root / found[-1].name)
            return
    pytest.skip(f"no {pattern} on this machine to serve from the test index")


def freeze_project(root: Path, names: Names) -> str:
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "__init__.py").write_text("")
    (root / "requirements.txt").write_text(f"{names.web}==1.0\n{names.helper}==1.0\npytest==1.0\n")
    return "shop"


def pep621_project(root: Path, names: Names) -> str:
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "__init__.py").write_text("")
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "shop"\nversion = "0.1.0"\ndependencies = ["{names.web}>=1"]\n'
        f'[project.optional-dependencies]\ntest = ["pytest"]\n[tool.setuptools]\npackages = ["shop"]\n')
    return "shop"


def poetry_project(root: Path, names: Names) -> str:
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "__init__.py").write_text("")
    (root / "pyproject.toml").write_text(
        '[tool.poetry]\nname = "shop"\nversion = "0.1.0"\ndescription = ""\nauthors = []\n'
        f'[tool.poetry.dependencies]\npython = "^3.9"\n{names.web} = "^1.0"\n'
        '[tool.poetry.group.test.dependencies]\npytest = "*"\n'
        '[build-system]\nrequires = ["poetry-core>=1.0.0"]\nbuild-backend = "poetry.core.masonry.api"\n')
    (root / "poetry.lock").write_text(
        f'[[package]]\nname = "{names.web}"\nversion = "1.0"\n\n[[package]]\nname = "{names.helper}"\n'
        'version = "1.0"\n', encoding="utf-8")
    return "shop"


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd, check=True,
                   capture_output=True)


@pytest.mark.parametrize(("make", "backend"), [
    (freeze_project, "setuptools-*.whl"),
    (pep621_project, "setuptools-*.whl"),
    (poetry_project, "poetry_core-*.whl"),
], ids=["freeze", "pep621", "poetry"])
def test_a_fresh_clone_of_an_adopted_project_becomes_the_exact_dev_environment_in_one_command(
    use_index: PackageIndex, tmp_path: Path, make: Callable[[Path, Names], str], backend: str,
) -> None:
    names = Names()
    for version in ("1.0", "2.0"):
        use_index.add(names.web, version, [f"{names.helper}>=1"])
        use_index.add(names.helper, version)
    use_index.add(names.stray, "1.0")
    tools(use_index)
    _serve(use_index, backend)
    root = tmp_path / "shop"
    package = make(root, names)
    assert init(root).returncode == 0
    project = LockProject(root)
    project.lock()
    for layer in ("test", "dev"):
        text = project.read(f"{layer}.txt")
        assert "--find-links wheels" in text.splitlines(), "the lock names the vendored folder, relative to itself"
        locked = {name: version for name, (version, _) in pins(_without_options(text)).items()}
        assert locked["pinship"] == "0.1.0", layer
    assert names.web in locked
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "adopt pinship")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(root), str(clone))
    env = isolated_pip_env(use_index.url, tmp_path / "pip-cache")

    onboarded = subprocess.run([sys.executable, "scripts/onboard.py"], cwd=clone, env=env, capture_output=True,
                               text=True, check=False)

    assert onboarded.returncode == 0, onboarded.stdout + onboarded.stderr
    said = onboarded.stdout.splitlines()
    assert "  .venv/bin/python -m deploy verify" in said, onboarded.stdout
    python = clone / ".venv" / "bin" / "python"
    verified = subprocess.run([str(python), "-m", "deploy", "verify"], cwd=clone, env=env, capture_output=True,
                              text=True, check=False)
    assert verified.returncode == 0, verified.stderr
    where = subprocess.run([str(python), "-I", "-c", f"import deploy, {package}; print(deploy.__file__)"],
                           cwd=clone, env=env, capture_output=True, text=True, check=False)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(clone / ".venv"), "pinship comes from the venv"
    frozen = subprocess.run([str(python), "-m", "pip", "freeze", "--all", "--exclude-editable"], cwd=clone, env=env,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert {line.lower().replace("_", "-") for line in frozen} - {f"pip=={_pip_version(python)}"} == {
        f"{name}=={version}" for name, version in locked.items()}, "exactly the lock: venv's setuptools is removed"

    subprocess.run([str(python), "-m", "pip", "install", "-q", names.stray], cwd=clone, env=env, check=True)
    again = subprocess.run([sys.executable, "scripts/onboard.py"], cwd=clone, env=env, capture_output=True,
                           text=True, check=False)

    assert again.returncode == 0, again.stdout + again.stderr
    assert f"sync: removing 1 not in requirements/dev.txt: {names.stray}" in again.stdout.splitlines()


def test_the_readme_ci_recipe_verifies_an_adopted_project_from_the_test_lock(
    use_index: PackageIndex, tmp_path: Path,
) -> None:
    # The README's CI job installs requirements/test.txt with --require-hashes and runs
    # `python -m deploy verify`: pinship must come with the test lock, from the vendored wheel.
    names = Names()
    use_index.add(names.web, "1.0")
    tools(use_index)
    root = tmp_path / "shop"
    root.mkdir()
    (root / "pyproject.toml").write_text(
        f'[project]\nname = "shop"\nversion = "0.1.0"\ndependencies = ["{names.web}"]\n', encoding="utf-8")
    assert init(root).returncode == 0
    LockProject(root).lock()
    clone = tmp_path / "clone"
    shutil.copytree(root, clone, ignore=shutil.ignore_patterns(".venv"))
    env = isolated_pip_env(use_index.url, tmp_path / "pip-cache")
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "ci")], check=True)
    python = str(tmp_path / "ci" / "bin" / "python")

    installed = subprocess.run([python, "-m", "pip", "install", "--require-hashes", "--no-deps", "-r",
                                "requirements/test.txt"], cwd=clone, env=env, capture_output=True, text=True,
                               check=False)
    verified = subprocess.run([python, "-m", "deploy", "verify"], cwd=clone, env=env, capture_output=True, text=True,
                              check=False)

    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("verify: 4 layers fresh and consistent"), verified.stdout


def _without_options(lock: str) -> str:
    return "".join(line for line in lock.splitlines(keepends=True) if not line.startswith("--"))


def _pip_version(python: Path) -> str:
    done = subprocess.run([str(python), "-c", "import pip; print(pip.__version__)"], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    return done.stdout.strip()
