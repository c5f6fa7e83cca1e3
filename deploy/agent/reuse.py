"""Reusing the live release's packages in a new release.

A new release reuses what the live release installed from the very same wheel (same sha256):
those files are hard-linked after each is checked against its RECORD hash, so only changed wheels
are installed (wheel.py). A new app version then installs one wheel instead of all of them, and a file
someone edited in the live venv is never carried over (that package is installed afresh).

Every file linked is proven unchanged: our RECORDs give each file a sha256 (.pyc files and
launchers too), a package whose RECORD has a row without one is installed afresh, and the hashes
are cached by inode, size and mtime (files.digest_of), so a kept agent pays a stat per file.
Only regular files inside the live venv are linked, and no two packages may hold one file.
"""

from __future__ import annotations

import json
import os
import shutil

from .files import digest_of
from .protocol import Refused
from .record import record_form
from .scripts import script_head, split_head

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a host's every session an import; the annotations need none
    from typing import Any

    Copy = tuple[str, str, bool]  # (source, target, is a script)


# Other modules are imported where they are used: every call of the agent runs this file, and
# most calls (probe, lock, switch) need none of them; importing them costs more than the call.


def site_packages(venv: str) -> str | None:
    import glob
    found = glob.glob(os.path.join(glob.escape(venv), "lib", "python*", "site-packages"))
    return found[0] if len(found) == 1 else None


def venv_identity(venv: str) -> list[str] | None:
    """The interpreter a venv runs on: venvs of different interpreters cannot share files."""
    try:
        with open(os.path.join(venv, "pyvenv.cfg")) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    keep = ("home", "version", "version_info", "implementation")
    return sorted(line.replace(" ", "") for line in lines if line.split("=")[0].strip() in keep)


def record_hash(path: str) -> str:
    return record_form(digest_of(path))


def dist_info(site: str, filename: str) -> str | None:
    name, version = filename.split("-")[:2]
    path = os.path.join(site, "%s-%s.dist-info" % (name, version))
    return path if os.path.isdir(path) else None


def plan_copy(donor_site: str, site: str, info: str) -> list[Copy] | None:
    """(source, target, script) for every file of one installed wheel, or None if any is off:
    missing, not a regular file, outside the venv, without a hash, or not matching it."""
    import csv
    import stat
    donor_venv = os.path.dirname(os.path.dirname(os.path.dirname(donor_site)))
    record = os.path.join(info, "RECORD")
    try:
        with open(record, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, ValueError, csv.Error):
        return None
    plan = []
    for row in rows:
        if not row:
            continue
        source = os.path.normpath(os.path.join(donor_site, row[0]))
        try:
            regular = stat.S_ISREG(os.lstat(source).st_mode)
        except OSError:
            return None
        if not source.startswith(donor_venv + os.sep) or not regular:
            return None
        if source != record and (len(row) < 2 or record_hash(source) != row[1]):
            return None  # edited in the live venv, or never hashed: install this wheel afresh instead
        target = os.path.normpath(os.path.join(site, row[0]))
        plan.append((source, target, source.startswith(os.path.join(donor_venv, "bin") + os.sep)))
    return plan


def copy_installed(plan: list[Copy], donor_venv: str, venv: str) -> dict[str, tuple[str, str]]:
    """Hard-link the files; scripts naming the live venv's python get their own copy naming the
    new venv's (in whichever form script_head writes for it: a path with a space, or a long one,
    needs the /bin/sh trampoline)."""
    old, new = os.path.join(donor_venv, "bin", "python"), os.path.join(venv, "bin", "python")
    changed = {}
    for source, target, script in plan:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target):
            # A file the venv module made (bin/python3 is a link to the base interpreter): replaced,
            # as a fresh install replaces it, never written through.
            os.remove(target)
        if script:
            with open(source, "rb") as handle:
                found = split_head(handle.read(), old)
            if found is not None:
                data = script_head(new, found[0]) + found[1]
                with open(target, "wb") as handle:
                    handle.write(data)
                shutil.copymode(source, target)
                changed[target] = (record_hash(target), str(len(data)))
                continue
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
    return changed


def rewrite_record(site: str, info: str, changed: dict[str, tuple[str, str]]) -> None:
    """RECORD is a hard link too: give the new venv its own, with the rewritten scripts' hashes,
    in the line endings RECORD is written with (LF; the csv module's default is CRLF)."""
    import csv
    record = os.path.join(site, os.path.basename(info), "RECORD")
    with open(record, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    for row in rows:
        target = os.path.normpath(os.path.join(site, row[0])) if row else None
        if target in changed:
            row[1], row[2] = changed[target]
    os.remove(record)
    with open(record, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def reuse_live(root: str, release: str, wheels: list[dict[str, Any]], live_release: str | None) -> set[str]:
    """Link into `release` every wheel the live release installed from identical bytes."""
    if not live_release or live_release == os.path.basename(release):
        return set()
    donor_venv = os.path.join(root, "releases", live_release, "venv")
    venv = os.path.join(release, "venv")
    if venv_identity(donor_venv) is None or venv_identity(donor_venv) != venv_identity(venv):
        return set()
    donor_site, site = site_packages(donor_venv), site_packages(venv)
    donor_manifest = os.path.join(root, "releases", live_release, "manifest.json")
    try:
        with open(donor_manifest) as handle:
            donor_hashes = {w["sha256"] for w in json.load(handle)["wheels"]}
    except (OSError, ValueError, KeyError):
        return set()
    reused: set[str] = set()
    claimed: dict[str, str] = {}  # file -> the wheel that holds it
    for wheel in wheels:
        if wheel["sha256"] not in donor_hashes or not donor_site or not site:
            continue
        info = dist_info(donor_site, wheel["filename"])
        plan = plan_copy(donor_site, site, info) if info else None
        if not plan or not info:
            continue
        for _, target, _ in plan:
            if target in claimed:  # the live venv was not made by this agent's rules
                raise Refused("%s: %s is also installed by %s" % (
                    wheel["filename"], os.path.relpath(target, site), claimed[target]))
            claimed[target] = wheel["filename"]
        changed = copy_installed(plan, donor_venv, venv)
        rewrite_record(site, info, changed)
        reused.add(wheel["sha256"])
    return reused

