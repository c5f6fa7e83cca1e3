"""The operator's commands (health check, restart) and the agent's own (INSPECT), run with a
timeout and without the request stream as their stdin."""

from __future__ import annotations

import os


def run(argv: str | list[str], timeout: float, cwd: str | None = None, env: dict[str, str] | None = None,
        shell: bool = False) -> tuple[int, str]:
    import subprocess
    try:
        # stdin is the deployer's request stream: a command must never read the next request.
        proc = subprocess.run(argv, cwd=cwd, env=env, shell=shell, timeout=timeout, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except subprocess.TimeoutExpired:
        return 124, "timed out after %ss" % timeout
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def release_env(release: str) -> dict[str, str]:
    env = dict(os.environ)
    env["VIRTUAL_ENV"] = os.path.join(release, "venv")
    env["PATH"] = os.path.join(release, "venv", "bin") + os.pathsep + env.get("PATH", "")
    env["PINSHIP_RELEASE"] = os.path.basename(release)
    env.pop("PYTHONHOME", None)
    return env


