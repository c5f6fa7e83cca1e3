"""A wheel vendored beside the locks (`--find-links wheels` in the deploy layer) ships like any pin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deployproject import INSTALLED, make_project
from tests.support.pkgindex import PackageIndex, build_wheel

pytestmark = pytest.mark.index


def test_a_vendored_wheel_in_the_deploy_layer_is_built_into_the_release_offline(tmp_path: Path) -> None:
    with PackageIndex(tmp_path / "index") as index:
        index.add("alpha", "1.0", ["beta>=1"])
        index.add("beta", "1.0")
        index.add("gamma", "1.0", sdist_only=True)
        index.add("delta", "1.0")
        project = make_project(tmp_path / "app", index.url)
        # A package no index has: its wheel lives in the project, next to the layers.
        build_wheel(project.root / "requirements" / "wheels", "inhouse", "2.0")
        prod = project.root / "requirements" / "prod.in"
        prod.write_text("--find-links wheels\n" + prod.read_text() + "inhouse\n", encoding="utf-8")
        locked = subprocess.run([sys.executable, "-m", "deploy", "--root", str(project.root), "lock"],
                                env=project.env, capture_output=True, text=True, check=False)
        assert locked.returncode == 0, locked.stdout + locked.stderr
        assert "--find-links wheels" in (project.root / "requirements" / "prod.txt").read_text()
        # The index has no inhouse: its wheel can only come from the folder the lock names.
        outcome = project.deploy_ok(env="local")
        outcome.assert_clean()
    python = project.root / ".deploy" / "local" / "current" / "venv" / "bin" / "python"
    installed = json.loads(subprocess.run([str(python), "-I", "-c", INSTALLED], capture_output=True, text=True,
                                          check=True).stdout)
    assert installed.get("inhouse") == "2.0"
