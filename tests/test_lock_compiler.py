"""Running pip-compile: the lock does not depend on this machine's pip settings, an old pip is refused
before solving, pip's warnings reach the user, and a long solve shows how far it got.

Real pip-compile on the local index, and a real venv with the pip a fresh Python 3.11 venv brings.
"""

from __future__ import annotations

import os
import signal
import site
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.errors import LockError
from deploy.lock import compiler, isolation, network
from deploy.lock.freshness import COMPILE_OPTIONS
from deploy.lock.watch import Progress, Ticker
from tests.lockproject import Names
from tests.support.pkgindex import PackageIndex, build_wheel

pytestmark = pytest.mark.index


def _command(python: str = sys.executable) -> list[str]:
    """The command solve.py builds, on the one input file x.in."""
    return [python, "-m", "piptools", "compile", *COMPILE_OPTIONS, "--annotation-style=line", "--no-header", "-v",
            "-o", "all.txt", "x.in"]


def _work(tmp_path: Path, text: str) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "x.in").write_text(text, encoding="utf-8")
    return work


def _env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PIP_NO_INDEX"}
    env.update(extra)
    return env


def _pins(work: Path) -> list[str]:
    return [line.split(" ")[0] for line in (work / "all.txt").read_text(encoding="utf-8").splitlines()
            if "==" in line and not line.startswith(" ")]


# --- 1: this machine's pip settings ----------------------------------------------------------------


def test_find_links_extra_index_and_constraint_of_this_machine_do_not_change_the_lock(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    names = Names()
    use_index.add(names.alpha, "1.0")
    folder = tmp_path / "wheels"
    build_wheel(folder, names.alpha, "3.0")
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(f"{names.alpha}<1\n", encoding="utf-8")
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text(f"[global]\nfind-links = {folder}\nconstraint = {constraints}\n", encoding="utf-8")
    work = _work(tmp_path, f"{names.alpha}\n")
    lines: list[str] = []

    with PackageIndex(tmp_path / "mirror") as mirror:
        mirror.add(names.alpha, "2.0")
        env = _env(PIP_FIND_LINKS=str(folder), PIP_EXTRA_INDEX_URL=mirror.url, PIP_CONSTRAINT=str(constraints),
                   PIP_PRE="1", PIP_CONFIG_FILE=str(pip_conf))
        compiled = compiler.run(_command(), work, env, lines.append)

    assert compiled.returncode == 0, compiled.output
    assert _pins(work) == [f"{names.alpha}==1.0"]
    assert mirror.requests == []
    note = next(line for line in lines if line.startswith("this machine's pip settings are not used"))
    for left_out in ("PIP_CONSTRAINT", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_PRE",
                     f"find-links in {pip_conf} [global]", f"constraint in {pip_conf} [global]"):
        assert left_out in note
    assert f"index: {use_index.url}" in lines


def test_transport_settings_from_a_pip_conf_still_apply_and_the_environment_wins(tmp_path: Path) -> None:
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text("[global]\ntimeout = 7\ncert = /etc/company-ca.pem\nindex-url = http://mirror/simple\n"
                        "[install]\nretries = 2\ntrusted-host = a.example\n  b.example\n", encoding="utf-8")
    env = {"PIP_CONFIG_FILE": str(pip_conf), "XDG_CONFIG_DIRS": str(tmp_path / "none"), "HOME": str(tmp_path),
           "PIP_RETRIES": "9", "PIP_INDEX_URL": "http://127.0.0.1:1/simple", "PIP_NO_BINARY": ":all:", "PATH": "/bin"}

    pip_env = isolation.pip_environment(env)

    assert pip_env.env["PIP_CONFIG_FILE"] == os.devnull
    assert pip_env.env["PIP_TIMEOUT"] == "7"
    assert pip_env.env["PIP_CERT"] == "/etc/company-ca.pem"
    assert pip_env.env["PIP_RETRIES"] == "9"
    assert pip_env.env["PIP_TRUSTED_HOST"] == "a.example b.example"
    assert pip_env.env["PIP_INDEX_URL"] == "http://127.0.0.1:1/simple"
    assert "PIP_NO_BINARY" not in pip_env.env
    assert pip_env.env["PATH"] == "/bin"
    assert pip_env.left_out == ["PIP_NO_BINARY", f"index-url in {pip_conf} [global]"]


def test_a_proxy_from_a_pip_conf_counts_as_a_proxy_so_the_index_is_not_probed_directly(tmp_path: Path) -> None:
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text("[global]\nproxy = http://proxy.example:3128\n", encoding="utf-8")
    base = {"XDG_CONFIG_DIRS": str(tmp_path / "none"), "HOME": str(tmp_path)}

    assert network.proxied(isolation.pip_environment({**base, "PIP_CONFIG_FILE": str(pip_conf)}).env)
    assert not network.proxied(isolation.pip_environment(base).env)


# --- 2: a pip new enough to resolve correctly ------------------------------------------------------


@pytest.fixture(scope="module")
def old_pip(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(python, pip version) of a venv of this Python with the pip its ensurepip bundles (23.2.1 for
    3.11.7), as a fresh venv gets, made offline; pip-tools comes from this venv's packages, after it."""
    import ensurepip

    bundled = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    if not bundled:
        pytest.skip("this Python bundles no pip wheel")
    version = bundled[0].name.split("-")[1]
    if tuple(int(part) for part in version.split(".")[:2]) >= compiler.MIN_PIP:
        pytest.skip(f"this Python's ensurepip bundles pip {version}, which is not old")
    folder = tmp_path_factory.mktemp("oldpip") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, capture_output=True)
    python = str(folder / "bin" / "python")
    own = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"], check=True,
                         capture_output=True, text=True).stdout.strip()
    # pip runs from its wheel (a zip on sys.path), as `python pip.whl/pip` does.
    Path(own, "zz_pinship.pth").write_text(f"{bundled[0]}\n{site.getsitepackages()[0]}\n", encoding="utf-8")
    return python, version


def test_a_pip_too_old_to_resolve_extras_is_refused_before_solving_naming_it_and_the_fix(
    use_index: PackageIndex, tmp_path: Path, old_pip: tuple[str, str]
) -> None:
    old_pip_python, version = old_pip
    names = Names()
    use_index.add(names.alpha, "1.0")
    work = _work(tmp_path, f"{names.alpha}\n")
    use_index.requests.clear()

    with pytest.raises(LockError) as raised:
        compiler.run(_command(old_pip_python), work, _env(), print)

    message = str(raised.value)
    assert message.splitlines()[0].startswith(f"pip {version} ({old_pip_python}) is too old to lock with: pip 24.1 or "
                                              "newer is needed")
    assert raised.value.fix == f"{old_pip_python} -m pip install 'pip>=24.1', then run the lock again"
    assert use_index.requests == []
    assert not (work / "all.txt").exists()


def _wheel_with_unnormalised_extra(folder: Path, name: str, needs: str) -> None:
    """A wheel whose metadata spells its extra `html_clean`, as setuptools writes lxml's."""
    dist_info = f"{name.replace('-', '_')}-5.3.0.dist-info"
    metadata = (f"Metadata-Version: 2.1\nName: {name}\nVersion: 5.3.0\nProvides-Extra: html_clean\n"
                f'Requires-Dist: {needs}; extra == "html_clean"\n')
    files = {f"{dist_info}/METADATA": metadata, f"{dist_info}/WHEEL":
             "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    with zipfile.ZipFile(folder / f"{name.replace('-', '_')}-5.3.0-py3-none-any.whl", "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(f"{dist_info}/RECORD", "".join(f"{path},,\n" for path in [*files, f"{dist_info}/RECORD"]))


def test_an_extra_spelled_with_an_underscore_is_locked_with_the_required_pip_and_lost_with_the_old_one(
    use_index: PackageIndex, tmp_path: Path, old_pip: tuple[str, str]
) -> None:
    old_pip_python, _ = old_pip
    names = Names()
    use_index.add(names.cleaner, "1.0")
    _wheel_with_unnormalised_extra(use_index.root, names.lxml, names.cleaner)
    work = _work(tmp_path, f"{names.lxml}[html_clean]\n")

    compiled = compiler.run(_command(), work, _env(), print)

    assert compiled.returncode == 0, compiled.output
    assert _pins(work) == [f"{names.cleaner}==1.0", f"{names.lxml}==5.3.0"]
    # Why the old pip is refused: the same input locks without the extra's package, exit 0.
    (work / "all.txt").unlink()
    old = subprocess.run(_command(old_pip_python), cwd=work, env=isolation.pip_environment(_env()).env,
                         capture_output=True, text=True)
    assert old.returncode == 0, old.stderr
    assert _pins(work) == [f"{names.lxml}==5.3.0"]
    assert f"{names.lxml} 5.3.0 does not provide the extra 'html-clean'" in old.stderr


# --- 3: pip's warnings -----------------------------------------------------------------------------


def test_pips_warning_that_an_extra_does_not_exist_reaches_the_user_when_the_lock_succeeds(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    names = Names()
    use_index.add(names.alpha, "1.0")
    work = _work(tmp_path, f"{names.alpha}[html_clean]\n")
    lines: list[str] = []

    compiled = compiler.run(_command(), work, _env(), lines.append)

    assert compiled.returncode == 0, compiled.output
    assert f"pip: WARNING: {names.alpha} 1.0 does not provide the extra 'html-clean'" in lines
    assert compiled.warnings == [f"WARNING: {names.alpha} 1.0 does not provide the extra 'html-clean'"]


def test_an_existing_pin_pip_compile_gives_up_to_find_a_solution_is_said(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    names = Names()
    use_index.add(names.alpha, "1.0")
    use_index.add(names.alpha, "1.1")
    use_index.add(names.beta, "1.0", [names.alpha])
    use_index.add(names.beta, "1.1", [f"{names.alpha}>=1.1"])
    work = _work(tmp_path, f"{names.beta}>=1.1\n")
    (work / "all.txt").write_text(f"{names.alpha}==1.0\n{names.beta}==1.0\n", encoding="utf-8")
    lines: list[str] = []

    compiled = compiler.run(_command(), work, _env(), lines.append)

    assert compiled.returncode == 0, compiled.output
    assert _pins(work) == [f"{names.alpha}==1.1", f"{names.beta}==1.1"]
    assert f"pip: Discarding {names.alpha}==1.0 (from -r all.txt (line 1)) to proceed the resolution" in lines


FAKE_COMPILE = r"""
import sys, time
print("Using indexes:\n  http://user:secret@127.0.0.1:9/simple\n", file=sys.stderr, flush=True)
for n in range(3):
    print(f"  Collecting p{n} (from -r x.in (line 1))", flush=True)
    print(f"    Downloading p{n}-1.0.tar.gz (10 kB)", flush=True)
print("  WARNING: You are using pip version 23.0; however, version 26.3 is available.", file=sys.stderr)
print("[notice] A new release of pip is available: 23.0 -> 26.3", file=sys.stderr)
print("  WARNING: p1 1.0 does not provide the extra '\x1b[31mred'", file=sys.stderr)
print("  WARNING: p1 1.0 does not provide the extra '\x1b[31mred'", file=sys.stderr)
sys.stderr.write("e" * 2_000_000 + "\n")
sys.stdout.write("o" * 2_000_000 + "\n")
sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize("returncode", [0, 1])
def test_warnings_are_shown_once_and_inert_while_pips_version_check_stays_hidden_and_no_pipe_fills_up(
    tmp_path: Path, returncode: int
) -> None:
    work = _work(tmp_path, "")
    (work / "fake.py").write_text(FAKE_COMPILE, encoding="utf-8")
    lines: list[str] = []

    compiled = compiler.run([sys.executable, "fake.py", str(returncode)], work, _env(), lines.append,
                            places=lambda text: text.replace("p1", "p-one"))

    assert compiled.returncode == returncode
    assert [line for line in lines if line.startswith(("pip:", "index:"))] == [
        "index: http://user:****@127.0.0.1:9/simple",
        "pip: WARNING: p-one 1.0 does not provide the extra '\\x1b[31mred'",
    ]
    assert "e" * 2_000_000 in compiled.output and "o" * 2_000_000 in compiled.output
    assert "You are using pip version" in compiled.output


def test_several_runs_of_one_lock_say_the_settings_index_and_warnings_once_and_check_pip_once(
    tmp_path: Path,
) -> None:
    work = _work(tmp_path, "")
    (work / "fake.py").write_text(FAKE_COMPILE, encoding="utf-8")
    calls = tmp_path / "calls"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {sys.executable} "$@"\n', encoding="utf-8")
    python.chmod(0o755)
    lines: list[str] = []
    pip_compile = compiler.Compiler(_env(PIP_FIND_LINKS=str(tmp_path)), lines.append)

    for _ in range(3):
        assert pip_compile.run([str(python), "fake.py", "0"], work).returncode == 0

    assert [line.split(":")[0] for line in lines] == ["this machine's pip settings are not used for a lock (only "
                                                      "the index and how to reach it are)", "index", "pip"]
    # pip's version is asked once, while the first pip-compile starts.
    assert sorted(calls.read_text(encoding="utf-8").splitlines()) == [
        "-c import pip; print(pip.__version__)", "fake.py 0", "fake.py 0", "fake.py 0"]


# --- 4: progress -----------------------------------------------------------------------------------


def test_a_solve_not_on_a_terminal_prints_plain_progress_lines_counting_packages(
    use_index: PackageIndex, tmp_path: Path
) -> None:
    names = Names()
    use_index.add(names.alpha, "1.0")
    use_index.add(names.delta, "1.0", sdist_only=True)
    use_index.add(names.beta, "1.0", [names.alpha, names.delta])
    work = _work(tmp_path, f"{names.beta}\n")
    lines: list[str] = []

    compiled = compiler.run(_command(), work, _env(), lines.append, every=0.0)

    assert compiled.returncode == 0, compiled.output
    progress = [line for line in lines if line.startswith("pip-compile: ")]
    assert any(line.startswith(f"pip-compile: 1 package so far, collecting {names.beta} (") for line in progress)
    assert any(f"3 packages so far, fetching {names.delta.replace('-', '_')}-1.0.tar.gz" in line
               for line in progress), progress
    assert any("3 packages so far, hashing " in line for line in progress)
    assert not any("\r" in line or "\x1b" in line for line in lines)


def test_a_stalled_solve_off_a_terminal_still_prints_a_line_now_and_then() -> None:
    lines: list[str] = []
    ticker = Ticker(lines.append, None, every=0.05, quiet=0.3)
    progress = Progress()
    progress.read("  Collecting alpha (from -r x.in (line 1))")
    ticker.tick(progress, changed=True)
    time.sleep(0.1)
    ticker.tick(progress, changed=True)
    started = time.monotonic()
    while time.monotonic() - started < 1.0:  # nothing new from pip for a second
        ticker.tick(progress, changed=False)
        time.sleep(0.02)

    assert lines[0].startswith("pip-compile: 1 package so far, collecting alpha (")
    assert 3 <= len(lines) <= 6, lines
    assert all(line.startswith("pip-compile: 1 package so far, collecting alpha (") for line in lines)


class FakeTerminal:
    def __init__(self) -> None:
        self.written: list[str] = []

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.written.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_on_a_terminal_progress_is_one_line_redrawn_in_place_and_cleared_at_the_end(tmp_path: Path) -> None:
    work = _work(tmp_path, "")
    (work / "fake.py").write_text(FAKE_COMPILE.replace("flush=True)", "flush=True); time.sleep(0.15)"),
                                  encoding="utf-8")
    terminal = FakeTerminal()
    lines: list[str] = []

    compiler.run([sys.executable, "fake.py", "0"], work, _env(), lines.append, live=terminal)  # type: ignore[arg-type]

    drawn = [text for text in terminal.written if text != "\r\x1b[2K"]
    assert drawn, terminal.written
    assert all(text.startswith("\r\x1b[2Kpip-compile: ") and "\n" not in text for text in drawn)
    assert any("3 packages so far, fetching p2-1.0.tar.gz" in text for text in drawn)
    assert terminal.written[-1] == "\r\x1b[2K"
    assert not any(line.startswith("pip-compile: ") for line in lines)


# --- Ctrl-C ----------------------------------------------------------------------------------------


@pytest.fixture
def silent_index() -> Iterator[str]:
    """An index that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield f"http://127.0.0.1:{server.getsockname()[1]}/simple"
    server.close()


def _running_in(folder: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            alive = entry.name.isdigit() and (entry / "stat").read_text().split(") ")[1][0] != "Z"
            if alive and Path(os.readlink(entry / "cwd")) == folder:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_ctrl_c_while_the_index_stalls_ends_pip_compile_and_everything_it_started_at_once(
    tmp_path: Path, silent_index: str
) -> None:
    work = _work(tmp_path, "anything\n")
    env = _env(PIP_INDEX_URL=silent_index, PIP_TIMEOUT="60")
    sent: list[float] = []

    def ctrl_c() -> None:
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(3.0, ctrl_c)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            compiler.run(_command(), work, env, lambda line: None)
        stopped = time.monotonic()
    finally:
        timer.cancel()

    assert stopped - sent[0] < 5
    assert _running_in(work.resolve()) == []


# --- 5: the header ---------------------------------------------------------------------------------


def test_the_header_line_names_the_python_and_platform_and_what_markers_left_out() -> None:
    import platform

    line = compiler.solve_environment(['pywin32; sys_platform == "win32"'])

    assert line.startswith(f"solved for {platform.python_implementation()} {sys.version_info[0]}."
                           f"{sys.version_info[1]} on {sys.platform} {platform.machine()}")
    assert line.endswith('left out, and not in this lock: pywin32; sys_platform == "win32")')
    assert "(" not in compiler.solve_environment()


def test_a_lock_of_several_rounds_names_the_left_out_settings_and_the_index_once(
    use_index: PackageIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deploy.lock import onerun
    from deploy.lock.solve import lock
    from tests.lockproject import LockProject, publish

    names = Names()
    project = LockProject.create(tmp_path / "p", publish(use_index, names))
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    # A first lock of this project takes one run (lock/onerun.py): the rounds are what this is about.
    monkeypatch.setattr(onerun, "ENABLED", False)
    said: list[str] = []
    lock(project.config(), log=said.append)
    rounds = [line for line in said if line.startswith("resolving ")]
    assert len(rounds) > 1, said  # a lock from scratch runs once per level of the graph
    assert len([line for line in said if line.startswith("this machine's pip settings")]) == 1, said
    assert len([line for line in said if line.startswith("index: ")]) == 1, said
