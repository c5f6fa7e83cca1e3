"""Settings are checked by one set of rules, whether they come from pyproject.toml or a flag."""

from __future__ import annotations

from pathlib import Path

from deploy import config


def test_folders_allowed_for_inputs_outside_the_root_are_resolved_from_the_root(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text('[tool.deploy]\nallow-inputs-outside = ["../shared", "/etc"]\n')
    assert config.load(root).inputs_outside == (tmp_path.resolve() / "shared", Path("/etc"))


def test_no_folder_outside_the_root_is_allowed_by_default(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.deploy]\n")
    assert config.load(tmp_path).inputs_outside == ()
