"""A first lock in one pip-compile run, only where it gives the rounds' very files (issue 15, speed).

Each project is locked twice from nothing: as a user's `lock` does it, and with the one-run path
turned off (the rounds of issue 14: each lower layer alone, lowest first). The lock files must be
the same bytes; the one-run path must be taken (one "resolving" line) where pip's account proves the
rounds would agree, and not where an upper layer pulls a lower one. Real pip-compile, local index.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from deploy.lock import pipreport
from tests.lockproject import PYPROJECT, LockProject, Names, lock_both_ways, lock_fails_both_ways, runs, versions
from tests.support.pkgindex import PackageIndex

pytestmark = pytest.mark.index
FALLBACK = "solving the lower layers on their own inputs first"


@pytest.fixture
def names() -> Names:
    return Names()


def _release(index: PackageIndex, requires: dict[str, list[str]], versions: tuple[str, ...] = ("1.0", "1.1")) -> None:
    for name, needs in requires.items():
        for version in versions:
            index.add(name, version, needs)


def test_the_benchmark_shape_locks_in_one_run_with_the_rounds_files(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four layers whose upper packages need lower ones without specifiers, two releases of each."""
    n = names
    _release(use_index, {n.markup: [], n.web: [f"{n.markup}>=1", n.util], n.util: [], n.server: [f"{n.web}>=1"],
                         n.runner: [n.util], n.factory: [n.web], n.linter: []})
    use_index.add(n.driver, "1.0", sdist_only=True)
    use_index.add(n.orm, "1.0", [n.driver])
    project = LockProject.create(tmp_path / "project", {
        "base.in": f"{n.web}\n{n.orm}\n",
        "prod.in": f"-r base.in\n{n.server}\n",
        "test.in": f"-r prod.in\n{n.runner}\n{n.factory}\n",
        "dev.in": f"-r test.in\n{n.linter}<1.1\n",  # a cap on a top-layer package is the top layer's own
    })

    fast, rounds, _ = lock_both_ways(project, tmp_path, monkeypatch)

    assert runs(fast) == 1 and runs(rounds) == 4
    assert "each lower layer (base, prod, test) is what its own inputs give: one run locked the group" in fast
    assert versions(project, "base")[n.web] == "1.1"
    assert versions(project, "dev")[n.linter] == "1.0"
    assert project.run("verify").returncode == 0


def _wheel_with_extra(index: PackageIndex, name: str, version: str, needs: str, extra_needs: str) -> None:
    """A wheel declaring an extra `postgres` (the test index's builder writes no Provides-Extra)."""
    stem = f"{name.replace('-', '_')}-{version}"
    metadata = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Dist: {needs}\n"
                f'Provides-Extra: postgres\nRequires-Dist: {extra_needs}; extra == "postgres"\n')
    wheel = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files = {f"{stem}.dist-info/METADATA": metadata, f"{stem}.dist-info/WHEEL": wheel}
    record = f"{stem}.dist-info/RECORD"
    with zipfile.ZipFile(index.root / f"{stem}-py3-none-any.whl", "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(record, "".join(f"{path},,\n" for path in [*files, record]))


def orm_with_postgres_extra(index: PackageIndex, n: Names) -> None:
    """orm needs driver, and pgdriver too with its `postgres` extra."""
    index.add(n.driver, "1.0")
    index.add(n.pgdriver, "1.0")
    _wheel_with_extra(index, n.orm, "1.0", n.driver, n.pgdriver)


def test_an_extra_asked_by_an_upper_layer_never_reaches_the_lower_lock(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = names
    orm_with_postgres_extra(use_index, n)
    project = LockProject.create(tmp_path / "project", {
        "base.in": f"{n.orm}\n",
        "prod.in": "-r base.in\n",
        "dev.in": f"-r prod.in\n{n.orm}[postgres]\n",
    })

    fast, rounds, _ = lock_both_ways(project, tmp_path, monkeypatch)

    assert (f"the joint run gives base {n.pgdriver}, which its own inputs do not reach (an extra asked for by a "
            f"layer above): {FALLBACK}") in fast
    assert runs(fast) == 1 + runs(rounds)
    assert n.pgdriver not in versions(project, "base"), "select() from the joint run would have put it there"
    assert n.pgdriver not in versions(project, "prod")
    assert versions(project, "dev")[n.pgdriver] == "1.0"


@pytest.mark.parametrize("resolver", ["pip-tools", "uv"])
def test_a_dev_cap_on_a_base_package_takes_the_rounds_and_fails_as_they_do(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resolver: str
) -> None:
    n = names
    for version in ("7.4.4", "9.2.0"):
        use_index.add(n.tool, version)
    project = LockProject.create(tmp_path / "project", {
        "base.in": f"{n.tool}\n",
        "prod.in": "-r base.in\n",
        "dev.in": f"-r prod.in\n{n.tool}<8\n",
    }, pyproject=PYPROJECT.format(name="lockproject") + f'resolver = "{resolver}"\n')

    said, error = lock_fails_both_ways(project, tmp_path, monkeypatch)

    tool = "uv" if resolver == "uv" else "pip"
    assert (f"requirements/dev.in:2 '{n.tool}<8' holds {n.tool} below the version {tool} tries first on base's own "
            f"inputs (9.2.0): {FALLBACK}") in said
    # uv's words (`Because you require tool<8 and tool==9.2.0`) are read as pip's: the lines and the lock.
    assert (f"package {n.tool}: layer dev needs {n.tool}<8 (requirements/dev.in:2), the lower layer's lock "
            f"requirements/base.txt (as locked in this run) pins {n.tool}==9.2.0") in error
    assert "nox -s lock -- --move-lower" in error


def test_a_seed_lock_from_init_is_kept_in_one_run(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = names
    _release(use_index, {n.alpha: [], n.beta: [n.alpha], n.checker: []})
    project = LockProject.create(tmp_path / "project", {
        "base.in": f"{n.alpha}\n",
        "prod.in": f"-r base.in\n{n.beta}\n",
        "dev.in": f"-r prod.in\n{n.checker}\n",
        # What init writes from a freeze file: the versions the project ran, no header.
        "dev.txt": f"{n.alpha}==1.0\n{n.checker}==1.0\n",
    })

    fast, rounds, _ = lock_both_ways(project, tmp_path, monkeypatch)

    assert runs(fast) == 1 and runs(rounds) == 3
    assert versions(project, "base") == {n.alpha: "1.0"}, "the seed's version, as base's own run keeps it"
    assert versions(project, "dev") == {n.alpha: "1.0", n.beta: "1.1", n.checker: "1.0"}


def test_a_standalone_layer_is_its_own_run_beside_the_groups_one(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = names
    _release(use_index, {n.alpha: [], n.beta: [n.alpha], n.docgen: [n.alpha]})
    project = LockProject.create(tmp_path / "project", {
        "base.in": f"{n.alpha}\n",
        "dev.in": f"-r base.in\n{n.beta}\n",
        "docs.in": f"{n.docgen}\n{n.alpha}<1.1\n",
    })

    fast, rounds, _ = lock_both_ways(project, tmp_path, monkeypatch)

    assert runs(fast) == 2 and runs(rounds) == 3
    assert versions(project, "docs")[n.alpha] == "1.0" and versions(project, "base")[n.alpha] == "1.1"


def test_a_top_package_held_back_by_a_dependency_takes_the_rounds_above_the_proven_layers(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether the rounds' last run would pick the joint's versions then depends on pip's order of
    solving: not proven, so not assumed."""
    n = names
    _release(use_index, {n.alpha: [], n.widget: []})
    use_index.add(n.gadget, "1.0")
    use_index.add(n.gadget, "1.1", [f"{n.widget}<1.1"])
    project = LockProject.create(tmp_path / "project", {
        "base.in": f"{n.alpha}\n",
        "dev.in": f"-r base.in\n{n.gadget}\n{n.widget}\n",
    })

    fast, rounds, _ = lock_both_ways(project, tmp_path, monkeypatch)

    assert (f"{n.widget} 1.0 is not the version pip tries first for it (1.1), so another order of solving could "
            f"pick otherwise: {FALLBACK}") in fast
    assert "base: the one run's pins stand, as its own inputs give them" in fast
    assert runs(fast) == runs(rounds) == 2, "base's round is taken from the one run: only the top's runs again"


def test_without_pips_account_the_rounds_run(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if pip's internals had changed under the hook: pip-compile runs, no report comes back."""
    n = names
    _release(use_index, {n.alpha: [], n.beta: [n.alpha]})
    project = LockProject.create(tmp_path / "project", {"base.in": f"{n.alpha}\n", "dev.in": f"-r base.in\n{n.beta}\n"})
    monkeypatch.setattr(pipreport, "BOOT", "import runpy, sys; sys.argv = sys.argv[4:]; "
                        "runpy.run_module('piptools', run_name='__main__')")

    fast, rounds, _ = lock_both_ways(project, tmp_path, monkeypatch)

    assert ("pip's resolver gave no account of its run (no report file: FileNotFoundError): "
            f"{FALLBACK}") in fast
    assert runs(fast) == 1 + runs(rounds)


def test_a_round_that_ran_and_came_out_as_the_one_run_had_it_leaves_the_layers_above_to_the_one_run(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in every adopted project: a test-layer package caps a dependency below its newest (fabric's
    invoke<3), so pip would try the newest first on test's own inputs and test's round must run; it
    backs off to the joint's version, and dev, proven on that, needs no run of its own."""
    n = names
    _release(use_index, {n.alpha: [], n.server: [n.alpha], n.linter: []})
    for version in ("1.0", "2.0"):
        use_index.add(n.tool, version)
    use_index.add(n.fab, "1.0", [f"{n.tool}<2"])
    project = LockProject.create(tmp_path / "project", {
        "base.in": f"{n.alpha}\n",
        "prod.in": f"-r base.in\n{n.server}\n",
        "test.in": f"-r prod.in\n{n.tool}\n{n.fab}\n",
        "dev.in": f"-r test.in\n{n.linter}\n",
    })

    fast, rounds, _ = lock_both_ways(project, tmp_path, monkeypatch)

    assert (f"pip tries {n.tool} 2.0 first on test's own inputs, where the joint run has 1.0, so test's own run "
            f"could pick otherwise: {FALLBACK}") in fast
    assert "dev: the one run's pins stand, as the layers below came out as it had them" in fast
    assert runs(fast) == 2 and runs(rounds) == 4, "\n".join(fast)
    assert versions(project, "dev")[n.tool] == "1.0"
