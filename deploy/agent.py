"""The host side: one stdlib-only script run on each host (or locally) by `python3 -c`.

Every remote step of a deploy is one call of this script with a JSON request on stdin, so a host
costs a handful of round trips and the script never has to be installed or kept in step with
the deploying machine's version. It must run on any Python 3.8+ with nothing installed.
"""

import json
import os
import shutil
import sys
import time

MARK = "PINSHIP-RESULT:"


class Failure(Exception):
    def __init__(self, kind, message, **extra):
        Exception.__init__(self, message)
        self.kind = kind
        self.extra = extra


def file_digest(handle):
    """sha256 of an open binary file, read in blocks (wheels can be large)."""
    import hashlib
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    return digest


# A kept agent (keeper.py) serves run after run. It reads a file it hashed before again only if
# the file's inode, size or modification time changed since: what git's index trusts too. Every
# stage still checks every wheel in the store and every file it reuses; unchanged ones cost a stat.
# Keyed by the inode, not the path: a wheel renamed into the store, or hard-linked into a release,
# is the same file and is not read twice.
HASHED = {}


def digest_of(path):
    """sha256 of a file (a hashlib object), read once per version of the file."""
    info = os.stat(path)
    key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    digest = HASHED.get(key)
    if digest is None:
        with open(path, "rb") as handle:
            digest = file_digest(handle)
        if len(HASHED) > 100000:
            HASHED.clear()
        HASHED[key] = digest
    return digest


def sha256(path):
    return digest_of(path).hexdigest()


def release_dir(root, release):
    return os.path.join(root, "releases", release)


def live(root):
    link = os.path.join(root, "current")
    if not os.path.islink(link):
        return None
    return os.path.basename(os.readlink(link))


def complete_releases(root):
    """Releases that finished staging, oldest first (by when they were completed)."""
    folder = os.path.join(root, "releases")
    found = []
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        marker = os.path.join(folder, name, ".complete")
        if os.path.isfile(marker):
            found.append((os.stat(marker).st_mtime, name))
    return [name for _, name in sorted(found)]


def previous_release(root):
    try:
        with open(os.path.join(root, ".previous")) as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def store_path(root, digest, filename):
    return os.path.join(root, "wheels", digest, filename)


def platform_tags():
    """The platform tags this host's Python installs wheels for (as pip would compute them)."""
    machine = os.uname().machine
    if not sys.platform.startswith("linux"):
        import sysconfig

        return [sysconfig.get_platform().replace("-", "_").replace(".", "_")]
    found = []
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        libc = ""
    if libc.startswith("glibc "):
        major, minor = [int(part) for part in libc.split()[1].split(".")[:2]]
        found += ["manylinux_%d_%d_%s" % (major, m, machine) for m in range(minor, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        found += ["%s_%s" % (name, machine) for floor, name in sorted(legacy.items(), reverse=True) if minor >= floor]
    return [*found, "linux_%s" % machine]


def marker_environment():
    """The values PEP 508 markers test, as this interpreter sees them (what pip check uses)."""
    import platform

    info = sys.implementation.version
    implementation_version = "%d.%d.%d" % info[:3]
    if info.releaselevel != "final":
        implementation_version += info.releaselevel[0] + str(info.serial)
    return {
        "implementation_name": sys.implementation.name,
        "implementation_version": implementation_version,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }


def op_probe(req):
    root = req["path"]
    store = os.path.join(root, "wheels")
    inventory = []
    for digest in os.listdir(store) if os.path.isdir(store) else []:
        folder = os.path.join(store, digest)
        if len(digest) == 64 and os.path.isdir(folder) and os.listdir(folder):
            inventory.append(digest)
    owner = read_owner(root)
    existing = root
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing) or "/"
    usage = shutil.disk_usage(existing)
    return {
        "tags": platform_tags(),
        "markers": marker_environment(),
        "python": {
            "implementation": sys.implementation.name,
            "version": "%d.%d" % sys.version_info[:2],
            "platform": sys.platform,
            "machine": os.uname().machine,
        },
        "current": live(root),
        "previous": previous_release(root),
        "releases": complete_releases(root),
        "store": inventory,
        "lock": owner,
        "free_bytes": usage.free,
    }


def read_owner(root):
    try:
        with open(os.path.join(root, ".lock", "owner.json")) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {"token": None} if os.path.isdir(os.path.join(root, ".lock")) else None


def op_lock(req):
    root = req["path"]
    for folder in ("releases", "wheels", os.path.join("wheels", ".incoming")):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    lock = os.path.join(root, ".lock")
    owner = read_owner(root)
    if owner is not None and req.get("break"):
        shutil.rmtree(lock, ignore_errors=True)
    # Made whole, owner and all, under a name of its own, then renamed into place: atomic like
    # mkdir (exactly one deploy gets it), and whoever finds it taken can always say by whom.
    claim = os.path.join(root, ".lock-" + req["owner"]["token"])
    shutil.rmtree(claim, ignore_errors=True)
    os.mkdir(claim)
    with open(os.path.join(claim, "owner.json"), "w") as handle:
        json.dump(req["owner"], handle)
    try:
        if os.path.lexists(lock):
            raise FileExistsError(lock)
        os.rename(claim, lock)  # fails if another deploy's lock (never empty) got there first
    except OSError:
        shutil.rmtree(claim, ignore_errors=True)
        raise Failure("locked", "locked", owner=read_owner(root)) from None
    # What probe says, as seen under the lock: rollback needs no separate probe round trip.
    return {"broke": owner if req.get("break") else None, "probe": op_probe(req)}


def owns_lock(req):
    owner = read_owner(req["path"])
    return bool(owner) and owner.get("token") == req["token"]


def check_token(req):
    if not owns_lock(req):
        raise Failure("lost-lock", "this deploy no longer holds the lock", owner=read_owner(req["path"]))


def op_unlock(req):
    owner = read_owner(req["path"])
    if owner and owner.get("token") == req["token"]:
        shutil.rmtree(os.path.join(req["path"], ".lock"), ignore_errors=True)
    return {}


def accept_incoming(root, wheels):
    """Move uploaded wheels into the store once their hash is right; report what is not."""
    incoming = os.path.join(root, "wheels", ".incoming")
    bad = []
    for wheel in wheels:
        final = store_path(root, wheel["sha256"], wheel["filename"])
        sent = os.path.join(incoming, wheel["sha256"])
        if os.path.exists(sent):
            if sha256(sent) == wheel["sha256"]:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(sent, final)
            else:
                os.remove(sent)
        if not os.path.isfile(final) or sha256(final) != wheel["sha256"]:
            if os.path.exists(final):
                os.remove(final)  # a tampered or truncated wheel is never kept, let alone installed
            bad.append(wheel["filename"])
    return bad


def run(argv, timeout, cwd=None, env=None, shell=False):
    import subprocess
    try:
        # stdin is the deployer's request stream: a command must never read the next request.
        proc = subprocess.run(argv, cwd=cwd, env=env, shell=shell, timeout=timeout, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except subprocess.TimeoutExpired:
        return 124, "timed out after %ss" % timeout
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def release_env(release):
    env = dict(os.environ)
    env["VIRTUAL_ENV"] = os.path.join(release, "venv")
    env["PATH"] = os.path.join(release, "venv", "bin") + os.pathsep + env.get("PATH", "")
    env["PINSHIP_RELEASE"] = os.path.basename(release)
    env.pop("PYTHONHOME", None)
    return env


def op_stage(req):
    root, release_id = req["path"], req["release"]
    check_token(req)
    manifest = req["manifest"]
    bad = accept_incoming(root, manifest["wheels"])
    if bad:
        raise Failure("corrupt", "missing or corrupt in the store: " + ", ".join(bad), files=bad)
    release = release_dir(root, release_id)
    timeout = req.get("timeout", 600)
    if os.path.isfile(os.path.join(release, ".complete")):
        # Staged before (maybe never switched to): its files stand, but a health check is about
        # now, so it runs again before the release may go live. A failure keeps the release: it
        # may be the one to roll back to.
        if req.get("healthcheck"):
            code, out = run(req["healthcheck"], timeout, cwd=release, env=release_env(release), shell=True)
            if code != 0:
                stage_failed("health check", code, out)
        return {"reused": True}
    shutil.rmtree(release, ignore_errors=True)  # a half-made release from an interrupted deploy
    os.makedirs(os.path.join(release, "wheels"))
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
    try:
        make_venv(venv, os.path.join(root, ".agent"))  # noqa: F821 (agent_install.py, sent ahead of this file)
        linked = reuse_live(root, release, manifest["wheels"], live(root))  # noqa: F821 (agent_venv.py)
        # From the release's own wheels/ (links into the store): it can be reinstalled by hand
        # with pip --no-index --find-links wheels --require-hashes -r requirements.lock.
        todo = [dict(w, path=os.path.join(release, "wheels", w["filename"]))
                for w in manifest["wheels"] if w["sha256"] not in linked]
        install_wheels(venv, todo)  # noqa: F821 (agent_install.py)
    except Refused as exc:  # noqa: F821 (agent_install.py)
        discard(req, release)
        raise Failure("stage", "install failed: %s" % exc, step="install") from None
    except BaseException:
        discard(req, release)
        raise
    if req.get("healthcheck"):
        code, out = run(req["healthcheck"], timeout, cwd=release, env=release_env(release), shell=True)
        if code != 0:
            discard(req, release)
            stage_failed("health check", code, out)
    check_token(req)  # a deploy whose lock was taken over must not mark the new owner's release complete
    with open(os.path.join(release, ".complete"), "w") as handle:
        handle.write(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return {"reused": False, "linked": len(linked)}


def discard(req, release):
    if owns_lock(req):  # else a deploy that took the lock over (--break-lock) may be staging it
        shutil.rmtree(release, ignore_errors=True)


def stage_failed(step, code, out):
    tail = "\n".join(out.strip().splitlines()[-8:]) or "(no output)"
    raise Failure("stage", "%s failed (exit %d): %s" % (step, code, tail), step=step)


def point_current(root, release_id):
    """Switch `current` by rename: it is never missing and never half-made."""
    temporary = os.path.join(root, ".current-%d" % os.getpid())
    if os.path.lexists(temporary):
        os.remove(temporary)
    os.symlink(os.path.join("releases", release_id), temporary)
    os.replace(temporary, os.path.join(root, "current"))


def op_switch(req):
    root, release_id = req["path"], req["release"]
    check_token(req)
    if not os.path.isfile(os.path.join(release_dir(root, release_id), ".complete")):
        raise Failure("missing", "release %s is not on this host (or never finished staging)" % release_id)
    before = live(root)
    result = {"previous": before, "switched": before != release_id, "restart": None, "switched_back": False}
    if before != release_id:
        point_current(root, release_id)
        if before:
            with open(os.path.join(root, ".previous"), "w") as handle:
                handle.write(before)
    if req.get("restart") and result["switched"]:
        code, out = run(req["restart"], req.get("timeout", 600), cwd=os.path.join(root, "current"),
                        env=release_env(os.path.join(root, "current")), shell=True)
        result["restart"] = code
        if code != 0:
            if before:
                point_current(root, before)
                run(req["restart"], req.get("timeout", 600), cwd=os.path.join(root, "current"),
                    env=release_env(os.path.join(root, "current")), shell=True)
            result["switched_back"] = True
            result["restart_output"] = "\n".join(out.strip().splitlines()[-8:])
    result["pruned"] = prune(root, req.get("keep", 5))
    finish(req, dict(req["log"], previous=before, result="switched back" if result["switched_back"] else "ok"))
    return result


def prune(root, keep):
    protected = {live(root), previous_release(root)}
    completed = complete_releases(root)
    removable = [name for name in completed[: max(0, len(completed) - keep)] if name not in protected]
    for name in removable:
        shutil.rmtree(release_dir(root, name), ignore_errors=True)
    folder = os.path.join(root, "releases")
    for name in os.listdir(folder):
        if name not in completed and name not in protected:
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)  # never finished staging
    return removable


def finish(req, entry):
    try:
        with open(os.path.join(req["path"], "deploy.log"), "a") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
    finally:
        op_unlock(req)  # even on a full disk: a lock left behind would block every later deploy


def op_abort(req):
    if not owns_lock(req):
        return {}  # another deploy's lock, and perhaps the release it is staging: not ours to touch
    release = req.get("release") and release_dir(req["path"], req["release"])
    if release and not os.path.isfile(os.path.join(release, ".complete")):
        shutil.rmtree(release, ignore_errors=True)
    finish(req, dict(req["log"], previous=live(req["path"]), result=req.get("reason", "aborted")))
    return {}


def op_read(req):
    """A file from a release (its manifest, lock) or the deploy log, for status and history."""
    path = os.path.join(req["path"], req["file"])
    try:
        with open(path) as handle:
            return {"text": handle.read()}
    except OSError:
        return {"text": None}


OPS = {"status": op_status,  # noqa: F821 (agent_status.py, sent ahead of this file)
       "probe": op_probe, "lock": op_lock, "unlock": op_unlock, "stage": op_stage,
       "switch": op_switch, "abort": op_abort, "read": op_read,
       "ping": lambda req: {}}  # a kept session still answers (keeper.py)


def main(req):
    try:
        result = {"ok": True, "result": OPS[req["op"]](req)}
    except Failure as exc:
        result = {"ok": False, "kind": exc.kind, "error": str(exc), "extra": exc.extra}
    except OSError as exc:
        kind = "disk-full" if exc.errno == 28 else "os"
        result = {"ok": False, "kind": kind, "error": "%s: %s" % (exc.strerror, exc.filename or "")}
    result["host"] = os.uname()[1]
    sys.stdout.write("\n" + MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


def serve(req):
    """Answer requests, one JSON line each, until stdin closes: over SSH one agent process serves
    a whole deploy of its host, so each step costs a line each way, not a new session, a Python
    start-up and a compile of this script."""
    while req is not None:
        main(req)
        line = sys.stdin.readline()
        req = json.loads(line) if line.strip() else None


if __name__ == "__agent__":
    serve(REQUEST)  # noqa: F821  (REQUEST, the first request, is injected by the loader)
