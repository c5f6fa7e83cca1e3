"""The versions an index page (and a find-links folder) offers uv, and the one uv takes first under a specifier.

uvreport.py asks, for each package of a layer, which version uv's own run of that layer would
take: the newest one the layer's lines allow that uv could take at all. What uv takes is a wheel or
an sdist (it skips .egg and .exe files), not yanked unless a line pins it with `==`, whose
Requires-Python does not exclude this Python by a lower bound (uv reads no upper bound); a wheel's
tags are not read, so any wheel counts. Each rule errs toward a newer version, which can only make
the proof fail.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from deploy.lock import indexpage
from deploy.lock.reqfile import canonical

# What uv takes from an index page (it skips .egg, .exe and the rest).
_SDIST = (".tar.gz", ".zip", ".tar.bz2", ".tar.lz", ".tar.lzma", ".tar.xz", ".tar.zst", ".tar", ".tbz", ".tgz",
          ".tlz", ".txz")
# A package's versions, newest first, each with the Requires-Python and yanked state of each of its files.
Files = dict[Version, list[tuple[str | None, bool]]]


def first(plain: Sequence[SpecifierSet], files: Files, python: Version, *, pre: bool) -> str | None:
    """The newest version of a package's `files` (newest first, as group() gives them) uv could take under
    `plain` alone (see the docstring), or None."""
    specifier = SpecifierSet()
    for one in plain:
        specifier &= one
    exact = any(spec.operator in ("==", "===") for spec in specifier)
    allow = pre or specifier.prereleases is True  # a line naming a pre-release lets them in, as in uv
    for version in files:  # newest first
        if usable(files[version], python, exact=exact) and specifier.contains(version, prereleases=allow):
            return str(version)
    return None


def usable(found: Sequence[tuple[str | None, bool]], python: Version, *, exact: bool = False) -> bool:
    """Whether uv could take a version with these files: one not yanked (unless a line pins it with
    `==`), whose Requires-Python admits `python` (see _admits)."""
    return any((exact or not yanked) and _admits(requires, python) for requires, yanked in found)


def running_python() -> Version:
    """This interpreter's version: the Python the locks are solved for."""
    return Version(".".join(map(str, sys.version_info[:3])))


def folder_files(folders: Sequence[Path]) -> list[str]:
    """The names of the files in find-links `folders` (local() picks a package's out of them)."""
    return [entry.name for folder in folders if folder.is_dir() for entry in folder.iterdir() if entry.is_file()]


@functools.lru_cache(maxsize=1024)
def _admits(requires_python: str | None, python: Version) -> bool:
    """False only when a lower bound of Requires-Python leaves this Python out (uv reads no other)."""
    if not requires_python:
        return True
    try:
        specifier = SpecifierSet(requires_python)
    except InvalidSpecifier:
        return True
    for spec in specifier:
        if spec.operator in (">=", ">") and not spec.contains(python, prereleases=True):
            return False
        if spec.operator == "~=" and python < Version(spec.version):
            return False
    return True


def same(one: str, other: str) -> bool:
    try:
        return Version(one) == Version(other)
    except InvalidVersion:
        return False


def files(name: str, content_type: str, body: bytes) -> Files:
    """Each version of `name` its page lists, with the Requires-Python and yanked state of each of its files."""
    return group(name, listed(content_type, body))


def local(name: str, filenames: Sequence[str]) -> list[tuple[str, str | None, bool]]:
    """The files of a find-links folder that are `name`'s (a wheel's own name is read here, as a
    folder holds many projects; an sdist's in _version_text)."""
    return [(filename, None, False) for filename in filenames
            if not filename.endswith(".whl") or canonical(filename.split("-", 1)[0]) == name]


def group(name: str, listed: Sequence[tuple[str, str | None, bool]]) -> Files:
    """Each version of `name` among `listed` files, with the Requires-Python and yanked state of each
    of its wheels and sdists (a version is parsed once however many files it has: PyPI lists thousands)."""
    grouped: dict[str, list[tuple[str | None, bool]]] = {}
    for filename, requires_python, yanked in listed:
        text = _version_text(name, filename)
        if text is not None:
            grouped.setdefault(text, []).append((requires_python, yanked))
    found: Files = {}
    for text, files in grouped.items():
        try:
            found.setdefault(Version(text), []).extend(files)
        except InvalidVersion:
            continue  # uv skips a file whose version does not parse
    return {version: found[version] for version in sorted(found, reverse=True)}


def merged(one: Files, other: Files) -> Files:
    """The versions of both, newest first, each with the files of both."""
    if not other:
        return one
    return {version: [*one.get(version, []), *other.get(version, [])]
            for version in sorted(one.keys() | other.keys(), reverse=True)}


def listed(content_type: str, body: bytes) -> list[tuple[str, str | None, bool]]:
    return from_listing(indexpage.listing(content_type, body))


def from_listing(files: Sequence[indexpage.File]) -> list[tuple[str, str | None, bool]]:
    """(file name, Requires-Python, yanked) of each file: the name uv reads is the link's, whatever an
    anchor's text says (PEP 503 has them agree)."""
    return [(file.link_name, file.requires_python, file.yanked) for file in files]


def _version_text(name: str, filename: str) -> str | None:
    """The version a wheel's or an sdist's file name gives, or None for a file uv would not take."""
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        return parts[1] if len(parts) in (5, 6) else None
    stem = next((filename[: -len(ext)] for ext in _SDIST if filename.endswith(ext)), None)
    if stem is None:
        return None
    if stem[len(name):len(name) + 1] == "-" and canonical(stem[:len(name)]) == name:
        return stem[len(name) + 1:]  # the name as the project spells it, most often
    for at in (i for i, char in enumerate(stem) if char == "-"):
        if canonical(stem[:at]) == name:
            return stem[at + 1:]
    return None
