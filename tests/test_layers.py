"""The layer graph: order from the files' own -r/-c lines, and clear errors when it is broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.errors import LayerError
from deploy.lock.layers import load
from deploy.lock.reqfile import display
from tests.lockproject import LockProject, Names
from tests.support.pkgindex import PackageIndex


def _project(tmp_path: Path, layers: dict[str, str]) -> LockProject:
    return LockProject.create(tmp_path / "project", layers)


def test_layers_are_ordered_by_their_references_not_their_names(tmp_path: Path) -> None:
    # Alphabetical order would be app, ci, zz-core: the references say core comes first, and a
    # -c constraint orders layers as much as a -r does.
    project = _project(tmp_path, {
        "zz-core.in": "alpha\n",
        "app.in": "-r zz-core.in\nbeta\n",
        "ci.in": "-c app.txt\n-r zz-core.in\nchecker\n",
    })

    graph = load(project.root, project.requirements)

    assert graph.order == ["zz-core", "app", "ci"]
    assert graph.depends_on("ci") == ["zz-core", "app"]


def test_a_cycle_is_an_error_that_names_the_cycle(tmp_path: Path) -> None:
    project = _project(tmp_path, {
        "base.in": "-c test.txt\nalpha\n",
        "prod.in": "-r base.in\n",
        "test.in": "-r prod.in\n",
    })

    done = project.run("verify")

    assert done.returncode == 1
    assert "requirement layers form a cycle:" in done.stderr
    cycle = done.stderr.split("cycle:", 1)[1].splitlines()[0].strip()
    assert sorted(set(cycle.split(" -> "))) == ["base.in", "prod.in", "test.in"]
    assert cycle.split(" -> ")[0] == cycle.split(" -> ")[-1], "a cycle ends where it starts"
    assert "Traceback" not in done.stderr


def test_a_layer_that_references_itself_is_an_error(tmp_path: Path) -> None:
    project = _project(tmp_path, {"base.in": "alpha\n-r base.in\n"})

    with pytest.raises(LayerError, match=r"requirements/base\.in:2: base\.in references itself"):
        load(project.root, project.requirements)


def test_a_reference_to_a_missing_file_names_the_file_and_line(tmp_path: Path) -> None:
    project = _project(tmp_path, {
        "base.in": "alpha\n",
        "prod.in": "# ships\n-r base.in\n-r missing.in\n",
    })

    for command in ("verify", "lock"):
        done = project.run(command)
        assert done.returncode == 1, command
        assert "requirements/prod.in:3: -r requirements/missing.in: no such file" in done.stderr
        assert "Traceback" not in done.stderr


def test_a_standalone_layer_is_a_group_of_its_own_not_an_error(tmp_path: Path) -> None:
    # pip.in, build.in, docs.in in real projects reference no layer and no layer references them.
    project = _project(tmp_path, {
        "base.in": "alpha\n",
        "prod.in": "-r base.in\n",
        "docs.in": "sphinx\n",
        "test.in": "-c prod.txt\nchecker\n",
    })

    graph = load(project.root, project.requirements)

    assert sorted(graph.order) == ["base", "docs", "prod", "test"]
    assert sorted(graph.groups()) == [["base", "prod", "test"], ["docs"]]
    assert graph.depends_on("docs") == []


def test_a_single_layer_needs_no_references(tmp_path: Path) -> None:
    project = _project(tmp_path, {"base.in": "alpha\n"})

    assert load(project.root, project.requirements).order == ["base"]


def test_a_shared_file_included_with_r_is_read_into_the_layer_and_is_an_input(tmp_path: Path) -> None:
    project = _project(tmp_path, {
        "base.in": "-r ../common/shared.txt\nalpha\n",
        "../common/shared.txt": "beta>=1\n",
    })

    graph = load(project.root, project.requirements)

    assert [line.text for line in graph.layers["base"].requirements] == ["beta>=1", "alpha"]
    assert project.root / "common" / "shared.txt" in graph.input_files("base")


@pytest.mark.index
def test_a_constraints_file_outside_the_folder_constrains_the_lock_and_is_an_input(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    names = Names()
    use_index.add(names.alpha, "1.0")
    use_index.add(names.alpha, "2.0")
    project = _project(tmp_path, {
        "base.in": f"-c ../constraints.txt\n{names.alpha}\n",
        "prod.in": "-r base.in\n",
        "../constraints.txt": f"{names.alpha}<2\n",
    })
    project.lock()
    assert f"{names.alpha}==1.0 " in project.read("base.txt")
    # As pip-compile shows it (issue 14): the constraint that capped the pin is named in its `# via`.
    assert "#   -c constraints.txt" in project.read("base.txt").split("# content:")[1]

    project.write("../constraints.txt", f"{names.alpha}<3\n")
    done = project.run("verify")

    assert done.returncode == 1
    assert (
        "verify: requirements/base.txt is out of date: constraints.txt changed since it was locked; "
        "run: nox -s lock"
    ) in done.stderr.splitlines()
    assert "requirements/prod.txt is out of date: constraints.txt changed" in done.stderr


def test_paths_in_messages_are_relative_to_the_project_however_they_are_spelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # display() skips resolve() for plain absolute paths; the other spellings must still agree.
    root = tmp_path / "project"
    (root / "requirements").mkdir(parents=True)
    lock = root / "requirements" / "base.txt"
    link = tmp_path / "link"
    link.symlink_to(root)
    monkeypatch.chdir(tmp_path)
    assert display(lock, root) == "requirements/base.txt"
    assert display(root / "requirements" / ".." / "requirements" / "base.txt", root) == "requirements/base.txt"
    assert display(link / "requirements" / "base.txt", root) == "requirements/base.txt"
    assert display(lock, link) == "requirements/base.txt"
    assert display(Path("project/requirements/base.txt"), Path("project")) == "requirements/base.txt"
    outside = tmp_path / "elsewhere.txt"
    assert display(outside, root) == str(outside)
