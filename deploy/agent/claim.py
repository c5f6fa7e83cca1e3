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


def read_owner(root):
    """Who holds the deploy lock (owner.json as stored), {"token": None} if it is held but says
    by nobody readable, None if it is free. A .lock that is a link is never followed."""
    lock = os.path.join(root, ".lock")
    try:
        info = os.lstat(lock)
    except OSError:
        return None
    owner = None
    if stat.S_ISDIR(info.st_mode):
        try:
            owner = json.loads(read_bytes(os.path.join(lock, "owner.json"), 1 << 16) or b"null")
        except (Failure, OSError, ValueError):
            owner = None
    return owner if isinstance(owner, dict) else {"token": None}


def clear_lock(root):
    """--break-lock: remove .lock itself, whatever it is. A link or a file is unlinked, never
    followed; a directory is removed with what is in it (links in it are not followed either)."""
    lock = os.path.join(root, ".lock")
    try:
        if stat.S_ISDIR(os.lstat(lock).st_mode):
            shutil.rmtree(lock)
        else:
            os.unlink(lock)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise Failure("break-failed", "could not remove %s (%s): remove it by hand on the host, then run again"
                      % (lock, exc.strerror), path=lock) from None


def op_lock(req):
    root = req["path"]
    owner = req.get("owner")
    if not isinstance(owner, dict):
        raise Failure("bad-request", "the lock request names no owner: refused")
    token_arg(owner.get("token"))
    broke = None
    if req.get("break"):
        broke = read_owner(root)
        if broke is not None:
            clear_lock(root)
    else:
        problem = path_problem(os.path.join(root, ".lock"), "dir")
        if problem:
            raise Failure("unsafe-path", "%s: not a lock pinship made; if no deploy is running, run again with "
                          "--break-lock to remove it (itself: a link is never followed)" % problem, paths=[problem])
    check_layout(root)
    for folder in ("releases", "wheels", os.path.join("wheels", ".incoming")):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    lock = os.path.join(root, ".lock")
    # Made whole, owner and all, under a name of its own, then renamed into place: atomic like
    # mkdir (exactly one deploy gets it), and whoever finds it taken can always say by whom.
    claim = os.path.join(root, ".lock-" + owner["token"])
    remove_entry(claim)
    os.mkdir(claim)
    with open(os.path.join(claim, "owner.json"), "w") as handle:
        json.dump(owner, handle)
    try:
        if os.path.lexists(lock):
            raise FileExistsError(lock)
        os.rename(claim, lock)  # fails if another deploy's lock (never empty) got there first
    except OSError:
        remove_entry(claim)
        raise Failure("locked", "locked", owner=read_owner(root)) from None
    return {"broke": broke}


def owns_lock(req):
    token = token_arg(req.get("token"))
    owner = read_owner(req["path"])
    return bool(owner) and owner.get("token") == token


def check_token(req):
    if not owns_lock(req):
        raise Failure("lost-lock", "this deploy no longer holds the lock", owner=read_owner(req["path"]))


def op_unlock(req):
    if owns_lock(req):  # read_owner found a real directory holding this deploy's token
        shutil.rmtree(os.path.join(req["path"], ".lock"), ignore_errors=True)
    return {}


