"""Adopting a PEP 621 project: [project] dependencies is base.in's one source, extras and PEP 735
dependency groups land on layers, and verify fails when base.in and [project] drift apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lockproject import LockProject, Names
from tests.support.adopt import init, lines, new_project, tools
from tests.support.pkgindex import PackageIndex

PYPROJECT = """\
[project]
name = "acme"
version = "1.0"
dependencies = ["{alpha}>=1"]

[project.optional-dependencies]
test = ["{checker}"]
postgres = ["{pg}"]
all = ["acme[postgres]"]

[dependency-groups]
lint = ["{linter}"]
dev = [{{include-group = "lint"}}, "{debugger}"]
"""


def write_project(root: Path, names: Names) -> Path:
    root.mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT.format(**{n: getattr(names, n) for n in (
        "alpha", "checker", "pg", "linter", "debugger")}), encoding="utf-8")
    return root


def test_extras_and_dependency_groups_land_on_layers_and_the_output_says_where(tmp_path: Path) -> None:
    names = Names()
    root = write_project(tmp_path / "acme", names)

    done = init(root)

    assert done.returncode == 0, done.stderr
    assert done.stderr == "", "everything was adopted: no warning"
    requirements = root / "requirements"
    assert lines(requirements / "base.in") == [f"{names.alpha}>=1"]
    assert lines(requirements / "test.in") == [names.checker], "the test extra replaces the default pytest"
    assert lines(requirements / "dev.in") == [names.linter, names.debugger], "include-group is followed"
    assert lines(requirements / "postgres.in") == [names.pg]
    assert lines(requirements / "all.in") == [names.pg], "acme[postgres] is the project's own extra, expanded"
    assert (requirements / "all.in").read_text().splitlines()[1] == "-r base.in"
    told = done.stdout.splitlines()
    assert f"  requirements/base.in: [project] dependencies: {names.alpha}>=1" in told
    assert f"  requirements/dev.in: [dependency-groups] dev: {names.debugger}; already in: {names.linter} (dev.in)" \
        in told, "the lint group wrote it"


def test_a_cycle_of_include_group_is_one_error_and_nothing_is_written(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "acme"\nversion = "1"\n[dependency-groups]\n'
        'a = [{include-group = "b"}]\nb = [{include-group = "a"}]\n', encoding="utf-8")

    done = init(tmp_path)

    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        "error: pyproject.toml: [dependency-groups] a: include-group forms a cycle (a -> b -> a)")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pyproject.toml"]


def _adopted(use_index: PackageIndex, tmp_path: Path, names: Names) -> LockProject:
    """PYPROJECT's project, its packages (and a formatter) on the index, adopted by init and locked."""
    for short in ("alpha", "checker", "pg", "linter", "debugger", "formatter"):
        use_index.add(getattr(names, short), "1.0")
    tools(use_index)
    root = write_project(tmp_path / "acme", names)
    assert init(root).returncode == 0
    project = LockProject(root)
    project.lock()
    return project


def test_the_adopted_project_locks_and_verifies_on_the_index(use_index: PackageIndex, tmp_path: Path) -> None:
    names = Names()
    project = _adopted(use_index, tmp_path, names)

    assert project.run("verify").returncode == 0
    assert names.pg in project.read("all.txt")
    assert names.debugger in project.read("dev.txt") and names.debugger not in project.read("prod.txt")


def test_a_group_or_extra_edited_by_hand_fails_verify_naming_the_line_and_its_layer(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    # init copies each extra and group onto its layer; verify keeps them there, one way: what a
    # group declares must be on its layer or one below it (a layer's own lines are its own).
    names = Names()
    project = _adopted(use_index, tmp_path, names)
    pyproject = project.root / "pyproject.toml"
    adopted = pyproject.read_text()

    pyproject.write_text(adopted.replace(f'"{names.debugger}"]', f'"{names.debugger}", "{names.formatter}"]')
                         .replace(f'postgres = ["{names.pg}"]', f'postgres = ["{names.pg}>=2"]'))
    done = project.run("verify")

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"verify: requirements/postgres.in:3: '{names.pg}' differs from pyproject.toml:8 '{names.pg}>=2' in "
        "[project.optional-dependencies] postgres; make them the same, then run: nox -s lock",
        f"verify: requirements/all.in:3: '{names.pg}' differs from pyproject.toml:8 '{names.pg}>=2' in "
        "[project.optional-dependencies] all; make them the same, then run: nox -s lock",
        f"verify: pyproject.toml:13: '{names.formatter}' is in [dependency-groups] dev but on no layer at or below "
        "dev; add it to requirements/dev.in (or take it out of the group), then run: nox -s lock",
    ]

    # A line a layer holds that no group declares is the layer's own: nox -s add writes those.
    pyproject.write_text(adopted)
    project.write("dev.in", project.read("dev.in") + f"{names.formatter}\n")
    project.lock()
    assert project.run("verify").returncode == 0

    # remove takes a package off its layers and says which group still lists it; verify names it too.
    removed = project.run("remove", names.linter)
    assert removed.returncode == 0, removed.stderr
    warned = [line for line in removed.stdout.splitlines() if line.startswith("warning:")]
    assert warned == [f"warning: pyproject.toml:12 [dependency-groups] lint still lists {names.linter}: take it out "
                      "there too, or verify will name it"], "once, where it is written (dev includes lint)"
    assert project.run("verify").stderr.splitlines() == [
        f"verify: pyproject.toml:12: '{names.linter}' is in [dependency-groups] lint but on no layer at or below dev; "
        "add it to requirements/dev.in (or take it out of the group), then run: nox -s lock"]


def test_a_group_that_names_the_projects_own_extra_verifies_as_init_wrote_it(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    # init takes `acme[postgres]` in a group as the extra's lines (the app ships as its own wheel); verify
    # reads the group the same way, so the adopted project passes, and the extra's edit is named there too.
    names = Names()
    for short in ("alpha", "pg", "linter"):
        use_index.add(getattr(names, short), "1.0")
    tools(use_index)
    root = new_project(tmp_path / "acme",
                       f'[project]\nname = "acme"\nversion = "1.0"\ndependencies = ["{names.alpha}"]\n\n'
                       f'[project.optional-dependencies]\npostgres = ["{names.pg}"]\n\n'
                       f'[dependency-groups]\ndev = ["acme[postgres]", "{names.linter}"]\n')
    assert init(root).returncode == 0
    project = LockProject(root)
    project.lock()

    assert lines(root / "requirements" / "dev.in") == [names.pg, names.linter]
    assert project.run("verify").returncode == 0, project.run("verify").stderr

    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(f'["{names.pg}"]', f'["{names.pg}>=2"]'))
    said = project.run("verify").stderr.splitlines()
    assert f"verify: requirements/dev.in:3: '{names.pg}' differs from pyproject.toml:7 '{names.pg}>=2' in " \
        "[dependency-groups] dev; make them the same, then run: nox -s lock" in said


def test_a_group_entry_no_name_can_be_read_from_is_named_in_a_project_without_a_name(tmp_path: Path) -> None:
    # A project with no [project] name has no own extras to take in: an entry whose name cannot be read
    # (here `(broken`) is not one of them, and verify names it instead of passing over it.
    root = tmp_path / "groups-only"
    (root / "requirements").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[dependency-groups]\ndev = ["ruff", "(broken"]\n\n'
                                         '[tool.deploy]\nrequirements = "requirements"\n', encoding="utf-8")
    (root / "requirements" / "base.in").write_text("", encoding="utf-8")
    (root / "requirements" / "dev.in").write_text("-r base.in\nruff\n", encoding="utf-8")

    said = LockProject(root).run("verify").stderr.splitlines()

    assert "verify: pyproject.toml:2: '(broken' is in [dependency-groups] dev but on no layer at or below dev; " \
        "add it to requirements/dev.in (or take it out of the group), then run: nox -s lock" in said, said


LINT = 'lint = ["{linter}"]'


@pytest.mark.parametrize(("written", "edited", "line", "said"), [
    (LINT, 'lint = "ruff"', 12, "[dependency-groups] lint is not a list"),
    (LINT, 'lint = ["ruff", {{include-group = 3}}]', 12,
     '[dependency-groups] lint has an entry that is neither a requirement string nor {include-group = "NAME"}'),
    (LINT, 'lint = [{{include-group = "nowhere"}}]', 12,
     '[dependency-groups] lint includes "nowhere", which names no group'),
    (LINT, 'lint = [{{include-group = "dev"}}]', 12, "[dependency-groups] lint is in a cycle of include-group"),
    ('postgres = ["{pg}"]', 'postgres = "{pg}"', 8,
     "[project.optional-dependencies] postgres is not a list of requirement strings"),
])
def test_a_group_or_extra_no_tool_could_read_is_one_line_of_verify_never_passed_over(
    use_index: PackageIndex, tmp_path: Path, written: str, edited: str, line: int, said: str
) -> None:
    # A trial: `lint = "ruff"` or an entry `{include-group = 3}` written by hand after adoption, and
    # verify said the layers were fresh. init refuses these; uv and pip --group do too.
    names = Names()
    project = _adopted(use_index, tmp_path, names)
    pyproject = project.root / "pyproject.toml"
    shorts = {short: getattr(names, short) for short in ("linter", "pg")}
    pyproject.write_text(pyproject.read_text().replace(written.format(**shorts), edited.format(**shorts)))

    done = project.run("verify")

    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"verify: pyproject.toml:{line}: {said}; correct it as PEP 621 / PEP 735 say, then run: nox -s verify" \
        in done.stderr.splitlines(), done.stderr


@pytest.fixture
def locked(use_index: PackageIndex, tmp_path: Path) -> tuple[LockProject, Names]:
    names = Names()
    use_index.add(names.alpha, "1.0")
    use_index.add(names.beta, "1.0")
    pyproject = f'[project]\nname = "acme"\nversion = "1"\ndependencies = ["{names.alpha}>=1"]\n'
    project = LockProject.create(tmp_path / "p", {"base.in": f"{names.alpha}>=1\n"}, pyproject=pyproject)
    project.lock()
    return project, names


def test_a_dependency_added_to_pyproject_but_not_to_base_in_fails_verify_naming_both(
    locked: tuple[LockProject, Names],
) -> None:
    project, names = locked
    pyproject = project.root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(
        f'["{names.alpha}>=1"]', f'[\n  "{names.alpha}>=1",\n  "{names.beta}",\n]'))

    done = project.run("verify")

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"verify: pyproject.toml:6: '{names.beta}' is in [project] dependencies but not in requirements/base.in; "
        "add it there, then run: nox -s lock"
    ]


def test_a_requirement_that_differs_or_is_only_in_base_in_fails_verify(locked: tuple[LockProject, Names]) -> None:
    project, names = locked
    project.write("base.in", f"{names.alpha}>=2\n{names.beta}\n")

    done = project.run("verify")

    problems = [line.removeprefix("verify: ") for line in done.stderr.splitlines()]
    assert (f"requirements/base.in:1: '{names.alpha}>=2' differs from pyproject.toml:4 '{names.alpha}>=1' in "
            "[project] dependencies; make them the same, then run: nox -s lock") in problems
    assert (f"requirements/base.in:2: '{names.beta}' is not in pyproject.toml [project] dependencies, so the app's "
            "wheel does not declare it; add it there (or move it to prod.in), then run: nox -s lock") in problems


def test_the_same_requirement_spelled_otherwise_is_no_drift(locked: tuple[LockProject, Names]) -> None:
    project, names = locked
    project.write("base.in", f"{names.alpha.upper()} >= 1\n")
    project.lock()

    done = project.run("verify")

    assert done.returncode == 0, done.stderr


def test_a_group_that_includes_a_lower_layers_group_adds_only_its_own_lines(tmp_path: Path) -> None:
    # dev.in includes test.in (-r), so the test group's lines that the dev group includes are written
    # once, in test.in, whichever group the file lists first; the output says where each line went.
    names = Names()
    root = new_project(tmp_path / "acme",
                       f'[project]\nname = "acme"\nversion = "1.0"\ndependencies = ["{names.alpha}"]\n\n'
                       f'[dependency-groups]\ndev = [{{include-group = "test"}}, "{names.debugger}"]\n'
                       f'test = ["{names.client}", "{names.alpha}"]\ntyping = [{{include-group = "test"}}]\n')

    done = init(root)

    assert done.returncode == 0, done.stderr
    requirements = root / "requirements"
    assert lines(requirements / "test.in") == [names.client]
    assert lines(requirements / "dev.in") == [names.debugger]
    told = done.stdout.splitlines()
    already = f"already in: {names.client} (test.in), {names.alpha} (base.in)"
    assert f"  requirements/test.in: [dependency-groups] test: {names.client}; already in: {names.alpha} (base.in)" \
        in told
    assert f"  requirements/dev.in: [dependency-groups] dev: {names.debugger}; {already}" in told
    assert f"  requirements/dev.in: [dependency-groups] typing: nothing new; {already}" in told


def test_the_test_layers_default_runner_is_said_where_init_writes_it(tmp_path: Path) -> None:
    # Nothing reaches test.in unsaid: a project that declares no test tools gets pytest there, and init says so.
    names = Names()
    root = new_project(tmp_path / "acme",
                       f'[project]\nname = "acme"\nversion = "1.0"\ndependencies = ["{names.alpha}"]\n')

    done = init(root)

    assert done.returncode == 0, done.stderr
    assert lines(root / "requirements" / "test.in") == ["pytest"]
    assert ("  requirements/test.in: pytest, as nothing the project declares went to the test layer (replace it with "
            "the project's test tools)") in done.stdout.splitlines()
