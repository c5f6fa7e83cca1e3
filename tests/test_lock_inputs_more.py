"""Lock inputs read as pip reads them, and a lock that fails (or is stopped) saying why.

Every line of every input reaches the lock or is an error naming file:line; only regular files are
read; an index that is down is named as such even when existing pins make pip report a conflict;
Ctrl-C stops a lock at once and leaves the locks as they were. Real pip-compile on the local index.
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.lock.lockfile import parse, render
from deploy.scaffold import TASKS
from tests.lockproject import LockProject, Names, locked_copy, pins
from tests.support.pkgindex import PackageIndex

pytestmark = pytest.mark.index


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


def _error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    """What the user saw, checked to be a clean failure: exit 1, no trace."""
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    assert "pinship-lock-" not in output, output
    return done.stderr.splitlines()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- 1: a byte-order mark is read as pip reads it; no line is dropped ---------------------------


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_a_layer_with_a_byte_order_mark_keeps_every_package_in_its_lock(
    use_index: PackageIndex, project: LockProject, names: Names, encoding: str
) -> None:
    project.path("base.in").write_bytes(f"{names.alpha}\n{names.linter}\n".encode(encoding))

    project.lock()

    assert set(pins(project.read("base.txt"))) == {names.alpha, names.linter}
    assert names.linter in pins(project.read("prod.txt"))
    assert project.run("verify").returncode == 0


def test_a_byte_order_mark_before_a_reference_keeps_the_layer_graph(
    use_index: PackageIndex, project: LockProject, names: Names
) -> None:
    project.path("prod.in").write_bytes(f"\ufeff-r base.in\n{names.beta}\n".encode())

    project.lock()

    assert set(pins(project.read("prod.txt"))) == {names.alpha, names.beta, names.delta}


def test_verify_fails_a_lock_that_lost_a_package_its_layer_asks_for(project: LockProject, names: Names) -> None:
    # As a lock written while a byte-order mark hid base.in's first line: its digests still match.
    lock = parse(project.path("base.txt"))
    kept = [pin for name, pin in lock.pins.items() if name != names.alpha]
    project.write("base.txt", render(["written without alpha"], lock.inputs, kept))

    done = project.run("verify")

    assert done.returncode == 1
    assert (
        f"verify: requirements/base.txt: {names.alpha} is not pinned, though requirements/base.in:2 asks for it; "
        "run: nox -s lock"
    ) in done.stderr.splitlines(), done.stderr


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{alpha} ===== 1", "it is not a requirement (Expected comma"),
        ("{alpha}\x00", "it is not a requirement (Expected semicolon"),
        (".", "it is not a requirement (Expected package name"),
        ("./vendored/pkg", "it is not a requirement (Expected package name"),
        ("{alpha}\ufeff", "it is not a requirement"),
        ("-e .", "cannot lock an editable requirement; the project itself is installed by onboarding"),
        ("-e ./sub", "hash-checking mode cannot lock an editable requirement (it has no file to hash)"),
        ("${{PINSHIP_VERSION}}=={alpha}", "it names an environment variable"),
        ("--no-such-option", "'--no-such-option' is not an option pip takes in a requirements file"),
        ("{alpha} --bogus", "'--bogus' is not an option pip takes in a requirement line"),
        ("--index-url", "'--index-url' needs a value"),
        ("--pre=yes", "'--pre' takes no value"),
        ("{alpha} --hash=md5:abc", "pip takes only sha256, sha384 and sha512 hashes"),
    ],
)
def test_a_line_pip_cannot_lock_is_named_by_its_real_file_and_line(
    project: LockProject, names: Names, line: str, problem: str
) -> None:
    before = project.snapshot()
    text = line.format(alpha=names.alpha)
    project.write("test.in", project.read("test.in") + text + "\n")

    for command in ("lock", "verify"):
        lines = _error_lines(project.run(command))
        assert lines[0].startswith(("error: requirements/test.in:3: ", "verify: requirements/test.in:3: ")), lines
        assert problem in lines[0], lines
    assert project.snapshot() == before


def test_a_requirement_its_marker_excludes_here_is_reported_not_dropped_silently(
    use_index: PackageIndex, project: LockProject, names: Names
) -> None:
    use_index.add(names.winonly, "1.0")
    project.write("prod.in", project.read("prod.in") + f"{names.winonly}; sys_platform == 'win32'\n")

    done = project.lock()

    assert (
        f"requirements/prod.in:4: {names.winonly} is not locked: its marker (sys_platform == \"win32\") excludes "
        "this machine, and a lock holds what this machine resolves"
    ) in done.stdout.splitlines()
    # The lock's header says for which Python and platform it was solved, and what that left out.
    header = [line for line in project.read("prod.txt").splitlines() if line.startswith("# solved for ")]
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert header == [f"# solved for CPython {python} on {sys.platform} {platform.machine()} (requirements whose "
                      f"markers exclude it are left out, and not in this lock: {names.winonly}; "
                      "sys_platform == 'win32')"]


def test_a_direct_url_requirement_that_no_lock_can_pin_is_an_error_not_dropped(
    use_index: PackageIndex, project: LockProject, names: Names
) -> None:
    wheel = use_index.add(names.urlonly, "1.0")
    local = project.root / "wheels" / wheel.name
    local.parent.mkdir()
    local.write_bytes(wheel.read_bytes())
    before = project.snapshot()
    project.write("prod.in", project.read("prod.in") + f"{names.urlonly} @ {local.as_uri()}\n")

    lines = _error_lines(project.run("lock"))

    assert lines[0] == (
        f"error: requirements/prod.in:4: '{names.urlonly} @ {local.as_uri()}' was asked for, but pip-compile locked "
        f"no version of {names.urlonly}"
    ), lines
    assert project.snapshot() == before


def test_a_requirement_file_given_as_a_file_url_is_confined_like_a_path(project: LockProject) -> None:
    project.write("base.in", project.read("base.in") + "-r file:///etc/passwd\n")

    lines = _error_lines(project.run("lock"))

    assert lines[0].startswith(
        "error: requirements/base.in:3: -r file:///etc/passwd resolves to /etc/passwd, outside the project"
    ), lines
    assert "root:" not in "\n".join(lines)


def test_a_requirement_file_on_a_web_server_is_refused(project: LockProject) -> None:
    project.write("base.in", project.read("base.in") + "-c https://example.com/constraints.txt\n")

    lines = _error_lines(project.run("verify"))

    assert lines[0].startswith(
        "verify: requirements/base.in:3: -c https://example.com/constraints.txt: pip would download that file"
    ), lines


# --- 4: only regular files are read -------------------------------------------------------------


@pytest.mark.parametrize(
    ("fifo", "reference", "shown"),
    [
        ("extra.in", None, "requirements/extra.in: is a FIFO"),
        ("../shared.in", "-r ../shared.in", "requirements/base.in:3: -r shared.in: not a regular file"),
        ("../constraints.txt", "-c ../constraints.txt", "base.in:3: -c constraints.txt: not a regular file"),
        ("prod.txt", None, "requirements/prod.txt: is a FIFO"),
    ],
)
def test_a_fifo_among_the_inputs_or_locks_is_refused_at_once(
    project: LockProject, fifo: str, reference: str | None, shown: str
) -> None:
    path = project.path(fifo)
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    if reference:
        project.write("base.in", project.read("base.in") + reference + "\n")

    for command in ("verify", "lock"):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "deploy", "--root", str(project.root), command],
            capture_output=True, text=True, check=False, timeout=60,
        )
        lines = _error_lines(done)
        assert time.monotonic() - started < 30
        assert shown in lines[0], lines
    assert path.is_fifo()


def test_the_deploy_gate_refuses_a_fifo_layer_at_once(project: LockProject) -> None:
    (project.root / "tasks.py").write_text(TASKS, encoding="utf-8")
    os.mkfifo(project.path("extra.in"))

    gate = subprocess.run([str(Path(sys.executable).parent / "invoke"), "deploy", "--env", "local", "--yes"],
                          cwd=project.root, capture_output=True, text=True, check=False, timeout=60)

    assert gate.returncode != 0
    assert "requirements/extra.in: is a FIFO, not a regular file" in gate.stdout + gate.stderr
    assert "Traceback" not in gate.stdout + gate.stderr
    assert not (project.root / ".deploy" / "local" / "current").exists()


# --- 5: an index that cannot serve the locked pins ----------------------------------------------


@pytest.mark.parametrize("retries", ["0", "1"])
def test_an_index_that_is_down_is_named_when_existing_pins_are_constraints(
    project: LockProject, names: Names, monkeypatch: pytest.MonkeyPatch, retries: str
) -> None:
    url = f"http://127.0.0.1:{_free_port()}/simple"
    monkeypatch.delenv("PIP_NO_INDEX", raising=False)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", url)
    monkeypatch.setenv("PIP_RETRIES", retries)
    before = project.snapshot()
    project.write("test.in", project.read("test.in") + f"{names.linter}\n")

    lines = _error_lines(project.run("lock"))

    assert lines[0] == f"error: the package index {url} could not be reached (connection refused)", lines
    assert project.snapshot() == before


def test_an_index_that_hangs_is_named_when_existing_pins_are_constraints(
    project: LockProject, names: Names, silent_index: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_TIMEOUT", "1")
    monkeypatch.setenv("PIP_RETRIES", "1")
    before = project.snapshot()
    project.write("test.in", project.read("test.in") + f"{names.linter}\n")

    lines = _error_lines(project.run("lock"))

    url = os.environ["PIP_INDEX_URL"]
    assert lines[0] == f"error: the package index {url} could not be reached (timed out)", lines
    assert project.snapshot() == before


def test_a_locked_file_the_index_will_not_serve_is_named_not_called_a_conflict(
    use_index: PackageIndex, project: LockProject, names: Names
) -> None:
    # alpha exists only as a wheel: with --no-binary :all: pip may not use the locked version.
    project.write("base.in", f"--no-binary :all:\n{names.alpha}\n")

    lines = _error_lines(project.run("lock"))

    assert "cannot be locked together" not in "\n".join(lines), lines
    assert lines[0] == "error: the index offers no file pip may use for the locked versions:", lines
    assert lines[1].startswith(f"  package {names.alpha}: the locked {names.alpha}==1.0 (requirements/base.txt:"), lines
    assert lines[2].endswith(f"run: nox -s upgrade -- {names.alpha}"), lines


def test_a_locked_version_gone_from_the_index_is_named_not_called_a_conflict(
    use_index: PackageIndex, project: LockProject, names: Names
) -> None:
    use_index.add(names.gone, "1.0")
    use_index.add(names.needer, "1.0", [f"{names.gone}>=1"])
    project.write("prod.in", project.read("prod.in") + f"{names.needer}\n")
    project.lock()
    use_index.remove(names.gone, "1.0")
    use_index.add(names.gone, "0.9")
    project.write("test.in", project.read("test.in") + f"{names.linter}\n")

    lines = _error_lines(project.run("lock"))

    assert lines[:2] == [
        "error: the index offers no file pip may use for the locked versions:",
        f"  package {names.gone}: the locked {names.gone}==1.0 (requirements/prod.txt:{_line_of(project, names.gone)}) "
        "cannot be obtained: the index offers no file of it that pip may use",
    ], lines


def _line_of(project: LockProject, name: str) -> int:
    return next(n for n, raw in enumerate(project.read("prod.txt").splitlines(), 1) if raw.startswith(name + "=="))


# --- 6: Ctrl-C during a lock ---------------------------------------------------------------------


@pytest.fixture
def silent_index(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """An index that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    monkeypatch.delenv("PIP_NO_INDEX", raising=False)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.getsockname()[1]}/simple")
    monkeypatch.setenv("PIP_TIMEOUT", "60")
    yield server
    server.close()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# "terminal": Ctrl-C goes to the whole foreground process group. "background": started by a
# script with `&`, which makes SIGINT ignored, then `kill -INT` sent to the command alone.
@pytest.mark.parametrize("sent", ["terminal", "background"])
@pytest.mark.parametrize("how", ["python", "nox"])
def test_ctrl_c_while_the_index_stalls_stops_the_lock_at_once_and_keeps_the_locks(
    project: LockProject, names: Names, silent_index: socket.socket, how: str, sent: str
) -> None:
    before = project.snapshot()
    project.write("test.in", project.read("test.in") + f"{names.linter}\n")
    if how == "nox":
        (project.root / "noxfile.py").write_text("from deploy.sessions import lock\n", encoding="utf-8")
        command = [str(Path(sys.executable).parent / "nox"), "--no-venv", "-s", "lock"]
    else:
        command = [sys.executable, "-m", "deploy", "lock"]
    proc = subprocess.Popen(command, cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_ignore_sigint if sent == "background" else None)
    time.sleep(4)
    started = time.monotonic()
    (os.killpg if sent == "terminal" else os.kill)(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)

    assert time.monotonic() - started < 10
    assert proc.returncode == 130, out + err
    assert "interrupted" in out + err
    assert "Traceback" not in out + err
    assert "cannot be locked" not in out + err
    assert project.snapshot() == before
