"""The per-host claim: the one deploy that may change a host holds it, from `lock` until
`unlock` (or the end of its switch or abort).

It is the folder <path>/.lock holding owner.json (who, when, and the token only that deploy
knows); the wire keeps the op names "lock" and "unlock". It is called a claim here, not a lock,
so that "lock" means one thing in pinship: the requirements lock.
"""

from __future__ import annotations

import json
import os
import shutil
import stat

from .files import path_problem, read_bytes, remove_entry
from .protocol import Failure, token_arg
from .store import check_layout

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a host's every session an import; the annotations need none
    from typing import Any

    from .protocol import Request


FOLDER = ".lock"  # the claim's folder in the deploy path, named as every pinship before this one named it


def holder(root: str) -> dict[str, Any] | None:
    """Who holds the claim (owner.json as stored), {"token": None} if it is held but says by
    nobody readable, None if it is free. A .lock that is a link is never followed."""
    folder = os.path.join(root, FOLDER)
    try:
        info = os.lstat(folder)
    except OSError:
        return None
    owner = None
    if stat.S_ISDIR(info.st_mode):
        try:
            owner = json.loads(read_bytes(os.path.join(folder, "owner.json"), 1 << 16) or b"null")
        except (Failure, OSError, ValueError):
            owner = None
    return owner if isinstance(owner, dict) else {"token": None}


def clear(root: str) -> None:
    """--break-lock: remove .lock itself, whatever it is. A link or a file is unlinked, never
    followed; a directory is removed with what is in it (links in it are not followed either)."""
    folder = os.path.join(root, FOLDER)
    try:
        if stat.S_ISDIR(os.lstat(folder).st_mode):
            shutil.rmtree(folder)
        else:
            os.unlink(folder)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise Failure("break-failed", "could not remove %s (%s): remove it by hand on the host, then run again"
                      % (folder, exc.strerror), path=folder) from None


def take(req: Request) -> dict[str, Any]:
    """The `lock` step: claim the host for the deploy whose owner (and token) the request names,
    or say who holds it; with "break", clear whatever stands there first (--break-lock)."""
    root = req["path"]
    owner = req.get("owner")
    if not isinstance(owner, dict):
        raise Failure("bad-request", "the lock request names no owner: refused")
    token_arg(owner.get("token"))
    broke = None
    if req.get("break"):
        broke = holder(root)
        if broke is not None:
            clear(root)
    else:
        problem = path_problem(os.path.join(root, FOLDER), "dir")
        if problem:
            raise Failure("unsafe-path", "%s: not a lock pinship made; if no deploy is running, run again with "
                          "--break-lock to remove it (itself: a link is never followed)" % problem, paths=[problem])
    check_layout(root)
    for folder in ("releases", "wheels", os.path.join("wheels", ".incoming")):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    folder = os.path.join(root, FOLDER)
    # Made whole, owner and all, under a name of its own, then renamed into place: atomic like
    # mkdir (exactly one deploy gets it), and whoever finds it taken can always say by whom.
    pending = os.path.join(root, FOLDER + "-" + owner["token"])
    remove_entry(pending)
    os.mkdir(pending)
    with open(os.path.join(pending, "owner.json"), "w") as handle:
        json.dump(owner, handle)
    try:
        if os.path.lexists(folder):
            raise FileExistsError(folder)
        os.rename(pending, folder)  # fails if another deploy's claim (never empty) got there first
    except OSError:
        remove_entry(pending)
        raise Failure("locked", "locked", owner=holder(root)) from None
    return {"broke": broke}


def holds(req: Request) -> bool:
    """Whether the deploy whose token the request carries holds the claim."""
    token = token_arg(req.get("token"))
    owner = holder(req["path"])
    return owner is not None and owner.get("token") == token


def check_held(req: Request) -> None:
    """Refuse (lost-lock) a step of a deploy that no longer holds the claim (--break-lock took it)."""
    if not holds(req):
        raise Failure("lost-lock", "this deploy no longer holds the lock", owner=holder(req["path"]))


def give_back(req: Request) -> dict[str, Any]:
    """The `unlock` step: give the claim back, if this deploy holds it (never another's)."""
    if holds(req):  # holder found a real directory holding this deploy's token
        shutil.rmtree(os.path.join(req["path"], FOLDER), ignore_errors=True)
    return {}


