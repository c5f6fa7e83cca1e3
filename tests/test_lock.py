"""`python -m deploy lock`: real pip-compile runs against the local index, read as a user would."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lockproject import LockProject, Names, locked_copy, pins, publish
from tests.support.pkgindex import PackageIndex, normalize_project

pytestmark = pytest.mark.index

LAYERS = ("base", "prod", "test", "dev")


@pytest.fixture(scope="module")
def locked(package_index: PackageIndex, tmp_path_factory: pytest.TempPathFactory) -> tuple[LockProject, Names]:
    """One four-layer project, locked once: the tests that only read its locks share it."""
    return locked_copy(package_index, tmp_path_factory)


def test_every_pin_is_exact_with_hashes_and_the_header_says_how_to_regenerate(
    locked: tuple[LockProject, Names],
) -> None:
    project, names = locked
    expected = {
        "base": {names.alpha},
        "prod": {names.alpha, names.beta, names.delta},
        "test": {names.alpha, names.beta, names.delta, names.checker},
        "dev": {names.alpha, names.beta, names.delta, names.checker, names.linter},
    }
    for layer in LAYERS:
        text = project.read(f"{layer}.txt")
        assert set(pins(text)) == expected[layer], layer  # pins() asserts == and --hash on each
        header = text.split("\n\n", 1)[0].splitlines()[:6]
        assert any("Do not edit it by hand" in line for line in header), layer
        assert "#     nox -s lock" in header, layer


def test_locks_hold_no_index_url_find_links_or_local_path(
    locked: tuple[LockProject, Names], package_index: PackageIndex
) -> None:
    # The lock ran with PIP_INDEX_URL on 127.0.0.1 and PIP_FIND_LINKS at a local folder.
    project, _ = locked
    for layer in LAYERS:
        text = project.read(f"{layer}.txt")
        for leak in (package_index.url, "127.0.0.1", str(package_index.root), str(project.root),
                     "/tmp", "file://", "--index-url", "--extra-index-url", "--find-links", "-i ", "-f "):
            assert leak not in text, f"{layer}.txt holds {leak!r}"


def test_a_package_in_several_layers_has_the_same_version_and_hashes_in_each(
    locked: tuple[LockProject, Names],
) -> None:
    project, names = locked
    seen = {layer: pins(project.read(f"{layer}.txt")) for layer in LAYERS}
    for package in (names.alpha, names.beta, names.delta, names.checker):
        values = {layer_pins[package] for layer_pins in seen.values() if package in layer_pins}
        assert len(values) == 1, f"{package} differs between layers: {values}"


def test_what_ships_is_a_subset_of_what_ci_tests_with_identical_pins(locked: tuple[LockProject, Names]) -> None:
    project, _ = locked
    shipped, tested = pins(project.read("prod.txt")), pins(project.read("test.txt"))
    assert shipped.items() <= tested.items()


def test_an_sdist_only_dependency_is_locked_with_the_hash_of_its_sdist(
    locked: tuple[LockProject, Names], package_index: PackageIndex
) -> None:
    project, names = locked
    [sdist] = package_index.projects()[normalize_project(names.delta)]
    assert sdist.name.endswith(".tar.gz")
    sha = hashlib.sha256(sdist.read_bytes()).hexdigest()
    assert pins(project.read("prod.txt"))[names.delta] == ("1.0", (f"sha256:{sha}",))


def test_each_lock_installs_on_its_own_in_hash_checking_mode(
    use_index: PackageIndex, locked: tuple[LockProject, Names], tmp_path: Path
) -> None:
    # Dependencies are not disabled: pip, in hash-checking mode, refuses any dependency that the
    # file does not pin itself, so a success also proves the file is complete.
    project, _ = locked
    for layer in LAYERS:
        target = tmp_path / layer
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--require-hashes", "--target", str(target),
             "-r", str(project.path(f"{layer}.txt"))],
            capture_output=True, text=True, check=False,
        )
        assert done.returncode == 0, f"{layer}.txt: {done.stdout}{done.stderr}"
        installed = {path.name.split("-")[0] for path in target.glob("*.dist-info")}
        assert installed == {normalize_project(name).replace("-", "_") for name in pins(project.read(f"{layer}.txt"))}


def test_a_lock_with_nothing_changed_sends_no_request_to_the_index(
    use_index: PackageIndex, locked: tuple[LockProject, Names], tmp_path: Path
) -> None:
    project = locked[0].copy(tmp_path / "project")
    before = project.snapshot()
    use_index.requests.clear()

    done = project.lock()

    assert use_index.requests == []
    assert "all 4 layers are up to date: base, prod, test, dev" in done.stdout
    assert project.snapshot() == before


def test_locking_again_keeps_every_byte_even_when_the_index_has_newer_releases(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    names = Names()
    project = LockProject.create(tmp_path / "project", publish(use_index, names))
    project.lock()
    before = project.snapshot()
    use_index.add(names.alpha, "1.1")
    use_index.add(names.beta, "1.1", [names.alpha])

    project.lock()
    assert project.snapshot() == before

    # A real re-solve (one lock is gone) still keeps the existing pins: newer is not a reason. Only
    # the top layer is at stake, so it is solved alone, the lower layers' pins as they are locked.
    project.path("dev.txt").unlink()
    done = project.lock()
    assert "resolving dev with pip-compile, keeping the pins of base, prod, test" in done.stdout
    assert project.snapshot() == before


def test_editing_one_layer_resolves_again_and_keeps_the_other_pins(use_index: PackageIndex, tmp_path: Path) -> None:
    names = Names()
    project = LockProject.create(tmp_path / "project", publish(use_index, names))
    project.lock()
    before = project.snapshot()
    use_index.add(names.alpha, "1.1")
    use_index.add(names.extra, "1.0", [f"{names.beta}>=1"])
    project.write("dev.in", project.read("dev.in") + f"{names.extra}\n")

    done = project.lock()

    assert "requirements/dev.txt is out of date: requirements/dev.in changed since it was locked" in done.stdout
    after = project.snapshot()
    assert {name: after[name] == before[name] for name in before} == {
        "base.txt": True, "prod.txt": True, "test.txt": True, "dev.txt": False,
    }
    dev = pins(project.read("dev.txt"))
    assert dev[names.extra][0] == "1.0"
    assert dev[names.alpha][0] == "1.0", "an unrelated pin moved to the newer release"
    assert project.run("verify").returncode == 0


def test_a_conflict_between_layers_names_the_package_and_each_layer_without_a_trace(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    names = Names()
    use_index.add(names.alpha, "1.0")
    use_index.add(names.alpha, "2.0")
    use_index.add(names.beta, "2.0", [f"{names.alpha}>=2"])
    use_index.add(names.gamma, "1.0")
    project = LockProject.create(tmp_path / "project", {
        "base.in": f"{names.gamma}\n",
        "prod.in": f"-r base.in\n{names.alpha}==1.0\n",
        "test.in": f"-r prod.in\n{names.beta}\n",
    })

    done = project.run("lock")

    assert done.returncode == 1
    assert (
        f"package {names.alpha}: layer prod needs {names.alpha}==1.0 (requirements/prod.in:2), "
        f"layer test needs {names.alpha}>=2 (via {names.beta} 2.0, requirements/test.in:2)"
    ) in done.stderr
    assert "run: nox -s lock" in done.stderr
    assert "Traceback" not in done.stderr
    assert "ResolutionImpossible" not in done.stderr
    assert list(project.requirements.glob("*.txt")) == []


def test_a_conflict_through_dependencies_names_the_layer_lines_that_pulled_them_in(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    names = Names()
    use_index.add(names.alpha, "1.0")
    use_index.add(names.alpha, "2.0")
    use_index.add(names.beta, "2.0", [f"{names.alpha}>=2"])
    use_index.add(names.web, "1.0", [names.orm])
    use_index.add(names.orm, "1.0", [f"{names.alpha}<2"])
    project = LockProject.create(tmp_path / "project", {
        "prod.in": f"# ships\n{names.web}\n",
        "test.in": f"-r prod.in\n{names.beta}\n",
    })

    done = project.run("lock")

    assert done.returncode == 1
    line = next(line for line in done.stderr.splitlines() if f"package {names.alpha}:" in line)
    assert f"layer prod needs {names.alpha}<2 (via {names.orm} 1.0, requirements/prod.in:2)" in line
    assert f"layer test needs {names.alpha}>=2 (via {names.beta} 2.0, requirements/test.in:2)" in line
    assert "Traceback" not in done.stderr


def test_a_package_the_index_does_not_have_is_named_with_the_line_that_asks_for_it(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    names = Names()
    use_index.add(names.alpha, "1.0")
    project = LockProject.create(tmp_path / "project", {
        "base.in": f"{names.alpha}\n",
        "test.in": f"-r base.in\n{names.nosuch}>=1\n",
    })

    done = project.run("lock")

    assert done.returncode == 1
    assert (
        f"package {names.nosuch}: the index has no project named {names.nosuch} (or none of its files fits this "
        "Python), "
        "asked by layer test (requirements/test.in:2)"
    ) in done.stderr
    assert "Traceback" not in done.stderr


def test_a_conflict_with_a_constraints_file_names_that_file_and_line(use_index: PackageIndex, tmp_path: Path) -> None:
    names = Names()
    use_index.add(names.alpha, "1.0")
    use_index.add(names.alpha, "2.0")
    use_index.add(names.beta, "2.0", [f"{names.alpha}>=2"])
    project = LockProject.create(tmp_path / "project", {
        "base.in": f"-c ../constraints.txt\n{names.alpha}\n",
        "prod.in": f"-r base.in\n{names.beta}\n",
        "../constraints.txt": f"# company-wide caps\n{names.alpha}<2\n",
    })

    done = project.run("lock")

    assert done.returncode == 1
    line = next(line for line in done.stderr.splitlines() if f"package {names.alpha}:" in line)
    assert f"layer base needs {names.alpha}<2 (constraints.txt:2)" in line
    assert f"layer prod needs {names.alpha}>=2 (via {names.beta} 2.0, requirements/prod.in:2)" in line


@pytest.mark.parametrize("edit", ["replace", "add"])
def test_locking_after_a_hand_edited_hash_restores_the_real_hashes(
    use_index: PackageIndex, tmp_path: Path, edit: str
) -> None:
    # pip-compile reuses the hashes of pins it is given as preferences: an extra hash slipped into
    # a lock must not come back out under a fresh header that verifies, nor may a wrong one make
    # the next lock fail.
    names = Names()
    project = LockProject.create(tmp_path / "project", publish(use_index, names))
    project.lock()
    before = project.snapshot()
    [wheel] = use_index.projects()[normalize_project(names.linter)]
    real = f"sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}"
    other = "sha256:" + "0" * 64
    edited = other if edit == "replace" else f"{other} \\\n    --hash={real}"
    project.write("dev.txt", project.read("dev.txt").replace(real, edited))
    assert project.run("verify").returncode == 1

    project.lock()

    assert pins(project.read("dev.txt"))[names.linter] == ("1.0", (real,))
    assert project.snapshot() == before


def test_a_file_replaced_on_the_index_under_a_locked_version_stops_the_lock_and_says_so(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    names = Names()
    project = LockProject.create(tmp_path / "project", publish(use_index, names))
    project.lock()
    replaced = use_index.add(names.linter, "1.0", files={"backdoor.py": "owned = True\n"})
    new = hashlib.sha256(replaced.read_bytes()).hexdigest()
    project.write("dev.in", project.read("dev.in") + f"{names.alpha}\n")  # any requirement edit resolves again

    done = project.run("lock")

    assert done.returncode == 1
    assert (
        f"package {names.linter} 1.0: the index serves a file with sha256:{new}, which is not among the hashes "
        "locked for it"
    ) in done.stderr
    assert f"nox -s upgrade -- {names.linter}" in done.stderr
    assert "Traceback" not in done.stderr

    upgraded = project.run("upgrade", names.linter)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"requirements/dev.txt:\n  {names.linter} 1.0: other hashes\n" in upgraded.stdout
    assert pins(project.read("dev.txt"))[names.linter] == ("1.0", (f"sha256:{new}",))
