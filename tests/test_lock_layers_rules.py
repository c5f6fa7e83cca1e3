"""An upper layer never moves a lower one, and a standalone layer is a lock of its own (issue 14).

Real pip-compile runs on the local index; what is checked is what a user sees: the exit code, the
lines printed, and the locks on disk.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.lock import onerun
from deploy.lock.solve import lock
from tests.lockproject import LockProject, Names, pins, publish
from tests.support.pkgindex import PackageIndex

pytestmark = pytest.mark.index


def _versions(project: LockProject, layer: str) -> dict[str, str]:
    return {name: version for name, (version, _) in pins(project.read(f"{layer}.txt")).items()}


def _line_of(project: LockProject, lock: str, pin: str) -> int:
    lines = project.read(lock).splitlines()
    return next(number for number, text in enumerate(lines, 1) if text.startswith(pin))


@pytest.fixture
def names() -> Names:
    return Names()


@pytest.fixture
def tool_project(use_index: PackageIndex, names: Names, tmp_path: Path) -> LockProject:
    """The four layers of lockproject, the deploy layer (prod) shipping `tool` 9.2.0 (7.4.4 exists)."""
    layers = publish(use_index, names)
    use_index.add(names.tool, "7.4.4")
    use_index.add(names.tool, "9.2.0")
    layers["prod.in"] += f"{names.tool}\n"
    project = LockProject.create(tmp_path / "project", layers)
    project.lock()
    assert _versions(project, "prod")[names.tool] == "9.2.0"
    return project


def test_an_upper_layer_cap_that_would_move_the_deploy_layer_fails_naming_both_lines_and_what_would_move(
    tool_project: LockProject, names: Names
) -> None:
    project = tool_project
    before = project.snapshot()
    project.write("dev.in", project.read("dev.in") + f"{names.tool}<8\n")
    prod_line = _line_of(project, "prod.txt", f"{names.tool}==9.2.0")

    done = project.run("lock")

    assert done.returncode == 1, done.stdout
    assert (
        f"package {names.tool}: layer dev needs {names.tool}<8 (requirements/dev.in:3), "
        f"the lower layer's lock requirements/prod.txt:{prod_line} pins {names.tool}==9.2.0"
    ) in done.stderr
    assert "only moving a lower layer can satisfy both:" in done.stderr
    for layer in ("prod", "test"):
        assert (f"requirements/{layer}.txt: {names.tool} 9.2.0 → 7.4.4 would be needed by "
                f"requirements/dev.in:3 '{names.tool}<8'") in done.stderr
    assert "requirements/base.txt:" not in done.stderr, "base has no tool: nothing of it would move"
    assert "fix: change requirements/dev.in to agree with the lower locks" in done.stderr
    assert "nox -s lock -- --move-lower" in done.stderr
    assert "Traceback" not in done.stderr
    assert project.snapshot() == before, "no lock is written, the deploy layer's least of all"


def test_move_lower_moves_the_lower_layers_and_prints_every_change_marking_them(
    tool_project: LockProject, names: Names
) -> None:
    project = tool_project
    base_before = project.read("base.txt")
    project.write("dev.in", project.read("dev.in") + f"{names.tool}<8\n")
    said: list[str] = []

    result = lock(project.config(), move_lower=True, log=said.append)

    for layer in ("prod", "test", "dev"):
        assert _versions(project, layer)[names.tool] == "7.4.4", layer
    assert project.read("base.txt") == base_before
    printed = "\n".join(said)
    for layer in ("prod", "test"):
        assert (f"requirements/{layer}.txt (a lower layer: moved, as --move-lower allows):\n"
                f"  {names.tool} 9.2.0 → 7.4.4") in printed
    assert f"requirements/dev.txt:\n  {names.tool} 9.2.0 → 7.4.4" in printed
    assert result.moved_lower == ["base", "prod", "test"]
    assert project.run("verify").returncode == 0


def test_a_top_layer_package_needing_a_newer_lower_pin_is_refused_after_one_run_naming_the_move(
    use_index: PackageIndex, names: Names, tmp_path: Path
) -> None:
    project = LockProject.create(tmp_path / "project", publish(use_index, names))
    project.lock()
    before = project.snapshot()
    use_index.add(names.alpha, "1.1")
    use_index.add(names.extra, "1.0", [f"{names.alpha}>=1.1"])
    project.write("dev.in", project.read("dev.in") + f"{names.extra}\n")

    done = project.run("lock")

    # Jointly, alpha would have moved to 1.1 in every layer: the lower layers keep it, so it is refused.
    assert done.returncode == 1
    assert "resolving dev with pip-compile, keeping the pins of base, prod, test" in done.stdout
    assert done.stdout.count("resolving ") == 1, "one pip-compile run decides it, then one to find the moves"
    assert (f"requirements/base.txt: {names.alpha} 1.0 → 1.1 would be needed by {names.extra} 1.0"
            in done.stderr)
    assert project.snapshot() == before


def test_a_stale_lower_layer_is_solved_from_its_own_inputs_before_the_layers_above(
    use_index: PackageIndex, names: Names, tmp_path: Path
) -> None:
    layers = publish(use_index, names)
    use_index.add(names.gamma, "1.0")
    use_index.add(names.gamma, "2.0")
    layers["dev.in"] += f"{names.gamma}<2\n"
    project = LockProject.create(tmp_path / "project", layers)
    project.lock()
    before = project.snapshot()
    project.write("prod.in", project.read("prod.in") + f"{names.gamma}\n")

    done = project.run("lock")

    # Jointly, dev's cap would have chosen prod's gamma: solved alone, prod takes the newest.
    assert done.returncode == 1, done.stdout
    assert "resolving prod with pip-compile, keeping the pins of base" in done.stdout
    assert (f"the lower layer's lock requirements/prod.txt (as locked in this run) pins {names.gamma}==2.0"
            in done.stderr)
    assert f"layer dev needs {names.gamma}<2 (requirements/dev.in:3)" in done.stderr
    assert (f"requirements/prod.txt: {names.gamma} 2.0 → 1.0 would be needed by requirements/dev.in:3 "
            f"'{names.gamma}<2'") in done.stderr
    assert project.snapshot() == before


def test_an_edit_of_the_lowest_layer_is_solved_alone_first_and_the_layers_above_keep_their_pins(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = LockProject.create(tmp_path / "project", publish(use_index, names))
    project.lock()
    use_index.add(names.alpha, "1.1")
    use_index.add(names.epsilon, "1.0")
    project.write("base.in", project.read("base.in") + f"{names.epsilon}\n")
    # The rounds themselves: a lock takes one run where it proves them (tests/test_lock_fastpath_edits.py).
    monkeypatch.setattr(onerun, "ENABLED", False)
    said: list[str] = []

    lock(project.config(), log=said.append)

    # prod and test only inherit the edit: their locks agree with base's new pins, so no run of their
    # own is needed to know they stay; they are written again (new inputs) from the last run.
    assert [line for line in said if line.startswith("resolving ")] == [
        "resolving base with pip-compile, on its own inputs (the layers above it come next)",
        "resolving dev with pip-compile, keeping the pins of base, prod, test",
    ]
    for layer in ("prod", "test"):
        kept = f"{layer}: only layers below it changed, and its lock pins what they pin: its pins are kept"
        assert kept in said
    for layer in ("base", "prod", "test", "dev"):
        versions = _versions(project, layer)
        assert versions[names.epsilon] == "1.0", layer
        assert versions[names.alpha] == "1.0", f"{layer}: an unrelated pin moved to the newer release"
    assert project.run("verify").returncode == 0


def test_a_standalone_layer_is_solved_on_its_own_and_never_moves_the_apps_versions(
    use_index: PackageIndex, names: Names, tmp_path: Path
) -> None:
    layers = publish(use_index, names)
    use_index.add(names.alpha, "1.1")
    use_index.add(names.sphinx, "1.0", [f"{names.alpha}<1.1"])
    layers["docs.in"] = f"{names.sphinx}\n"
    project = LockProject.create(tmp_path / "project", layers)

    done = project.run("lock")

    assert done.returncode == 0, done.stderr
    assert _versions(project, "docs") == {names.sphinx: "1.0", names.alpha: "1.0"}
    for layer in ("base", "prod", "test", "dev"):
        assert _versions(project, layer)[names.alpha] == "1.1", f"{layer}: docs' cap moved the app"
    assert "resolving docs with pip-compile" in done.stdout
    assert project.run("verify").returncode == 0


def test_a_conflict_lists_only_the_lines_that_constrain(use_index: PackageIndex, names: Names, tmp_path: Path) -> None:
    use_index.add(names.alpha, "1.0")
    use_index.add(names.alpha, "2.0")
    use_index.add(names.beta, "2.0", [f"{names.alpha}>=2"])
    project = LockProject.create(tmp_path / "project", {
        "base.in": f"{names.alpha}\n",
        "prod.in": f"-r base.in\n{names.alpha}==1.0\n",
        "test.in": f"-r prod.in\n{names.beta}\n",
    })

    done = project.run("lock")

    assert done.returncode == 1
    line = next(line for line in done.stderr.splitlines() if f"package {names.alpha}:" in line)
    assert f"layer prod needs {names.alpha}==1.0 (requirements/prod.in:2)" in line
    assert f"layer test needs {names.alpha}>=2 (via {names.beta} 2.0, requirements/test.in:2)" in line
    assert "layer base" not in line, "a bare requirement accepts any version: it is no side of the conflict"


def test_via_keeps_the_constraint_files_that_cap_a_pin(use_index: PackageIndex, names: Names, tmp_path: Path) -> None:
    use_index.add(names.alpha, "1.0")
    use_index.add(names.alpha, "2.0")
    project = LockProject.create(tmp_path / "project", {
        "base.in": f"-c common_constraints.txt\n{names.alpha}\n",
        "common_constraints.txt": f"{names.alpha}<2\n",
        "prod.in": "-r base.in\n",
    })

    project.lock()

    for layer in ("base", "prod"):
        text = project.read(f"{layer}.txt")
        assert f"{names.alpha}==1.0" in text
        assert "#   -c requirements/common_constraints.txt\n    #   -r requirements/base.in" in text, text



def test_the_versions_a_project_ran_before_adopting_are_kept_in_the_lower_layers_too(
    use_index: PackageIndex, names: Names, tmp_path: Path
) -> None:
    # init seeds the top layer's lock with the project's own versions; base is solved first, alone,
    # and must still prefer them over the index's newest.
    use_index.add(names.alpha, "1.0")
    use_index.add(names.alpha, "1.1")
    use_index.add(names.linter, "1.0")
    project = LockProject.create(tmp_path / "project", {
        "base.in": f"{names.alpha}\n",
        "dev.in": f"-r base.in\n{names.linter}\n",
        "dev.txt": f"{names.alpha}==1.0\n{names.linter}==1.0\n",
    })

    done = project.lock()

    assert "2 versions from before adopting pinship, kept where the layers allow" in done.stdout
    assert _versions(project, "base") == {names.alpha: "1.0"}
    assert _versions(project, "dev") == {names.alpha: "1.0", names.linter: "1.0"}
