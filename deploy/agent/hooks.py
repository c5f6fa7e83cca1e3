"""Release hooks: run-once (one host, in a staged release, before any host switches) and
post-switch (each host, in the live release, after its switch and restart). Both run as the
health check does, in the release's folder with its venv first on PATH."""

from __future__ import annotations

import os

from .claim import check_held
from .command import release_env, run
from .protocol import Failure, release_arg, timeout_arg
from .store import check_layout, completed, release_dir

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a host's every session an import; the annotations need none
    from typing import Any

    from .protocol import Request

OUTPUT_LINES = 8  # a hook's last lines, kept in the reply and in deploy.log


def outcome(code: int, out: str) -> dict[str, Any]:
    """A hook's exit code and the last lines of its output, as the reply and deploy.log carry them."""
    return {"exit": code, "output": "\n".join(out.strip().splitlines()[-OUTPUT_LINES:])[-4000:]}


def command_arg(req: Request) -> str:
    command = req.get("command")
    if not isinstance(command, str) or not command.strip():
        raise Failure("bad-request", "the hook request has no command: refused")
    return command


def op_hook(req: Request) -> dict[str, Any]:
    """Run `command` in staged release `release`, under this deploy's claim: run-once."""
    root, release_id = req["path"], release_arg(req)
    command, timeout = command_arg(req), timeout_arg(req)
    check_held(req)
    check_layout(root)
    if not completed(root, release_id):
        raise Failure("missing", "release %s is not on this host (or never finished staging)" % release_id)
    release = release_dir(root, release_id)
    return outcome(*run(command, timeout, cwd=release, env=release_env(release), shell=True))


def post_switch(root: str, command: str, timeout: float) -> dict[str, Any]:
    """Run the post-switch check in the live release."""
    live = os.path.join(root, "current")
    return outcome(*run(command, timeout, cwd=live, env=release_env(live), shell=True))
