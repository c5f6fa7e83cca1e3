"""Adopting a project whose dependencies are a `pip freeze` file: top-level packages to base.in,
tools to test.in/dev.in, and the first lock keeps every frozen version it can, saying which not."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.lockproject import LockProject, Names, pins
from tests.support.adopt import init, lines, tools
from tests.support.pkgindex import PackageIndex

pytestmark = pytest.mark.index


@pytest.fixture
def names(use_index: PackageIndex) -> Names:
    """An app's packages, each with a newer release than the one frozen."""
    names = Names()
    for version in ("1.0", "2.0"):
        use_index.add(names.web, version, [f"{names.helper}>=1", f"{names.speedup}; extra == 'fast'"])
        use_index.add(names.solo, version)
    for version in ("1.0", "1.1"):
        use_index.add(names.helper, version)
    use_index.add(names.speedup, "1.0")
    use_index.add(names.gone, "1.0")
    tools(use_index)
    return names


def flask_like_app(root: Path, frozen: str) -> Path:
    """A project as many are: a package, a script, a folder of docs, and requirements.txt; no pyproject."""
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "views").mkdir()
    (root / "shop" / "views" / "__init__.py").write_text("")
    (root / "wsgi.py").write_text("from shop import app\n")
    (root / "deploy").mkdir()  # e.g. known_hosts: must not break the build
    (root / "tests").mkdir()
    (root / "tests" / "__init__.py").write_text("")
    (root / "requirements.txt").write_text(frozen, encoding="utf-8")
    return root


def test_top_level_packages_go_to_base_and_known_tools_to_test_and_dev(names: Names, tmp_path: Path) -> None:
    frozen = (f"{names.helper}==1.0\n{names.web}==1.0\n{names.solo}==1.0\n"
              "pytest==1.0\npytest-cov==1.0\nruff==1.0\n")
    root = flask_like_app(tmp_path / "shop", frozen)

    done = init(root)

    assert done.returncode == 0, done.stderr
    requirements = root / "requirements"
    assert lines(requirements / "base.in") == [names.web, names.solo], "helper is required by web"
    assert lines(requirements / "test.in") == ["pytest-cov"], "pytest is required by pytest-cov"
    assert lines(requirements / "dev.in") == ["ruff"]
    told = done.stdout.splitlines()
    assert "  requirements/test.in: requirements.txt (test tools: move any your app needs to base.in): pytest-cov" \
        in told
    assert "  requirements/dev.txt: the 6 versions of requirements.txt, which the first lock keeps where the " \
        "layers allow" in told


def test_a_dependency_only_an_extra_brings_is_kept_by_writing_that_extra(names: Names, tmp_path: Path) -> None:
    root = flask_like_app(tmp_path / "shop", f"{names.web}==1.0\n{names.helper}==1.0\n{names.speedup}==1.0\n")

    assert init(root).returncode == 0

    assert lines(root / "requirements" / "base.in") == [f"{names.web}[fast]"]


def test_a_project_without_pyproject_gets_one_that_lists_its_code_and_dependencies(
    names: Names, tmp_path: Path
) -> None:
    root = flask_like_app(tmp_path / "my shop", f"{names.web}==1.0\n{names.helper}==1.0\n")

    done = init(root)

    assert done.returncode == 0, done.stderr
    assert "wrote pyproject.toml" in done.stdout.splitlines()
    data = tomllib.loads((root / "pyproject.toml").read_text())
    assert data["project"]["name"] == "my-shop"
    assert data["project"]["dependencies"] == [names.web]
    assert data["tool"]["setuptools"] == {"packages": ["shop", "shop.views"], "py-modules": ["wsgi"]}
    assert data["tool"]["deploy"]["requirements"] == "requirements"


def test_the_first_lock_keeps_every_frozen_version_and_says_which_it_could_not(
    use_index: PackageIndex, names: Names, tmp_path: Path
) -> None:
    use_index.add(names.stray, "1.0")
    frozen = (f"{names.web}==1.0\n{names.helper}==1.0\n{names.solo}==1.0\n{names.gone}==0.9\n"
              f"{names.stray}==1.0\npytest==1.0\n")
    root = flask_like_app(tmp_path / "shop", frozen)
    done = init(root)
    assert done.returncode == 0, done.stderr
    assert f"the index offers no file of {names.gone}==0.9, so the lock will pick other versions" in done.stderr
    project = LockProject(root)
    # The user asks for a newer solo, and decides stray is not needed after all.
    project.write("base.in", project.read("base.in").replace(names.solo, f"{names.solo}>=2")
                  .replace(f"{names.stray}\n", ""))
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(f'"{names.solo}"', f'"{names.solo}>=2"')
                         .replace(f'    "{names.stray}",\n', ""))

    locked = project.lock()

    prod = {name: version for name, (version, _) in pins(project.read("prod.txt")).items()}
    assert prod == {names.web: "1.0", names.helper: "1.0", names.solo: "2.0", names.gone: "1.0"}, \
        "web 1.0 and helper 1.0 are kept though 2.0 and 1.1 exist"
    out = locked.stdout.splitlines()
    assert "requirements/dev.txt: kept 3 of the 5 versions the project ran before adopting pinship; could not keep:" \
        in out, locked.stdout
    assert f"  {names.solo} 1.0 → 2.0: requirements/base.in:3 asks for '{names.solo}>=2'" in out
    assert (f"  {names.stray} 1.0: not locked, as no layer requires it (add it to a layer if the app imports "
            "it)") in out
    assert project.run("verify").returncode == 0


def test_from_names_the_file_to_adopt_when_the_project_declares_its_own_too(names: Names, tmp_path: Path) -> None:
    # `python -m deploy init --from requirements-prod.txt` (the flag is wired in deploy/__main__.py).
    from deploy.scaffold import init as scaffold_init

    root = tmp_path / "shop"
    root.mkdir()
    (root / "pyproject.toml").write_text(f'[project]\nname = "shop"\nversion = "1"\ndependencies = ["{names.solo}"]\n')
    (root / "requirements-prod.txt").write_text(f"{names.web}==1.0\n{names.helper}==1.0\n")
    said: list[str] = []
    warned: list[str] = []

    scaffold_init(root, source=Path("requirements-prod.txt"), say=said.append, warn=warned.append)

    assert lines(root / "requirements" / "base.in") == [names.web]
    assert warned == ["warning: not adopted: pyproject.toml [project] dependencies (adopted from the file given with "
                      "--from instead); add it to requirements/base.in by hand"]
    assert (root / "requirements" / "dev.txt").read_text().splitlines()[3:] == [
        f"{names.helper}==1.0", f"{names.web}==1.0"]


def test_pinship_in_the_freeze_file_and_what_only_it_requires_stay_out_of_the_layers(
    names: Names, tmp_path: Path
) -> None:
    # Whoever ran init had pinship installed: a freeze lists it (often as a URL) and its dependencies.
    frozen = f"{names.web}==1.0\n{names.helper}==1.0\npinship @ file:///home/me/pinship\ninvoke==2.2.0\n"
    root = flask_like_app(tmp_path / "shop", frozen)

    done = init(root)

    assert done.returncode == 0, done.stderr
    assert lines(root / "requirements" / "base.in") == [names.web]
    assert lines(root / "requirements" / "dev.in") == []
    assert "  not in the layers: pinship and the 1 packages only it requires (it is installed beside them)" \
        in done.stdout.splitlines()
    assert done.stderr == "", "nothing about invoke, which is not the app's"
    seeded = (root / "requirements" / "dev.txt").read_text()
    assert "invoke" not in seeded and "pinship==" not in seeded


def test_lines_a_lock_cannot_hold_are_named_with_their_line_never_dropped(names: Names, tmp_path: Path) -> None:
    frozen = (f"{names.web}==1.0\n{names.helper}==1.0\n-e git+https://example.com/shop.git@abc#egg=shop\n"
              f"{names.solo} @ https://example.com/solo-1.0-py3-none-any.whl\nsetuptools==69.0.0\n")
    root = flask_like_app(tmp_path / "shop", frozen)

    done = init(root)

    assert done.returncode == 0, done.stderr
    warned = done.stderr.splitlines()
    assert warned[0].startswith("warning: not adopted: requirements.txt:3 '-e git+https://example.com/shop.git@abc"
                                "#egg=shop' (an editable install cannot be locked with hashes"), warned
    assert warned[1].startswith(f"warning: not adopted: requirements.txt:4 '{names.solo} @ https://example.com/"
                                "solo-1.0-py3-none-any.whl' (a direct reference: layer locks pin name==version"), warned
    installer = "warning: not adopted: requirements.txt:5 setuptools==69.0.0 (an installer tool"
    assert warned[2].startswith(installer), warned
    assert len(warned) == 3


def test_a_pyproject_without_a_project_table_is_kept_and_the_user_is_told_the_app_cannot_build(
    names: Names, tmp_path: Path
) -> None:
    root = flask_like_app(tmp_path / "shop", f"{names.web}==1.0\n")
    (root / "pyproject.toml").write_text("[tool.black]\nline-length = 100\n")

    done = init(root)

    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "warning: pyproject.toml has no [project] table, so the app's wheel cannot be built: add one with name, "
        "version and dependencies = base.in's requirements"]
    assert lines(root / "requirements" / "base.in") == [names.web]


@pytest.mark.parametrize(("file", "text"), [
    ("setup.py", 'from setuptools import setup\nsetup(\n    name="shop-app",\n    version="2.3.1",\n'
                 '    install_requires=open("requirements.txt").read().split(),\n)\n'),
    ("setup.cfg", "[metadata]\nname = shop-app\nversion = 2.3.1\n"),
])
def test_a_project_with_a_setup_file_keeps_the_name_and_version_it_was_built_under(
    names: Names, tmp_path: Path, file: str, text: str
) -> None:
    # A trial's freeze-only app, `name="fz-app"` in setup.py, became `fz` without a word.
    root = flask_like_app(tmp_path / "shop", f"{names.web}==1.0\n")
    (root / file).write_text(text, encoding="utf-8")

    done = init(root)

    assert done.returncode == 0, done.stderr
    data = tomllib.loads((root / "pyproject.toml").read_text())
    assert (data["project"]["name"], data["project"]["version"]) == ("shop-app", "2.3.1")
    assert (f'  pyproject.toml: name "shop-app", version "2.3.1", from {file}, which stays: the dependencies are '
            "pyproject.toml's [project] list now, so take any install_requires out of it") in done.stdout.splitlines()
    assert ("  requirements.txt: read once; the layers' .in files are what the locks come from now (delete it once "
            "nothing else reads it)") in done.stdout.splitlines()


def test_without_a_setup_file_the_name_comes_from_the_folder_and_init_says_so(names: Names, tmp_path: Path) -> None:
    root = flask_like_app(tmp_path / "my shop", f"{names.web}==1.0\n")
    done = init(root)
    assert ('  pyproject.toml: name "my-shop", version "0.1.0", from the folder\'s name and a first version: change '
            "them there if the app is known by others") in done.stdout.splitlines()
