"""An unchanged redeploy builds nothing: the app's wheel is built only when its source changed
(issue 16). What a build or a tool writes into the tree (build/, *.egg-info, __pycache__,
.deploy/) is no source: were it counted, every deploy would rebuild the app."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.deployproject import APP, DeployProject, new_project

UNCHANGED = re.compile(r"app wheel unchanged \(source digest [0-9a-f]{12}\), not rebuilt")
BUILDING = f"building the wheel of {APP}"


def git(project: DeployProject, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=project.root,
                   check=True, capture_output=True)


@pytest.fixture
def checkout(tmp_path_factory: pytest.TempPathFactory) -> DeployProject:
    """The project as a git checkout with no .gitignore: .deploy/ and build output are untracked
    files git would list."""
    project = new_project(tmp_path_factory, "unchanged")
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-q", "-m", "app")
    return project


def test_an_unchanged_redeploy_builds_nothing_and_says_so(checkout: DeployProject) -> None:
    first = checkout.deploy_ok(env="local")
    # What a setuptools build, Python and pinship itself leave in the tree is no source of the app.
    for made in ("build/lib/demoapp/__init__.py", f"{APP}.egg-info/PKG-INFO", f"{APP}/__pycache__/x.cpython-311.pyc"):
        (checkout.root / made).parent.mkdir(parents=True, exist_ok=True)
        (checkout.root / made).write_text("written by a tool\n")
    again = checkout.deploy_ok(env="local")

    for outcome in (first, again):
        assert UNCHANGED.search(outcome.output), outcome.output
        assert BUILDING not in outcome.output, outcome.output
        assert len(UNCHANGED.findall(outcome.output)) == 1, outcome.output  # said once per run


def test_an_edit_to_any_source_file_rebuilds_the_app(checkout: DeployProject) -> None:
    checkout.deploy_ok(env="local")
    (checkout.root / APP / "__init__.py").write_text('__version__ = "1.0"\nGREETING = "hello"\n')
    edited = checkout.deploy_ok(env="local")
    unchanged = checkout.deploy_ok(env="local")
    (checkout.root / APP / "views.py").write_text("def index():\n    return 'hi'\n")  # untracked, not ignored
    added = checkout.deploy_ok(env="local")

    for outcome in (edited, added):
        assert BUILDING in outcome.output, outcome.output
        assert not UNCHANGED.search(outcome.output), outcome.output
    assert UNCHANGED.search(unchanged.output), unchanged.output
    assert BUILDING not in unchanged.output


def test_a_file_git_ignores_is_no_source_of_the_app(checkout: DeployProject) -> None:
    (checkout.root / ".gitignore").write_text("notes/\n")
    checkout.deploy_ok(env="local")
    (checkout.root / "notes").mkdir()
    (checkout.root / "notes" / "todo.txt").write_text("call the bank\n")

    outcome = checkout.deploy_ok(env="local")

    assert UNCHANGED.search(outcome.output), outcome.output


def test_a_changed_deploy_setting_is_no_new_app(checkout: DeployProject) -> None:
    checkout.deploy_ok(env="local")
    text = checkout.pyproject.read_text()
    checkout.pyproject.write_text(text + '\n[tool.deploy.environments.later]\npath = ".deploy/later"\n')
    configured = checkout.deploy_ok(env="local")
    checkout.pyproject.write_text(text.replace('[project]\n', '[project]\ndescription = "a demo"\n'))
    described = checkout.deploy_ok(env="local")

    assert UNCHANGED.search(configured.output), configured.output
    assert BUILDING in described.output, described.output
