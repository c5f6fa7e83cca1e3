"""`python -m deploy verify`: offline proof that the locks are fresh, untouched and consistent.

Every failure is one line that names the file (and line, where there is one) and the fix.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from deploy.lock import pylock
from deploy.lock.freshness import options_key
from deploy.lock.layers import load as load_layers
from deploy.lock.lockfile import Pin, parse, render
from deploy.lock.verify import check
from deploy.scaffold import NOXFILE
from tests.lockproject import LockProject, Names, locked_copy, publish
from tests.support.pkgindex import PackageIndex

pytestmark = pytest.mark.index

_PROBLEM = re.compile(r"^requirements/[\w-]+\.(txt|in)(:\d+)?[: ].* run: nox -s lock$")


@pytest.fixture(scope="module")
def template(package_index: PackageIndex, tmp_path_factory: pytest.TempPathFactory) -> tuple[LockProject, Names]:
    return locked_copy(package_index, tmp_path_factory)


@pytest.fixture
def project(template: tuple[LockProject, Names], tmp_path: Path) -> LockProject:
    """A freshly locked project of this test's own, to break."""
    return template[0].copy(tmp_path / "project")


@pytest.fixture
def names(template: tuple[LockProject, Names]) -> Names:
    return template[1]


def failures(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The problems verify reported, checked to be one well-formed line each; exit code 1."""
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert all(line.startswith("verify: ") for line in lines), done.stderr
    problems = [line.removeprefix("verify: ") for line in lines]
    for problem in problems:
        assert _PROBLEM.match(problem), f"not 'file[:line]: what; run: nox -s lock': {problem}"
    return problems


def _line_of(project: LockProject, lock: str, text: str) -> int:
    return next(n for n, line in enumerate(project.read(lock).splitlines(), 1) if line.startswith(text))


def test_verify_passes_on_a_fresh_lock_without_asking_the_index(
    use_index: PackageIndex, project: LockProject
) -> None:
    use_index.requests.clear()

    done = project.run("verify")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("verify: 4 layers fresh and consistent")
    assert check(project.config()) == []
    assert use_index.requests == []


def test_an_edited_in_file_makes_its_lock_stale(project: LockProject, names: Names) -> None:
    project.write("dev.in", project.read("dev.in") + f"{names.beta}\n")

    assert failures(project.run("verify")) == [
        "requirements/dev.txt is out of date: requirements/dev.in changed since it was locked; run: nox -s lock",
    ]


def test_a_comment_only_edit_keeps_verify_green_and_lock_resolves_nothing(
    use_index: PackageIndex, project: LockProject, names: Names
) -> None:
    # Comments, blank lines, trailing spaces and a continued line ask pip for nothing new.
    before = project.snapshot()
    project.write("base.in", f"# Reworded: what the app needs.\n\n{names.alpha}   # the core  \n\n")
    project.write("prod.in", f"-r \\\n    base.in\n{names.beta}\n# a trailing comment\n")
    use_index.requests.clear()

    verified = project.run("verify")
    assert verified.returncode == 0, verified.stderr
    done = project.lock()

    assert "all 4 layers are up to date" in done.stdout
    assert "resolving" not in done.stdout + done.stderr
    assert use_index.requests == []
    assert project.snapshot() == before


def test_a_comment_hiding_a_requirement_is_an_edit(project: LockProject, names: Names) -> None:
    # pip takes '#' as a comment only at the line start or after whitespace: 'alpha#x' is no comment.
    project.write("base.in", f"# {names.alpha}\n")

    stale = "requirements/base.txt is out of date: requirements/base.in changed since it was locked; run: nox -s lock"
    assert stale in failures(project.run("verify"))


def test_an_edited_lower_layer_makes_every_layer_above_it_stale(project: LockProject, names: Names) -> None:
    project.write("prod.in", project.read("prod.in") + f"{names.linter}\n")

    assert failures(project.run("verify")) == [
        f"requirements/{layer}.txt is out of date: requirements/prod.in changed since it was locked; run: nox -s lock"
        for layer in ("prod", "test", "dev")
    ]


def test_a_hand_edited_lock_fails_verify_and_names_the_fix(project: LockProject, names: Names) -> None:
    text = project.read("test.txt")
    project.write("test.txt", text.replace(f"{names.alpha}==1.0 ", f"{names.alpha}==1.1 "))
    line = _line_of(project, "test.txt", f"{names.alpha}==1.1")

    problems = failures(project.run("verify"))

    assert "requirements/test.txt was edited by hand (its content no longer matches its header); run: nox -s lock" in (
        problems
    )
    assert (
        f"requirements/test.txt:{line}: {names.alpha}==1.1 but base.txt pins {names.alpha}==1.0; run: nox -s lock"
    ) in problems


def test_a_hand_edit_that_keeps_versions_is_caught_too(project: LockProject, names: Names) -> None:
    # Swapping a hash is how a tampered lock would let other bytes in under the same version.
    text = project.read("dev.txt")
    start = text.index("--hash=sha256:", text.index(f"{names.linter}==1.0")) + len("--hash=sha256:")
    project.write("dev.txt", text[:start] + "0" * 64 + text[start + 64:])

    assert failures(project.run("verify")) == [
        "requirements/dev.txt was edited by hand (its content no longer matches its header); run: nox -s lock",
    ]


def test_changed_compile_options_make_every_lock_stale(project: LockProject) -> None:
    pyproject = project.root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + 'compile-options = ["--pre"]\n', encoding="utf-8")

    assert failures(project.run("verify")) == [
        f"requirements/{layer}.txt is out of date: the compile options (pip-compile flags, "
        "[tool.deploy] compile-options) changed since it was locked; run: nox -s lock"
        for layer in ("base", "prod", "test", "dev")
    ]


def test_a_deleted_lock_fails_verify(project: LockProject) -> None:
    project.path("prod.txt").unlink()

    assert failures(project.run("verify")) == ["requirements/prod.txt is missing; run: nox -s lock"]


def test_a_new_in_file_never_compiled_fails_verify(project: LockProject, names: Names) -> None:
    project.write("docs.in", f"-r base.in\n{names.linter}\n")

    assert failures(project.run("verify")) == ["requirements/docs.txt is missing; run: nox -s lock"]


def test_a_pin_without_a_hash_fails_verify(project: LockProject, names: Names) -> None:
    text = project.read("prod.txt")
    pinned = re.compile(rf"^{re.escape(names.beta)}==1\.0 \\\n(    --hash=\S+ ?\\?\n)+", re.MULTILINE)
    project.write("prod.txt", pinned.sub(f"{names.beta}==1.0\n", text))
    line = _line_of(project, "prod.txt", f"{names.beta}==1.0")

    problems = failures(project.run("verify"))

    assert f"requirements/prod.txt:{line}: {names.beta}==1.0 has no --hash; run: nox -s lock" in problems


@pytest.mark.parametrize(("added", "what"), [
    ("--index-url http://mirror.internal/simple/", "an index option"),
    ("--find-links /home/me/wheels", "an index option"),
    ("{alpha} @ file:///home/me/wheels/alpha-1.0-py3-none-any.whl", "a file:// URL"),
])
def test_machine_specific_content_in_a_lock_fails_verify(
    project: LockProject, names: Names, added: str, what: str
) -> None:
    text = project.read("base.txt")
    body_start = text.index("\n" + names.alpha) + 1
    project.write("base.txt", text[:body_start] + added.format(alpha=names.alpha) + "\n" + text[body_start:])
    line = text[:body_start].count("\n") + 1

    problems = failures(project.run("verify"))

    assert (
        f"requirements/base.txt:{line}: holds {what}, which is specific to one machine; run: nox -s lock"
    ) in problems


def test_every_problem_is_reported_in_one_run(project: LockProject, names: Names) -> None:
    project.path("base.txt").unlink()
    project.write("dev.in", project.read("dev.in") + f"{names.beta}\n")
    project.write("test.txt", project.read("test.txt") + "# note\n")

    problems = failures(project.run("verify"))

    assert [problem.split(" ", 1)[0] for problem in problems] == [
        "requirements/base.txt", "requirements/test.txt", "requirements/dev.txt",
    ]


def test_a_deploy_layer_that_does_not_exist_fails_verify(project: LockProject) -> None:
    pyproject = project.root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('deploy-layer = "prod"', 'deploy-layer = "server"'))

    done = project.run("verify")

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        'verify: pyproject.toml: [tool.deploy] deploy-layer = "server" but requirements/server.in does not exist; '
        "set deploy-layer to one of: base, prod, test, dev",
    ]


def test_a_test_layer_that_leaves_out_what_ships_fails_verify(use_index: PackageIndex, tmp_path: Path) -> None:
    names = Names()
    layers = publish(use_index, names)
    layers["test.in"] = f"# constrained by what ships, but not installing it\n-c prod.txt\n{names.checker}\n"
    project = LockProject.create(tmp_path / "project", layers)
    project.lock()

    problems = failures(project.run("verify"))

    assert problems == [
        f"requirements/test.txt: {name}==1.0 ships in prod.txt but is not in the test layer, so CI does not test "
        "it; add '-r prod.in' to test.in and run: nox -s lock"
        for name in sorted([names.beta, names.delta])
    ]


def test_nox_s_verify_passes_on_fresh_locks_and_fails_with_the_same_lines(project: LockProject) -> None:
    (project.root / "noxfile.py").write_text(NOXFILE, encoding="utf-8")
    nox = [str(Path(sys.executable).parent / "nox"), "-s", "verify"]

    fresh = subprocess.run(nox, cwd=project.root, capture_output=True, text=True, check=False)
    project.path("test.txt").unlink()
    stale = subprocess.run(nox, cwd=project.root, capture_output=True, text=True, check=False)

    assert fresh.returncode == 0, fresh.stderr
    assert "4 layers fresh and consistent" in fresh.stderr
    assert stale.returncode == 1
    assert "requirements/test.txt is missing; run: nox -s lock" in stale.stderr


def test_a_direct_reference_missing_from_a_fresh_looking_lock_fails_verify_naming_its_line(
    project: LockProject,
) -> None:
    # The case: `pinship @ file:///…` in dev.in, dropped from dev.txt by a lock whose
    # header still matches its inputs; CI then installs test.txt and finds no pinship.
    wheel = project.root / "wheels" / "pinship-1.0-py3-none-any.whl"
    project.write("dev.in", project.read("dev.in") + f"pinship @ {wheel.as_uri()}\n")
    config = project.config()
    graph = load_layers(config.root, config.requirements)
    lock = parse(project.path("dev.txt"))
    digests = graph.input_digests("dev", options_key(config))
    project.write("dev.txt", render(["written by a lock that dropped the URL"], digests, list(lock.pins.values())))

    problems = failures(project.run("verify"))

    assert problems == [
        "requirements/dev.txt: pinship is not pinned, though requirements/dev.in:3 asks for it; run: nox -s lock"
    ]


def test_verify_loads_neither_the_resolver_nor_packaging_nor_network_code() -> None:
    # verify is the first step of every deploy and fits a pre-commit hook: offline, and cheap to import.
    loaded = (
        "import sys, deploy.lock.verify; "
        "print(*(name for name in ('deploy.lock.solve', 'packaging', 'subprocess', 'socket') if name in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", loaded], cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True,
        check=True,
    )

    assert done.stdout.strip() == ""


def test_pylock_false_with_pylock_files_present_says_in_one_line_that_they_go_unchecked(project: LockProject) -> None:
    # They are not verify's to check any more, but pip or uv given one installs what it says: say so.
    (project.root / "noxfile.py").write_text(NOXFILE, encoding="utf-8")
    nox = [str(Path(sys.executable).parent / "nox"), "-s", "verify"]
    pyproject = project.root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text(encoding="utf-8") + "pylock = false\n", encoding="utf-8")
    note = ("requirements/pylock.*.toml (4 files) not checked, as [tool.deploy] pylock = false; delete them, or set "
            "pylock = true and run: nox -s lock")

    done = project.run("verify")
    noxed = subprocess.run(nox, cwd=project.root, capture_output=True, text=True, check=False)

    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[0] == f"verify: {note}"
    assert done.stdout.splitlines()[1].startswith("verify: 4 layers fresh and consistent (")
    assert noxed.returncode == 0, noxed.stderr
    assert f"nox > {note}" in noxed.stderr.splitlines()
    for path in project.requirements.glob("pylock.*.toml"):
        path.unlink()
    assert "not checked" not in project.run("verify").stdout


def test_a_pylock_file_whose_strings_carry_escapes_reads_back_as_tomllib_reads_it(tmp_path: Path) -> None:
    # The reader takes a string without an escape as it stands (no JSON decoder on verify's path) and
    # decodes one with an escape: read raw, this version would differ from the .txt lock's.
    digest = "cd" * 32
    version = '1.0"\\\x7f\u00e9'
    pin = Pin("tool", version, (f"sha256:{digest}",))
    artifact = pylock.Artifact('tool "1".tar.gz', digest, url="https://files.example/a\\b/tool.tar.gz")
    text = pylock.render("prod", [pin], {digest: artifact}, requires_python=None, source="requirements/prod.txt")
    path = tmp_path / "requirements" / "pylock.prod.toml"
    path.parent.mkdir()
    path.write_text(text, encoding="utf-8")

    assert tomllib.loads(text)["packages"][0]["version"] == version
    assert '\\"' in text and "\\u007f" in text
    assert pylock.check(path, {"tool": pin}, tmp_path) == []
    assert pylock.check(path, {"tool": Pin("tool", "1.0", pin.hashes)}, tmp_path) == [
        "requirements/pylock.prod.toml: tool 1.0\"\\\\x7f\u00e9, but the .txt lock pins 1.0; run: nox -s lock"]


def test_verify_run_as_the_hook_runs_it_says_what_verify_with_root_says(project: LockProject, names: Names) -> None:
    # The hook, CI and onboarding run exactly `python -m deploy verify` (no parser on that path): its
    # lines and exit code must be those of the parsed `--root DIR verify` that every other test runs.
    def bare() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "deploy", "verify"], cwd=project.root, capture_output=True,
                              text=True, check=False)

    fresh = bare()
    assert (fresh.returncode, fresh.stderr) == (0, "")
    assert fresh.stdout.startswith("verify: 4 layers fresh and consistent (")
    project.write("dev.in", project.read("dev.in") + f"{names.beta}\n")
    project.path("prod.txt").unlink()

    stale = bare()

    assert failures(stale) == failures(project.run("verify")) == [
        "requirements/prod.txt is missing; run: nox -s lock",
        "requirements/dev.txt is out of date: requirements/dev.in changed since it was locked; run: nox -s lock",
    ]


def test_python_m_deploy_verify_loads_no_parser_environment_or_json_code(project: LockProject) -> None:
    # Issue 15's target (verify >= 40x the recompile-and-diff anchor) is met by leaving these out of the
    # hook's run: argparse and its help formatter (shutil, gettext's locale look-ups), the environments'
    # settings table and its dataclasses (a project without environments), and json (pylock files included).
    assert project.path("pylock.dev.toml").is_file()
    loaded = (
        "import sys, runpy; sys.argv = ['deploy', 'verify']\n"
        "try:\n    runpy.run_module('deploy', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "lean = ('argparse', 'shutil', 'locale', 'json', 'deploy.environments', 'deploy.settings', "
        "'deploy.portions', 'deploy.lock.solve', 'deploy.lock.audit', 'deploy.scaffold', 'packaging', 'socket')\n"
        "print('loaded:', *(name for name in lean if name in sys.modules))"
    )
    repository = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, "-c", loaded], cwd=project.root, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": repository},
    )

    assert done.stdout.startswith("verify: 4 layers fresh and consistent"), done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "loaded:", done.stdout + done.stderr


def test_python_m_deploy_verify_loads_no_resolver_audit_or_init_code(tmp_path: Path) -> None:
    # `python -m deploy verify` is the pre-commit hook's path: the command line must not import what
    # other commands need (issue 15: it cost 0.16 s of CPU for a 2 ms check).
    project = LockProject.create(tmp_path / "p", {"base.in": "", "prod.in": "-r base.in\n"})
    loaded = (
        "import sys, runpy; sys.argv = ['deploy', '--root', sys.argv[1], 'verify']\n"
        "try:\n    runpy.run_module('deploy', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "heavy = ('deploy.lock.solve', 'deploy.lock.audit', 'deploy.scaffold', 'deploy.adopt', 'deploy.lock.edit',"
        " 'packaging', 'socket')\n"
        "print('loaded:', *(name for name in heavy if name in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", loaded, str(project.root)], cwd=Path(__file__).resolve().parent.parent,
        capture_output=True, text=True, check=False,
    )

    assert done.stdout.strip().splitlines()[-1] == "loaded:", done.stdout + done.stderr
