"""`python -m deploy upgrade [PKG ...]`: move packages forward in every layer at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lockproject import LockProject, Names, pins, publish
from tests.support.pkgindex import PackageIndex

pytestmark = pytest.mark.index


@pytest.fixture
def names() -> Names:
    return Names()


@pytest.fixture
def project(use_index: PackageIndex, names: Names, tmp_path: Path) -> LockProject:
    """A locked four-layer project; alpha 1.0 sits in every layer, beta 1.0 from prod up."""
    project = LockProject.create(tmp_path / "project", publish(use_index, names))
    project.lock()
    return project


def _layer_report(stdout: str) -> dict[str, list[str]]:
    """What the upgrade printed, per lock file: `requirements/base.txt:` then indented changes."""
    report: dict[str, list[str]] = {}
    current = ""
    for line in stdout.splitlines():
        if line.startswith("requirements/") and line.endswith(": unchanged"):
            report[line.removesuffix(": unchanged")] = []
        elif line.startswith("requirements/") and line.endswith(":"):
            current = line.removesuffix(":")
            report[current] = []
        elif line.startswith("  ") and current:
            report[current].append(line.strip())
    return report


def test_upgrading_a_package_moves_it_in_every_layer_and_says_so(
    use_index: PackageIndex, project: LockProject, names: Names
) -> None:
    before = {layer: pins(project.read(f"{layer}.txt")) for layer in ("base", "prod", "test", "dev")}
    use_index.add(names.alpha, "1.1", [names.gamma])
    use_index.add(names.gamma, "1.0")
    use_index.add(names.beta, "1.1", [names.alpha])

    done = project.run("upgrade", names.alpha)

    assert done.returncode == 0, done.stderr
    change = [f"{names.alpha} 1.0 → 1.1", f"+ {names.gamma} 1.0 (needed by {names.alpha} 1.1)"]
    assert _layer_report(done.stdout) == {f"requirements/{layer}.txt": change for layer in before}
    for layer, old in before.items():
        new = pins(project.read(f"{layer}.txt"))
        assert new[names.alpha][0] == "1.1"
        assert new[names.gamma][0] == "1.0", "the new dependency of alpha 1.1 is locked with it"
        untouched = {name: pin for name, pin in new.items() if name not in (names.alpha, names.gamma)}
        assert untouched == {name: pin for name, pin in old.items() if name != names.alpha}, (
            f"{layer}: only alpha (and what it needs) may move; beta 1.1 was not asked for"
        )
    assert project.run("verify").returncode == 0


def test_upgrading_a_package_only_some_layers_have_leaves_the_others_alone(
    use_index: PackageIndex, project: LockProject, names: Names
) -> None:
    base, prod = project.read("base.txt"), project.read("prod.txt")
    use_index.add(names.linter, "2.0")

    done = project.run("upgrade", names.linter)

    assert done.returncode == 0, done.stderr
    assert _layer_report(done.stdout) == {
        "requirements/base.txt": [],
        "requirements/prod.txt": [],
        "requirements/test.txt": [],
        "requirements/dev.txt": [f"{names.linter} 1.0 → 2.0"],
    }
    assert (project.read("base.txt"), project.read("prod.txt")) == (base, prod)


def test_upgrading_an_unknown_package_is_a_clear_error(use_index: PackageIndex, project: LockProject) -> None:
    before = project.snapshot()
    use_index.requests.clear()

    done = project.run("upgrade", "no-such-package")

    assert done.returncode == 1
    assert "error: unknown package(s) to upgrade: no-such-package" in done.stderr
    assert "Traceback" not in done.stderr
    assert project.snapshot() == before
    assert use_index.requests == [], "a misspelt name is caught before any resolving"


def test_upgrade_with_no_names_upgrades_everything(
    use_index: PackageIndex, project: LockProject, names: Names
) -> None:
    use_index.add(names.alpha, "1.1")
    use_index.add(names.beta, "1.1", [names.alpha])  # no longer needs delta
    use_index.add(names.linter, "1.2")

    done = project.run("upgrade")

    assert done.returncode == 0, done.stderr
    report = _layer_report(done.stdout)
    assert report["requirements/base.txt"] == [f"{names.alpha} 1.0 → 1.1"]
    assert report["requirements/dev.txt"] == [
        f"{names.alpha} 1.0 → 1.1", f"{names.beta} 1.0 → 1.1", f"{names.linter} 1.0 → 1.2", f"- {names.delta} 1.0",
    ]
    dev = pins(project.read("dev.txt"))
    assert {name: version for name, (version, _) in dev.items()} == {
        names.alpha: "1.1", names.beta: "1.1", names.checker: "1.0", names.linter: "1.2",
    }
    assert project.run("verify").returncode == 0
