"""The wire between the deploying side and the agent: one JSON request per line in, one reply per
request out, printed after MARK (a command the agent runs may print anything before it).

A reply is {"ok": true, "result": ..., "host": ...} or {"ok": false, "kind": ..., "error": ...,
"extra": {...}, "host": ...}; deploy/remote/replies.py checks each step's result on arrival.
Everything a request names is checked here before anything on the host is touched.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a host's every session an import; the annotations need none
    from typing import Any

    Request = dict[str, Any]  # one request, as decoded from its JSON line

MARK = "PINSHIP-RESULT:"

# The steps the agent answers (serve.OPS). "lock" and "unlock" take and give back the per-host
# claim (claim.py); the wire keeps the names older deploying sides send.
OPS = ("probe", "status", "read", "lock", "unlock", "stage", "switch", "abort", "ping", "hook")

# What a failure's "kind" may be, each with what it means to the deploying side.
KINDS = {
    "bad-request": "the request is not one this agent accepts (nothing was touched)",
    "unsafe-path": "a path pinship would work through is a link, another user's, or not what it made",
    "too-large": "a file to read is larger than the agent reads whole",
    "locked": "another deploy holds the host's claim",
    "lost-lock": "this deploy no longer holds the host's claim",
    "break-failed": "--break-lock could not remove the claim",
    "corrupt": "wheels missing or corrupt in the host's store",
    "stage": "staging failed (install or health check)",
    "missing": "the release is not on the host",
    "switch-failed": "switching failed",
    "disk-full": "the host's disk is full",
    "os": "an operating system error",
}


class Failure(Exception):
    """A step that failed, answered as {"ok": false, "kind": kind, "error": message, "extra": extra}."""

    def __init__(self, kind: str, message: str, **extra: Any) -> None:
        Exception.__init__(self, message)
        self.kind = kind
        self.extra = extra


HEX = "0123456789abcdef"


def is_hex(value: object, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and all(char in HEX for char in value)


def is_release_id(value: object) -> bool:
    """A release id: the first 12 hex digits of its lock's sha256 (deploy/release/build.py)."""
    return is_hex(value, 12)


def shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def release_arg(req: Request) -> str:
    """The request's release, checked before anything is touched."""
    release = req.get("release")
    if not is_release_id(release):
        raise Failure("bad-request", "%s is not a release id (12 lowercase hex digits): refused" % shown(release))
    return str(release)


def token_arg(token: object) -> str:
    if not (isinstance(token, str) and 8 <= len(token) <= 64 and all(char in HEX for char in token)):
        raise Failure("bad-request", "%s is not a lock token (hex digits): refused" % shown(token))
    return token


def timeout_arg(req: Request) -> float:
    """How long each command the agent runs for this request may take (--command-timeout). The
    deploying side sends it with every request; the agent keeps no default of its own."""
    timeout = req.get("timeout")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise Failure("bad-request", "timeout %s is not a number of seconds: refused" % shown(timeout))
    return timeout


def keep_arg(req: Request) -> int:
    """How many finished releases a switch keeps (keep-releases); sent with every switch."""
    keep = req.get("keep")
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
        raise Failure("bad-request", "keep %s is not a count of releases: refused" % shown(keep))
    return keep


def log_arg(req: Request) -> dict[str, Any]:
    log = req.get("log")
    if not isinstance(log, dict):
        raise Failure("bad-request", "the request has no deploy.log entry: refused")
    return log


def check_wheel(wheel: object) -> dict[str, Any]:
    """A wheel as a request names it: sha256 of 64 lowercase hex digits, a plain *.whl name."""
    if not isinstance(wheel, dict) or not is_hex(wheel.get("sha256"), 64):
        raise Failure("bad-request", "a wheel's sha256 is not 64 lowercase hex digits: %s" % shown(wheel))
    name = wheel.get("filename")
    if not (isinstance(name, str) and name.endswith(".whl") and not name.startswith(".")
            and "/" not in name and "\\" not in name and "\0" not in name and ".." not in name):
        raise Failure("bad-request", "%s is not a wheel's file name: refused" % shown(name))
    return wheel


class Refused(Exception):
    """A wheel the installer will not install, and why; answered as a stage failure."""
