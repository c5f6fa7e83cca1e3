"""The release steps that change a host: stage (store the wheels, make the venv, install, health
check), switch (point `current`, restart, prune) and abort; each under this deploy's claim."""

from __future__ import annotations

import json
import os
import shutil
import time

from .claim import check_held, give_back, holds
from .command import release_env, run
from .files import append_log, check_layout_of, replace_file
from .hooks import command_arg, post_switch
from .protocol import Failure, Refused, check_wheel, keep_arg, log_arg, release_arg, timeout_arg
from .reuse import reuse_live
from .store import (
    MARKER,
    accept_incoming,
    check_layout,
    complete_releases,
    completed,
    live,
    made_here,
    release_dir,
    release_names,
    remove_release,
    store_path,
)
from .venv import make_venv
from .wheel import install_wheels

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a host's every session an import; the annotations need none
    from typing import Any, NoReturn

    from .protocol import Request


def stage_request(req: Request) -> tuple[str, dict[str, Any], float]:
    """Everything stage is sent, checked before anything is touched."""
    release = release_arg(req)
    timeout = timeout_arg(req)
    manifest = req.get("manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("wheels"), list):
        raise Failure("bad-request", "the stage request has no manifest with a list of wheels: refused")
    for wheel in manifest["wheels"]:
        check_wheel(wheel)
    import hashlib
    lock = req.get("lock")
    if not isinstance(lock, str) or hashlib.sha256(lock.encode()).hexdigest()[:12] != release:
        raise Failure("bad-request", "release %s is not the id of the lock sent with it: refused" % release)
    return release, manifest, timeout


def op_stage(req: Request) -> dict[str, Any]:
    root = req["path"]
    release_id, manifest, timeout = stage_request(req)
    check_held(req)
    check_layout(root)
    bad = accept_incoming(root, manifest["wheels"])
    if bad:
        raise Failure("corrupt", "missing or corrupt in the store: " + ", ".join(bad), files=bad)
    release = release_dir(root, release_id)
    if completed(root, release_id):
        # Staged before (maybe never switched to): its files stand, but a health check is about
        # now, so it runs again before the release may go live. A failure keeps the release: it
        # may be the one to roll back to.
        if req.get("healthcheck"):
            code, out = run(req["healthcheck"], timeout, cwd=release, env=release_env(release), shell=True)
            if code != 0:
                stage_failed("health check", code, out)
        return {"reused": True}
    kept = remove_release(root, release_id)  # a half-made release from an interrupted deploy
    if kept:
        raise Failure("unsafe-path", "cannot stage release %s: %s; move it away on the host" % (release_id, kept))
    os.mkdir(release)
    with open(os.path.join(release, MARKER), "w") as handle:  # first: from now on, the agent's to delete
        handle.write(release_id)
    os.mkdir(os.path.join(release, "wheels"))
    for wheel in manifest["wheels"]:
        target = os.path.join(release, "wheels", wheel["filename"])
        source = store_path(root, wheel["sha256"], wheel["filename"])
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    with open(os.path.join(release, "manifest.json"), "w") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
    with open(os.path.join(release, "requirements.lock"), "w") as handle:
        handle.write(req["lock"])
    venv = os.path.join(release, "venv")
    donor = live(root)
    try:
        make_venv(venv, os.path.join(root, ".agent"))
        donor = donor if donor and made_here(release_dir(root, donor)) else None
        linked = reuse_live(root, release, manifest["wheels"], donor)
        # From the release's own wheels/ (links into the store): it can be reinstalled by hand
        # with pip --no-index --find-links wheels --require-hashes -r requirements.lock.
        todo = [dict(w, path=os.path.join(release, "wheels", w["filename"]))
                for w in manifest["wheels"] if w["sha256"] not in linked]
        install_wheels(venv, todo)
    except Refused as exc:
        discard(req, release_id)
        raise Failure("stage", "install failed: %s" % exc, step="install") from None
    except BaseException:
        discard(req, release_id)
        raise
    if req.get("healthcheck"):
        code, out = run(req["healthcheck"], timeout, cwd=release, env=release_env(release), shell=True)
        if code != 0:
            discard(req, release_id)
            stage_failed("health check", code, out)
    check_held(req)  # a deploy whose claim was taken over must not mark the new owner's release complete
    with open(os.path.join(release, ".complete"), "w") as handle:
        handle.write(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return {"reused": False, "linked": len(linked)}


def discard(req: Request, release_id: str) -> None:
    if holds(req):  # else a deploy that took the claim over (--break-lock) may be staging it
        remove_release(req["path"], release_id)


def stage_failed(step: str, code: int, out: str) -> NoReturn:
    tail = "\n".join(out.strip().splitlines()[-8:]) or "(no output)"
    raise Failure("stage", "%s failed (exit %d): %s" % (step, code, tail), step=step)


def point_current(root: str, release_id: str, temporary: str) -> None:
    """Switch `current` by rename: it is never missing and never half-made."""
    if os.path.lexists(temporary):
        os.unlink(temporary)  # left by an earlier agent that had this pid
    os.symlink(os.path.join("releases", release_id), temporary)
    os.replace(temporary, os.path.join(root, "current"))


def op_switch(req: Request) -> dict[str, Any]:
    root, release_id = req["path"], release_arg(req)
    keep, timeout = keep_arg(req), timeout_arg(req)
    log_arg(req)
    if req.get("post_switch") is not None:  # checked before anything is touched
        command_arg({"command": req["post_switch"]})
        hook_timeout(req)
    check_held(req)
    temporary = os.path.join(root, ".current-%d" % os.getpid())
    before = live(root)
    try:
        return switch(req, root, release_id, temporary, keep, timeout)
    except BaseException as exc:
        # Whatever failed, the claim this deploy took is given back and the attempt logged: a claim
        # left by a finished deploy would stop every later one, and the reply says what is live.
        raise failed_switch(req, root, release_id, temporary, before, exc) from None


def switch(req: Request, root: str, release_id: str, temporary: str, keep: int, timeout: float) -> dict[str, Any]:
    check_layout(root)
    if not completed(root, release_id):
        raise Failure("missing", "release %s is not on this host (or never finished staging)" % release_id)
    before = live(root)
    result: dict[str, Any] = {"previous": before, "switched": before != release_id, "restart": None,
                              "switched_back": False}
    if before != release_id:
        point_current(root, release_id, temporary)
        if before:
            replace_file(root, ".previous", before)
    if req.get("restart") and result["switched"]:
        code, out = restart(req, root, timeout)
        result["restart"] = code
        if code != 0:
            switch_back(req, root, before, temporary, timeout)
            result["switched_back"] = True
            result["restart_output"] = "\n".join(out.strip().splitlines()[-8:])
    entry = dict(req["log"], previous=before)
    if req.get("post_switch") and result["switched"] and not result["switched_back"]:
        # The restarted service, checked live (an HTTP probe): a failure puts the host back.
        result["post_switch"] = entry["post_switch"] = post_switch(root, req["post_switch"], hook_timeout(req))
        if result["post_switch"]["exit"] != 0:
            switch_back(req, root, before, temporary, timeout)
            result["switched_back"] = True
    result["pruned"] = prune(root, keep)
    entry["result"] = "switched back" if result["switched_back"] else "ok"
    finish(req, entry, hold=req.get("hold") is True)
    return result


def restart(req: Request, root: str, timeout: float) -> tuple[int, str]:
    return run(req["restart"], timeout, cwd=os.path.join(root, "current"),
               env=release_env(os.path.join(root, "current")), shell=True)


def switch_back(req: Request, root: str, before: str | None, temporary: str, timeout: float) -> None:
    """Back to the release served before, restarted (when there was one)."""
    if before:
        point_current(root, before, temporary)
        if req.get("restart"):
            restart(req, root, timeout)


def hook_timeout(req: Request) -> float:
    return timeout_arg({"timeout": req.get("hook_timeout")})


def failed_switch(req: Request, root: str, release_id: str, temporary: str, before: str | None,
                  exc: BaseException) -> Failure:
    """After a switch failed: remove its temporary link, log it, give the claim back; the Failure
    to answer with, which says what the host now serves."""
    if os.path.islink(temporary):
        os.unlink(temporary)
    error = str(exc) if isinstance(exc, Failure) else "%s: %s" % (
        getattr(exc, "strerror", None) or type(exc).__name__, getattr(exc, "filename", None) or exc)
    serving = live(root)
    entry = dict(req["log"], previous=before, result="failed", error=error, current=serving)
    notes = []
    try:
        if holds(req):
            append_log(root, entry)
    except OSError as problem:
        notes.append("deploy.log not written (%s)" % problem.strerror)
    give_back(req)
    if holds(req):
        notes.append("the lock could not be released")
    else:
        notes.append("lock released")
    if serving:
        notes.append("this host serves release %s" % serving)
    elif os.path.lexists(os.path.join(root, "current")):
        notes.append("%s is not a link pinship made: what it serves is not a release" % os.path.join(root, "current"))
    else:
        notes.append("this host serves no release")
    if isinstance(exc, Failure):
        kind, extra = exc.kind, dict(exc.extra)
    else:
        kind, extra = "disk-full" if getattr(exc, "errno", None) == 28 else "switch-failed", {}
    extra["current"] = serving
    return Failure(kind, "switch to %s failed: %s; %s" % (release_id, error, "; ".join(notes)), **extra)


def prune(root: str, keep: int) -> list[str]:
    """Old releases beyond `keep`, and releases that never finished staging, each through
    remove_release (never the live or the previous one, never what the agent did not make)."""
    done = complete_releases(root)
    removed = [name for name in done[: max(0, len(done) - keep)] if remove_release(root, name) is None]
    for name in release_names(root):
        if name not in done:
            remove_release(root, name)  # never finished staging
    return removed


def finish(req: Request, entry: dict[str, Any], hold: bool = False) -> None:
    """Log `entry` and give the claim back; `hold` keeps it (a deploy in waves may yet switch
    this host back, and gives it back itself)."""
    try:
        check_layout_of(os.path.join(req["path"], "deploy.log"), "file")
        append_log(req["path"], entry)
    finally:
        if not hold:
            give_back(req)  # even on a full disk: a claim left behind would block every later deploy


def op_abort(req: Request) -> dict[str, Any]:
    root = req["path"]
    release = None if req.get("release") is None else release_arg(req)
    log_arg(req)
    if not holds(req):
        return {}  # another deploy's claim, and perhaps the release it is staging: not ours to touch
    kept = None
    try:
        check_layout(root)
        if release and not completed(root, release):
            remove_release(root, release)
    except Failure as exc:
        kept = exc  # the claim is given back all the same, and the reply says why nothing was deleted
    finish(req, dict(req["log"], previous=live(root), result=req.get("reason", "aborted")))
    if kept is not None:
        raise Failure(kept.kind, "%s (lock released, nothing deleted)" % kept, **kept.extra)
    return {}


