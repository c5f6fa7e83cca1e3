"""Relative paths in layer files mean what pip makes of them, though pip-compile reads copies of the
layers in a temporary folder; an editable line is refused at its own file:line (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lockproject import LockProject, Names, pins, publish
from tests.support.pkgindex import PackageIndex, build_wheel

pytestmark = pytest.mark.index


def test_a_layer_that_includes_a_file_above_its_folder_locks_and_verifies(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    names = Names()
    layers = publish(use_index, names)
    layers["test.in"] = f"-r prod.in\n-r ../shared/tools.in\n{names.checker}\n"
    layers["../shared/tools.in"] = f"# shared with the other services\n{names.linter}\n"
    project = LockProject.create(tmp_path / "project", layers)

    project.lock()

    assert names.linter in pins(project.read("test.txt"))
    assert "requirements/../shared" not in project.read("test.txt")
    assert "#   shared/tools.in " in project.read("test.txt"), "the header names the included file as an input"
    assert project.run("verify").returncode == 0


def test_a_find_links_line_in_an_included_file_is_read_from_that_file_and_carried_relative_to_the_lock(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    names = Names()
    layers = publish(use_index, names)
    layers["dev.in"] += "-r ../shared/vendored.in\n"
    layers["../shared/vendored.in"] = f"--find-links ./wheels\n{names.vendored}\n"
    project = LockProject.create(tmp_path / "project", layers)
    build_wheel(project.root / "shared" / "wheels", names.vendored, "2.0")

    project.lock()

    dev = project.read("dev.txt")
    assert "\n--find-links ../shared/wheels\n" in dev, dev
    assert pins(dev.replace("--find-links ../shared/wheels\n", ""))[names.vendored][0] == "2.0"
    assert project.run("verify").returncode == 0


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("-e .", "'-e .': hash-checking mode cannot lock an editable requirement; the project itself is installed by "
         "onboarding (python3 scripts/onboard.py installs it editable after the lock), and deploys ship its own wheel"),
        ("-e ./libs/helper", "'-e ./libs/helper': hash-checking mode cannot lock an editable requirement (it has no "
         "file to hash)"),
    ],
)
def test_an_editable_line_is_refused_once_at_its_own_file_and_line(tmp_path: Path, line: str, expected: str) -> None:
    project = LockProject.create(tmp_path / "project", {
        "base.in": "alpha\n",
        "dev.in": f"# a developer's machine\n-r base.in\nruff\n\n{line}\n",
    })

    for command in ("lock", "verify"):
        done = project.run(command)
        assert done.returncode == 1
        lines = done.stderr.splitlines()
        assert lines[0].split(": ", 1)[1] == f"requirements/dev.in:5: {expected}", lines
        assert lines[1].startswith("  fix: "), lines
        assert "pinship-lock-" not in done.stderr and "Traceback" not in done.stderr
    assert not project.path("dev.txt").exists()
