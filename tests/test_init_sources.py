"""init with a frozen file beside a [project] table that declares nothing, and init over layers it keeps.

A trial adopted a freeze-only app whose pyproject.toml held only the name and version to build it
under: init took the empty [project] as the source and left flask out of every layer. Run again
with --from requirements.txt, it kept the existing base.in yet printed flask as written into it.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.pkgindex import PackageIndex
from tests.test_init import init

BARE = '[project]\nname = "fz-app"\nversion = "0.1.0"\n'


def test_a_project_table_with_no_requirements_leaves_the_frozen_file_the_one_source(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    use_index.add("flaskish", "3.0.0", ["werkzeugish>=3"])
    use_index.add("werkzeugish", "3.0.1")
    (tmp_path / "pyproject.toml").write_text(BARE, encoding="utf-8")
    (tmp_path / "requirements.txt").write_text("flaskish==3.0.0\nwerkzeugish==3.0.1\n", encoding="utf-8")

    done = init(tmp_path)

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "requirements/base.in").read_text().splitlines()[1:] == ["flaskish"]
    assert "flaskish==3.0.0" in (tmp_path / "requirements/dev.txt").read_text().splitlines()
    assert "not adopted" not in done.stderr


def test_a_layer_file_init_keeps_is_a_warning_naming_what_it_does_not_hold(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    use_index.add("flaskish", "3.0.0")
    (tmp_path / "pyproject.toml").write_text(BARE, encoding="utf-8")
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements/base.in").write_text("# the team's own\n", encoding="utf-8")
    (tmp_path / "requirements.txt").write_text("flaskish==3.0.0\n", encoding="utf-8")

    done = init(tmp_path, "--from", "requirements.txt")

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "requirements/base.in").read_text() == "# the team's own\n"
    assert "kept requirements/base.in (exists; --force overwrites it)" in done.stdout.splitlines()
    assert not [line for line in done.stdout.splitlines() if line.startswith("  requirements/base.in:")]
    assert ("warning: requirements/base.in was kept as it was, so it does not hold requirements.txt (top-level: no "
            "other listed package requires them): flaskish; add it by hand, or rewrite the file with python -m "
            "deploy init --force") in done.stderr.splitlines()
