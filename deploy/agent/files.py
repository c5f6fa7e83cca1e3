"""Reading, writing and hashing files on the host, never through a link where a real file or
folder should be, and never in a path of another user."""

from __future__ import annotations

import json
import os
import shutil
import stat

from .protocol import Failure

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a host's every session an import; the annotations need none
    from hashlib import _Hash as Hash
    from typing import Any, BinaryIO


def file_digest(handle: BinaryIO) -> Hash:
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
HASHED: dict[tuple[int, int, int, int], Hash] = {}


def digest_of(path: str) -> Hash:
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


def sha256(path: str) -> str:
    return digest_of(path).hexdigest()


READ_LIMIT = 16 << 20  # bytes: the most any file is read whole (a manifest, a lock, deploy.log)


def path_problem(path: str, kind: str) -> str | None:
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


def kind_name(kind: str) -> str:
    return {"dir": "directory", "file": "file", "link": "symbolic link"}[kind]


def check_layout_of(path: str, kind: str) -> None:
    problem = path_problem(path, kind)
    if problem:
        raise Failure("unsafe-path", "%s: pinship will not work through it; put it right on the host by hand"
                      % problem, paths=[problem])


def is_regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def read_bytes(path: str, limit: int = READ_LIMIT) -> bytes | None:
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


def append_log(root: str, entry: dict[str, Any]) -> None:
    """One JSON line onto deploy.log, which is never followed if it is a link."""
    descriptor = os.open(os.path.join(root, "deploy.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
                         0o644)
    with os.fdopen(descriptor, "a") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")


def replace_file(root: str, name: str, text: str) -> None:
    """Write <root>/<name> whole by rename: a link standing there is replaced, never written through."""
    temporary = os.path.join(root, ".%s-%d" % (name.lstrip("."), os.getpid()))
    if os.path.lexists(temporary):
        os.unlink(temporary)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, os.path.join(root, name))


def remove_entry(path: str) -> None:
    """Remove the agent's own temporary entry: a real directory with what is in it, else the
    entry itself (a link is unlinked, never followed)."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass


