"""A throwaway project with layered requirements, and the commands a user would run in it.

Lock tests share one package index for the whole session (building and serving it is the slow
part), so every test gets package names of its own: `Names` prefixes them with a random token and
one test's releases never show up in another's solve.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy import config as config_module
from deploy.config import Config
from tests.support.pipenv import isolated_pip_env
from tests.support.pkgindex import PackageIndex

PYPROJECT = """\
[project]
name = "{name}"
version = "0.1.0"

[tool.deploy]
requirements = "requirements"
deploy-layer = "prod"
"""


class Names:
    """Package names unique to one test: `names.alpha` is e.g. `t3f9a1c-alpha`."""

    def __init__(self) -> None:
        self.token = "t" + secrets.token_hex(3)

    def __getattr__(self, short: str) -> str:
        if short.startswith("_"):
            raise AttributeError(short)
        return f"{self.token}-{short}"


@dataclass
class LockProject:
    """A project folder with pyproject.toml and requirements/*.in, as `deploy init` would leave it."""

    root: Path

    @classmethod
    def create(cls, root: Path, layers: dict[str, str], *, pyproject: str | None = None) -> LockProject:
        root.mkdir(parents=True, exist_ok=True)
        (root / "pyproject.toml").write_text(pyproject or PYPROJECT.format(name="lockproject"), encoding="utf-8")
        project = cls(root)
        for name, text in layers.items():
            project.write(name, text)
        return project

    @property
    def requirements(self) -> Path:
        return self.root / "requirements"

    def path(self, name: str) -> Path:
        """`prod.in` or `prod.txt` inside requirements/, or `../x` relative to it."""
        return (self.requirements / name).resolve()

    def write(self, name: str, text: str) -> Path:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def read(self, name: str) -> str:
        return self.path(name).read_text(encoding="utf-8")

    def config(self) -> Config:
        return config_module.load(self.root)

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`python -m deploy --root ROOT ARGS` as a user runs it (default: the test's environment)."""
        return subprocess.run(
            [sys.executable, "-m", "deploy", "--root", str(self.root), *args],
            capture_output=True, text=True, check=False, cwd=self.root,
            env=None if env is None else dict(env),
        )

    def lock(self, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Lock and insist that it worked, showing pip-compile's complaint when it did not."""
        done = self.run("lock", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def copy(self, dest: Path) -> LockProject:
        """The same project in another folder: locks name their inputs relative to the project."""
        shutil.copytree(self.root, dest)
        return LockProject(dest)

    def snapshot(self) -> dict[str, bytes]:
        """Every lock file's bytes, to compare before and after a run."""
        return {path.name: path.read_bytes() for path in sorted(self.requirements.glob("*.txt"))}


def publish(index: PackageIndex, names: Names) -> dict[str, str]:
    """Release the packages of a typical app into the index; return its four layers' `.in` text.

    base: alpha.  prod: + beta (needs alpha and delta, which exists only as an sdist).
    test: + checker (needs alpha).  dev: + linter.
    """
    index.add(names.alpha, "1.0")
    index.add(names.delta, "1.0", sdist_only=True)
    index.add(names.beta, "1.0", [f"{names.alpha}>=1", names.delta])
    index.add(names.checker, "1.0", [names.alpha])
    index.add(names.linter, "1.0")
    return {
        "base.in": f"# What the app needs everywhere.\n{names.alpha}\n",
        "prod.in": f"# What ships.\n-r base.in\n{names.beta}\n",
        "test.in": f"-r prod.in\n{names.checker}\n",
        "dev.in": f"-r test.in\n{names.linter}\n",
    }


def locked_copy(index: PackageIndex, factory: pytest.TempPathFactory) -> tuple[LockProject, Names]:
    """A four-layer project locked against the index, for a module's worth of read-only tests.

    Module-scoped fixtures run before the per-test isolation in conftest, so the environment
    is isolated here explicitly (and find-links points at the archives on disk, so the tests can
    check that no local path leaks into a lock).
    """
    names = Names()
    project = LockProject.create(factory.mktemp("locked"), publish(index, names))
    env = isolated_pip_env(index.url, factory.getbasetemp() / "pip-cache")
    env.update(HOME=str(factory.mktemp("home")), PIP_FIND_LINKS=str(index.root))
    project.lock(env=env)
    return project, names


def pins(text: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """`name -> (version, hashes)` read from a lock file's text, independently of the package."""
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in text.replace("\\\n", " ").splitlines():
        if not line.strip() or line.lstrip().startswith(("#", "--")):
            continue  # comments, and option lines such as a vendored wheel's --find-links
        requirement, *options = line.split()
        assert "==" in requirement, f"not pinned with ==: {line}"
        name, version = requirement.split("==", 1)
        hashes = tuple(sorted(option.removeprefix("--hash=") for option in options))
        assert hashes and all(h.startswith("sha256:") for h in hashes), f"pin without --hash: {line}"
        found[name] = (version, hashes)
    return found


def lock_both_ways(
    project: LockProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], list[str], dict[str, bytes]]:
    """Lock `project` as a user's lock does, and a copy of it the long way (the one-run path of
    lock/onerun.py off: the rounds); return both logs and the first one's locks, after checking that
    the two sets of lock files are byte-identical."""
    from deploy.lock import onerun
    from deploy.lock.solve import lock

    rounds = project.copy(tmp_path / "rounds")
    fast_log: list[str] = []
    lock(project.config(), log=fast_log.append)
    rounds_log: list[str] = []
    with monkeypatch.context() as patch:
        patch.setattr(onerun, "ENABLED", False)
        lock(rounds.config(), log=rounds_log.append)
    assert project.snapshot() == rounds.snapshot(), "\n".join(fast_log)
    return fast_log, rounds_log, project.snapshot()


def lock_fails_both_ways(
    project: LockProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], str]:
    """Lock `project` as a user's lock does and a copy of it the long way (as lock_both_ways), both
    failing; return the first one's log and error, after checking that both errors read the same and
    that neither wrote a lock."""
    from deploy.errors import LockError
    from deploy.lock import onerun
    from deploy.lock.solve import lock

    rounds = project.copy(tmp_path / "rounds")
    said: list[str] = []
    with pytest.raises(LockError) as fast_error:
        lock(project.config(), log=said.append)
    with monkeypatch.context() as patch, pytest.raises(LockError) as rounds_error:
        patch.setattr(onerun, "ENABLED", False)
        lock(rounds.config(), log=lambda line: None)
    assert str(fast_error.value) == str(rounds_error.value)
    assert project.snapshot() == {}, "the joint run's pull on a lower layer was never written"
    return said, f"{fast_error.value}\n  fix: {fast_error.value.fix}"


def runs(log: list[str]) -> int:
    """How many resolver runs a lock's log announces."""
    return sum(line.startswith("resolving ") for line in log)


def versions(project: LockProject, layer: str) -> dict[str, str]:
    return {name: version for name, (version, _) in pins(project.read(f"{layer}.txt")).items()}
