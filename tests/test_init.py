"""`python -m deploy init`: adopt the tool in an existing project, never clobbering its files."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from deploy.layers import load

PYPROJECT = """\
[project]
name = "acme"
version = "1.0"
dependencies = ["alpha>=1", "beta[fast]>=2; python_version >= '3.8'"]
"""

WRITTEN = ["noxfile.py", "tasks.py", "requirements/base.in", "requirements/prod.in", "requirements/test.in",
           "requirements/dev.in"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "acme"
    root.mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    return root


def init(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy", "init", *args], cwd=root, capture_output=True, text=True, check=False,
    )


def test_init_writes_the_adoption_files_and_says_what_it_wrote(project: Path) -> None:
    done = init(project)

    assert done.returncode == 0, done.stderr
    for name in WRITTEN:
        assert (project / name).is_file(), name
        assert f"wrote {name}" in done.stdout.splitlines()
    assert "added [tool.deploy] to pyproject.toml" in done.stdout
    base = (project / "requirements/base.in").read_text().splitlines()
    assert base[1:] == ["alpha>=1", "beta[fast]>=2; python_version >= '3.8'"], "base.in is [project] dependencies"
    assert "nox -s lock" in done.stdout, "it says what to run next"


def test_the_written_layers_form_a_graph_with_prod_inside_test(project: Path) -> None:
    init(project)

    graph = load(project, project / "requirements")

    assert graph.order == ["base", "prod", "test", "dev"]
    assert graph.included("test") == ["base", "prod", "test"], "CI installs what ships"


def test_the_tool_deploy_table_is_appended_with_comments_and_parses(project: Path) -> None:
    init(project)

    text = (project / "pyproject.toml").read_text()
    assert text.startswith(PYPROJECT), "the existing content is kept as it was"
    added = text.removeprefix(PYPROJECT)
    assert "[tool.deploy]" in added
    assert "# [tool.deploy.environments.staging]" in added, "environments are shown, commented out"
    data = tomllib.loads(text)
    assert data["tool"]["deploy"] == {"requirements": "requirements", "deploy-layer": "prod"}


def test_init_again_keeps_existing_files_and_says_so(project: Path) -> None:
    init(project)
    (project / "noxfile.py").write_text("# my own noxfile\n")
    (project / "requirements/base.in").write_text("gamma\n")
    pyproject = (project / "pyproject.toml").read_text()

    done = init(project)

    assert done.returncode == 0, done.stderr
    assert (project / "noxfile.py").read_text() == "# my own noxfile\n"
    assert (project / "requirements/base.in").read_text() == "gamma\n"
    assert (project / "pyproject.toml").read_text() == pyproject, "[tool.deploy] is not added twice"
    for name in WRITTEN:
        assert f"kept {name} (exists; --force overwrites it)" in done.stdout.splitlines()
    assert "wrote" not in done.stdout


def test_init_force_overwrites_existing_files(project: Path) -> None:
    init(project)
    (project / "noxfile.py").write_text("# my own noxfile\n")
    (project / "requirements/base.in").write_text("gamma\n")

    done = init(project, "--force")

    assert done.returncode == 0, done.stderr
    assert "from deploy.sessions import" in (project / "noxfile.py").read_text()
    assert "alpha>=1" in (project / "requirements/base.in").read_text()
    assert "wrote noxfile.py" in done.stdout.splitlines()
    assert (project / "pyproject.toml").read_text().count("[tool.deploy]") == 1


def test_init_without_a_pyproject_is_a_clear_error(tmp_path: Path) -> None:
    done = init(tmp_path)

    assert done.returncode == 1
    assert "pyproject.toml does not exist" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_written_noxfile_offers_lock_verify_upgrade_and_audit(project: Path) -> None:
    init(project)
    nox = Path(sys.executable).parent / "nox"

    done = subprocess.run([str(nox), "-l", "-f", "noxfile.py"], cwd=project, capture_output=True, text=True,
                          check=False)

    assert done.returncode == 0, done.stdout + done.stderr
    listed = {line.split()[1] for line in done.stdout.splitlines() if line.startswith(("* ", "- "))}
    assert listed == {"lock", "verify", "upgrade", "audit"}


def test_the_written_tasks_file_imports(project: Path) -> None:
    # invoke loads tasks.py by importing it: a broken template would only show up on first deploy.
    init(project)

    done = subprocess.run([sys.executable, "-c", "import tasks; print(type(tasks.ns).__name__)"], cwd=project,
                          capture_output=True, text=True, check=False)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Collection"
