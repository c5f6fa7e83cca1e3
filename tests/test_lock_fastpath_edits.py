"""An edit of existing locks in one pip-compile run, only where it gives the rounds' very files (issue 15).

`add` and `remove` change an input and lock: the rounds then solve each stale lower layer alone,
keeping the fresh ones' pins, then the top layers, one pip-compile run each. Each project here is
locked, edited, and locked again twice: as a user's `lock` does it, and with the one-run path off.
The lock files must be the same bytes; one run must do it where pip's account proves the rounds
would agree, and the rounds must run where it does not. Real pip-compile, local index.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.lock.solve import lock
from tests.lockproject import LockProject, Names, lock_both_ways, runs, versions
from tests.support.pkgindex import PackageIndex

pytestmark = pytest.mark.index
FALLBACK = "solving the lower layers on their own inputs first"
ONE_RUN = "is what its own inputs give: one run locked the group"


@pytest.fixture
def names() -> Names:
    return Names()


def _edit_and_lock_both_ways(
    project: LockProject, edits: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], list[str]]:
    """Apply `edits` to the locked `project`, then lock it both ways (lockproject.lock_both_ways)."""
    for name, text in edits.items():
        project.write(name, text)
    fast_log, rounds_log, _ = lock_both_ways(project, tmp_path, monkeypatch)
    return fast_log, rounds_log


def _four_layers(index: PackageIndex, n: Names, root: Path) -> LockProject:
    for name, needs in {n.markup: [], n.web: [f"{n.markup}>=1", n.util], n.util: [], n.server: [f"{n.web}>=1"],
                        n.runner: [n.util], n.linter: [], n.flagger: [n.util]}.items():
        for version in ("1.0", "1.1"):
            index.add(name, version, needs)
    project = LockProject.create(root, {
        "base.in": f"{n.web}\n",
        "prod.in": f"-r base.in\n{n.server}\n",
        "test.in": f"-r prod.in\n{n.runner}\n",
        "dev.in": f"-r test.in\n{n.linter}\n",
    })
    lock(project.config(), log=lambda line: None)
    return project


def test_adding_to_a_middle_layer_relocks_the_layers_above_in_one_run(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = names
    project = _four_layers(use_index, n, tmp_path / "project")
    base = project.read("base.txt")

    fast, rounds = _edit_and_lock_both_ways(
        project, {"prod.in": f"-r base.in\n{n.server}\n{n.flagger}\n"}, tmp_path, monkeypatch)

    assert runs(fast) == 1 and runs(rounds) == 2, "\n".join(fast)  # prod, then test carried into dev's
    assert "resolving prod, test, dev together with pip-compile, keeping the pins of base" in fast
    assert f"each lower layer (prod, test) {ONE_RUN}" in fast
    assert project.read("base.txt") == base
    assert versions(project, "prod")[n.flagger] == versions(project, "dev")[n.flagger] == "1.1"
    assert project.run("verify").returncode == 0


def test_a_lower_layer_whose_lock_is_kept_and_an_edit_above_it_take_one_run(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = names
    project = _four_layers(use_index, n, tmp_path / "project")

    fast, rounds = _edit_and_lock_both_ways(
        project, {"test.in": f"-r prod.in\n{n.runner}\n{n.flagger}<1.1\n"}, tmp_path, monkeypatch)

    assert runs(fast) == 1 and runs(rounds) == 2, "\n".join(fast)
    assert "resolving test, dev together with pip-compile, keeping the pins of base, prod" in fast
    assert versions(project, "test")[n.flagger] == "1.0"


def test_the_existing_pins_stay_where_the_inputs_allow_them_in_one_run(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = names
    use_index.add(n.alpha, "1.0")
    use_index.add(n.checker, "1.0")
    project = LockProject.create(tmp_path / "project", {
        "base.in": f"{n.alpha}\n",
        "prod.in": "-r base.in\n",
        "dev.in": f"-r prod.in\n{n.checker}\n",
    })
    lock(project.config(), log=lambda line: None)
    for name in (n.alpha, n.checker):
        use_index.add(name, "1.1")
    use_index.add(n.beta, "1.0", [n.alpha])

    fast, rounds = _edit_and_lock_both_ways(project, {"prod.in": f"-r base.in\n{n.beta}\n"}, tmp_path, monkeypatch)

    assert runs(fast) == 1 and runs(rounds) == 2, "\n".join(fast)
    assert versions(project, "dev") == {n.alpha: "1.0", n.beta: "1.0", n.checker: "1.0"}, "nothing asked to move"


def test_a_package_an_upper_lock_holds_older_takes_the_rounds_when_a_lower_layer_first_asks_for_it(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prod's own run has no pin of it to keep and takes the newest; the one run kept dev's older pin."""
    n = names
    use_index.add(n.alpha, "1.0")
    use_index.add(n.tool, "1.0")
    project = LockProject.create(tmp_path / "project", {
        "base.in": f"{n.alpha}\n",
        "prod.in": "-r base.in\n",
        "dev.in": f"-r prod.in\n{n.tool}\n",
    })
    lock(project.config(), log=lambda line: None)
    use_index.add(n.tool, "1.1")

    fast, rounds = _edit_and_lock_both_ways(project, {"prod.in": f"-r base.in\n{n.tool}\n"}, tmp_path, monkeypatch)

    assert (f"pip tries {n.tool} 1.1 first on prod's own inputs, where the joint run has 1.0, so prod's own run "
            f"could pick otherwise: {FALLBACK}") in fast
    assert runs(fast) == 1 + runs(rounds)
    assert versions(project, "prod")[n.tool] == versions(project, "dev")[n.tool] == "1.1"


def test_removing_from_the_base_layer_relocks_every_layer_in_one_run(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = names
    project = _four_layers(use_index, n, tmp_path / "project")
    project.write("base.in", f"{n.web}\n{n.flagger}\n")
    lock(project.config(), log=lambda line: None)

    fast, rounds = _edit_and_lock_both_ways(project, {"base.in": f"{n.web}\n"}, tmp_path, monkeypatch)

    assert runs(fast) == 1 and runs(rounds) == 2, "\n".join(fast)  # base, then the rest carried into dev's
    assert all(n.flagger not in versions(project, layer) for layer in ("base", "prod", "test", "dev"))
