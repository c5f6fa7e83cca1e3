"""`upgrade -- PKG` moves PKG to the newest version the inputs allow and whatever that version needs
(issue 14): pip-compile's own --upgrade-package kept the old version when the new one needed a newer
pin, and said `unchanged`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.lockproject import PYPROJECT, LockProject, Names, pins, publish
from tests.support.pkgindex import PackageIndex
from tests.test_upgrade import _layer_report

pytestmark = pytest.mark.index

LAYERS = ("base", "prod", "test", "dev")


@pytest.fixture
def names() -> Names:
    return Names()


def _locked(index: PackageIndex, names: Names, root: Path, layers: dict[str, str] | None = None) -> LockProject:
    project = LockProject.create(root, layers or publish(index, names))
    project.lock()
    return project


def _versions(project: LockProject, layer: str) -> dict[str, str]:
    return {name: version for name, (version, _) in pins(project.read(f"{layer}.txt")).items()}


def test_upgrading_a_package_moves_the_pin_its_new_version_needs_and_says_why(
    use_index: PackageIndex, names: Names, tmp_path: Path
) -> None:
    project = _locked(use_index, names, tmp_path / "project")
    use_index.add(names.alpha, "1.1")
    use_index.add(names.beta, "1.1", [f"{names.alpha}>=1.1", names.delta])
    use_index.add(names.linter, "1.1")

    done = project.run("upgrade", names.beta)

    assert done.returncode == 0, done.stderr
    alpha = f"{names.alpha} 1.0 → 1.1 (needed by {names.beta} 1.1)"
    assert _layer_report(done.stdout) == {
        "requirements/base.txt": [alpha],
        **{f"requirements/{layer}.txt": [alpha, f"{names.beta} 1.0 → 1.1"] for layer in ("prod", "test", "dev")},
    }
    assert _versions(project, "dev")[names.linter] == "1.0", "only what beta 1.1 needs moves"
    assert f"pip: Discarding {names.alpha}==1.0 (an existing lock's pin)" in done.stdout
    assert "all.txt" not in done.stdout + done.stderr, "pinship's work files are no name for the user"
    assert project.run("verify").returncode == 0


def test_an_upgrade_through_constraint_chains_moves_every_layer_that_has_the_package(
    use_index: PackageIndex, names: Names, tmp_path: Path
) -> None:
    publish(use_index, names)
    project = _locked(use_index, names, tmp_path / "project", {
        "base.in": f"{names.alpha}\n",
        "prod.in": f"-c base.txt\n{names.beta}\n",
        "test.in": f"-r prod.in\n-c prod.txt\n{names.checker}\n",
    })
    use_index.add(names.alpha, "1.1")
    use_index.add(names.beta, "1.1", [f"{names.alpha}>=1.1"])

    done = project.run("upgrade", names.beta)

    assert done.returncode == 0, done.stderr
    report = _layer_report(done.stdout)
    alpha = f"{names.alpha} 1.0 → 1.1 (needed by {names.beta} 1.1)"
    assert report["requirements/base.txt"] == [alpha]
    assert report["requirements/prod.txt"] == [alpha, f"{names.beta} 1.0 → 1.1", f"- {names.delta} 1.0"]
    assert report["requirements/test.txt"] == report["requirements/prod.txt"]
    assert project.run("verify").returncode == 0


def test_a_package_already_at_its_newest_version_is_said_and_nothing_moves(
    use_index: PackageIndex, names: Names, tmp_path: Path
) -> None:
    project = _locked(use_index, names, tmp_path / "project")
    before = project.snapshot()
    use_index.add(names.alpha, "1.1")

    done = project.run("upgrade", names.linter)

    assert done.returncode == 0, done.stderr
    assert f"{names.linter} is already at its newest allowed version 1.0" in done.stdout
    assert "upgrading" not in done.stdout, "nothing can move: no resolve of the group (5 s against PyPI in a trial)"
    assert project.snapshot() == before


@pytest.mark.parametrize("find_links", [False, True], ids=["index", "index-and-a-wheels-folder"])
def test_a_package_at_its_newest_version_under_a_line_with_an_upper_bound_is_not_said_held_back(
    use_index: PackageIndex, names: Names, tmp_path: Path, find_links: bool
) -> None:
    # A Poetry trial (requests = "^2.31", 2.34.2 the newest on PyPI): `upgrade requests` said
    # `requests stays at 2.34.2: requirements/base.in:3 pins requests<3,>=2.31`. A bound that no
    # release on the index reaches holds nothing back. An adopted project's test.in reads init's
    # wheels/ folder too (pinship's wheel): its files are candidates beside the index's.
    layers = publish(use_index, names)
    layers["base.in"] = layers["base.in"].replace(f"{names.alpha}\n", f"{names.alpha}<3,>=1.0\n")
    if find_links:
        layers["test.in"] = "--find-links wheels\n" + layers["test.in"]
        wheels = tmp_path / "project" / "requirements" / "wheels"
        wheels.mkdir(parents=True)
        shutil.copy(next(use_index.root.glob(f"{names.linter.replace('-', '_')}-*.whl")), wheels)
    project = _locked(use_index, names, tmp_path / "project", layers)
    before = project.snapshot()

    done = project.run("upgrade", names.alpha)

    assert done.returncode == 0, done.stderr
    assert f"{names.alpha} is already at its newest allowed version 1.0" in done.stdout, done.stdout
    assert "stays at" not in done.stdout
    assert project.snapshot() == before


@pytest.mark.parametrize("resolver", ["pip-tools", "uv"])
def test_an_input_line_that_holds_the_upgrade_back_is_named(
    use_index: PackageIndex, names: Names, tmp_path: Path, resolver: str
) -> None:
    # With uv, the probe's own `beta>1.0` came back as a line of the user's (a re-trial:
    # `requirements/base.in:3 pins requests>2.34.2`): only the layers' lines and needs are named.
    layers = publish(use_index, names)
    layers["prod.in"] += f"{names.alpha}<1.1\n"
    project = LockProject.create(tmp_path / "project", layers,
                                 pyproject=PYPROJECT.format(name="lockproject") + f'resolver = "{resolver}"\n')
    project.lock()
    before = project.snapshot()
    use_index.add(names.alpha, "1.1")
    use_index.add(names.beta, "1.1", [f"{names.alpha}>=1.1"])

    done = project.run("upgrade", names.beta)

    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith(f"{names.beta} stays at 1.0: "))
    assert f"requirements/prod.in:4 pins {names.alpha}<1.1" in line
    assert f"{names.beta} 1.1 needs {names.alpha}>=1.1" in line
    assert f"pins {names.beta}>1.0" not in line, line
    assert project.snapshot() == before


def test_an_upgrade_to_a_named_version_takes_that_version_and_what_it_needs(
    use_index: PackageIndex, names: Names, tmp_path: Path
) -> None:
    project = _locked(use_index, names, tmp_path / "project")
    use_index.add(names.alpha, "1.1")
    use_index.add(names.beta, "1.1", [f"{names.alpha}>=1.1"])
    use_index.add(names.beta, "1.2", [f"{names.alpha}>=1.1"])

    done = project.run("upgrade", f"{names.beta}==1.1")

    assert done.returncode == 0, done.stderr
    for layer in ("prod", "test", "dev"):
        versions = _versions(project, layer)
        assert (versions[names.beta], versions[names.alpha]) == ("1.1", "1.1"), layer
    assert _layer_report(done.stdout)["requirements/base.txt"] == [
        f"{names.alpha} 1.0 → 1.1 (needed by {names.beta} 1.1)"
    ]
    assert project.run("verify").returncode == 0
