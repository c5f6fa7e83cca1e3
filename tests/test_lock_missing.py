"""A lock that names a project the index does not have says so, apart from a spec no version meets (issue 15)."""

from __future__ import annotations

from pathlib import Path

from tests.lockproject import LockProject, Names
from tests.support.pkgindex import PackageIndex


def _failure(project: LockProject) -> list[str]:
    done = project.run("lock")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr.splitlines()


def test_a_project_the_index_does_not_have_is_named_as_such_and_a_version_none_meets_as_before(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    names = Names()
    use_index.add(names.alpha, "1.0")
    use_index.add(names.future, "1.0", python_requires=">=4")  # on the index, for no Python of today
    project = LockProject.create(tmp_path / "project", {"base.in": f"{names.alpha}\n{names.nosuch}\n"})
    assert (f"  package {names.nosuch}: the index has no project named {names.nosuch} (or none of its files fits "
            "this Python), asked by layer base (requirements/base.in:2)") in _failure(project)
    for spec in (f"{names.alpha}>=9", names.future):
        project.write("base.in", f"{spec}\n")
        assert (f"  package {spec.split('>')[0]}: no version on the index matches {spec}, asked by layer base "
                "(requirements/base.in:1)") in _failure(project)
