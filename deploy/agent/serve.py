"""The agent's serve loop: answer requests, one JSON line each, until stdin closes.

Every remote step of a deploy is one request to this loop, so a host costs a handful of round
trips and the agent never has to be installed or kept in step with the deploying machine's
version: boot.py runs it from the first request, on any Python 3.8+ with nothing installed.
"""

from __future__ import annotations

import json
import os
import sys

from .claim import give_back, take
from .hooks import op_hook
from .protocol import MARK, Failure
from .release import op_abort, op_stage, op_switch
from .status import op_probe, op_read, op_status

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a host's every session an import; the annotations need none
    from typing import Any, Callable

    from .protocol import Request


def lock(req: Request) -> dict[str, Any]:
    """Take the claim, then say what probe says as seen under it: rollback needs no separate probe
    round trip."""
    result = take(req)
    result["probe"] = op_probe(req)
    return result


OPS: dict[str, Callable[[Request], Any]] = {
    "probe": op_probe, "status": op_status, "read": op_read,
    "lock": lock, "unlock": give_back, "stage": op_stage, "switch": op_switch, "abort": op_abort,
    "hook": op_hook,
    "ping": lambda req: {},  # a kept session still answers (keeper.py)
}


def main(req: object) -> None:
    """Answer one request on stdout, after MARK."""
    result: dict[str, Any]
    try:
        name = req.get("op") if isinstance(req, dict) and isinstance(req.get("path"), str) else None
        op = OPS.get(name) if isinstance(name, str) else None
        if op is None or not isinstance(req, dict):
            raise Failure("bad-request", "not a request this agent knows: refused")
        result = {"ok": True, "result": op(req)}
    except Failure as exc:
        result = {"ok": False, "kind": exc.kind, "error": str(exc), "extra": exc.extra}
    except OSError as exc:
        kind = "disk-full" if exc.errno == 28 else "os"
        result = {"ok": False, "kind": kind, "error": "%s: %s" % (exc.strerror, exc.filename or "")}
    except Exception as exc:  # a request of the wrong shape: one line back, and the agent serves on
        result = {"ok": False, "kind": "bad-request", "error": "%s: %s" % (type(exc).__name__, exc)}
    result["host"] = os.uname()[1]
    sys.stdout.write("\n" + MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


def serve(req: object) -> None:
    """Answer requests, one JSON line each, until stdin closes: over SSH one agent process serves
    a whole deploy of its host, so each step costs a line each way, not a new session, a Python
    start-up and a compile of the agent."""
    while req is not None:
        main(req)
        line = sys.stdin.readline()
        req = json.loads(line) if line.strip() else None
