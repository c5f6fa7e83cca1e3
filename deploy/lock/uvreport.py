"""The one-run proof's evidence for uv: what pipreport.py tells of pip, made from uv's output and the index.

uv has no account of what its resolver saw. onerun.py's two checks need, per scope (a run the
rounds would make), what the scope's own lines reach and the version uv would take first for each
package; this builds both, in pipreport.py's shape (`{"scopes": {scope: {name: {"picked", "first"}}}}`),
from the joint run's output and the index pages the pylock step reads anyway:

(a) What a scope reaches is the joint run's `# via` graph from the scope's own requirement names
    (what select() gives it), provided each package asks, in the scope's own run, for what it asks
    for in the joint one. Its version is the joint's wherever (b) holds; markers other than `extra`
    read the same environment in every run; so only extras differ. The joint run is made with
    --no-strip-extras, whose output names the extras each package was taken with
    (`kombu[redis]==5.7.0  # via celery`). A package taken with an extra is *accounted for* in a
    scope when the scope's own lines ask for all of them, or when everything that asks for it (its
    `via`) is one of the scope's own files or a package of the scope that is accounted for (the
    largest such set: a cycle counts only if nothing outside the scope asks into it). A scope with
    a package not accounted for is left out of the report, and its round runs.
(b) `first` is, as pipreport.py has it, the pin of a scope below, else the preference when the
    scope's lines allow it (uv takes an existing pin whenever the range at hand allows it; every
    range of that run is met by the joint's versions), else the newest version on the index page
    that the scope's own plain lines and constraints allow and that uv could take: a wheel or an
    sdist, not yanked (unless a line pins it with `==`), whose Requires-Python does not exclude
    this Python by a lower bound (uv reads only those); a wheel's tags are not read, so any wheel
    counts. Pre-releases count when a line on the name mentions one or --pre/--prerelease is set.
    Each rule errs toward a newer `first`, which can only fail the proof and run the rounds.

Only a lock that reads one index is accounted for (uv's --index-strategy unsafe-best-match weighs
every index's candidates); the files of its find-links folders are candidates beside the page's.
"""

from __future__ import annotations

import functools
import json
import platform
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from deploy.lock.indexpage import JSON
from deploy.lock.lockfile import Pin
from deploy.lock.reqfile import canonical, logical_lines

# A package's versions, each with the Requires-Python and yanked state of each of its files.
Files = dict[Version, list[tuple[str | None, bool]]]
_EXTRAS = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\[(?P<extras>[^\]]*)\](?P<rest>==\S*)", re.MULTILINE)
# What uv takes from an index page (it skips .egg, .exe and the rest).
_SDIST = (".tar.gz", ".zip", ".tar.bz2", ".tar.lz", ".tar.lzma", ".tar.xz", ".tar.zst", ".tar", ".tbz", ".tgz",
          ".tlz", ".txz")


def strip_extras(path: Path) -> dict[str, frozenset[str]]:
    """Rewrite a --no-strip-extras output without its extras (as a lock writes it); return them by name."""
    taken: dict[str, frozenset[str]] = {}

    def plain(match: re.Match[str]) -> str:
        name = canonical(match.group("name"))
        named = {canonical(extra) for extra in match.group("extras").split(",") if extra.strip()}
        taken[name] = taken.get(name, frozenset()) | named
        return match.group("name") + match.group("rest")

    path.write_text(_EXTRAS.sub(plain, path.read_text(encoding="utf-8")), encoding="utf-8")
    return taken


def account(
    scopes: Mapping[str, Any],
    lines_of: Callable[[Sequence[str]], tuple[list[str], list[str]]],
    universe: Mapping[str, Pin],
    extras: Mapping[str, frozenset[str]],
    page_of: Callable[[str], tuple[str, bytes]],
    folders: Sequence[Path] = (),
    *,
    pre: bool = False,
    fresh: bool = False,
) -> dict[str, Any]:
    """The report onerun.py reads, for `scopes` (name -> joint.Scope, lowest first).

    `lines_of(layers)` gives the requirement lines and the constraint lines (kept pins included) of
    a run over those layers; `page_of(name)` the index's page of a package, to which the files of
the find-links `folders` are added (their Requires-Python unread: each counts); `pre` whether --pre or
    --prerelease is set; `fresh` whether the run takes no preferences (--upgrade).
    """
    python = Version(platform.python_version())
    report: dict[str, Any] = {}
    read: dict[str, Files] = {}  # each page parsed once, whatever the scopes
    local = [entry.name for folder in folders if folder.is_dir() for entry in folder.iterdir() if entry.is_file()]

    def listed(name: str) -> Files:
        if name not in read:
            read[name] = _group(name, _listed(*page_of(name)) + _local(name, local))
        return read[name]

    for scope_name, scope in scopes.items():
        wanted, constraints = lines_of(scope.layers)
        own = [_parse(text) for text in wanted]
        caps = [_parse(text) for text in constraints]
        mine = [req for req in own if req.marker is None or req.marker.evaluate()]
        held = [req for req in caps if req.marker is None or req.marker.evaluate()]
        starts = {canonical(req.name) for req in mine}
        closure = _reach(starts, universe)
        asked: dict[str, frozenset[str]] = {}
        for req in mine:
            key = canonical(req.name)
            asked[key] = asked.get(key, frozenset()) | {canonical(extra) for extra in req.extras}
        files = {f"-r {layer}.in" for layer in scope.layers}
        if not _accounted(closure, universe, extras, asked, files):
            continue  # an extra asked for from outside the scope: onerun.py says so, and the round runs
        seeds = {} if fresh else {canonical(pin.name): pin.version for pin in scope.preferences}
        seeds |= {name: found["picked"] for below in scope.below for name, found in report.get(below, {}).items()}
        packages: dict[str, dict[str, str | None]] = {}
        for name in sorted(closure):
            picked = universe[name].version
            every = [req for req in own + caps if canonical(req.name) == name]
            seed = seeds.get(name)
            if seed is not None and all(req.specifier.contains(seed, prereleases=True) for req in every):
                first: str | None = seed
            else:
                plain = [req for req in mine if canonical(req.name) == name and not req.extras]
                plain += [req for req in held if canonical(req.name) == name]
                first = _first(plain, listed(name), python, pre=pre or any(req.specifier.prereleases for req in every))
            if first is not None and first != picked and _same(first, picked):
                first = picked
            packages[name] = {"picked": picked, "first": first}
        report[scope_name] = packages
    return {"scopes": report}


def _parse(text: str) -> Requirement:
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise ValueError(f"a line uv's account cannot read ({exc})") from None
    if req.url:
        raise ValueError(f"a direct reference ({req.name} @ …)")
    return req


def _reach(starts: Iterable[str], universe: Mapping[str, Pin]) -> set[str]:
    children: dict[str, set[str]] = {}
    for child, pin in universe.items():
        for reason in pin.via:
            if not reason.startswith("-"):
                children.setdefault(canonical(reason), set()).add(child)
    reached: set[str] = set()
    stack = [name for name in starts if name in universe]
    while stack:
        name = stack.pop()
        if name not in reached:
            reached.add(name)
            stack.extend(children.get(name, ()))
    return reached


def _accounted(closure: set[str], universe: Mapping[str, Pin], extras: Mapping[str, frozenset[str]],
               asked: Mapping[str, frozenset[str]], files: set[str]) -> bool:
    """Whether every package of `closure` taken with an extra asks for it in the scope's own run too."""
    doubtful = {name for name in closure if extras.get(name, frozenset()) - asked.get(name, frozenset())}
    trusted = set(doubtful)
    changed = True
    while changed:
        changed = False
        for name in sorted(trusted):
            for reason in universe[name].via:
                if reason.startswith("-c "):
                    continue
                parent = canonical(reason) if not reason.startswith("-") else None
                inside = reason in files if parent is None else parent in closure and (
                    parent not in doubtful or parent in trusted)
                if not inside:
                    trusted.discard(name)
                    changed = True
                    break
    return trusted == doubtful


def _first(plain: Sequence[Requirement], files: Files, python: Version, *, pre: bool) -> str | None:
    """The newest version of a package's `files` uv could take under `plain` alone (see the docstring), or None."""
    specifier = SpecifierSet()
    for req in plain:
        specifier &= req.specifier
    exact = any(spec.operator in ("==", "===") for spec in specifier)
    allow = pre or specifier.prereleases is True  # a line naming a pre-release lets them in, as in uv
    for version in sorted(files, reverse=True):
        usable = any((exact or not yanked) and _admits(requires, python) for requires, yanked in files[version])
        if usable and specifier.contains(version, prereleases=allow):
            return str(version)
    return None


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


def _same(one: str, other: str) -> bool:
    try:
        return Version(one) == Version(other)
    except InvalidVersion:
        return False


def _files(name: str, content_type: str, body: bytes) -> Files:
    """Each version of `name` its page lists, with the Requires-Python and yanked state of each of its files."""
    return _group(name, _listed(content_type, body))


def _local(name: str, filenames: Sequence[str]) -> list[tuple[str, str | None, bool]]:
    """The files of a find-links folder that are `name`'s (a wheel's own name is read here, as a
    folder holds many projects; an sdist's in _version_text)."""
    return [(filename, None, False) for filename in filenames
            if not filename.endswith(".whl") or canonical(filename.split("-", 1)[0]) == name]


def _group(name: str, listed: Sequence[tuple[str, str | None, bool]]) -> Files:
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
    return found


def _listed(content_type: str, body: bytes) -> list[tuple[str, str | None, bool]]:
    if content_type.split(";")[0].strip() == JSON:
        data = json.loads(body)
        entries = data.get("files") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ValueError("a JSON index page without a list of files")
        return [(str(entry.get("filename", "")), entry.get("requires-python") or None,
                 entry.get("yanked") is True or bool(isinstance(entry.get("yanked"), str) and entry["yanked"]))
                for entry in entries if isinstance(entry, dict)]
    parser = _Anchors()
    parser.feed(body.decode("utf-8", "replace"))
    return parser.found


class _Anchors(HTMLParser):
    """Each anchor of a PEP 503 page: its file name, data-requires-python and whether data-yanked is set."""

    def __init__(self) -> None:
        super().__init__()  # convert_charrefs: attribute values and text come unescaped
        self.found: list[tuple[str, str | None, bool]] = []
        self._open: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open, self._text = dict(attrs), []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            href = self._open.get("href") or ""
            filename = "".join(self._text).strip() or urllib.parse.unquote(
                urllib.parse.urlsplit(href).path.rsplit("/", 1)[-1])
            self.found.append((filename, self._open.get("data-requires-python"), "data-yanked" in self._open))
            self._open = None


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


def lines_reader(graph: Any, kept: Iterable[Pin]) -> Callable[[Sequence[str]], tuple[list[str], list[str]]]:
    """lines_of for account(): a run's requirement lines, and its constraint lines (the layers' `-c` files
    and the kept pins)."""
    pinned = [pin.requirement() for pin in kept]

    def lines_of(layers: Sequence[str]) -> tuple[list[str], list[str]]:
        wanted = [line.text for name in layers for line in graph.layers[name].requirements]
        capped = [line.text for name in layers for path in graph.layers[name].external_constraints
                  for line in logical_lines(path, root=graph.root)]
        if any(text.startswith("-") for text in wanted + capped):
            raise ValueError("an option line among the requirements")
        return wanted, capped + pinned

    return lines_of
