"""`invoke deploy --env local`: the same release mechanics as a server, under .deploy/local, no config."""

from __future__ import annotations

import ensurepip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deployproject import APP, INSTALLED, SHIPPED, DeployProject, make_project, new_project
from tests.support.pkgindex import PackageIndex


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> DeployProject:
    """An adopter project with no [tool.deploy.environments] at all."""
    made = new_project(tmp_path_factory, "local-project")
    assert "environments" not in made.pyproject.read_text()
    return made


def local(project: DeployProject) -> Path:
    return project.root / ".deploy" / "local"


def live(project: DeployProject) -> str:
    target = os.readlink(local(project) / "current")
    assert target.startswith("releases/"), target
    release = target.removeprefix("releases/")
    assert (local(project) / "releases" / release / ".complete").is_file()
    return release


def installed(project: DeployProject) -> dict[str, str]:
    python = local(project) / "current" / "venv" / "bin" / "python"
    out = subprocess.run([str(python), "-I", "-c", INSTALLED], capture_output=True, text=True, check=True).stdout
    found: dict[str, str] = json.loads(out)
    return found


def store(project: DeployProject) -> set[str]:
    return {p.name for p in (local(project) / "wheels").iterdir() if len(p.name) == 64}


def log_lines(project: DeployProject) -> list[dict[str, object]]:
    return [json.loads(line) for line in (local(project) / "deploy.log").read_text().splitlines()]


def test_a_first_local_deploy_installs_exactly_the_locked_set_and_the_app(project: DeployProject) -> None:
    project.set_version("1.0")
    outcome = project.deploy_ok(env="local")

    release = live(project)
    [(host, row)] = outcome.summary().items()
    assert (host, row["release"], row["result"]) == ("local", release, "switched")
    assert project.lock_pins() == SHIPPED
    assert installed(project) == {**SHIPPED, APP: "1.0"}
    lock = (local(project) / "current" / "requirements.lock").read_text().splitlines()
    assert [line.split(" ")[0] for line in lock] == sorted(f"{n}=={v}" for n, v in {**SHIPPED, APP: "1.0"}.items())
    assert all("--hash=sha256:" in line for line in lock)
    manifest = json.loads((local(project) / "current" / "manifest.json").read_text())
    assert manifest["release"] == release
    assert {w["name"]: w["version"] for w in manifest["wheels"]} == {**SHIPPED, APP: "1.0"}
    [entry] = log_lines(project)
    assert (entry["action"], entry["release"], entry["result"]) == ("deploy", release, "ok")
    assert not (local(project) / ".lock").exists()


def test_deploying_the_same_thing_again_changes_nothing(project: DeployProject) -> None:
    project.set_version("1.0")
    project.deploy_ok(env="local")
    before = (live(project), store(project), log_lines(project))

    outcome = project.deploy_ok(env="local")

    assert outcome.summary()["local"]["result"] == "unchanged"
    assert outcome.summary()["local"]["sent"] == "0"
    assert "sending" not in outcome.output
    assert (live(project), store(project), log_lines(project)) == before


def test_a_new_app_version_sends_only_the_app_wheel_and_rollback_returns(project: DeployProject) -> None:
    project.set_version("1.0")
    project.deploy_ok(env="local")
    first, wheels_before = live(project), store(project)

    project.set_version("1.1")
    outcome = project.deploy_ok(env="local")

    second = live(project)
    assert second != first
    assert "sending 1 wheel " in outcome.output
    [new] = store(project) - wheels_before
    manifest = json.loads((local(project) / "current" / "manifest.json").read_text())
    app = next(w for w in manifest["wheels"] if w["name"] == APP)
    assert (app["version"], app["sha256"]) == ("1.1", new)
    assert installed(project) == {**SHIPPED, APP: "1.1"}

    back = project.invoke("rollback", "--env", "local")
    assert back.code == 0, back.output
    assert live(project) == first
    assert installed(project) == {**SHIPPED, APP: "1.0"}
    assert log_lines(project)[-1]["action"] == "rollback"
    assert not (local(project) / ".lock").exists()
    project.set_version("1.0")


def test_invoke_explains_every_task_and_flag(project: DeployProject) -> None:
    listing = project.invoke("--list")
    assert listing.code == 0, listing.output
    for task in ("deploy", "rollback", "trust"):
        assert re.search(rf"^  {task}\s+\w", listing.output, re.MULTILINE), listing.output
        shown = project.invoke(task, "--help")
        assert shown.code == 0, shown.output
        options = [line for line in shown.output.splitlines() if line.lstrip().startswith("-")]
        assert len(options) >= 5, shown.output
        for line in options:
            # A long flag and what it does; no clashing one-letter flags (-h would shadow --help).
            assert re.match(r"^  --[a-z][a-z-]+(=STRING)?\s{2,}\w", line), line


def test_a_deploy_layer_that_pins_pip_gets_that_pip_in_the_release_venv(tmp_path: Path) -> None:
    # A real-world wheel with console scripts (pip, pip3, pip3.x), installed by the agent.
    [bundled] = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    with PackageIndex(tmp_path / "index") as index:
        index.add("alpha", "1.0", ["beta>=1"])
        index.add("beta", "1.0")
        index.add("gamma", "1.0", sdist_only=True)
        index.add("delta", "1.0")
        shutil.copy(bundled, index.root / bundled.name)
        project = make_project(tmp_path / "app", index.url)
        (project.root / "requirements" / "prod.in").write_text("-r base.in\ngamma\npip\n")
        relock = subprocess.run([sys.executable, "-m", "deploy", "lock"], cwd=project.root, env=project.env,
                                capture_output=True, text=True, check=False)
        assert relock.returncode == 0, relock.stdout + relock.stderr
        project.deploy_ok(env="local")
    pip_version = bundled.name.split("-")[1]
    assert installed(project) == {**SHIPPED, "pip": pip_version, APP: "1.0"}
    launcher = local(project) / "current" / "venv" / "bin" / "pip"
    shown = subprocess.run([str(launcher), "--version"], capture_output=True, text=True, check=False)
    assert shown.returncode == 0 and shown.stdout.startswith(f"pip {pip_version} from "), shown.stdout + shown.stderr


def site(project: DeployProject, release: str) -> Path:
    [found] = (local(project) / "releases" / release / "venv" / "lib").glob("python*/site-packages")
    return found


def test_a_new_release_links_unchanged_packages_from_the_live_one_but_never_an_edited_file(
    project: DeployProject,
) -> None:
    project.set_version("2.0")
    project.deploy_ok(env="local")
    first = live(project)
    # Someone edits a file of beta in the live venv: that package must be installed afresh.
    tampered = site(project, first) / "beta" / "__init__.py"
    tampered.write_text(tampered.read_text() + "tampered = True\n")

    project.set_version("2.1")
    project.deploy_ok(env="local")

    second = live(project)
    old, new = site(project, first), site(project, second)
    assert (new / "alpha" / "__init__.py").stat().st_ino == (old / "alpha" / "__init__.py").stat().st_ino
    assert (new / "beta" / "__init__.py").stat().st_ino != tampered.stat().st_ino
    assert "tampered" not in (new / "beta" / "__init__.py").read_text()
    assert installed(project) == {**SHIPPED, APP: "2.1"}
    clean = project.invoke("status", "--env", "local")
    assert clean.code == 0, clean.output


def test_a_dependency_the_release_lacks_stops_the_deploy_before_any_host_is_touched(tmp_path: Path) -> None:
    with PackageIndex(tmp_path / "index") as index:
        index.add("alpha", "1.0", ["beta>=1"])
        index.add("beta", "1.0")
        index.add("gamma", "1.0", sdist_only=True)
        index.add("delta", "1.0")
        project = make_project(tmp_path / "app", index.url)
        project.deploy_ok(env="local")
        before = live(project)
        entries = len(log_lines(project))
        # The app now needs delta, declared in both places verify compares ([project] and base.in),
        # but the deploy layer was written without `-r base.in`: a fresh lock that ships no delta.
        text = project.pyproject.read_text()
        project.pyproject.write_text(
            text.replace('version = "', 'dependencies = ["delta>=1", "alpha>=1"]\nversion = "', 1))
        layers = project.root / "requirements"
        (layers / "base.in").write_text("delta>=1\nalpha>=1\n")
        (layers / "prod.in").write_text("alpha\ngamma\n")
        (layers / "test.in").write_text("-r prod.in\n-r base.in\n")
        relock = subprocess.run([sys.executable, "-m", "deploy", "lock"], cwd=project.root, env=project.env,
                                capture_output=True, text=True, check=False)
        assert relock.returncode == 0, relock.stdout + relock.stderr
    project.set_version("3.0")
    planned = project.deploy("--dry-run", env="local")
    refused = project.deploy(env="local")
    assert planned.code == 1, planned.output
    assert "the deploy would stop here" in planned.output and "requires delta>=1" in planned.output
    refused.assert_clean()
    assert refused.code != 0, refused.output
    assert f"{APP} 3.0 requires delta>=1, which is not in the release" in refused.output
    assert "alpha" not in refused.output.split("requires", 1)[1].split("\n")[0]  # alpha is there: no complaint
    assert "requirements/prod.in" in refused.output and "nox -s lock" in refused.output
    assert live(project) == before
    assert len(log_lines(project)) == entries
    assert not (local(project) / ".lock").exists()
    assert sorted(p.name for p in (local(project) / "releases").iterdir() if not (p / ".complete").exists()) == []
