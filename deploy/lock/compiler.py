"""Running pip-compile: with a pip that resolves correctly, without this machine's pip settings,
with a live status line and pip's warnings passed on, and stopped at once by Ctrl-C.

solve.py builds the command and the work folder; this runs it:

    pip_compile = compiler.Compiler(env, log)         # once per lock
    compiled = pip_compile.run(command, work, places=...)   # once per pip-compile run
    if compiled.returncode != 0: explain compiled.output
    header line: compiler.solve_environment(left_out)

(`compiler.run(command, work, env, log, places=...)` is the same for a lock of one run.)

Why a process and not pip-tools' Python API: pip-tools and pip have no stable API, and a process is
what the user would run by hand; its output is the only interface, read by watch.py.
"""

from __future__ import annotations

import codecs
import os
import platform
import re
import selectors
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from deploy.errors import LockError
from deploy.lock import isolation
from deploy.lock.network import redact
from deploy.lock.watch import Progress, Ticker
from deploy.render import inert

Log = Callable[[str], None]

# pip before 24.1 compares an extra asked for (normalised, PEP 685: `html-clean`) with the extras a
# setuptools-built package declares as written (`html_clean`) and finds none: `lxml[html_clean]`
# then locks without lxml-html-clean, with only a warning (pip 24.1 NEWS, #12688; 23.3's #11649
# handled only packages whose metadata is already normalised). The project declares pip>=24.1 too.
MIN_PIP = (24, 1)
_VERSION = re.compile(r"(\d+)(?:\.(\d+))?")
# (python, its environment) whose pip check_pip passed in this process: a lock's rounds ask once.
_PIP_CHECKED: set[tuple[str, tuple[tuple[str, str], ...]]] = set()


@dataclass
class Compiled:
    returncode: int
    output: str  # stderr then stdout, whole: what a failure is explained from
    warnings: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)


def run(
    command: Sequence[str],
    work: Path,
    env: Mapping[str, str],
    log: Log = print,
    *,
    places: Callable[[str], str] | None = None,
    live: TextIO | None = None,
    every: float = 5.0,
    own_env: Mapping[str, str] | None = None,
    heard: Callable[[str], None] | None = None,
    started: Callable[[], None] | None = None,
) -> Compiled:
    """One pip-compile run on its own: `Compiler(env, log, live=, every=).run(command, work, places=)`."""
    return Compiler(env, log, live=live, every=every).run(command, work, places=places, own_env=own_env, heard=heard,
                                                          started=started)


class Compiler:
    """pip-compile runs for one lock, however many: what this machine's pip settings leave out, the
    index, and each warning are said once; each Python's pip is checked once per process.

    `env` is the caller's environment: pip-compile gets it less the pip settings that could change
    the lock (isolation.py). The status line goes to `live` when it is a terminal (default: stderr),
    else through `log` every `every` seconds.
    """

    def __init__(
        self, env: Mapping[str, str], log: Log = print, *, live: TextIO | None = None, every: float = 5.0
    ) -> None:
        self.pip_env = isolation.pip_environment(env)
        self.log = log
        self.live = live
        self.every = every
        self.said: set[str] = set()

    def say(self, line: str) -> None:
        if line not in self.said:
            self.said.add(line)
            self.log(line)

    def run(self, command: Sequence[str], work: Path, *, places: Callable[[str], str] | None = None,
            own_env: Mapping[str, str] | None = None, heard: Callable[[str], None] | None = None,
            started: Callable[[], None] | None = None) -> Compiled:
        """Run pip-compile (`command[0]` is the Python it runs in) in `work`; return what it said.

        `places` rewrites a warning before it is shown (the temporary layer copies named by the
        user's files). `own_env`: a resolver that is not pip (uv) runs in the environment
        resolver.command made for it, with neither pip's isolation nor pip's version check.
        `heard` is given each line of output as it comes (uv's -v log names each package it picks).
        `started` is called once the resolver runs: what only its outcome needs is made meanwhile.
        """
        checking: Callable[[], None] | None = None
        if own_env is None:
            if (note := self.pip_env.note()) is not None:
                self.say(inert(note, 2000))
            checked = (command[0], tuple(sorted(self.pip_env.env.items())))
            if checked not in _PIP_CHECKED:
                checking = start_pip_check(command[0], self.pip_env.env)
        run_env = dict(own_env) if own_env is not None else self.pip_env.env
        proc = subprocess.Popen(
            list(command), cwd=work, env=run_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,
        )
        ticker = Ticker(self.log, sys.stderr if self.live is None else self.live, self.every)
        progress = Progress()
        try:
            if started is not None:
                started()
            if checking is not None:
                checking()  # pip-compile starts meanwhile; a pip too old ends it, its output unread
                _PIP_CHECKED.add(checked)
            out, err = _follow(proc, progress, ticker, self.say, heard)
            proc.wait()
        except BaseException:
            # A terminal's Ctrl-C reaches only us (pip-compile is in a session of its own), so pip
            # cannot turn it into a failed download and a made-up conflict 60 s later: end the group.
            ticker.clear()
            end_group(proc)
            raise
        ticker.clear()
        rewrite = places or (lambda text: text)
        for warning in progress.warnings:
            self.say("pip: " + inert(rewrite(warning)))
        if progress.retries and proc.returncode == 0:
            self.log(f"pip: {progress.retries} request(s) to the index had to be retried (network errors); "
                     "the lock is complete")
        return Compiled(proc.returncode, err + out, list(progress.warnings), list(progress.indexes))


def _follow(proc: subprocess.Popen[bytes], progress: Progress, ticker: Ticker, say: Log,
            heard: Callable[[str], None] | None = None) -> tuple[str, str]:
    """Read both pipes until both end (neither can fill up and block pip-compile), line by line."""
    assert proc.stdout is not None and proc.stderr is not None
    texts: dict[int, list[str]] = {proc.stdout.fileno(): [], proc.stderr.fileno(): []}
    partial = dict.fromkeys(texts, "")
    decoders = {fd: codecs.getincrementaldecoder("utf-8")("replace") for fd in texts}
    announced = 0
    with selectors.DefaultSelector() as selector:
        for fd in texts:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            changed = False
            for key, _ in selector.select(timeout=min(1.0, max(0.05, ticker.every))):
                fd = int(key.fd)
                chunk = os.read(fd, 65536)
                if not chunk:
                    selector.unregister(fd)
                text = decoders[fd].decode(chunk, final=not chunk)
                texts[fd].append(text)
                *lines, partial[fd] = (partial[fd] + text).split("\n")
                if not chunk and partial[fd]:
                    lines.append(partial[fd])
                for line in lines:
                    changed |= progress.read(line)
                    if heard is not None:
                        heard(line)
                    for url in progress.indexes[announced:]:
                        ticker.clear()
                        say(f"index: {inert(redact(url))}")
                    announced = len(progress.indexes)
            ticker.tick(progress, changed=changed)
    return "".join(texts[proc.stdout.fileno()]), "".join(texts[proc.stderr.fileno()])


def end_group(proc: subprocess.Popen[bytes]) -> None:
    """End pip-compile and everything it started (builds of sdists): TERM, then KILL after 3 s."""
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def check_pip(python: str, env: Mapping[str, str]) -> None:
    """Refuse to lock with a pip that would drop packages without an error (see MIN_PIP)."""
    start_pip_check(python, env)()


def start_pip_check(python: str, env: Mapping[str, str]) -> Callable[[], None]:
    """Ask `python` for its pip's version; the function returned waits for the answer and raises
    LockError for a pip that is missing or older than MIN_PIP, which would drop packages silently."""
    wanted = ".".join(map(str, MIN_PIP))
    fix = f"{shlex.quote(python)} -m pip install 'pip>={wanted}', then run the lock again"
    try:
        asking = subprocess.Popen(
            [python, "-c", "import pip; print(pip.__version__)"], env=dict(env), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
    except OSError as exc:
        raise LockError(f"could not ask {python} for its pip version ({inert(str(exc))})", fix=fix) from None

    def finish() -> None:
        try:
            found, _ = asking.communicate(timeout=60)
        except BaseException as exc:
            asking.kill()
            asking.wait()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise LockError(f"could not ask {python} for its pip version ({inert(str(exc))})", fix=fix) from None
            raise
        found = found.strip()
        match = _VERSION.match(found)
        if asking.returncode != 0 or match is None:
            raise LockError(f"pip is not installed for {python}, and pip-compile needs it", fix=fix)
        if (int(match.group(1)), int(match.group(2) or 0)) < MIN_PIP:
            raise LockError(
                f"pip {inert(found)} ({python}) is too old to lock with: pip {wanted} or newer is needed, since an "
                "older pip silently leaves out the packages of an extra the package spells with '_' "
                "(lxml[html_clean] would lock without lxml-html-clean)",
                fix=fix,
            )

    return finish


def solve_environment(left_out: Sequence[str] = ()) -> str:
    """The environment pip-compile resolved for (it runs in this Python), for the lock's header.

    A requirement whose marker excludes this environment is not in the lock: the header says which.
    """
    machine = platform.machine() or "unknown machine"
    text = (f"solved for {platform.python_implementation()} {sys.version_info[0]}.{sys.version_info[1]} "
            f"on {sys.platform} {machine}")
    if left_out:
        lines = ", ".join(inert(line) for line in left_out)
        text += f" (requirements whose markers exclude it are left out, and not in this lock: {lines})"
    return text
