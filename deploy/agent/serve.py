"""The host side: one stdlib-only script run on each host (or locally) by `python3 -c`.

Every remote step of a deploy is one call of this script with a JSON request on stdin, so a host
costs a handful of round trips and the script never has to be installed or kept in step with
the deploying machine's version. It must run on any Python 3.8+ with nothing installed.
"""

import json
import os
import shutil
import stat
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


# Names the agent is sent or reads from the host have exactly one form each; anything else is
# refused in a request, and ignored on the host (never deleted, never reported as a release).
HEX = "0123456789abcdef"
MARKER = ".pinship-release"  # written first in every release folder the agent makes
READ_LIMIT = 16 << 20  # bytes: the most any file is read whole (a manifest, a lock, deploy.log)


def is_hex(value, length):
    return isinstance(value, str) and len(value) == length and all(char in HEX for char in value)


def is_release_id(value):
    """A release id: the first 12 hex digits of its lock's sha256 (deploy/release/build.py)."""
    return is_hex(value, 12)


def shown(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def release_arg(req, optional=False):
    """The request's release, checked before anything is touched."""
    release = req.get("release")
    if release is None and optional:
        return None
    if not is_release_id(release):
        raise Failure("bad-request", "%s is not a release id (12 lowercase hex digits): refused" % shown(release))
    return release


def token_arg(token):
    if not (isinstance(token, str) and 8 <= len(token) <= 64 and all(char in HEX for char in token)):
        raise Failure("bad-request", "%s is not a lock token (hex digits): refused" % shown(token))
    return token


def log_arg(req):
    if not isinstance(req.get("log"), dict):
        raise Failure("bad-request", "the request has no deploy.log entry: refused")
    return req["log"]


def check_wheel(wheel):
    """A wheel as a request names it: sha256 of 64 lowercase hex digits, a plain *.whl name."""
    if not isinstance(wheel, dict) or not is_hex(wheel.get("sha256"), 64):
        raise Failure("bad-request", "a wheel's sha256 is not 64 lowercase hex digits: %s" % shown(wheel))
    name = wheel.get("filename")
    if not (isinstance(name, str) and name.endswith(".whl") and not name.startswith(".")
            and "/" not in name and "\\" not in name and "\0" not in name and ".." not in name):
        raise Failure("bad-request", "%s is not a wheel's file name: refused" % shown(name))
    return wheel


def path_problem(path, kind):
    """Why pinship must not work in or through `path` (None if it is fine, or missing): a symbolic
    link where a real `kind` ("dir", "file", "link") should be, or a path of another user."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return "%s cannot be examined (%s)" % (path, exc.strerror)
    if stat.S_ISLNK(info.st_mode) and kind != "link":
        try:
            return "%s is a symbolic link (to %s), not a real %s" % (path, os.readlink(path), kind_name(kind))
        except OSError:
            return "%s is a symbolic link, not a real %s" % (path, kind_name(kind))
    wanted = {"dir": stat.S_ISDIR, "file": stat.S_ISREG, "link": stat.S_ISLNK}[kind]
    if not wanted(info.st_mode):
        return "%s is not a %s" % (path, kind_name(kind))
    if info.st_uid != os.geteuid():
        return "%s is owned by uid %d, not by uid %d that deploys" % (path, info.st_uid, os.geteuid())
    return None


def kind_name(kind):
    return {"dir": "directory", "file": "file", "link": "symbolic link"}[kind]


# What a deploy path holds, and what each entry must be. The deploy path itself may be a link.
LAYOUT = (("releases", "dir"), ("wheels", "dir"), (os.path.join("wheels", ".incoming"), "dir"),
          (".lock", "dir"), ("current", "link"), (".previous", "file"), ("deploy.log", "file"),
          (".agent", "dir"))


def layout_problems(root):
    """Every entry of the deploy path pinship would write or delete through, that it must not."""
    problems = [problem for problem in (path_problem(os.path.join(root, name), kind) for name, kind in LAYOUT)
                if problem]
    link = os.path.join(root, "current")
    if os.path.islink(link) and not any(problem.startswith(link + " ") for problem in problems):
        target = os.readlink(link)
        release = live(root)
        if release is None:
            problems.append("%s points to %s, not to releases/<release>" % (link, target))
        else:
            problem = path_problem(release_dir(root, release), "dir")
            if problem:
                problems.append(problem)
    return problems


def check_layout(root):
    """Refuse (unsafe-path) to write or delete on a host whose deploy path is not as pinship made it."""
    problems = layout_problems(root)
    if problems:
        more = " (and %d more)" % (len(problems) - 1) if len(problems) > 1 else ""
        raise Failure("unsafe-path", "%s%s: pinship will not work through it; put it right on the host by hand"
                      % (problems[0], more), paths=problems)


def is_regular(path):
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def read_bytes(path, limit=READ_LIMIT):
    """A regular file's bytes, its last component never followed if it is a link; None if missing."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: a symbolic link
            raise Failure("unsafe-path", "%s is a symbolic link: not read" % path) from None
        raise
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise Failure("unsafe-path", "%s is not a regular file: not read" % path)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise Failure("too-large", "%s is larger than %d MB: not read" % (path, limit >> 20))
    return data


def append_log(root, entry):
    """One JSON line onto deploy.log, which is never followed if it is a link."""
    descriptor = os.open(os.path.join(root, "deploy.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
                         0o644)
    with os.fdopen(descriptor, "a") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")


def replace_file(root, name, text):
    """Write <root>/<name> whole by rename: a link standing there is replaced, never written through."""
    temporary = os.path.join(root, ".%s-%d" % (name.lstrip("."), os.getpid()))
    if os.path.lexists(temporary):
        os.unlink(temporary)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, os.path.join(root, name))


def release_dir(root, release):
    return os.path.join(root, "releases", release)


def live(root):
    """The release `current` links to, if it is a link of the one form the agent makes."""
    try:
        target = os.readlink(os.path.join(root, "current"))
    except OSError:
        return None
    name = target[len("releases/"):] if target.startswith("releases/") else None
    return name if is_release_id(name) else None


def made_here(path):
    """Whether `path` is a release folder the agent made: a real directory (never a link) of this
    user, holding the agent's marker (or `.complete`, all that agents before the marker wrote)."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        return False
    return is_regular(os.path.join(path, MARKER)) or is_regular(os.path.join(path, ".complete"))


def completed(root, release):
    """Whether releases/<release> finished staging (never judged through a linked releases/)."""
    path = release_dir(root, release)
    if path_problem(os.path.join(root, "releases"), "dir"):
        return False
    return made_here(path) and is_regular(os.path.join(path, ".complete"))


def release_names(root):
    """Release ids in releases/, listed only when it is a real directory of this user."""
    folder = os.path.join(root, "releases")
    if path_problem(folder, "dir") or not os.path.isdir(folder):
        return []
    return [name for name in os.listdir(folder) if is_release_id(name)]


def complete_releases(root):
    """Releases that finished staging, oldest first (by when they were completed)."""
    found = []
    for name in release_names(root):
        if completed(root, name):
            found.append((os.lstat(os.path.join(release_dir(root, name), ".complete")).st_mtime, name))
    return [name for _, name in sorted(found)]


def previous_release(root):
    try:
        data = read_bytes(os.path.join(root, ".previous"), 1024)
    except (Failure, OSError):
        return None
    name = data.decode("ascii", "replace").strip() if data else None
    return name if is_release_id(name) else None


def remove_release(root, release):
    """The one way the agent deletes a release: releases/<release>, if it is a folder the agent
    made (see made_here) in a releases/ that is a real directory of this user, and neither live nor
    previous. Returns None once it is gone (or was never there), else why it is kept."""
    if not is_release_id(release):
        raise Failure("bad-request", "%s is not a release id (12 lowercase hex digits): refused" % shown(release))
    check_layout_of(os.path.join(root, "releases"), "dir")
    path = release_dir(root, release)
    if not os.path.lexists(path):
        return None
    if release in (live(root), previous_release(root)):
        return "%s is the live or the previous release" % path
    if not made_here(path):
        return "%s was not made by pinship (a link, another user's, or without its marker %s)" % (path, MARKER)
    shutil.rmtree(path, ignore_errors=True)  # refuses a link; links inside are removed, never followed
    return None


def check_layout_of(path, kind):
    problem = path_problem(path, kind)
    if problem:
        raise Failure("unsafe-path", "%s: pinship will not work through it; put it right on the host by hand"
                      % problem, paths=[problem])


def store_path(root, digest, filename):
    check_wheel({"sha256": digest, "filename": filename})
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
    for digest in os.listdir(store) if not path_problem(store, "dir") and os.path.isdir(store) else []:
        folder = os.path.join(store, digest)
        if is_hex(digest, 64) and not path_problem(folder, "dir") and os.path.isdir(folder) and os.listdir(folder):
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
        "unsafe": layout_problems(root),  # each a path pinship will not work through, and why
        "free_bytes": usage.free,
    }


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


def remove_entry(path):
    """Remove the agent's own temporary entry: a real directory with what is in it, else the
    entry itself (a link is unlinked, never followed)."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass


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
    # What probe says, as seen under the lock: rollback needs no separate probe round trip.
    return {"broke": broke, "probe": op_probe(req)}


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


def accept_incoming(root, wheels):
    """Move uploaded wheels into the store once their hash is right; report what is not."""
    incoming = os.path.join(root, "wheels", ".incoming")
    bad = []
    for wheel in wheels:
        final = store_path(root, wheel["sha256"], wheel["filename"])
        check_layout_of(os.path.dirname(final), "dir")
        sent = os.path.join(incoming, wheel["sha256"])
        if os.path.lexists(sent):
            if is_regular(sent) and sha256(sent) == wheel["sha256"]:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(sent, final)
            else:
                remove_entry(sent)
        if not is_regular(final) or sha256(final) != wheel["sha256"]:
            if os.path.lexists(final):
                remove_entry(final)  # a tampered or truncated wheel is never kept, let alone installed
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


def stage_request(req):
    """Everything stage is sent, checked before anything is touched."""
    release = release_arg(req)
    manifest = req.get("manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("wheels"), list):
        raise Failure("bad-request", "the stage request has no manifest with a list of wheels: refused")
    for wheel in manifest["wheels"]:
        check_wheel(wheel)
    import hashlib
    lock = req.get("lock")
    if not isinstance(lock, str) or hashlib.sha256(lock.encode()).hexdigest()[:12] != release:
        raise Failure("bad-request", "release %s is not the id of the lock sent with it: refused" % release)
    return release, manifest


def op_stage(req):
    root = req["path"]
    release_id, manifest = stage_request(req)
    check_token(req)
    check_layout(root)
    bad = accept_incoming(root, manifest["wheels"])
    if bad:
        raise Failure("corrupt", "missing or corrupt in the store: " + ", ".join(bad), files=bad)
    release = release_dir(root, release_id)
    timeout = req.get("timeout", 600)
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
        make_venv(venv, os.path.join(root, ".agent"))  # noqa: F821 (agent_install.py, sent ahead of this file)
        donor = donor if donor and made_here(release_dir(root, donor)) else None
        linked = reuse_live(root, release, manifest["wheels"], donor)  # noqa: F821 (agent_venv.py)
        # From the release's own wheels/ (links into the store): it can be reinstalled by hand
        # with pip --no-index --find-links wheels --require-hashes -r requirements.lock.
        todo = [dict(w, path=os.path.join(release, "wheels", w["filename"]))
                for w in manifest["wheels"] if w["sha256"] not in linked]
        install_wheels(venv, todo)  # noqa: F821 (agent_install.py)
    except Refused as exc:  # noqa: F821 (agent_install.py)
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
    check_token(req)  # a deploy whose lock was taken over must not mark the new owner's release complete
    with open(os.path.join(release, ".complete"), "w") as handle:
        handle.write(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return {"reused": False, "linked": len(linked)}


def discard(req, release_id):
    if owns_lock(req):  # else a deploy that took the lock over (--break-lock) may be staging it
        remove_release(req["path"], release_id)


def stage_failed(step, code, out):
    tail = "\n".join(out.strip().splitlines()[-8:]) or "(no output)"
    raise Failure("stage", "%s failed (exit %d): %s" % (step, code, tail), step=step)


def point_current(root, release_id, temporary):
    """Switch `current` by rename: it is never missing and never half-made."""
    if os.path.lexists(temporary):
        os.unlink(temporary)  # left by an earlier agent that had this pid
    os.symlink(os.path.join("releases", release_id), temporary)
    os.replace(temporary, os.path.join(root, "current"))


def op_switch(req):
    root, release_id = req["path"], release_arg(req)
    keep = req.get("keep", 5)
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
        raise Failure("bad-request", "keep %s is not a count of releases: refused" % shown(keep))
    log_arg(req)
    check_token(req)
    temporary = os.path.join(root, ".current-%d" % os.getpid())
    before = live(root)
    try:
        return switch(req, root, release_id, temporary, keep)
    except BaseException as exc:
        # Whatever failed, the lock this deploy took is released and the attempt logged: a lock
        # left by a finished deploy would stop every later one, and the reply says what is live.
        raise failed_switch(req, root, release_id, temporary, before, exc) from None


def switch(req, root, release_id, temporary, keep):
    check_layout(root)
    if not completed(root, release_id):
        raise Failure("missing", "release %s is not on this host (or never finished staging)" % release_id)
    before = live(root)
    result = {"previous": before, "switched": before != release_id, "restart": None, "switched_back": False}
    if before != release_id:
        point_current(root, release_id, temporary)
        if before:
            replace_file(root, ".previous", before)
    if req.get("restart") and result["switched"]:
        code, out = run(req["restart"], req.get("timeout", 600), cwd=os.path.join(root, "current"),
                        env=release_env(os.path.join(root, "current")), shell=True)
        result["restart"] = code
        if code != 0:
            if before:
                point_current(root, before, temporary)
                run(req["restart"], req.get("timeout", 600), cwd=os.path.join(root, "current"),
                    env=release_env(os.path.join(root, "current")), shell=True)
            result["switched_back"] = True
            result["restart_output"] = "\n".join(out.strip().splitlines()[-8:])
    result["pruned"] = prune(root, keep)
    finish(req, dict(req["log"], previous=before, result="switched back" if result["switched_back"] else "ok"))
    return result


def failed_switch(req, root, release_id, temporary, before, exc):
    """After a switch failed: remove its temporary link, log it, release the lock; the Failure
    to answer with, which says what the host now serves."""
    if os.path.islink(temporary):
        os.unlink(temporary)
    error = str(exc) if isinstance(exc, Failure) else "%s: %s" % (
        getattr(exc, "strerror", None) or type(exc).__name__, getattr(exc, "filename", None) or exc)
    serving = live(root)
    entry = dict(req["log"], previous=before, result="failed", error=error, current=serving)
    notes = []
    try:
        if owns_lock(req):
            append_log(root, entry)
    except OSError as problem:
        notes.append("deploy.log not written (%s)" % problem.strerror)
    op_unlock(req)
    if owns_lock(req):
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


def prune(root, keep):
    """Old releases beyond `keep`, and releases that never finished staging, each through
    remove_release (never the live or the previous one, never what the agent did not make)."""
    done = complete_releases(root)
    removed = [name for name in done[: max(0, len(done) - keep)] if remove_release(root, name) is None]
    for name in release_names(root):
        if name not in done:
            remove_release(root, name)  # never finished staging
    return removed


def finish(req, entry):
    try:
        check_layout_of(os.path.join(req["path"], "deploy.log"), "file")
        append_log(req["path"], entry)
    finally:
        op_unlock(req)  # even on a full disk: a lock left behind would block every later deploy


def op_abort(req):
    root, release = req["path"], release_arg(req, optional=True)
    log_arg(req)
    if not owns_lock(req):
        return {}  # another deploy's lock, and perhaps the release it is staging: not ours to touch
    kept = None
    try:
        check_layout(root)
        if release and not completed(root, release):
            remove_release(root, release)
    except Failure as exc:
        kept = exc  # the lock is released all the same, and the reply says why nothing was deleted
    finish(req, dict(req["log"], previous=live(root), result=req.get("reason", "aborted")))
    if kept is not None:
        raise Failure(kept.kind, "%s (lock released, nothing deleted)" % kept, **kept.extra)
    return {}


# What `read` may return: nothing but these, each opened without following a link.
READABLE = ("manifest.json", "requirements.lock")


def op_read(req):
    """A file from a release (its manifest, lock) or the deploy log, for status and history."""
    root, name = req["path"], req.get("file")
    parts = name.split("/") if isinstance(name, str) else []
    if name == "deploy.log":
        path = os.path.join(root, name)
    elif len(parts) == 3 and parts[0] == "releases" and is_release_id(parts[1]) and parts[2] in READABLE:
        check_layout_of(os.path.join(root, "releases"), "dir")
        check_layout_of(release_dir(root, parts[1]), "dir")
        path = os.path.join(root, *parts)
    else:
        raise Failure("bad-request", "%s is not a file pinship reads (deploy.log, releases/<release>/manifest.json "
                      "or releases/<release>/requirements.lock): refused" % shown(name))
    data = read_bytes(path)
    return {"text": None if data is None else data.decode("utf-8", "replace")}


OPS = {"status": op_status,  # noqa: F821 (agent_status.py, sent ahead of this file)
       "probe": op_probe, "lock": op_lock, "unlock": op_unlock, "stage": op_stage,
       "switch": op_switch, "abort": op_abort, "read": op_read,
       "ping": lambda req: {}}  # a kept session still answers (keeper.py)


def main(req):
    try:
        op = OPS.get(req.get("op")) if isinstance(req, dict) and isinstance(req.get("path"), str) else None
        if op is None:
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
