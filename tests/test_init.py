"""`python -m deploy init`: adopt the tool in an existing project, never clobbering its files."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from deploy.adopt import itself
from deploy.lock.layers import load
from tests.support.pkgindex import PackageIndex

PYPROJECT = """\
[project]
name = "acme"
version = "1.0"
dependencies = ["alpha>=1", "beta[fast]>=2; python_version >= '3.8'"]
"""

WRITTEN = ["noxfile.py", "tasks.py", "requirements/base.in", "requirements/prod.in", "requirements/test.in",
           "requirements/dev.in"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "acme"
    root.mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    return root


def init(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy", "init", *args], cwd=root, capture_output=True, text=True, check=False,
    )


def test_init_writes_the_adoption_files_and_says_what_it_wrote(project: Path) -> None:
    done = init(project)

    assert done.returncode == 0, done.stderr
    for name in WRITTEN:
        assert (project / name).is_file(), name
        assert f"wrote {name}" in done.stdout.splitlines()
    assert "added [tool.deploy] to pyproject.toml" in done.stdout
    base = (project / "requirements/base.in").read_text().splitlines()
    assert base[1:] == ["alpha>=1", "beta[fast]>=2; python_version >= '3.8'"], "base.in is [project] dependencies"
    assert "nox -s lock" in done.stdout, "it says what to run next"


def test_the_written_layers_form_a_graph_with_prod_inside_test(project: Path) -> None:
    init(project)

    graph = load(project, project / "requirements")

    assert graph.order == ["base", "prod", "test", "dev"]
    assert graph.included("test") == ["base", "prod", "test"], "CI installs what ships"


def test_the_tool_deploy_table_is_appended_with_comments_and_parses(project: Path) -> None:
    init(project)

    text = (project / "pyproject.toml").read_text()
    assert text.startswith(PYPROJECT), "the existing content is kept as it was"
    added = text.removeprefix(PYPROJECT)
    assert "[tool.deploy]" in added
    assert "# [tool.deploy.environments.staging]" in added, "environments are shown, commented out"
    data = tomllib.loads(text)
    assert data["tool"]["deploy"] == {"requirements": "requirements", "deploy-layer": "prod"}


def test_init_again_keeps_existing_files_and_says_so(project: Path) -> None:
    init(project)
    (project / "noxfile.py").write_text("# my own noxfile\n")
    (project / "requirements/base.in").write_text("gamma\n")
    pyproject = (project / "pyproject.toml").read_text()

    done = init(project)

    assert done.returncode == 0, done.stderr
    assert (project / "noxfile.py").read_text() == "# my own noxfile\n"
    assert (project / "requirements/base.in").read_text() == "gamma\n"
    assert (project / "pyproject.toml").read_text() == pyproject, "[tool.deploy] is not added twice"
    for name in ("noxfile.py", "tasks.py"):
        assert f"kept {name} (exists; --force overwrites it)" in done.stdout.splitlines()
    # The layers are the project's own once adopted: not read from its sources again (a trial's
    # second init warned that kept files lacked lines they held, or refused two sources).
    assert done.stdout.splitlines()[0] == ("already adopted: requirements/*.in are the project's layers and stay as "
                                           "they are (python -m deploy init --force adopts it afresh)")
    assert "wrote" not in done.stdout and done.stderr == ""


def test_init_in_an_adopted_project_with_the_old_requirements_txt_beside_says_so_and_changes_nothing(
    tmp_path: Path,
) -> None:
    # A freeze-only trial: init wrote [project] dependencies and left requirements.txt; init again
    # refused: "found 2 sources of the app's dependencies".
    (tmp_path / "requirements.txt").write_text("requests==2.31.0\n", encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "1"\ndependencies = ["requests"]\n'
                                             '\n[tool.deploy]\n', encoding="utf-8")
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "base.in").write_text("requests\n", encoding="utf-8")
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}

    done = init(tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("already adopted: ") and done.stderr == ""
    assert all(path.read_bytes() == data for path, data in before.items()), "no file of the project changed"


def test_init_keeps_the_venv_and_local_deploys_out_of_git_adding_only_what_gitignore_lacks(project: Path) -> None:
    done = init(project)
    said = "(the dev venv, the local deploys and the editable install's metadata, made on each machine)"
    assert f"wrote .gitignore: .venv/, .deploy/, *.egg-info/ {said}" in done.stdout.splitlines()
    assert (project / ".gitignore").read_text() == ".venv/\n.deploy/\n*.egg-info/\n"

    (project / ".gitignore").write_text("*.pyc\n/.venv\n*.egg-info")  # the user's own, spelled otherwise
    done = init(project)
    assert f"added to .gitignore: .deploy/ {said}" in done.stdout
    assert (project / ".gitignore").read_text() == "*.pyc\n/.venv\n*.egg-info\n.deploy/\n"
    assert ".gitignore" not in init(project).stdout, "nothing left to add: nothing said"


def test_init_force_overwrites_existing_files(project: Path) -> None:
    init(project)
    (project / "noxfile.py").write_text("# my own noxfile\n")
    (project / "requirements/base.in").write_text("gamma\n")

    done = init(project, "--force")

    assert done.returncode == 0, done.stderr
    assert "from deploy.sessions import" in (project / "noxfile.py").read_text()
    assert "alpha>=1" in (project / "requirements/base.in").read_text()
    assert "wrote noxfile.py" in done.stdout.splitlines()
    assert (project / "pyproject.toml").read_text().count("[tool.deploy]") == 1


def test_init_without_a_pyproject_is_a_clear_error(tmp_path: Path) -> None:
    done = init(tmp_path)

    assert done.returncode == 1
    assert "pyproject.toml does not exist" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_written_noxfile_offers_lock_verify_upgrade_add_remove_and_audit(project: Path) -> None:
    init(project)
    nox = Path(sys.executable).parent / "nox"

    done = subprocess.run([str(nox), "-l", "-f", "noxfile.py"], cwd=project, capture_output=True, text=True,
                          check=False)

    assert done.returncode == 0, done.stdout + done.stderr
    listed = {line.split()[1] for line in done.stdout.splitlines() if line.startswith(("* ", "- "))}
    assert listed == {"lock", "verify", "upgrade", "add", "remove", "audit"}


def test_the_written_tasks_file_imports(project: Path) -> None:
    # invoke loads tasks.py by importing it: a broken template would only show up on first deploy.
    init(project)

    done = subprocess.run([sys.executable, "-c", "import tasks; print(type(tasks.ns).__name__)"], cwd=project,
                          capture_output=True, text=True, check=False)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Collection"


# Hardening (issue 11, item 9): init checks everything it will write before writing anything.


def pyproject_with(dependencies: str, extra: str = "") -> str:
    return f'[project]\nname = "acme"\nversion = "1.0"\ndependencies = {dependencies}\n{extra}'


def only_pyproject_is_left(root: Path, text: str) -> None:
    assert sorted(path.name for path in root.iterdir()) == ["pyproject.toml"], "nothing else was written"
    assert (root / "pyproject.toml").read_text() == text, "pyproject.toml is as it was"


def one_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("  fix: "), done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("entry", "shown"),
    [
        ("alpha\n--index-url http://u:pw@127.0.0.9:9/simple/", "alpha\\n--index-url"),
        ("-r /etc/passwd", "-r /etc/passwd"),
        ("alpha; python_version > '3 --index-url=http://127.0.0.9:9/simple/'", "'3 --index-url"),
        ("alpha @ http://127.0.0.9:9/${SECRET_TOKEN}/alpha-1.0.tar.gz", "${SECRET_TOKEN}"),
        ("alpha @ http://127.0.0.9:9/alpha-1.0.tar.gz\\", "tar.gz\\"),
        ("alpha; python_version > '3 #'", "'3 #'"),
        ("alpha\u2028--index-url http://127.0.0.9:9/", "alpha\\u2028"),
        ("alpha\x1b[2J", "alpha\\x1b[2J"),
    ],
)
def test_a_dependency_pip_would_read_as_more_than_one_requirement_is_refused_before_anything_is_written(
    tmp_path: Path, entry: str, shown: str
) -> None:
    text = pyproject_with(json.dumps(["beta>=1", entry]))
    (tmp_path / "pyproject.toml").write_text(text, encoding="utf-8")

    done = init(tmp_path)

    line = one_error(done)
    assert line.startswith("error: pyproject.toml: [project] dependencies[1] "), line
    assert shown in line, "the entry is named, inert"
    only_pyproject_is_left(tmp_path, text)


@pytest.mark.parametrize(
    "entry",
    [
        "zope-interface>=5,<7",
        "beta[fast,small]>=2; python_version >= '3.8' and sys_platform != 'win32'",
        "gamma @ https://example.com/gamma-1.0.tar.gz#sha256=" + "0" * 64,
    ],
)
def test_init_still_writes_every_real_requirement_as_it_is(tmp_path: Path, entry: str) -> None:
    (tmp_path / "pyproject.toml").write_text(pyproject_with(json.dumps([entry])), encoding="utf-8")

    done = init(tmp_path)

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "requirements/base.in").read_text().splitlines()[1:] == [entry]


@pytest.mark.parametrize(
    ("entry", "written"),
    [
        ("alpha[x]@ file:///etc/passwd", "alpha[x] @ file:///etc/passwd"),
        ("alpha @file:///etc/passwd ; python_version > '3'", 'alpha @ file:///etc/passwd ; python_version > "3"'),
    ],
)
def test_a_url_requirement_is_written_as_name_at_url_so_the_lock_sees_the_url(
    tmp_path: Path, entry: str, written: str
) -> None:
    (tmp_path / "pyproject.toml").write_text(pyproject_with(json.dumps([entry])), encoding="utf-8")

    done = init(tmp_path)

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "requirements/base.in").read_text().splitlines()[1:] == [written]


@pytest.mark.parametrize(
    ("dependencies", "message"),
    [
        ('"alpha"', "[project] dependencies must be a list of strings, not a string"),
        ("[1]", "[project] dependencies[0] is a number, not a string"),
        ('["alpha", {name = "beta"}]', "[project] dependencies[1] is a table, not a string"),
    ],
)
def test_dependencies_of_the_wrong_type_are_refused_naming_the_key(
    tmp_path: Path, dependencies: str, message: str
) -> None:
    text = pyproject_with(dependencies)
    (tmp_path / "pyproject.toml").write_text(text, encoding="utf-8")

    line = one_error(init(tmp_path))

    assert line == f"error: pyproject.toml: {message}"
    only_pyproject_is_left(tmp_path, text)


def test_init_never_writes_through_a_dangling_symlink(project: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "noxfile.py"
    (project / "noxfile.py").symlink_to(target)

    kept = init(project)
    forced = init(project, "--force")

    assert kept.returncode == 0, kept.stderr
    assert "kept noxfile.py (a symlink; --force replaces the link, never its target)" in kept.stdout.splitlines()
    assert forced.returncode == 0, forced.stderr
    assert not target.parent.exists(), "nothing was created outside the project"
    assert not (project / "noxfile.py").is_symlink(), "--force replaced the link itself"
    assert "from deploy.sessions import" in (project / "noxfile.py").read_text()


def test_init_force_replaces_a_symlink_to_a_file_and_leaves_that_file_alone(project: Path, tmp_path: Path) -> None:
    bashrc = tmp_path / "bashrc"
    bashrc.write_text("export PATH=$HOME/bin:$PATH\n")
    (project / "tasks.py").symlink_to(bashrc)

    done = init(project, "--force")

    assert done.returncode == 0, done.stderr
    assert bashrc.read_text() == "export PATH=$HOME/bin:$PATH\n", "the link's target is untouched"
    assert not (project / "tasks.py").is_symlink()
    assert "from deploy.tasks import namespace" in (project / "tasks.py").read_text()
    assert sorted(path.name for path in project.iterdir() if path.name.startswith(".")) == [".gitignore"], \
        "no temporary left"


def test_a_symlinked_requirements_folder_is_refused_and_nothing_is_written(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (project / "requirements").symlink_to(elsewhere)

    line = one_error(init(project, "--force"))

    assert line == "error: requirements is a symlink: init never writes through one"
    assert list(elsewhere.iterdir()) == []
    assert not (project / "noxfile.py").exists()


def test_a_symlinked_pyproject_is_not_appended_to(tmp_path: Path) -> None:
    shared = tmp_path / "shared.toml"
    shared.write_text(PYPROJECT, encoding="utf-8")
    root = tmp_path / "acme"
    root.mkdir()
    (root / "pyproject.toml").symlink_to(shared)

    line = one_error(init(root))

    assert line == "error: pyproject.toml is a symlink: init never writes through one"
    assert shared.read_text() == PYPROJECT
    assert sorted(path.name for path in root.iterdir()) == ["pyproject.toml"]


def test_a_file_where_the_requirements_folder_goes_is_refused_before_anything_is_written(project: Path) -> None:
    (project / "requirements").write_text("alpha\n")

    line = one_error(init(project))

    assert line == "error: requirements is a file, but init writes requirements/base.in inside it as a folder"
    assert sorted(path.name for path in project.iterdir()) == ["pyproject.toml", "requirements"]
    assert (project / "pyproject.toml").read_text() == PYPROJECT


def test_init_force_does_not_replace_a_folder_and_writes_nothing(project: Path) -> None:
    (project / "tasks.py").mkdir()

    line = one_error(init(project, "--force"))

    assert line.startswith("error: tasks.py exists and is not a file"), line
    assert not (project / "noxfile.py").exists(), "the check came before any write"
    assert (project / "pyproject.toml").read_text() == PYPROJECT


def test_init_writes_the_layers_into_the_configured_folder(tmp_path: Path) -> None:
    text = PYPROJECT + '[tool.deploy]\nrequirements = "deps/layers"\n'
    (tmp_path / "pyproject.toml").write_text(text, encoding="utf-8")

    done = init(tmp_path)

    assert done.returncode == 0, done.stderr
    assert "wrote deps/layers/base.in" in done.stdout.splitlines()
    assert (tmp_path / "deps/layers/base.in").read_text().splitlines()[1:] == ["alpha>=1",
                                                                              "beta[fast]>=2; python_version >= '3.8'"]
    assert not (tmp_path / "requirements").exists()
    assert "commit deps/layers/ (the .in and .txt files and wheels/)" in done.stdout


@pytest.mark.parametrize("folder", ["../outside", "deps/../../outside", "/tmp/pinship-init-outside"])
def test_a_configured_folder_outside_the_project_is_refused(tmp_path: Path, folder: str) -> None:
    root = tmp_path / "acme"
    root.mkdir()
    text = PYPROJECT + f'[tool.deploy]\nrequirements = "{folder}"\n'
    (root / "pyproject.toml").write_text(text, encoding="utf-8")

    line = one_error(init(root))

    assert line.startswith(f"error: pyproject.toml [tool.deploy]: requirements = \"{folder}\" is outside the project")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["acme"]
    assert not Path("/tmp/pinship-init-outside").exists()
    only_pyproject_is_left(root, text)


def test_two_sources_of_dependencies_and_no_from_is_one_refusal_naming_them_and_the_flag(tmp_path: Path) -> None:
    # Issue 13: init used to adopt [project] and only warn about requirements.txt, although the
    # project may really install from the frozen file.
    (tmp_path / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    (tmp_path / "requirements.txt").write_text("alpha==1.0\n")

    done = init(tmp_path)

    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        "error: init found 2 sources of the app's dependencies: pyproject.toml [project] dependencies, "
        "requirements.txt; it adopts one")
    assert "--from" in done.stderr.splitlines()[1]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pyproject.toml", "requirements.txt"]


def test_from_pyproject_adopts_the_declaration_and_names_every_other_source_in_a_warning(tmp_path: Path) -> None:
    text = PYPROJECT + (
        '[tool.poetry.dependencies]\npython = "^3.8"\nalpha = "^1.0"\n'
        '[tool.poetry.group.docs.dependencies]\nsphinx = "*"\n'
    )
    (tmp_path / "pyproject.toml").write_text(text, encoding="utf-8")
    (tmp_path / "requirements.txt").write_text("alpha==1.0\n")

    done = init(tmp_path, "--from", "pyproject.toml")

    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if "not adopted" in line] == [
        "warning: not adopted: [tool.poetry.dependencies] (beside [project] dependencies, which base.in follows); "
        "add it to requirements/base.in by hand",
        "warning: not adopted: requirements.txt (adopt it with: python -m deploy init --from requirements.txt); "
        "add it to requirements/base.in by hand",
    ]
    assert "sphinx" in (tmp_path / "requirements/dev.in").read_text(), "the docs group is a development tool"


def test_from_a_frozen_file_adopts_it_on_the_command_line(use_index: PackageIndex, tmp_path: Path) -> None:
    use_index.add("gamma-from", "2.0")
    (tmp_path / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    (tmp_path / "requirements.txt").write_text("alpha==1.0\n")
    (tmp_path / "frozen").mkdir()
    (tmp_path / "frozen" / "prod.txt").write_text("gamma-from==2.0\n")

    done = init(tmp_path, "--from", "frozen/prod.txt")

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "requirements/base.in").read_text().splitlines()[1:] == ["gamma-from"]
    assert "gamma-from==2.0" in (tmp_path / "requirements/dev.txt").read_text().splitlines(), "its version is kept"


@pytest.mark.parametrize(("given", "said"), [("missing.txt", "no such file"), ("frozen", "is a folder, not a file")])
def test_from_a_file_that_is_not_there_is_one_line_and_nothing_is_written(
    tmp_path: Path, given: str, said: str,
) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    (tmp_path / "frozen").mkdir()

    done = init(tmp_path, "--from", given)

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: --from {given}: {said}",
        "  fix: name the requirements file to adopt, e.g. --from requirements.txt",
    ]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["frozen", "pyproject.toml"]


def test_from_a_file_that_is_not_utf8_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    (tmp_path / "frozen.txt").write_bytes(b"caf\xe9==1.0\n")

    done = init(tmp_path, "--from", "frozen.txt")

    assert done.returncode == 1
    assert done.stderr.splitlines()[0].startswith("error: frozen.txt:1: is not UTF-8"), done.stderr
    assert "Traceback" not in done.stderr


def test_dynamic_dependencies_are_named_in_a_warning_and_uv_dev_dependencies_adopted(tmp_path: Path) -> None:
    text = (
        '[project]\nname = "acme"\nversion = "1.0"\ndynamic = ["dependencies", "version"]\n'
        '[tool.setuptools.dynamic]\ndependencies = {file = ["deps/runtime.txt"]}\n'
        '[tool.uv]\ndev-dependencies = ["pytest"]\n'
    )
    (tmp_path / "pyproject.toml").write_text(text, encoding="utf-8")

    done = init(tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "warning: not adopted: [project] dependencies (listed in dynamic, so read by the build backend); "
        "add it to requirements/base.in by hand",
    ]
    assert "pytest" in (tmp_path / "requirements/test.in").read_text(), "uv's dev-dependencies are adopted"


def test_a_project_with_nothing_else_to_adopt_gets_no_warning(project: Path) -> None:
    done = init(project)

    assert done.returncode == 0
    assert done.stderr == ""


def test_a_configured_folder_that_climbs_with_dotdot_is_refused_even_when_it_ends_inside(project: Path) -> None:
    # `link/..` is resolved from the link's target, so `x/../reqs` need not be <root>/reqs for pip.
    text = PYPROJECT + '[tool.deploy]\nrequirements = "x/../reqs"\n'
    (project / "pyproject.toml").write_text(text, encoding="utf-8")

    line = one_error(init(project))

    assert line == ("error: pyproject.toml [tool.deploy]: requirements = \"x/../reqs\" climbs with '..': init writes "
                    "only inside the project")
    only_pyproject_is_left(project, text)


def test_init_force_leaves_a_file_in_the_way_of_its_temporary_alone(project: Path) -> None:
    init(project)
    # The temporary is named after the pid, which exec keeps: put a file of the user's at that name first.
    done = subprocess.run(
        [sys.executable, "-c", "import os, sys\n"
         "open(f'.noxfile.py.init-{os.getpid()}', 'w').write('mine')\n"
         "os.execv(sys.executable, [sys.executable, '-m', 'deploy', 'init', '--force'])"],
        cwd=project, capture_output=True, text=True, check=False,
    )

    assert done.returncode == 1
    assert "Traceback" not in done.stderr and ".noxfile.py.init-" in done.stderr
    mine = [path for path in project.iterdir() if path.name.startswith(".noxfile.py.init-")]
    assert len(mine) == 1 and mine[0].read_text() == "mine", "nothing of the user's is deleted"


def test_a_refusal_prints_only_the_error_not_files_it_would_have_kept(project: Path) -> None:
    (project / "noxfile.py").write_text("# my own noxfile\n")
    (project / "requirements").write_text("alpha\n")

    done = init(project)

    one_error(done)
    assert done.stdout == "", "no 'kept …' lines for a run that did nothing"
    assert (project / "noxfile.py").read_text() == "# my own noxfile\n"


def test_pinship_reaches_the_test_layer_from_a_wheel_vendored_into_the_requirements_folder(project: Path) -> None:
    # Issue 13: pinship is not on the package index, so a plain `pinship` in dev.in failed the
    # first lock; the wheel of the pinship that runs now sits beside the layers instead. It goes
    # into test.in, which CI installs before running `python -m deploy verify`.
    done = init(project)

    assert done.returncode == 0, done.stderr
    wheels = sorted((project / "requirements/wheels").iterdir())
    assert [wheel.name for wheel in wheels] == ["pinship-0.1.0-py3-none-any.whl"]
    with zipfile.ZipFile(wheels[0]) as archive:
        assert "deploy/scaffold.py" in archive.namelist(), "the wheel holds the package that runs"
        metadata = archive.read("pinship-0.1.0.dist-info/METADATA").decode()
    assert "Name: pinship" in metadata.splitlines()
    test = (project / "requirements/test.in").read_text().splitlines()
    assert [line for line in test if line and not line.startswith("#")] == [
        "-r prod.in", "--find-links wheels", "pinship==0.1.0", "pytest"]
    assert ("  requirements/test.in: pinship==0.1.0, from requirements/wheels/pinship-0.1.0-py3-none-any.whl "
            "(built from ") in done.stdout, done.stdout


def test_the_vendored_wheel_installs_with_require_hashes_from_another_folder(project: Path, tmp_path: Path) -> None:
    init(project)
    wheel = project / "requirements/wheels/pinship-0.1.0-py3-none-any.whl"
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (project / "requirements/dev.txt").write_text(
        f"--find-links wheels\npinship==0.1.0 --hash=sha256:{digest}\n", encoding="utf-8")
    target = tmp_path / "target"

    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--require-hashes", "--no-deps", "--no-index", "--target",
         str(target), "-r", str(project / "requirements/dev.txt")],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )

    assert done.returncode == 0, done.stderr
    assert (target / "deploy" / "scaffold.py").is_file()


def test_init_twice_vendors_the_same_bytes_so_the_locked_hash_stays_valid(project: Path) -> None:
    init(project)
    first = (project / "requirements/wheels/pinship-0.1.0-py3-none-any.whl").read_bytes()

    assert init(project, "--force").returncode == 0

    assert (project / "requirements/wheels/pinship-0.1.0-py3-none-any.whl").read_bytes() == first


def test_a_pinship_no_wheel_can_be_made_of_is_one_warning_with_the_install_command(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deploy.scaffold import init as scaffold_init

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))  # pip wheel cannot run
    said: list[str] = []
    warned: list[str] = []

    scaffold_init(project, say=said.append, warn=warned.append)

    assert len(warned) == 1, warned
    assert warned[0].startswith("warning: pinship itself is not in requirements/test.in: pip wheel of ")
    assert warned[0].endswith(f"install it beside the layers with: {itself.install_command()}")
    test = (project / "requirements/test.in").read_text()
    assert itself.install_command() in test, "test.in keeps the command as a comment"
    assert not (project / "requirements/wheels").exists()


def test_init_writes_the_projects_own_onboarding_script(project: Path) -> None:
    done = init(project)

    assert done.returncode == 0, done.stderr
    script = project / "scripts" / "onboard.py"
    assert "wrote scripts/onboard.py" in done.stdout.splitlines()
    assert "a fresh clone then needs one command: python3 scripts/onboard.py" in done.stdout
    tree = ast.parse(script.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported - {"__future__"} <= sys.stdlib_module_names, "it runs before anything is installed"


def test_a_projects_own_onboard_script_is_never_taken_over_even_with_force(project: Path) -> None:
    (project / "scripts").mkdir()
    (project / "scripts" / "onboard.py").write_text("print('our own onboarding')\n")

    done = init(project, "--force")

    assert done.returncode == 0, done.stderr
    assert (project / "scripts" / "onboard.py").read_text() == "print('our own onboarding')\n"
    assert "wrote scripts/onboard_pinship.py" in done.stdout.splitlines()
    assert "python3 scripts/onboard_pinship.py" in done.stdout


def test_sync_outside_a_virtual_environment_is_refused_in_one_line(project: Path) -> None:
    base = Path(sys.base_prefix) / "bin" / "python3"
    if Path(sys.prefix) == Path(sys.base_prefix) or not base.exists():
        pytest.skip("needs a Python outside any venv")
    init(project)
    done = subprocess.run([str(base), "-c", "import sys; sys.path.insert(0, sys.argv[1]); import runpy; "
                           "sys.argv = ['deploy', 'sync']; runpy.run_module('deploy', run_name='__main__')",
                           str(Path(__file__).resolve().parent.parent)],
                          cwd=project, capture_output=True, text=True, check=False)

    assert done.returncode == 1
    assert done.stderr.splitlines()[0].startswith("error: sync changes the environment it runs in, and "), done.stderr


def test_the_written_noxfile_runs_a_session_without_uv_noise(project: Path) -> None:
    # Issue 13: nox looks for uv before every session, even one that runs in the current
    # environment, and logged "uv binary not found." on every command of a machine without uv.
    init(project)
    nox = Path(sys.executable).parent / "nox"

    done = subprocess.run([str(nox), "-s", "verify"], cwd=project, capture_output=True, text=True, check=False,
                          env={**os.environ, "UV": str(project / "no-uv-here")})

    assert "Running session verify" in done.stdout + done.stderr
    assert "uv binary not found" not in done.stdout + done.stderr
