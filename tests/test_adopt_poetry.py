"""Adopting a Poetry project: its constraints in PEP 440, its groups on layers, poetry.lock's versions kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deploy.adopt.poetry import Untranslatable, specifier
from deploy.lock import drift, groupdrift
from deploy.lock.layers import load
from tests.lockproject import LockProject, Names, pins
from tests.support.adopt import init, lines, new_project, tools
from tests.support.pkgindex import PackageIndex


@pytest.mark.parametrize(("poetry", "pep440"), [
    ("^1.2.3", ">=1.2.3,<2"),
    ("^1.2", ">=1.2,<2"),
    ("^1", ">=1,<2"),
    ("^0.2.3", ">=0.2.3,<0.3"),
    ("^0.0.3", ">=0.0.3,<0.0.4"),
    ("^0.0", ">=0.0,<0.1"),
    ("^0", ">=0,<1"),
    ("~1.2.3", ">=1.2.3,<1.3"),
    ("~1.2", ">=1.2,<1.3"),
    ("~1", ">=1,<2"),
    ("~=1.2", "~=1.2"),
    ("1.2.*", "==1.2.*"),
    ("*", ""),
    ("1.2.3", "==1.2.3"),
    ("==1.2.3", "==1.2.3"),
    (">= 1.2, < 1.5", ">=1.2,<1.5"),
    (">=1.2 <1.5", ">=1.2,<1.5"),
    ("!=1.3", "!=1.3"),
])
def test_poetry_constraints_read_as_poetry_documents_them(poetry: str, pep440: str) -> None:
    assert specifier(poetry) == pep440


def test_either_of_two_ranges_has_no_pep_440_form_and_is_refused() -> None:
    with pytest.raises(Untranslatable, match="either of two ranges"):
        specifier("^1.2 || ^2.0")


PYPROJECT = """\
[tool.poetry]
name = "shop"
version = "0.1.0"
description = ""
authors = []
packages = [{{include = "shop"}}]

[tool.poetry.dependencies]
python = "^3.9"
{web} = "^1.0"
{helper} = {{version = "~1.1", extras = ["fast"], markers = "sys_platform != 'win32'"}}
{pg} = {{version = "*", optional = true}}
{newpy} = {{version = ">=1", python = ">=3.10"}}
{vcs} = {{git = "https://example.com/vcs.git", rev = "v1"}}

[tool.poetry.extras]
postgres = ["{pg}"]

[tool.poetry.dev-dependencies]
pytest = "^1.0"

[tool.poetry.group.lint.dependencies]
ruff = "*"

[build-system]
requires = ["poetry-core"]
build-backend = "poetry.core.masonry.api"
"""


def poetry_project(root: Path, names: Names) -> Path:
    root.mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT.format(**{n: getattr(names, n) for n in (
        "web", "helper", "pg", "newpy", "vcs")}), encoding="utf-8")
    return root


def test_dependencies_groups_and_extras_land_on_layers_and_a_git_dependency_is_named(tmp_path: Path) -> None:
    names = Names()
    root = poetry_project(tmp_path / "shop", names)

    done = init(root)

    assert done.returncode == 0, done.stderr
    requirements = root / "requirements"
    assert lines(requirements / "base.in") == [
        f"{names.web}<2,>=1.0",
        f"{names.helper}[fast]<1.2,>=1.1; sys_platform != \"win32\"",
        f'{names.newpy}>=1; python_version >= "3.10"',
    ]
    assert lines(requirements / "postgres.in") == [names.pg], "an optional dependency goes with its extra"
    assert lines(requirements / "test.in") == ["pytest<2,>=1.0"], "a test tool among dev-dependencies"
    assert lines(requirements / "dev.in") == ["ruff"]
    assert ("  requires-python >=3.9,<4 (from [tool.poetry.dependencies] python): it stays there, and poetry-core "
            "writes it into the app's wheel, so pip refuses the app on another Python; the locks resolve for the "
            "Python that runs nox -s lock: use one in that range") in done.stdout.splitlines()
    assert done.stderr.splitlines() == [
        f"warning: not adopted: pyproject.toml:14 [tool.poetry.dependencies] {names.vcs}: a git dependency: layer "
        "locks pin name==version from an index with a hash (publish it to an index and name a version); add it to "
        "requirements/base.in by hand",
    ]


@pytest.mark.index
def test_the_first_lock_keeps_the_versions_of_poetry_lock(use_index: PackageIndex, tmp_path: Path) -> None:
    names = Names()
    for version in ("1.0", "1.5"):
        use_index.add(names.web, version, [f"{names.helper}>=1"])
    for version in ("1.1.0", "1.1.4"):
        use_index.add(names.helper, version)
    tools(use_index)
    root = new_project(tmp_path / "shop",
                       f'[tool.poetry]\nname = "shop"\nversion = "0.1.0"\n[tool.poetry.dependencies]\npython = "^3.9"\n'
                       f'{names.web} = "^1.0"\n[tool.poetry.group.test.dependencies]\npytest = "*"\n')
    (root / "poetry.lock").write_text(
        f'[[package]]\nname = "{names.web}"\nversion = "1.0"\n\n[[package]]\nname = "{names.helper}"\n'
        'version = "1.1.0"\n\n[[package]]\nname = "pytest"\nversion = "1.0"\n', encoding="utf-8")

    assert init(root).returncode == 0
    project = LockProject(root)
    done = project.lock()

    prod = {name: version for name, (version, _) in pins(project.read("prod.txt")).items()}
    assert prod == {names.web: "1.0", names.helper: "1.1.0"}, "poetry.lock's versions, though 1.5 and 1.1.4 exist"
    assert "requirements/dev.txt: kept 3 of the 3 versions the project ran before adopting pinship: every one" \
        in done.stdout.splitlines()
    assert project.run("verify").returncode == 0


@pytest.mark.parametrize("lock", [
    'package = ["web"]\n', "[package]\nname = 1\n", '[[package]]\nname = "web"\nsource = "x"\n',
])
def test_a_poetry_lock_of_another_shape_keeps_no_version_and_prints_no_traceback(tmp_path: Path, lock: str) -> None:
    root = poetry_project(tmp_path / "shop", Names())
    (root / "poetry.lock").write_text(lock, encoding="utf-8")

    done = init(root)

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (root / "requirements/dev.txt").exists() or "web" not in (root / "requirements/dev.txt").read_text()


def _drift(root: Path) -> list[str]:
    return drift.check(root, load(root, root / "requirements").layers["base"].requirements)


def test_verify_holds_base_in_to_the_poetry_table_as_init_read_it(tmp_path: Path) -> None:
    names = Names()
    root = poetry_project(tmp_path / "shop", names)
    assert init(root).returncode == 0
    # As adopted: python, the optional pg (on its extra's layer) and the git dependency init named are
    # not base.in's, and the rest is there as init translated it.
    assert _drift(root) == []

    pyproject = root / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    pyproject.write_text(text.replace(f'{names.web} = "^1.0"', f'{names.web} = "^1.5"\n{names.newer} = "~2.1"'),
                         encoding="utf-8")
    (root / "requirements" / "base.in").write_text(
        (root / "requirements" / "base.in").read_text(encoding="utf-8") + f"{names.extra}\n", encoding="utf-8")

    assert _drift(root) == [
        f"requirements/base.in:2: '{names.web}<2,>=1.0' differs from pyproject.toml:10 '{names.web}<2,>=1.5' in "
        "[tool.poetry.dependencies]; make them the same, then run: nox -s lock",
        f"pyproject.toml:11: '{names.newer}<2.2,>=2.1' is in [tool.poetry.dependencies] but not in "
        "requirements/base.in; add it there, then run: nox -s lock",
        f"requirements/base.in:5: '{names.extra}' is not in pyproject.toml [tool.poetry.dependencies], so the app's "
        "wheel does not declare it; add it there (or move it to prod.in), then run: nox -s lock",
    ]


def test_verify_holds_each_poetry_group_and_extra_to_its_layer_as_init_read_it(tmp_path: Path) -> None:
    names = Names()
    root = poetry_project(tmp_path / "shop", names)
    assert init(root).returncode == 0

    def groups() -> list[str]:
        return groupdrift.check(root, load(root, root / "requirements"))

    assert groups() == [], "as adopted: pytest (a test tool) on test.in, the optional pg on postgres.in"
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    pyproject.write_text(text.replace('ruff = "*"', f'ruff = "*"\n{names.formatter} = "*"')
                         .replace(f'{names.pg} = {{version = "*", optional = true}}',
                                  f'{names.pg} = {{version = ">=2", optional = true}}'), encoding="utf-8")

    assert groups() == [
        f"pyproject.toml:24: '{names.formatter}' is in [tool.poetry.group.lint.dependencies] but on no layer at or "
        "below dev; add it to requirements/dev.in (or take it out of the group), then run: nox -s lock",
        f"requirements/postgres.in:3: '{names.pg}' differs from pyproject.toml:12 '{names.pg}>=2' in "
        "[tool.poetry.dependencies] (optional, in [tool.poetry.extras] postgres); make them the same, then run: "
        "nox -s lock",
    ]


def test_a_poetry_project_whose_project_table_declares_the_dependencies_is_held_to_that(tmp_path: Path) -> None:
    names = Names()
    root = _shop(tmp_path, f'[project]\nname = "shop"\nversion = "1"\ndependencies = ["{names.web}>=1"]\n'
                 f'[tool.poetry.dependencies]\n{names.web} = {{source = "private"}}\n', f"{names.web}>=1\n")

    assert _drift(root) == []


def test_a_poetry_table_that_matches_base_in_is_compared_without_loading_packaging(tmp_path: Path) -> None:
    # verify is the pre-commit hook's path: an adopted Poetry project's check costs no parser (60 ms).
    names = Names()
    root = new_project(tmp_path / "shop",
                       f'[tool.poetry]\nname = "shop"\nversion = "0.1.0"\n[tool.poetry.dependencies]\npython = "^3.9"\n'
                       f'{names.web} = "^1.0"\n{names.helper} = {{version = "~1.1", extras = ["fast", "Async"]}}\n'
                       f'{names.anyone} = "*"\n')
    assert init(root).returncode == 0
    loaded = (
        "import sys; from pathlib import Path; from deploy.lock import drift; from deploy.lock.layers import load\n"
        "root = Path(sys.argv[1]); base = load(root, root / 'requirements').layers['base'].requirements\n"
        "print(drift.check(root, base), 'packaging' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", loaded, str(root)], capture_output=True, text=True, check=False,
                          cwd=Path(__file__).resolve().parent.parent)

    assert done.stdout.split() == ["[]", "False"], done.stdout + done.stderr


def test_a_range_spelled_with_other_trailing_zeros_is_no_drift(tmp_path: Path) -> None:
    # A trial: `nox -s add -- 'redis>=5.0,<6.0'`, then `redis = "^5.0"` in the table (`<6,>=5.0`).
    names = Names()
    root = _shop(tmp_path, f'[tool.poetry]\nname = "shop"\nversion = "1"\n[tool.poetry.dependencies]\n'
                 f'{names.redis} = "^5.0"\n{names.web} = "~=1.0"\n', f"{names.redis}>=5.0,<6.0\n{names.web}~=1.0\n")
    base = root / "requirements" / "base.in"
    assert _drift(root) == []
    base.write_text(f"{names.redis}>=5.0,<6.0\n{names.web}~=1.0.0\n", encoding="utf-8")  # ~=1.0.0 is not ~=1.0
    assert [line.split(":")[0] + ":" + line.split(":")[1] for line in _drift(root)] == ["requirements/base.in:2"]


def _shop(tmp_path: Path, pyproject: str, base: str) -> Path:
    """A project folder with this pyproject.toml and requirements/base.in, as drift reads them."""
    root = tmp_path / "shop"
    (root / "requirements").mkdir(parents=True)
    (root / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    (root / "requirements" / "base.in").write_text(base, encoding="utf-8")
    return root
