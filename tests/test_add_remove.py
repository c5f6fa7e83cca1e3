"""`nox -s add` / `nox -s remove`: one requirement changed in its input and every lock, or nothing at all."""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path

import pytest

from deploy.errors import LockError
from deploy.lock import edit, editfix, pyproject_deps
from deploy.lock.verify import verify
from tests.lockproject import LockProject, Names, pins, publish
from tests.support.pkgindex import PackageIndex
from tests.test_lock_fastpath import _wheel_with_extra

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]  # the app's own build
build-backend = "setuptools.build_meta"

[project]
name = "shop"
version = "0.1.0"
# What the app imports; requirements/base.in says the same.
dependencies = [
    "{alpha}",  # everywhere
]

[tool.deploy]
requirements = "requirements"
deploy-layer = "prod"
"""


@pytest.fixture
def project(use_index: PackageIndex, tmp_path: Path) -> tuple[LockProject, Names]:
    names = Names()
    layers = publish(use_index, names)
    use_index.add(names.gamma, "1.0", [f"{names.alpha}>=1"])
    use_index.add(names.gamma, "2.0", [f"{names.alpha}>=1", names.omega])
    use_index.add(names.omega, "1.0")
    created = LockProject.create(tmp_path / "shop", layers, pyproject=PYPROJECT.format(alpha=names.alpha))
    created.lock()
    return created, names


def _everything(project: LockProject) -> dict[str, bytes]:
    files = [project.root / "pyproject.toml", *project.requirements.iterdir()]
    return {path.name: path.read_bytes() for path in sorted(files) if path.is_file()}


def _poetry_shop(use_index: PackageIndex, tmp_path: Path, dotted: bool = False) -> tuple[LockProject, Names]:
    """A locked Poetry project whose [tool.poetry.dependencies] holds alpha (written as dotted keys
    when `dotted`), with gamma 1.0 on the index to add."""
    names = Names()
    layers = publish(use_index, names)
    use_index.add(names.gamma, "1.0")
    text = POETRY.format(alpha=names.alpha)
    if dotted:  # no [tool.poetry.dependencies] header to add a line under
        text = text.replace("\n[tool.poetry.dependencies]\npython", "dependencies.python")
        text = text.replace(f'\n{names.alpha} = "*"', f'\ndependencies.{names.alpha} = "*"')
    created = LockProject.create(tmp_path / "shop", layers, pyproject=text)
    created.lock()
    return created, names


def test_add_writes_the_base_layer_and_pyproject_then_every_lock_and_verify_passes(
    project: tuple[LockProject, Names],
) -> None:
    created, names = project
    before = {layer: pins(created.read(f"{layer}.txt")) for layer in ("prod", "test", "dev")}
    lines: list[str] = []
    result = edit.add(created.config(), [f"{names.gamma}>=2"], log=lines.append)
    assert created.read("base.in").splitlines()[-1] == f"{names.gamma}>=2"
    dependencies = tomllib.loads((created.root / "pyproject.toml").read_text())["project"]["dependencies"]
    assert dependencies == [names.alpha, f"{names.gamma}>=2"]
    # The comments and layout of pyproject.toml stay as they were.
    assert '    "' + names.alpha + '",  # everywhere\n    "' + f"{names.gamma}>=2" + '",\n]' in (
        created.root / "pyproject.toml").read_text()
    for layer in ("base", "prod", "test", "dev"):
        locked = pins(created.read(f"{layer}.txt"))
        assert locked[names.gamma][0] == "2.0" and locked[names.omega][0] == "1.0", layer
    for layer, old in before.items():  # every other pin is kept
        now = pins(created.read(f"{layer}.txt"))
        assert {k: v for k, v in now.items() if k not in (names.gamma, names.omega)} == old
    assert f"+ {names.gamma} 2.0" in result.changes["prod"]
    assert verify(created.config()) == 4


def test_add_into_another_layer_touches_only_that_input(project: tuple[LockProject, Names]) -> None:
    created, names = project
    pyproject = (created.root / "pyproject.toml").read_bytes()
    edit.add(created.config(), [names.omega], layer="test", log=lambda _: None)
    assert created.read("test.in").splitlines()[-1] == names.omega
    assert (created.root / "pyproject.toml").read_bytes() == pyproject
    assert names.omega in pins(created.read("test.txt")) and names.omega not in pins(created.read("prod.txt"))
    assert verify(created.config()) == 4


def test_adding_a_package_the_index_does_not_have_leaves_every_file_as_it_was(
    project: tuple[LockProject, Names],
) -> None:
    created, names = project
    before = _everything(created)
    with pytest.raises(LockError) as caught:
        edit.add(created.config(), [f"{names.token}-nowhere"], log=lambda _: None)
    assert "nothing was changed" in str(caught.value)
    assert _everything(created) == before


def test_adding_an_unsatisfiable_spec_leaves_every_file_as_it_was(project: tuple[LockProject, Names]) -> None:
    created, names = project
    before = _everything(created)
    with pytest.raises(LockError):
        edit.add(created.config(), [f"{names.gamma}>=9"], log=lambda _: None)
    assert _everything(created) == before


def test_a_bad_spec_or_layer_is_one_line_and_changes_nothing(project: tuple[LockProject, Names]) -> None:
    created, _ = project
    before = _everything(created)
    with pytest.raises(LockError, match="is not a requirement"):
        edit.add(created.config(), ["not a requirement!"])
    with pytest.raises(LockError, match="direct reference"):
        edit.add(created.config(), ["x @ https://example.invalid/x-1.0.tar.gz"])
    with pytest.raises(LockError, match=r"--layer nope: there is no requirements/nope.in \(layers: base, dev"):
        edit.add(created.config(), ["x"], layer="nope")
    assert _everything(created) == before


def test_remove_drops_the_package_and_what_only_it_needed_but_keeps_what_others_need(
    project: tuple[LockProject, Names],
) -> None:
    created, names = project
    edit.add(created.config(), [f"{names.gamma}>=2"], log=lambda _: None)
    edit.remove(created.config(), [names.gamma], log=lambda _: None)
    assert names.gamma not in created.read("base.in")
    dependencies = tomllib.loads((created.root / "pyproject.toml").read_text())["project"]["dependencies"]
    assert dependencies == [names.alpha]
    for layer in ("base", "prod", "test", "dev"):
        locked = pins(created.read(f"{layer}.txt"))
        assert names.gamma not in locked and names.omega not in locked, layer
        assert names.alpha in locked, layer  # still asked for by base.in
    assert verify(created.config()) == 4


def test_removing_a_package_no_layer_asks_for_says_so(project: tuple[LockProject, Names]) -> None:
    created, names = project
    before = _everything(created)
    with pytest.raises(LockError, match=f"no requirement line names {names.delta}"):
        edit.remove(created.config(), [names.delta])  # delta is only a dependency of beta
    assert _everything(created) == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('dependencies = ["a"]\n', 'dependencies = ["a", "b>=1"]\n'),
        ('dependencies = []\n', 'dependencies = ["b>=1"]\n'),
        ('dependencies = [\n  "a",\n]\n', 'dependencies = [\n  "a",\n  "b>=1",\n]\n'),
        ('dependencies = [\n  "a"  # c\n]\n', 'dependencies = [\n  "a",  # c\n  "b>=1",\n]\n'),
        ("dependencies = ['a', 'b<1']  # x\n", "dependencies = ['a', \"b>=1\"]  # x\n"),
    ],
)
def test_pyproject_dependencies_are_edited_in_place(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "x"\n{text}\n[tool.x]\ny = 1\n')
    pyproject_deps.put(tmp_path, "b", "b>=1")
    assert (tmp_path / "pyproject.toml").read_text() == f'[project]\nname = "x"\n{expected}\n[tool.x]\ny = 1\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('dependencies = ["a", "b"]\n', 'dependencies = ["a"]\n'),
        ('dependencies = ["b", "a"]\n', 'dependencies = ["a"]\n'),
        ('dependencies = [\n  "a",\n  "B>=1",  # why\n]\n', 'dependencies = [\n  "a",\n]\n'),
    ],
)
def test_pyproject_dependencies_lose_one_entry_in_place(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "pyproject.toml").write_text(f'[project]\n{text}')
    pyproject_deps.drop(tmp_path, "b")
    assert (tmp_path / "pyproject.toml").read_text() == f"[project]\n{expected}"


def test_the_command_line_adds_and_removes_and_prints_what_changed_per_layer(
    project: tuple[LockProject, Names],
) -> None:
    created, names = project
    added = created.run("add", "--layer", "test", names.omega)
    assert added.returncode == 0, added.stdout + added.stderr
    assert f"requirements/test.txt:\n  + {names.omega} 1.0" in added.stdout
    assert "requirements/prod.txt: unchanged" in added.stdout
    removed = created.run("remove", names.omega)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert f"  - {names.omega} 1.0" in removed.stdout
    failed = created.run("add", f"{names.token}-nowhere")
    assert failed.returncode == 1 and "nothing was changed" in failed.stderr and "Traceback" not in failed.stderr


def _failed_add(created: LockProject, specs: list[str], layer: str | None = None) -> LockError:
    before = _everything(created)
    with pytest.raises(LockError) as caught:
        edit.add(created.config(), specs, layer=layer, log=lambda _: None)
    assert _everything(created) == before
    return caught.value


def test_a_failed_add_says_nothing_changed_then_ends_with_the_add_to_run_again(
    project: tuple[LockProject, Names],
) -> None:
    created, names = project
    for spec in (f"{names.token}-nowhere", f"{names.gamma}>=9"):
        error = _failed_add(created, [spec], layer="test")
        # The fix comes last, once: `nox -s lock` would lock the restored files and change nothing.
        assert str(error).count("fix:") == 1 and "nox -s lock" not in str(error)
        assert error.message.endswith("\nnothing was changed: every file is as it was")
        assert error.fix == (f"check the name and version against the index, then run the add again: "
                             f"nox -s add -- --layer test {shlex.quote(spec)}")


@pytest.fixture
def held_back(use_index: PackageIndex, project: tuple[LockProject, Names]) -> tuple[LockProject, Names]:
    """The test layer asks for holder, which needs gamma<2: a prod that takes gamma 2.0 cannot stay."""
    created, names = project
    use_index.add(names.holder, "1.0", [f"{names.gamma}<2"])
    created.write("test.in", created.read("test.in") + f"{names.holder}\n")
    created.lock()
    return created, names


def test_an_add_a_layer_above_holds_back_names_the_range_it_needs_and_that_add_succeeds(
    held_back: tuple[LockProject, Names],
) -> None:
    created, names = held_back
    error = _failed_add(created, [names.gamma], layer="prod")
    assert "nothing was changed: every file is as it was" in error.message
    assert error.fix == f"ask for a version the layers above accept: nox -s add -- --layer prod '{names.gamma}<2'"
    edit.add(created.config(), [f"{names.gamma}<2"], layer="prod", log=lambda _: None)
    assert pins(created.read("prod.txt"))[names.gamma][0] == "1.0"
    assert verify(created.config()) == 4


def test_an_add_a_lower_lock_holds_back_says_to_make_it_by_hand_and_move_the_lower_layers(
    use_index: PackageIndex, project: tuple[LockProject, Names],
) -> None:
    created, names = project
    use_index.add(names.kappa, "1.0")
    created.write("prod.in", created.read("prod.in") + f"{names.kappa}\n")
    created.lock()
    use_index.add(names.kappa, "2.0")  # prod keeps kappa 1.0; test now asks for 2
    error = _failed_add(created, [f"{names.kappa}>=2"], layer="test")
    assert error.fix == (f"to let the lower layers' pins move, add '{names.kappa}>=2' to requirements/test.in by "
                         "hand and run: nox -s lock -- --move-lower (it prints every change)")
    created.write("test.in", created.read("test.in") + f"{names.kappa}>=2\n")
    moved = created.run("lock", "--move-lower")
    assert moved.returncode == 0, moved.stderr
    assert pins(created.read("prod.txt"))[names.kappa][0] == "2.0"


def test_a_url_with_no_name_is_a_direct_reference_and_any_other_bad_spec_is_one_line(
    project: tuple[LockProject, Names],
) -> None:
    created, _ = project
    for url in ("git+https://example.invalid/y.git", "https://example.invalid/y-1.0.tar.gz", "./vendor/y-1.0.whl"):
        with pytest.raises(LockError, match="is a direct reference") as caught:
            edit.add(created.config(), [url])
        assert "\n" not in caught.value.message
    with pytest.raises(LockError) as caught:
        edit.add(created.config(), ["requests>=2 and more"])
    assert "\n" not in caught.value.message and "^" not in caught.value.message
    assert caught.value.message.startswith("'requests>=2 and more' is not a requirement (Expected ")


POETRY = """\
[tool.poetry]
name = "shop"
version = "0.1.0"

[tool.poetry.dependencies]
python = "^3.8"
{alpha} = "*"

[tool.deploy]
requirements = "requirements"
deploy-layer = "prod"
"""


def test_in_a_poetry_project_add_and_remove_keep_its_table_as_verify_reads_it(
    use_index: PackageIndex, tmp_path: Path,
) -> None:
    # The app's wheel declares [tool.poetry.dependencies], and verify holds it to base.in: the base
    # layer's add writes the entry init reads back as the same requirement, and remove takes it out.
    created, names = _poetry_shop(use_index, tmp_path)
    pyproject = created.root / "pyproject.toml"
    before = pyproject.read_bytes()
    lines: list[str] = []

    edit.add(created.config(), [f"{names.gamma}>=1,<2"], log=lines.append)
    added = pyproject.read_text()
    edit.add(created.config(), [f'{names.gamma}>=1; python_version >= "3"'], log=lines.append)
    marked = pyproject.read_text()
    verified = created.run("verify")
    edit.add(created.config(), [names.alpha.upper().replace("-", "_")], log=lines.append)  # the key as written stays
    edit.add(created.config(), [names.linter], layer="prod", log=lines.append)  # not the wheel's layer
    edit.remove(created.config(), [names.gamma], log=lines.append)

    alpha = f'{names.alpha} = "*"\n'
    assert added == before.decode().replace(alpha, alpha + f'{names.gamma} = "<2,>=1"\n'), "a line after the last"
    assert f"pyproject.toml [tool.poetry.dependencies]: {names.gamma} = \"<2,>=1\"" in lines
    assert f'\n{names.gamma} = {{version = ">=1", markers = "python_version >= \\"3\\""}}\n' in marked
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert not [line for line in lines if line.startswith("warning:")]
    assert f"pyproject.toml [tool.poetry.dependencies]: removed {names.gamma}" in lines
    assert pyproject.read_bytes() == before
    assert names.gamma not in pins(created.read("base.txt"))


def test_add_over_a_requirement_with_extras_keeps_them_and_takes_the_new_range(
    use_index: PackageIndex, tmp_path: Path,
) -> None:
    # A Poetry trial: `add 'requests>=2.32'` over `requests = {version = "^2.31", extras = ["socks"]}`
    # wrote `requests>=2.32`: pysocks left every lock, and verify failed on the table it left alone.
    # As `uv add` updates a requirement: its extras and marker stay, the new range replaces the old.
    created, names = _poetry_shop(use_index, tmp_path)
    for version in ("1.0", "2.0"):
        _wheel_with_extra(use_index, names.gamma, version, names.alpha, names.omega)  # gamma[postgres] needs omega
    use_index.add(names.omega, "1.0")
    pyproject = created.root / "pyproject.toml"
    alpha = f'{names.alpha} = "*"\n'
    pyproject.write_text(pyproject.read_text().replace(
        alpha, alpha + f'{names.gamma} = {{version = "^1.0", extras = ["postgres"]}}\n'))
    created.write("base.in", created.read("base.in") + f"{names.gamma}[postgres]<2,>=1.0\n")
    created.lock()
    lines: list[str] = []

    edit.add(created.config(), [f"{names.gamma}>=2"], log=lines.append)

    assert created.read("base.in").splitlines()[-1] == f"{names.gamma}[postgres]>=2"
    assert f'{names.gamma} = {{version = ">=2", extras = ["postgres"]}}\n' in pyproject.read_text()
    assert not [line for line in lines if line.startswith("warning:")], lines
    assert pins(created.read("base.txt"))[names.gamma][0] == "2.0"
    assert names.omega in pins(created.read("base.txt")), "the extra's package stays locked"
    assert created.run("verify").returncode == 0


def test_in_a_poetry_project_a_requirement_its_table_cannot_hold_is_refused_before_anything_changes(
    use_index: PackageIndex, tmp_path: Path,
) -> None:
    created, names = _poetry_shop(use_index, tmp_path)
    before = _everything(created)

    with pytest.raises(LockError) as caught:
        edit.add(created.config(), [f"{names.gamma}===1.0"])  # arbitrary equality: Poetry has no such constraint

    assert caught.value.message.startswith(f"{names.gamma}===1.0: ")
    assert "[tool.poetry.dependencies] has no entry that reads back as this requirement" in caught.value.message
    assert _everything(created) == before


def test_in_a_poetry_project_a_table_without_its_own_header_is_one_error_and_nothing_changes(
    use_index: PackageIndex, tmp_path: Path,
) -> None:
    # [tool.poetry] dependencies written as a dotted key: no [tool.poetry.dependencies] header to add a line under.
    created, names = _poetry_shop(use_index, tmp_path, dotted=True)
    before = _everything(created)

    with pytest.raises(LockError) as caught:
        edit.add(created.config(), [names.gamma])

    assert str(caught.value).splitlines()[0] == (
        "pyproject.toml: no [tool.poetry.dependencies] header to edit (a dotted key or an inline table)")
    assert _everything(created) == before


def test_a_project_with_project_dependencies_gets_no_poetry_warning(project: tuple[LockProject, Names]) -> None:
    created, names = project
    text = (created.root / "pyproject.toml").read_text()
    (created.root / "pyproject.toml").write_text(text + '\n[tool.poetry.dependencies]\npython = "^3.8"\n')
    lines: list[str] = []
    edit.add(created.config(), [names.omega], log=lines.append)
    assert not [line for line in lines if "warning" in line]


@pytest.mark.parametrize(
    ("fix", "expected"),
    [
        ("check the index, then run: nox -s lock", "check the index, then run the remove again: nox -s remove -- x"),
        ("add it to a file and run: nox -s lock", "add it to a file and run the remove again: nox -s remove -- x"),
        (None, "correct what it names, then run the remove again: nox -s remove -- x"),
        ("check that URL and the network, then run the command again", "check that URL and the network, then run "
         "the command again"),  # names no lock of the restored files: true as it stands
        ("change requirements/test.in to agree, or move them with: nox -s lock -- --move-lower",
         "to let the lower layers' pins move, take x out of requirements/prod.in by hand and run: "
         "nox -s lock -- --move-lower (it prints every change)"),
    ],
)
def test_a_failed_remove_rewrites_each_kind_of_fix_for_the_restored_files(fix: str | None, expected: str) -> None:
    asked = editfix.Edit("remove", ["x"], None, ["requirements/prod.in"])
    error = editfix.undone(LockError("the layers cannot be locked", fix=fix), asked)
    assert str(error) == f"the layers cannot be locked\nnothing was changed: every file is as it was\n  fix: {expected}"


def test_an_add_a_locked_version_of_another_package_refuses_names_both_ranges_and_the_way_that_works(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    # As celery[redis] 5.7 (through kombu) needs redis>=6.4 when an app adds redis<6: the add keeps
    # the locked kombu, so it fails; pip 26 prints each range joined by " and ", both bounds count.
    names = Names()
    use_index.add(names.child, "5.0")
    use_index.add(names.child, "6.5")
    use_index.add(names.parent, "0.9", [f"{names.child}>=4,<6"])
    use_index.add(names.parent, "1.0", [f"{names.child}>=6.4,<9"])
    created = LockProject.create(tmp_path / "app", {"base.in": f"{names.parent}\n", "prod.in": "-r base.in\n"})
    created.lock()
    spec = f"{names.child}>=5.0,<6.0"

    error = _failed_add(created, [spec])

    assert f"needs {names.child}<6.0,>=5.0 (requirements/base.in:2)" in error.message, error.message
    assert f"needs {names.child}<9,>=6.4 (via {names.parent} 1.0, requirements/base.in:1)" in error.message
    assert error.fix == (
        f"if {names.parent} 1.0 is what the locks hold, let every locked version move: add '{spec}' to "
        "requirements/base.in by hand and run: nox -s upgrade (each package goes to the newest version that fits); "
        f"else change one of those requirements so they agree, then run the add again: nox -s add -- '{spec}'")
    created.write("base.in", f"{names.parent}\n{spec}\n")  # the fix, followed
    done = created.run("upgrade")
    assert done.returncode == 0, done.stderr
    assert pins(created.read("base.txt"))[names.parent][0] == "0.9"
    assert pins(created.read("base.txt"))[names.child][0] == "5.0"
