"""Words a lock and a release print (issue 15 trials): what they say matches what happened."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.release.build import build
from deploy.render import lock_changes
from tests.lockproject import LockProject, Names
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
