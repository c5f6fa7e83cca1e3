"""Build commands as processes (pip, the app's PEP 517 backend), as the engine needs them run.

Each runs in a process group of its own, so that when the deploy stops (a host refused, Ctrl-C)
the build and everything it started are ended at once, rather than the deploy waiting for a
build it no longer needs. A failed command is shown by its own last lines, inert and behind the
gutter a host's output has: the build backend's words, not ours about them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Mapping
from pathlib import Path

from deploy.errors import DeployError, host_output

SHOWN_LINES = 15  # of a failed build's output: the backend's error is at its end


class BuildStopped(DeployError):
    """The deploy stopped while a build was under way; the build was ended."""


def run_checked(command: list[str], cwd: Path | str | None, extra_env: Mapping[str, str], what: str, fix: str,
                stop: threading.Event | None = None) -> None:
    """Run a build command to its end; on failure a DeployError showing its last lines."""
    proc = subprocess.Popen(command, cwd=cwd, env={**os.environ, **extra_env}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                            start_new_session=True)
    try:
        output = _wait(proc, stop)
    except BaseException:
        _end(proc)  # Ctrl-C or a stop: no build left running behind the deploy
        raise
    if proc.returncode != 0:
        raise DeployError(host_output(f"{what} failed (exit {proc.returncode}); its last lines:\n{_own_part(output)}",
                                      SHOWN_LINES), fix=fix)


def pip(args: list[str], cwd: Path, *, fix: str, extra_env: Mapping[str, str] | None = None,
        stop: threading.Event | None = None, what: str | None = None) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    run_checked(command, cwd, extra_env or {}, what or f"pip {args[0]}", fix, stop)


def _own_part(output: str) -> str:
    """pip frames what a build backend printed between `╰─> [N lines of output]` and
    `[end of output]`, then adds its own notes: the backend's part is what says what went wrong."""
    start, end = output.rfind("lines of output]"), output.rfind("[end of output]")
    if 0 <= start < end and "\n" in output[start:end]:
        return textwrap.dedent(output[output.index("\n", start) + 1:end])
    return output


def _wait(proc: subprocess.Popen[str], stop: threading.Event | None) -> str:
    while True:
        try:
            output, _ = proc.communicate(timeout=0.1)  # retried after a timeout without losing output
            return output or ""
        except subprocess.TimeoutExpired:
            if stop is not None and stop.is_set():
                raise BuildStopped("the build was stopped: the deploy did not go on") from None


def _end(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
