"""What a lock reads, and what its errors may show: inputs confined to the project, files that are
not UTF-8 named by line, quoted text bounded, and an unreachable index told from a missing package.

Real pip-compile on the local index, run as a user runs it (`python -m deploy`, `nox -s`, `invoke`).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.lock import conflicts, network
from deploy.lock.layers import load as load_layers
from deploy.scaffold import NOXFILE, TASKS
from tests.lockproject import PYPROJECT, LockProject, Names, locked_copy, publish
from tests.support.pkgindex import PackageIndex

pytestmark = pytest.mark.index

SECRET = "pinship-test-secret-4f1d9c"
ALLOW_FIX = (
    "  fix: move that file into the project, or add its folder to [tool.deploy] allow-inputs-outside in "
    "pyproject.toml"
)


@pytest.fixture(scope="module")
def template(package_index: PackageIndex, tmp_path_factory: pytest.TempPathFactory) -> tuple[LockProject, Names]:
    return locked_copy(package_index, tmp_path_factory)


@pytest.fixture
def project(template: tuple[LockProject, Names], tmp_path: Path) -> LockProject:
    """A freshly locked four-layer project of this test's own, to break."""
    return template[0].copy(tmp_path / "project")


@pytest.fixture
def names(template: tuple[LockProject, Names]) -> Names:
    return template[1]


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret in the environment, as a CI job has one: no message may ever show it."""
    monkeypatch.setenv("PINSHIP_DEPLOY_TOKEN", SECRET)


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False, timeout=300)


def _error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    """What the user saw, checked to be a clean failure: exit 1, no trace."""
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    return done.stderr.splitlines()


# --- 10: files that are not UTF-8 -----------------------------------------------------------------

NOT_UTF8 = "caf\xe9-beans\n".encode("latin-1")


@pytest.mark.parametrize(
    ("broken", "reference", "where"),
    [
        ("prod.in", None, "requirements/prod.in:3: is not UTF-8 (byte 0xe9 at offset 28)"),
        ("../shared.in", "-r ../shared.in", "shared.in:2: is not UTF-8 (byte 0xe9 at offset 17)"),
        ("../constraints.txt", "-c ../constraints.txt", "constraints.txt:2: is not UTF-8 (byte 0xe9 at offset 17)"),
    ],
)
def test_a_requirement_file_that_is_not_utf8_is_named_by_line_in_lock_verify_and_upgrade(
    project: LockProject, broken: str, reference: str | None, where: str
) -> None:
    prod = project.read("prod.in")  # "# What ships.\n-r base.in\n<beta>\n"
    if reference is None:
        project.path("prod.in").write_bytes(b"# What ships.\n-r base.in\n" + NOT_UTF8)
    else:
        project.path(broken).write_bytes(b"# shared pins\n" + NOT_UTF8)
        project.write("prod.in", prod + reference + "\n")

    for command in (["lock"], ["verify"], ["upgrade"]):
        lines = _error_lines(project.run(*command))
        prefix = "verify: " if command == ["verify"] else "error: "
        assert lines[0] == prefix + where + "; pip and pinship read requirement files as UTF-8", command
        assert lines[1].startswith("  fix: save it as UTF-8, e.g.: iconv -f latin1 -t utf-8 "), command


def test_a_lock_file_that_is_not_utf8_is_named_with_the_command_that_rewrites_it(project: LockProject) -> None:
    text = project.path("dev.txt").read_bytes()
    project.path("dev.txt").write_bytes(text + b"# edited in latin-1: \xe9\n")
    line = text.count(b"\n") + 1

    for command in ("verify", "lock"):
        lines = _error_lines(project.run(command))
        assert lines[0].endswith(
            f"requirements/dev.txt:{line}: is not UTF-8 (byte 0xe9 at offset {len(text) + 21}); pip and pinship "
            "read requirement files as UTF-8"
        ), command
        assert lines[1] == "  fix: it is generated: delete requirements/dev.txt and run: nox -s lock", command


def test_nox_sessions_and_the_deploy_gate_name_a_file_that_is_not_utf8(project: LockProject) -> None:
    (project.root / "noxfile.py").write_text(NOXFILE, encoding="utf-8")
    (project.root / "tasks.py").write_text(TASKS, encoding="utf-8")
    project.path("base.in").write_bytes(b"# What the app needs everywhere.\n" + NOT_UTF8)
    where = "requirements/base.in:2: is not UTF-8 (byte 0xe9 at offset 36)"

    for session in ("lock", "verify", "upgrade"):
        done = _run([_tool("nox"), "-s", session], project.root)
        assert done.returncode == 1, done.stderr
        assert where in done.stderr, session
        assert "Traceback" not in done.stderr, session

    gate = _run([_tool("invoke"), "deploy", "--env", "local", "--yes"], project.root)
    assert gate.returncode != 0
    assert where in gate.stdout + gate.stderr
    assert "Traceback" not in gate.stdout + gate.stderr
    assert not (project.root / ".deploy" / "local" / "current").exists()


def test_a_pyproject_that_is_not_utf8_stops_init_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_bytes(b'[project]\nname = "caf\xe9"\n')

    done = _run([sys.executable, "-m", "deploy", "init"], tmp_path)

    lines = _error_lines(done)
    assert lines[0] == "error: pyproject.toml:2: is not UTF-8 (byte 0xe9 at offset 21); pip and pinship read " \
        "requirement files as UTF-8"
    assert not (tmp_path / "noxfile.py").exists()


# --- 11: inputs confined to the project -----------------------------------------------------------


def _outside_file(tmp_path: Path) -> Path:
    outside = tmp_path / "elsewhere" / "extra.txt"
    outside.parent.mkdir()
    outside.write_text(f"# not the project's\nsomething-{SECRET}\n", encoding="utf-8")
    return outside


@pytest.mark.parametrize(
    ("line", "shown", "resolved"),
    [
        ("-r /etc/passwd", "-r /etc/passwd", "/etc/passwd"),
        ("-c /proc/self/environ", "-c /proc/self/environ", "/proc/{pid}/environ"),
        ("-r ../../elsewhere/extra.txt", "-r ../../elsewhere/extra.txt", "{outside}"),
        ("-c linked.txt", "-c linked.txt", "{outside}"),
        ("--requirement=/etc/passwd", "-r /etc/passwd", "/etc/passwd"),
    ],
)
def test_an_input_outside_the_project_is_refused_by_file_and_line(
    project: LockProject, tmp_path: Path, secret_env: None, line: str, shown: str, resolved: str
) -> None:
    outside = _outside_file(tmp_path)
    (project.requirements / "linked.txt").symlink_to(outside)
    project.write("prod.in", project.read("prod.in") + line + "\n")

    for command in ("lock", "verify", "upgrade"):
        done = project.run(command)
        lines = _error_lines(done)
        prefix = "verify: " if command == "verify" else "error: "
        first = lines[0].removeprefix(prefix)
        expected = (
            f"requirements/prod.in:4: {shown} resolves to {resolved}, outside the project ({project.root}); "
            "lock inputs are read only from inside it"
        ).format(outside=outside, pid="*")
        if "{pid}" in resolved:  # /proc/self resolves to the reading process's own pid
            head, tail = expected.split("*")
            assert first.startswith(head) and first.endswith(tail), first
        else:
            assert first == expected, command
        assert lines[1:] == [ALLOW_FIX], command
        assert SECRET not in done.stdout + done.stderr
        assert "root:x:0" not in done.stdout + done.stderr
    assert not project.path("prod.txt").read_text(encoding="utf-8").count(SECRET)


@pytest.mark.parametrize("line", ["-r/etc/passwd", "--pre -c /proc/self/environ", "--requirem /etc/passwd"])
def test_other_spellings_that_make_pip_read_a_file_are_refused(
    project: LockProject, secret_env: None, line: str
) -> None:
    project.write("prod.in", project.read("prod.in") + line + "\n")

    for command in ("lock", "verify"):
        done = project.run(command)
        lines = _error_lines(done)
        assert lines[0].endswith(
            f"requirements/prod.in:4: '{line}' makes pip read another file in a form pinship does not follow"
        ), command
        assert lines[1] == "  fix: write it as '-r FILE' or '-c FILE' alone on its line"
        assert SECRET not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("line", "value", "resolved"),
    [
        ("--find-links /etc", "/etc", "/etc"),
        ("--extra-index-url file:///etc/", "file:///etc/", "/etc"),
        ("-e ../elsewhere", "../elsewhere", "{outside}"),
        ("anything @ file:///etc/passwd", "file:///etc/passwd", "/etc/passwd"),
    ],
)
def test_a_local_path_outside_the_project_is_refused_like_a_reference(
    project: LockProject, tmp_path: Path, line: str, value: str, resolved: str
) -> None:
    outside = _outside_file(tmp_path).parent
    project.write("prod.in", project.read("prod.in") + line + "\n")

    for command in ("lock", "verify"):
        lines = _error_lines(project.run(command))
        assert lines[0].endswith(
            f"requirements/prod.in:4: '{value}' resolves to {resolved.format(outside=outside)}, outside the project "
            f"({project.root}); lock inputs are read only from inside it"
        ), command
        assert lines[1:] == [ALLOW_FIX]


def test_a_layer_file_that_links_outside_the_project_is_refused(project: LockProject, tmp_path: Path) -> None:
    outside = _outside_file(tmp_path)
    project.path("base.in").unlink()
    project.path("base.in").symlink_to(outside)

    lines = _error_lines(project.run("lock"))

    assert lines == [
        f"error: requirements/base.in: this layer file resolves to {outside}, outside the project "
        f"({project.root}); lock inputs are read only from inside it",
        ALLOW_FIX,
    ]


def test_a_folder_allowed_in_pyproject_may_hold_inputs_and_locks_name_it_relatively(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    names = Names()
    layers = publish(use_index, names)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "constraints.txt").write_text(f"{names.alpha}<2\n", encoding="utf-8")
    layers["base.in"] += "-c ../../shared/constraints.txt\n"
    pyproject = PYPROJECT.format(name="allowed") + 'allow-inputs-outside = ["../shared"]\n'
    project = LockProject.create(tmp_path / "project", layers, pyproject=pyproject)

    project.lock()

    assert project.run("verify").returncode == 0
    header = project.read("base.txt").split("# content:")[0]
    assert "../shared/constraints.txt" in header
    assert str(tmp_path) not in header

    # The same file is refused once the setting is gone.
    (project.root / "pyproject.toml").write_text(PYPROJECT.format(name="allowed"), encoding="utf-8")
    lines = _error_lines(project.run("verify"))
    assert lines[0] == (
        f"verify: requirements/base.in:3: -c ../../shared/constraints.txt resolves to {shared / 'constraints.txt'}, "
        f"outside the project ({project.root}); lock inputs are read only from inside it"
    )


def test_a_long_line_is_quoted_cut_short_and_nothing_after_it_is_shown(
    use_index: PackageIndex, project: LockProject, secret_env: None
) -> None:
    # pip-compile quotes an invalid requirement whole: a 10 MB line was printed three times over.
    project.write("prod.in", project.read("prod.in") + "broken ===" + "y" * 10_000_000 + f" {SECRET}\n")

    done = project.run("lock")

    lines = _error_lines(done)
    assert len(done.stdout + done.stderr) < 5_000
    assert any("y" * 150 + "…'" in line for line in lines), lines
    assert SECRET not in done.stdout + done.stderr


def test_a_long_line_in_a_lock_is_reported_cut_short_by_verify(project: LockProject) -> None:
    project.write("dev.txt", project.read("dev.txt") + "garbage " + "z" * 1_000_000 + f" {SECRET}\n")

    done = project.run("verify")

    lines = _error_lines(done)
    assert len(done.stderr) < 5_000
    assert any(line.endswith("…' is not pinned with ==; run: nox -s lock") for line in lines), lines
    assert SECRET not in done.stderr


# --- 12: an index that cannot be reached ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: pip's read times out."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        accepted: list[socket.socket] = []
        stop = threading.Event()

        def hold() -> None:
            server.settimeout(0.2)
            while not stop.is_set():
                try:
                    accepted.append(server.accept()[0])
                except TimeoutError:
                    continue

        thread = threading.Thread(target=hold, daemon=True)
        thread.start()
        yield server.getsockname()[1]
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()


def _unreachable_project(tmp_path: Path, compile_options: str = "") -> LockProject:
    names = Names()
    pyproject = PYPROJECT.format(name="offline") + compile_options
    return LockProject.create(tmp_path / "project", {
        "base.in": f"{names.alpha}\n",
        "prod.in": f"-r base.in\n{names.beta}\n",
    }, pyproject=pyproject)


INDEX_FIX = (
    "  fix: check that URL (--index-url/-i in requirements/*.in or [tool.deploy] compile-options, else "
    "PIP_INDEX_URL: a lock reads no pip.conf) and the network or proxy, then run the command again"
)


@pytest.mark.parametrize("retries", ["0", "1"])
def test_an_index_from_the_compile_options_that_refuses_connections_is_named_not_blamed_on_layers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retries: str
) -> None:
    # With retries pip warns about each failed connection; with none it says only "from versions: none".
    port = _free_port()
    url = f"http://127.0.0.1:{port}/simple"
    project = _unreachable_project(tmp_path, f'compile-options = ["--index-url", "{url}"]\n')
    monkeypatch.delenv("PIP_NO_INDEX", raising=False)
    monkeypatch.setenv("PIP_RETRIES", retries)

    for command in ("lock", "upgrade"):
        lines = _error_lines(project.run(command))
        assert lines == [f"error: the package index {url} could not be reached (connection refused)", INDEX_FIX]
    assert list(project.requirements.glob("*.txt")) == []


def test_an_index_from_pips_environment_that_does_not_answer_is_named_with_a_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, silent_port: int
) -> None:
    url = f"http://127.0.0.1:{silent_port}/simple"
    project = _unreachable_project(tmp_path)
    monkeypatch.delenv("PIP_NO_INDEX", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", url)
    monkeypatch.setenv("PIP_RETRIES", "1")
    monkeypatch.setenv("PIP_TIMEOUT", "1")

    lines = _error_lines(project.run("lock"))

    assert lines == [f"error: the package index {url} could not be reached (timed out)", INDEX_FIX]


def test_pips_dns_failure_names_the_index_without_its_password() -> None:
    # Offline tests cannot make a real DNS lookup fail; this is pip 26's own text for one.
    output = (
        "  Looking in indexes: https://ci:****@pypi.example.invalid/simple\n"
        "  WARNING: Retrying (Retry(total=0, connect=None, read=None, redirect=None, status=None)) after connection "
        "broken by 'NameResolutionError(\"HTTPSConnection(host='pypi.example.invalid', port=443): Failed to resolve "
        "'pypi.example.invalid' ([Errno -2] Name or service not known)\")': /simple/alpha/\n"
        "  ERROR: Could not find a version that satisfies the requirement alpha (from versions: none)\n"
    )

    assert network.unreachable(output) == [
        "the package index https://ci:****@pypi.example.invalid/simple could not be reached "
        "(DNS lookup failed: Name or service not known)"
    ]


def test_a_package_missing_from_a_reachable_index_is_still_reported_as_missing(
    use_index: PackageIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With retries off the index is probed: it answers, so the package is what is missing.
    names = Names()
    use_index.add(names.alpha, "1.0")
    project = LockProject.create(tmp_path / "project", {"base.in": f"{names.alpha}\n{names.nosuch}\n"})
    monkeypatch.setenv("PIP_RETRIES", "0")

    lines = _error_lines(project.run("lock"))

    assert lines[1] == (
        f"  package {names.nosuch}: the index has no project named {names.nosuch} (or none of its files fits this "
        "Python), "
        "asked by layer base (requirements/base.in:2)"
    )


def test_a_secret_that_pip_expands_into_a_requirement_line_is_blanked_out(
    use_index: PackageIndex, project: LockProject, secret_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pip would replace ${VAR} with the secret, then quote the line it could not satisfy: refused first.
    monkeypatch.setenv("PIP_RETRIES", "0")
    project.write("prod.in", project.read("prod.in") + "${PINSHIP_DEPLOY_TOKEN}==1.0\n")

    done = project.run("lock")

    lines = _error_lines(done)
    assert lines[0] == (
        "error: requirements/prod.in:4: '${PINSHIP_DEPLOY_TOKEN}==1.0': it names an environment variable, so what "
        "pip locks there depends on the machine"
    )
    assert SECRET not in done.stdout + done.stderr


def test_an_unreachable_default_index_is_named_from_pip_tools_own_listing() -> None:
    # PyPI itself gets no "Looking in indexes" line from pip; pip-tools -v lists it, and with retries
    # off only a connection attempt can tell an index that is down from a package that is missing.
    output = (
        "Using indexes:\n  https://pypi.org/simple\n\n"
        "  ERROR: Could not find a version that satisfies the requirement alpha (from versions: none)\n"
    )
    tried: list[tuple[str, int]] = []

    def probe(host: str, port: int) -> str | None:
        tried.append((host, port))
        return "connection refused"

    assert network.unreachable(output, probe) == [
        "the package index https://pypi.org/simple could not be reached (connection refused)"
    ]
    assert tried == [("pypi.org", 443)]


def test_a_lock_path_that_is_a_folder_is_named_without_a_trace(use_index: PackageIndex, project: LockProject) -> None:
    project.path("dev.txt").unlink()
    project.path("dev.txt").mkdir()

    lines = _error_lines(project.run("lock"))

    assert lines == [
        "error: requirements/dev.txt: is a folder, not a regular file; requirement and lock files are read only "
        "from regular files",
        "  fix: replace requirements/dev.txt with an ordinary file (or remove the line that names it)",
    ]


def test_nox_s_audit_with_a_broken_pyproject_names_it_without_a_trace(project: LockProject) -> None:
    (project.root / "noxfile.py").write_text(NOXFILE, encoding="utf-8")
    with (project.root / "pyproject.toml").open("a", encoding="utf-8") as handle:
        handle.write("no-such-setting = 1\n")

    done = _run([_tool("nox"), "-s", "audit"], project.root)

    assert done.returncode == 1
    assert "pyproject.toml [tool.deploy]: unknown key(s) no-such-setting" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("line", ["--find-links ${HOME}/wheels", "-c ${HOME}/constraints.txt"])
def test_a_path_that_pip_would_fill_in_from_the_environment_is_refused(project: LockProject, line: str) -> None:
    value = line.split()[1]

    project.write("prod.in", project.read("prod.in") + line + "\n")

    for command in ("lock", "verify"):
        lines = _error_lines(project.run(command))
        assert lines[0].endswith(
            f"requirements/prod.in:4: '{value}' names an environment variable, so what pip reads there depends on "
            "the machine"
        ), command


def test_an_escape_sequence_in_a_lock_is_shown_inert(project: LockProject, names: Names) -> None:
    # A hand edit (or a hostile commit) must not be able to clear the screen or forge a line in CI logs.
    text = project.read("dev.txt")
    project.write("dev.txt", text.replace(f"{names.alpha}==1.0 ", f"{names.alpha}==1.0\x1b[2J\x1b[1Averify:ok "))

    done = project.run("verify")

    lines = _error_lines(done)
    assert "\x1b" not in done.stderr
    assert any(f"{names.alpha}==1.0\\x1b[2J\\x1b[1Averify:ok but base.txt pins" in line for line in lines), lines


def test_files_replaced_on_the_index_under_several_pins_are_named_with_one_upgrade_for_them_all(
    project: LockProject,
) -> None:
    # pip lists each refused file; one package with two changed files is still one package to upgrade.
    graph = load_layers(project.root, project.requirements, ())
    refused = "".join(
        f"    {name}==1.0 from https://index.example/{name}-1.0-{tag}.whl:\n"
        f"        Expected sha256 {'0' * 64}\n             Got        {sha * 64}\n"
        for name, tag, sha in (("alpha", "py3", "a"), ("alpha", "cp312", "b"), ("zeta", "py3", "c"))
    )
    output = f"ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.\n{refused}"

    lines = conflicts.explain(output, graph).splitlines()

    assert lines[0] == "the index serves other files than were locked:"
    assert lines[1:4] == [
        f"  package {name} 1.0: the index serves a file with sha256:{sha * 64}, which is not among the hashes "
        "locked for it"
        for name, sha in (("alpha", "a"), ("alpha", "b"), ("zeta", "c"))
    ]
    assert lines[4:] == [
        "  fix: find out why the file changed on the index; if you trust it, take it with: "
        "nox -s upgrade -- alpha zeta"
    ]
