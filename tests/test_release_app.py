"""The app's own wheel in a release: there must be one, it is built by the project's own backend
(fetched from the index when this machine lacks it), a failed build is shown in the backend's own
words, and a host that refuses stops the deploy without waiting for the build."""

from __future__ import annotations

import os
import re
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import config as config_module
from deploy.release.app import app_wheel, index_options
from deploy.release.cache import Cache, Wheel
from tests.deployproject import (
    APP,
    SHIPPED,
    DeployProject,
    backend_source,
    new_cluster,
    new_project,
    ssh_project,
)
from tests.support.pipenv import isolated_pip_env
from tests.support.pkgindex import PackageIndex
from tests.support.sshd import SshCluster
from tests.test_deploy_local import installed, live, local

GUTTER = "    | "
# A backend module as a package on the index, so that pip must fetch it to build the app.
NOISY_FAILURE = """
import sys

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    for number in range(30):
        print(f"backend says line {number}", file=sys.stderr)
    raise SystemExit("error: Multiple top-level packages discovered in a flat-layout: ['deploy', 'demoapp'].")
"""


def without_project_table(project: DeployProject) -> None:
    text = project.pyproject.read_text()
    start, end = text.index("[project]"), text.index("[tool.deploy]")
    project.pyproject.write_text(text[:start] + text[end:])


def backend_from_index(project: DeployProject, index: PackageIndex, requirement: str, backend: str) -> None:
    """The project's build backend is `requirement`, which only `index` has."""
    text = project.pyproject.read_text()
    start = text.index("[build-system]")
    end = text.index("\n[", start) + 1
    system = f'[build-system]\nrequires = ["{requirement}"]\nbuild-backend = "{backend}"\n\n'
    project.pyproject.write_text(text[:start] + system + text[end:])
    (project.root / "_backend.py").unlink()
    project.env = isolated_pip_env(index.url, project.root.parent / "pip-cache")


def test_a_project_without_an_app_is_refused_before_any_host_is_contacted(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    project = new_project(tmp_path_factory, "no-app")
    without_project_table(project)

    planned = project.deploy("--dry-run", env="local")
    refused = project.deploy(env="local")

    for outcome in (planned, refused):
        outcome.assert_clean()
        assert outcome.code == 1, outcome.output
        assert "there is no app to deploy: pyproject.toml has no [project] table" in outcome.output
        assert "fix: add a [project] table" in outcome.output
        assert "switched" not in outcome.output and "connecting" not in outcome.output
    assert not local(project).exists()


def test_a_failed_app_build_shows_the_backends_own_last_lines_and_sends_nothing(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    project = new_project(tmp_path_factory, "failing-build")
    with PackageIndex(tmp_path / "index") as index:
        index.add("noisybackend", "1.0", files={"noisybackend/__init__.py": NOISY_FAILURE})
        backend_from_index(project, index, "noisybackend", "noisybackend")
        outcome = project.deploy(env="local")

    assert outcome.code == 1, outcome.output
    shown = [line.removeprefix(GUTTER).strip() for line in outcome.output.splitlines() if line.startswith(GUTTER)]
    assert "error: Multiple top-level packages discovered in a flat-layout: ['deploy', 'demoapp']." in shown
    assert "backend says line 29" in shown
    assert len(shown) <= 16  # the last lines, and a line saying earlier ones were left out
    assert "backend says line 0" not in outcome.output, outcome.output
    assert "pip wheel --no-deps ." in outcome.output
    assert "nox -s verify" not in outcome.output
    assert not local(project).exists()


def test_the_apps_build_requirements_come_from_the_index_the_locks_are_compiled_against() -> None:
    compile_options = ["--index-url", "https://mirror.example/simple", "--generate-hashes", "--allow-unsafe",
                       "--find-links=/wheels", "--extra-index-url", "https://extra.example/simple", "--no-index"]
    assert index_options(compile_options) == [
        "--index-url", "https://mirror.example/simple", "--find-links=/wheels",
        "--extra-index-url", "https://extra.example/simple", "--no-index"]
    assert index_options(["--strip-extras"]) == []


def _poetry_core_wheel() -> Path | None:
    """poetry-core as a wheel on this machine, for a test index (there is no network)."""
    for folder in (Path("/opt/pypi/files"), Path(os.environ.get("PINSHIP_TEST_WHEELS", "/nonexistent"))):
        found = sorted(folder.glob("poetry_core-*.whl")) if folder.is_dir() else []
        if found:
            return found[-1]
    return None


def test_a_poetry_project_ships_its_app_built_by_poetry_core_from_the_index(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    wheel = _poetry_core_wheel()
    if wheel is None:
        pytest.skip("no poetry-core wheel on this machine to serve from the test index")
    project = new_project(tmp_path_factory, "poetry-app")
    without_project_table(project)
    text = project.pyproject.read_text()
    project.pyproject.write_text(text.replace(
        "[tool.deploy]",
        f'[tool.poetry]\nname = "{APP}"\nversion = "2.0"\ndescription = ""\nauthors = []\n'
        f'packages = [{{ include = "{APP}" }}]\n\n[tool.deploy]', 1))
    with PackageIndex(tmp_path / "index") as index:
        shutil.copy(wheel, index.root / wheel.name)
        backend_from_index(project, index, "poetry-core>=1.0.0", "poetry.core.masonry.api")
        outcome = project.deploy(env="local")

    assert outcome.code == 0, outcome.output
    assert installed(project) == {**SHIPPED, APP: "2.0"}
    assert live(project)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshCluster]:
    with new_cluster(tmp_path_factory, 2) as started:
        yield started


@pytest.mark.ssh
def test_a_changed_host_key_stops_the_deploy_without_waiting_for_the_apps_build(
    tmp_path_factory: pytest.TempPathFactory, cluster: SshCluster
) -> None:
    project = ssh_project(tmp_path_factory, cluster, "key-before-build")
    # A build that would take a minute: the deploy must not wait for it.
    slow = backend_source().replace(
        "def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):\n",
        "def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):\n"
        "    import time\n    time.sleep(60)\n", 1)
    assert slow != backend_source()
    (project.root / "_backend.py").write_text(slow)
    impostor = cluster.hosts[1]
    impostor.rotate_host_key()

    started = time.monotonic()
    outcome = project.deploy(timeout=120)
    seconds = time.monotonic() - started

    assert outcome.code == 1, outcome.output
    assert f"{impostor.spec()}: HOST KEY CHANGED" in outcome.output
    assert seconds < 15, f"{seconds:.1f} s: the deploy waited for the build\n{outcome.output}"
    assert re.search(rf"{re.escape(cluster.hosts[0].spec())}\s+-\s+not switched: 1 host\(s\) could not be probed",
                     outcome.output), outcome.output
    assert not _processes_in(project.root), "the app's build was left running"


def _processes_in(folder: Path) -> list[int]:
    """Processes of this user whose working folder is `folder` (a build backend runs there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == folder:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _setuptools_app(root: Path, package: str) -> Path:
    """A project at `root` whose setuptools build ships package `package` (an empty __init__.py)."""
    (root / package).mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=65.4"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{package}"\nversion = "1.0"\n\n[tool.setuptools]\npackages = ["{package}"]\n',
        encoding="utf-8")
    (root / package / "__init__.py").write_text("", encoding="utf-8")
    return root


def test_a_setuptools_app_is_built_outside_its_tree_so_a_module_deleted_since_never_ships(tmp_path: Path) -> None:
    # setuptools' build/lib keeps a file whose source is gone: built in the tree, the next release
    # would still import it (seen in a trial: `git rm` of a module, deploy, and it was there).
    root = _setuptools_app(tmp_path / "shop", "shop")
    (root / "shop" / "__init__.py").write_text("GREETING = 'hello'\n", encoding="utf-8")
    (root / "shop" / "extra.py").write_text("X = 1\n", encoding="utf-8")
    config = config_module.load(root)
    cache = Cache(tmp_path / "cache")

    def members(wheel: Wheel | None) -> set[str]:
        assert wheel is not None
        with zipfile.ZipFile(cache.by_hash[wheel.sha256]) as archive:
            return {name for name in archive.namelist() if not name.startswith("shop-1.0.dist-info/")}

    first = members(app_wheel(config, cache, log=lambda line: None))
    (root / "shop" / "extra.py").unlink()
    second = members(app_wheel(config, cache, log=lambda line: None))

    assert first == {"shop/__init__.py", "shop/extra.py"}
    assert second == {"shop/__init__.py"}
    assert sorted(path.name for path in root.iterdir()) == ["pyproject.toml", "shop"], "no build/ or *.egg-info left"


def test_files_of_a_package_the_apps_wheel_leaves_out_are_named_with_how_to_ship_them(tmp_path: Path) -> None:
    # A freeze-only Django trial: init's pyproject.toml listed the package, setuptools shipped only
    # its .py files, and the release ran without its templates and static files: `switched`, and
    # TemplateDoesNotExist once deployed. The wheel is the backend's to make; the deploy says what
    # it left out, on every deploy of that source (a cached wheel too).
    root = _setuptools_app(tmp_path / "site", "site")
    for folder in ("site/templates/pages", "site/static"):
        (root / folder).mkdir(parents=True)
    (root / "site" / "templates" / "pages" / "health.html").write_text("ok\n", encoding="utf-8")
    (root / "site" / "static" / "site.css").write_text("body {}\n", encoding="utf-8")
    (root / "site" / "py.typed").write_text("", encoding="utf-8")  # setuptools ships this one itself
    (root / "README.md").write_text("not in a package: never the wheel's\n", encoding="utf-8")
    said: list[str] = []

    app_wheel(config_module.load(root), Cache(tmp_path / "cache"), log=said.append)

    warned = [line for line in said if line.startswith("warning:")]
    assert warned == [
        "warning: the app's wheel leaves out 2 file(s) of its packages, so no release has them: "
        "site/static/site.css, site/templates/pages/health.html; if the app reads them, declare them as package "
        'data in [tool.setuptools.package-data] (site = ["static/**/*", "templates/**/*"]), then deploy again']

    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    (root / "pyproject.toml").write_text(
        text + '\n[tool.setuptools.package-data]\nsite = ["static/**/*", "templates/**/*"]\n',
        encoding="utf-8")
    said.clear()
    app_wheel(config_module.load(root), Cache(tmp_path / "cache"), log=said.append)
    assert not [line for line in said if line.startswith("warning:")], said


def test_the_apps_wheel_is_cached_per_build_backend_version_and_one_off_the_locks_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A trial: one commit deployed from two venvs (setuptools 65.5 and 84.2) gave two app wheels, so
    # two releases; and the cache, keyed on the source alone, kept the first one for both.
    from importlib.metadata import version

    from deploy.release import app as app_module

    root = _setuptools_app(tmp_path / "shop", "shop")
    (root / "requirements").mkdir()
    (root / "requirements" / "dev.txt").write_text(f"setuptools==1.0 --hash=sha256:{'0' * 64}\n", encoding="utf-8")
    cache = Cache(tmp_path / "cache")
    said: list[str] = []

    def built() -> int:
        return sum(line.startswith("building the wheel of shop") for line in said)

    first = app_wheel(config_module.load(root), cache, log=said.append)
    again = app_wheel(config_module.load(root), cache, log=said.append)
    assert built() == 1 and again == first, "the same source and backend: the cached wheel"
    monkeypatch.setattr(app_module, "_build_tools", lambda config: [("setuptools", "0.9")])
    app_wheel(config_module.load(root), cache, log=said.append)
    assert built() == 2, "another backend version: not that wheel"
    assert f"warning: the app's wheel is built with setuptools {version('setuptools')} (the locks pin 1.0): a " \
           "machine with the locked version builds another wheel of the same source, so another release; deploy " \
           "from the project's own environment (python3 scripts/onboard.py makes it)" in said
