"""Words a lock and a release print (issue 15 trials): what they say matches what happened."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.release.build import build
from deploy.render import lock_changes
from tests.lockproject import LockProject, Names, publish
from tests.support.pkgindex import PackageIndex

NO_APP = '[tool.deploy]\nrequirements = "requirements"\ndeploy-layer = "prod"\n'


def test_a_lock_rewritten_with_the_same_pins_says_no_pin_changed_and_an_untouched_one_unchanged() -> None:
    changes = {"base": [], "prod": [], "test": ["+ omega 1.0"]}
    text = lock_changes(changes, lambda layer: f"requirements/{layer}.txt", rewritten={"base", "test"})
    assert text.splitlines() == [
        "requirements/base.txt: no pin changed",  # its header's input digests changed
        "requirements/prod.txt: unchanged",
        "requirements/test.txt:",
        "  + omega 1.0",
    ]


@pytest.mark.index
def test_a_release_that_fetches_one_wheel_says_wheel(use_index: PackageIndex, tmp_path: Path) -> None:
    names = Names()
    use_index.add(names.alpha, "1.0")
    project = LockProject.create(tmp_path / "app", {"prod.in": f"{names.alpha}\n"}, pyproject=NO_APP)
    project.lock()
    lines: list[str] = []
    build(project.config(), log=lines.append)
    assert "fetching 1 wheel for the deploy layer (hash-checked)" in lines


@pytest.mark.index
def test_an_add_that_rewrites_locks_with_the_same_pins_says_no_pin_changed(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    names = Names()
    project = LockProject.create(tmp_path / "app", publish(use_index, names))
    project.lock()
    done = project.run("add", f"{names.alpha}>=1")  # alpha 1.0 stays; every lock's header changes
    assert done.returncode == 0, done.stderr
    assert "requirements/base.txt: no pin changed" in done.stdout.splitlines(), done.stdout
    untouched = project.run("add", "--layer", "dev", f"{names.linter}>=1")
    assert "requirements/prod.txt: unchanged" in untouched.stdout.splitlines(), untouched.stdout
