"""A first lock in one `uv pip compile` run, only where it gives the rounds' very files (issue 15, uv's speed).

As tests/test_lock_fastpath.py does for pip-compile: each project is locked from nothing twice, as a
user's lock does it and with the one-run path off (the rounds), with `resolver = "uv"`; the files must
be the same bytes, and the one run must be taken only where uvreport.py's account proves the rounds
would agree. Real uv (from the dev lock), local index. The page rules the account reads (yanked
files, Requires-Python, pre-releases) are tried on pages written here, which the test index cannot serve.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from deploy.lock import candidates, joint, uvreport, uvsays
from deploy.lock.indexpage import JSON
from deploy.lock.lockfile import Pin
from tests.lockproject import PYPROJECT, LockProject, Names, lock_both_ways, runs, versions
from tests.support.pkgindex import PackageIndex, build_wheel
from tests.test_lock_fastpath import FALLBACK, _release, orm_with_postgres_extra

pytestmark = pytest.mark.index
UV = PYPROJECT.format(name="lockproject") + 'resolver = "uv"\n'


@pytest.fixture
def names() -> Names:
    return Names()


def _project(root: Path, layers: dict[str, str]) -> LockProject:
    return LockProject.create(root, layers, pyproject=UV)


def test_the_benchmark_shape_locks_in_one_uv_run_with_the_rounds_files(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four layers, two releases of each package, an sdist-only one, and a newest release for a newer
    Python, which uv passes over in every run alike."""
    n = names
    _release(use_index, {n.markup: [], n.web: [f"{n.markup}>=1", n.util], n.util: [], n.server: [f"{n.web}>=1"],
                         n.runner: [n.util], n.factory: [n.web], n.linter: []})
    use_index.add(n.web, "2.0", [n.markup], python_requires=">=3.99")
    use_index.add(n.driver, "1.0", sdist_only=True)
    use_index.add(n.orm, "1.0", [n.driver])
    project = _project(tmp_path / "project", {
        "base.in": f"{n.web}\n{n.orm}\n",
        "prod.in": f"-r base.in\n{n.server}\n",
        "test.in": f"-r prod.in\n{n.runner}\n{n.factory}\n",
        "dev.in": f"-r test.in\n{n.linter}<1.1\n",
    })

    fast, rounds, _ = lock_both_ways(project, tmp_path, monkeypatch)

    assert "resolving 4 layers together with uv pip compile" in fast
    assert runs(fast) == 1 and runs(rounds) == 4
    assert "each lower layer (base, prod, test) is what its own inputs give: one run locked the group" in fast
    assert versions(project, "base")[n.web] == "1.1"
    assert project.run("verify").returncode == 0


def test_an_extra_asked_by_base_is_accounted_for_and_one_asked_only_above_takes_the_rounds(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = names
    orm_with_postgres_extra(use_index, n)
    use_index.add(n.app, "1.0", [f"{n.orm}[postgres]"])
    own = _project(tmp_path / "own", {
        "base.in": f"{n.app}\n", "prod.in": "-r base.in\n", "dev.in": f"-r prod.in\n{n.driver}\n",
    })
    fast, _, _ = lock_both_ways(own, tmp_path / "a", monkeypatch)
    assert runs(fast) == 1, "only base's own app asks for the extra: the one run stands"
    assert versions(own, "base")[n.pgdriver] == "1.0"

    above = _project(tmp_path / "above", {
        "base.in": f"{n.orm}\n", "prod.in": "-r base.in\n", "dev.in": f"-r prod.in\n{n.orm}[postgres]\n",
    })
    fast, rounds, _ = lock_both_ways(above, tmp_path / "b", monkeypatch)
    assert (f"the joint run takes a package of base with an extra that its own inputs may not ask for: {FALLBACK}"
            in fast)
    assert runs(fast) == 1 + runs(rounds)
    assert n.pgdriver not in versions(above, "base") and versions(above, "dev")[n.pgdriver] == "1.0"


def test_a_package_held_back_by_an_upper_layers_package_takes_the_rounds(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """plugin 1.1 caps util below the 2.0 that base alone takes: the joint run's pins cannot stand for
    both layers, and the rounds give base util 2.0 and dev the plugin that allows it."""
    n = names
    _release(use_index, {n.util: []}, ("1.0", "2.0"))
    use_index.add(n.web, "1.0", [n.util])
    use_index.add(n.plugin, "1.0", [n.util])
    use_index.add(n.plugin, "1.1", [f"{n.util}<2"])
    project = _project(tmp_path / "project", {"base.in": f"{n.web}\n", "dev.in": f"-r base.in\n{n.plugin}\n"})

    fast, _, _ = lock_both_ways(project, tmp_path, monkeypatch)

    assert any(line.endswith(FALLBACK) for line in fast), fast
    assert runs(fast) > 1
    assert versions(project, "base")[n.util] == "2.0"
    assert (versions(project, "dev")[n.util], versions(project, "dev")[n.plugin]) == ("2.0", "1.0")


def test_a_package_held_below_its_newest_by_one_of_the_layers_own_packages_still_takes_one_run(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """web caps util below 2.0 in base itself: base's own run meets that cap before it picks util,
    whichever package comes first (uv's -v log says what each package needs)."""
    n = names
    _release(use_index, {n.util: []}, ("1.0", "2.0"))
    _release(use_index, {n.web: [f"{n.util}<2"], n.server: [n.util], n.linter: []})
    project = _project(tmp_path / "project", {
        "base.in": f"{n.web}\n", "prod.in": f"-r base.in\n{n.server}\n", "dev.in": f"-r prod.in\n{n.linter}\n",
    })

    fast, rounds, _ = lock_both_ways(project, tmp_path, monkeypatch)

    assert runs(fast) == 1 and runs(rounds) == 3
    assert versions(project, "base")[n.util] == "1.0"


def _first(page: tuple[str, bytes], *lines: str, pre: bool = False) -> str | None:
    files = candidates.files("pkg", *page)
    return candidates.first([Requirement(line).specifier for line in lines], files, Version("3.11.7"), pre=pre)


def test_the_version_uv_takes_first_is_read_from_the_page_erring_toward_a_newer_one() -> None:
    def entry(filename: str, **more: object) -> dict[str, object]:
        return {"filename": filename, "url": filename, "hashes": {}, **more}

    files = [entry("pkg-1.0-py3-none-any.whl"), entry("pkg-1.1.tar.gz"),
             entry("pkg-1.2-py3-none-any.whl", **{"requires-python": ">=3.12"}),
             entry("pkg-1.3-py3-none-any.whl", yanked="broken"), entry("pkg-1.4b1-py3-none-any.whl"),
             entry("pkg-1.5-py3.egg"), entry("pkg-1.6-py3-none-any.whl", **{"requires-python": "<3.11"})]
    page = (JSON, json.dumps({"files": files}).encode())
    # 1.6's upper bound is not read (uv ignores it): counting it can only fail a proof, never pass one.
    assert _first(page) == "1.6"
    assert _first(page, "pkg<1.6") == "1.1"  # 1.2 needs a newer Python, 1.3 is yanked, 1.4b1 a pre-release
    assert _first(page, "pkg<1.6", pre=True) == "1.4b1"
    assert _first(page, "pkg<1.6", "pkg>=1.4b0") == "1.4b1"  # a line that names a pre-release lets them in
    assert _first(page, "pkg==1.3") == "1.3"  # uv takes a yanked release that a line pins with ==
    assert _first(page, "pkg>=2") is None

    html = ('<a href="pkg-1.0.tar.gz">pkg-1.0.tar.gz</a><a href="pkg-1.1-py3-none-any.whl" '
            'data-requires-python="&gt;=3.12">pkg-1.1-py3-none-any.whl</a>'
            '<a href="pkg-1.2.zip" data-yanked="">pkg-1.2.zip</a>')
    assert _first(("text/html", html.encode())) == "1.0"
    # The file is the link's, as uv reads it, whatever the anchor's text says.
    assert _first(("text/html", b'<a href="../files/pkg-9.0.tar.gz#sha256=00">pkg-0.1.tar.gz</a>')) == "9.0"


def test_a_find_links_folder_is_read_beside_the_index_and_a_second_index_skips_the_one_run(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """init puts the project's own wheel in `requirements/wheels` (`--find-links wheels` in test.in):
    its files are candidates beside the index's. With two indexes the joint run is not even made."""
    n = names
    _release(use_index, {n.web: [], n.util: []})
    for folder in ("project", "two"):
        (tmp_path / folder / "requirements" / "wheels").mkdir(parents=True)
        build_wheel(tmp_path / folder / "requirements" / "wheels", n.tool, "0.1.0", (), None, None)
    layers = {"base.in": f"{n.web}\n", "test.in": f"-r base.in\n--find-links wheels\n{n.tool}==0.1.0\n",
              "dev.in": f"-r test.in\n{n.util}\n"}
    project = _project(tmp_path / "project", layers)
    fast, _, _ = lock_both_ways(project, tmp_path / "a", monkeypatch)
    assert runs(fast) == 1 and versions(project, "test")[n.tool] == "0.1.0"

    layers["base.in"] += f"--extra-index-url {use_index.url}\n"  # the same index twice: two all the same
    two = _project(tmp_path / "two", layers)
    fast, rounds, _ = lock_both_ways(two, tmp_path / "b", monkeypatch)
    assert f"uv's one run is proven on a lock that reads one index, and this one reads more: {FALLBACK}" in fast
    assert runs(fast) == runs(rounds) == 3


def test_uvs_derivation_is_restated_as_pips_conflict_block_and_an_unread_one_adds_nothing() -> None:
    kept = {"tool": Pin("tool", "9.2.0", ()), "web": Pin("web", "1.0", ())}
    said = ("error: No solution found when resolving dependencies\n  cause: Because plugin==1.1 depends on "
            "util>=1.0, <2 and you require util>=2, we can conclude that you require plugin!=1.1.\n"
            "         And because you require tool<8 and tool==9.2.0, we can conclude that your requirements "
            "are unsatisfiable.\n")
    assert uvsays.restated(said, kept) == said.rstrip() + (
        "\n\nThe conflict is caused by:\n    The user requested util>=2\n    The user requested tool<8\n"
        "    The user requested (constraint) tool==9.2.0\n    plugin 1.1 depends on util>=1.0,<2\n\n")
    other = "error: Failed to fetch: `http://127.0.0.1:1/simple/tool/`\n"
    assert uvsays.restated(other, kept) == other
    assert uvsays.restated("error: No solution found when resolving dependencies\n  cause: odd\n", kept).count(
        "The conflict is caused by") == 0


def test_what_each_package_needs_is_read_from_uvs_log_and_a_range_it_cannot_restate_is_none() -> None:
    log = "\n".join([
        "DEBUG Searching for a compatible version of celery[redis] (*)",
        "DEBUG Adding transitive dependency for celery==5.7.0: vine>=5.1.0, <6.0",
        "DEBUG Adding transitive dependency for celery==5.7.0: python-dateutil>=2.9.0.post0, <2.9.0.post0+",
        "DEBUG Adding transitive dependency for celery==5.7.0: tzlocal*",
        "DEBUG Adding transitive dependency for celery==5.7.0: kombu[redis]*",
        "DEBUG Adding transitive dependency for celery==5.7.0: kombu>=5.7.0",
        "DEBUG Adding transitive dependency for requests==2.34.2: urllib3>=1.25.4, <2.2.0 | >=2.2.0+, <3",
        "DEBUG Adding transitive dependency for psycopg==3.3.9: typing-extensions{python_full_version < '3.13'}>=4.6",
        "DEBUG Adding transitive dependency for psycopg==3.3.9: winlib{sys_platform == 'win32'}>=1",
    ])
    needs = uvreport.needs_from_log(log)
    celery = {name: [str(cap) for cap in caps] for name, caps in needs[("celery", "5.7.0")].items()}
    assert (celery["vine"], celery["tzlocal"]) == (["<6.0,>=5.1.0"], [""])
    assert celery["python-dateutil"] == ["<=2.9.0.post0,>=2.9.0.post0"]
    assert celery["kombu"] == ["", ">=5.7.0"], "the extra's line and the package's own: either may come first"
    assert needs[("requests", "2.34.2")]["urllib3"] == [None]
    assert "typing-extensions" in needs[("psycopg", "3.3.9")], "a marker true on this Python"
    assert "winlib" not in needs[("psycopg", "3.3.9")], "a marker false here is no need"

    # The same lines start the page reads while uv solves: each package it picks, and at once each
    # package a picked one needs with no marker (uv picks that one later: botocore after boto3).
    started: list[str] = []
    for line in [*log.splitlines(), "DEBUG Selecting: celery==5.7.0 [compatible] (celery-5.7.0-py3-none-any.whl)"]:
        joint._picked(started.extend, line)
    assert started == ["vine", "python-dateutil", "tzlocal", "kombu", "kombu", "urllib3", "celery"]


def test_with_pylock_off_the_proof_reads_the_pages_itself(
    use_index: PackageIndex, names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = names
    _release(use_index, {n.web: [n.util], n.util: [], n.linter: []})
    project = LockProject.create(tmp_path / "project", {"base.in": f"{n.web}\n", "dev.in": f"-r base.in\n{n.linter}\n"},
                                 pyproject=UV + "pylock = false\n")

    fast, rounds, files = lock_both_ways(project, tmp_path, monkeypatch)

    assert runs(fast) == 1 and runs(rounds) == 2
    assert not [name for name in files if "pylock" in name]


def test_a_page_pinship_cannot_read_stops_the_lock_with_one_line_and_writes_nothing(
    use_index: PackageIndex, names: Names, tmp_path: Path
) -> None:
    # uv reads the page as it is; pinship's own read of it (the proof's, the pylock step's) gets what a
    # broken mirror might send. The proof gives up (the rounds run); the pylock step cannot name the
    # files, and says which page it could not read, before any file is written.
    n = names
    _release(use_index, {n.web: [n.util], n.util: [], n.linter: []})
    project = LockProject.create(tmp_path / "project", {"base.in": f"{n.web}\n", "dev.in": f"-r base.in\n{n.linter}\n"},
                                 pyproject=UV)
    use_index.pinship_sees[n.util] = (JSON, b"{not json")
    before = project.snapshot()

    done = project.run("lock")

    assert done.returncode != 0 and "Traceback" not in done.stdout + done.stderr
    assert "uv's resolver gave no account of its run (JSONDecodeError" in done.stdout
    assert "resolving base with uv pip compile, on its own inputs" in done.stdout
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert error == [f"error: {use_index.url}{n.util}/: the index's page is not a project page "
                     "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"], done.stderr
    assert project.snapshot() == before


def test_uv_starts_before_the_pylock_step_and_the_proof_load(
    use_index: PackageIndex, names: Names, tmp_path: Path
) -> None:
    # Issue 15's uv target: every millisecond before uv starts adds to a lock's time. The pylock step's
    # fetching (indexfiles, concurrent.futures, urllib.request) and the proof's parsers (packaging) load
    # once uv runs (joint._uv_started), and still do their work: the lock is whole.
    n = names
    _release(use_index, {n.web: [n.util], n.util: [], n.linter: []})
    project = _project(tmp_path / "project", {"base.in": f"{n.web}\n", "prod.in": f"-r base.in\n{n.linter}\n"})
    watched = ("deploy.lock.pylocks", "deploy.lock.indexfiles", "deploy.lock.uvreport", "packaging",
               "concurrent.futures", "urllib.request")
    spy = (
        "import os, subprocess, sys, runpy\n"
        "real = subprocess.Popen\n"
        "class Popen(real):\n"
        "    def __init__(self, args, *rest, **options):\n"
        "        if os.path.basename(str(args[0])) == 'uv' and 'compile' in args:\n"
        f"            print('loaded at uv:', *(m for m in {watched!r} if m in sys.modules), file=sys.stderr)\n"
        "        super().__init__(args, *rest, **options)\n"
        "subprocess.Popen = Popen\n"
        "sys.argv = ['deploy', '--root', sys.argv[1], 'lock']\n"
        "runpy.run_module('deploy', run_name='__main__')\n"
    )
    repository = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, "-c", spy, str(project.root)], capture_output=True, text=True,
                          check=False, cwd=project.root, env={**os.environ, "PYTHONPATH": repository})

    assert done.returncode == 0, done.stdout + done.stderr
    assert "loaded at uv:\n" in done.stderr, done.stderr
    assert project.path("pylock.prod.toml").is_file() and project.run("verify").returncode == 0
    assert "each lower layer (base) is what its own inputs give: one run locked the group" in done.stdout
