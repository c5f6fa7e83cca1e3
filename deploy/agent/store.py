"""The deploy path on a host: its releases, `current` and `.previous`, the wheel store, and the
rules for what pinship may write or delete there.

Names the agent is sent or reads from the host have exactly one form each (protocol.py); anything
else is refused in a request, and ignored on the host (never deleted, never reported as a release).
"""

from __future__ import annotations

import os
import shutil
import stat

from .files import check_layout_of, is_regular, path_problem, read_bytes, remove_entry, sha256
from .protocol import Failure, check_wheel, is_release_id, shown

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a host's every session an import; the annotations need none
    from typing import Any


MARKER = ".pinship-release"  # written first in every release folder the agent makes


# What a deploy path holds, and what each entry must be. The deploy path itself may be a link.
LAYOUT = (("releases", "dir"), ("wheels", "dir"), (os.path.join("wheels", ".incoming"), "dir"),
          (".lock", "dir"), ("current", "link"), (".previous", "file"), ("deploy.log", "file"),
          (".agent", "dir"))


def layout_problems(root: str) -> list[str]:
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


def check_layout(root: str) -> None:
    """Refuse (unsafe-path) to write or delete on a host whose deploy path is not as pinship made it."""
    problems = layout_problems(root)
    if problems:
        more = " (and %d more)" % (len(problems) - 1) if len(problems) > 1 else ""
        raise Failure("unsafe-path", "%s%s: pinship will not work through it; put it right on the host by hand"
                      % (problems[0], more), paths=problems)


def release_dir(root: str, release: str) -> str:
    return os.path.join(root, "releases", release)


def live(root: str) -> str | None:
    """The release `current` links to, if it is a link of the one form the agent makes."""
    try:
        target = os.readlink(os.path.join(root, "current"))
    except OSError:
        return None
    name = target[len("releases/"):] if target.startswith("releases/") else None
    return name if is_release_id(name) else None


def made_here(path: str) -> bool:
    """Whether `path` is a release folder the agent made: a real directory (never a link) of this
    user, holding the agent's marker (or `.complete`, all that agents before the marker wrote)."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        return False
    return is_regular(os.path.join(path, MARKER)) or is_regular(os.path.join(path, ".complete"))


def completed(root: str, release: str) -> bool:
    """Whether releases/<release> finished staging (never judged through a linked releases/)."""
    path = release_dir(root, release)
    if path_problem(os.path.join(root, "releases"), "dir"):
        return False
    return made_here(path) and is_regular(os.path.join(path, ".complete"))


def release_names(root: str) -> list[str]:
    """Release ids in releases/, listed only when it is a real directory of this user."""
    folder = os.path.join(root, "releases")
    if path_problem(folder, "dir") or not os.path.isdir(folder):
        return []
    return [name for name in os.listdir(folder) if is_release_id(name)]


def complete_releases(root: str) -> list[str]:
    """Releases that finished staging, oldest first (by when they were completed)."""
    found = []
    for name in release_names(root):
        if completed(root, name):
            found.append((os.lstat(os.path.join(release_dir(root, name), ".complete")).st_mtime, name))
    return [name for _, name in sorted(found)]


def previous_release(root: str) -> str | None:
    try:
        data = read_bytes(os.path.join(root, ".previous"), 1024)
    except (Failure, OSError):
        return None
    name = data.decode("ascii", "replace").strip() if data else None
    return name if is_release_id(name) else None


def remove_release(root: str, release: str) -> str | None:
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


def store_path(root: str, digest: str, filename: str) -> str:
    check_wheel({"sha256": digest, "filename": filename})
    return os.path.join(root, "wheels", digest, filename)


def accept_incoming(root: str, wheels: list[dict[str, Any]]) -> list[str]:
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


