"""Adopting a uv project: PEP 735 groups on layers, and uv.lock's versions kept by the first lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lockproject import LockProject, Names, pins
from tests.support.adopt import init, lines, new_project, tools
from tests.support.pkgindex import PackageIndex

pytestmark = pytest.mark.index


def test_groups_land_on_layers_and_the_first_lock_keeps_uv_lock_versions(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    names = Names()
    for version in ("1.0", "1.5"):
        use_index.add(names.web, version, [f"{names.helper}>=1"])
        use_index.add(names.helper, version)
    tools(use_index)
    root = new_project(tmp_path / "shop",
                       f'[project]\nname = "shop"\nversion = "0.1.0"\ndependencies = ["{names.web}>=1"]\n'
                       '[dependency-groups]\ndev = ["pytest", "ruff"]\n')
    registry = 'source = { registry = "https://pypi.org/simple" }'
    (root / "uv.lock").write_text(
        'version = 1\n\n[[package]]\nname = "shop"\nversion = "0.1.0"\nsource = { editable = "." }\n\n'
        f'[[package]]\nname = "{names.web}"\nversion = "1.0"\n{registry}\n\n'
        f'[[package]]\nname = "{names.helper}"\nversion = "1.0"\n{registry}\n', encoding="utf-8")

    done = init(root)

    assert done.returncode == 0, done.stderr
    assert lines(root / "requirements/test.in") == ["pytest"], "a test tool of the dev group is what CI needs"
    assert lines(root / "requirements/dev.in") == ["ruff"]
    assert "  requirements/dev.txt: the 2 versions of uv.lock, which the first lock keeps where the layers allow" \
        in done.stdout.splitlines()
    project = LockProject(root)
    project.lock()
    prod = {name: version for name, (version, _) in pins(project.read("prod.txt")).items()}
    assert prod == {names.web: "1.0", names.helper: "1.0"}, "uv.lock's versions, though 1.5 exists"
    assert project.run("verify").returncode == 0
