"""Run pip-compile, and write down what pip's resolver saw: the fast path's evidence.

Run as a script in the Python that runs pip-compile (never imported by pinship, which keeps to
pip-compile's command line; this is the one place that reads pip's internals, and it only reads):

    python -c BOOT pipreport.py REPORT.json SCOPES.json PAGES compile [pip-compile's arguments…]

It also keeps every index page pip reads in the folder PAGES, for the pylock step (either of
SCOPES.json and PAGES may be "": that part is not asked for).

Every run takes each file's hash from the index page that lists it (`#sha256=` or the JSON API's
`hashes`), where pip-compile would read each page a second time and then, per file, ask PyPI's JSON
API (a 404 from any other index) or download the file and hash it: a quarter of a warm run's time
on a local index of 99 packages, and on PyPI a JSON document per package, megabytes for a project
with many releases. The files are the ones pip-compile picks for the pin (its own
`_get_matching_candidates`, every platform's wheels), and the lock is the same: the index's hash
is the one pip holds each download to (pip checks a link's hash whenever it downloads the file), so
a wrong one could only fail an install, never let another file in. A file whose page gives no
sha256 is hashed as pip-compile does; within one run each page is read once.

SCOPES.json names, for each *scope* (a set of layers the rounds would solve in one run), lowest
first: `files`, whose lines are that run's input (the layer copies, their `-c` files and the kept
layers' pins, as pip names them); `preferences`, the pins pip-tools would read from that run's
output file (the existing locks of its layers and those below, init's seed); and `below`, the
scopes the rounds settle before it, whose pins that run takes as `==` constraints (and preferences).
After pip's resolver succeeds, REPORT.json gets, per scope:

- `closure`: every package its own requirement lines reach through the dependencies of the
  candidates pip picked (each candidate's dependencies as pip read them: extras applied, markers
  evaluated for this Python), with the version picked;
- `first`: for each of them, the version pip would try first for it in that run alone: the
  version a scope below picked, else the preferred version when there is one and that scope's
  lines allow it (pip-tools makes it a `==` constraint then), else the best non-yanked candidate
  pip's finder offers under the scope's own specifiers and constraints for that name (newest
  first, pre-release and Requires-Python rules, the same call pip's resolver makes). Pre-releases
  are let in when any requirement on that name mentions one, since one such requirement lets pip
  take them.

Any failure here is written as `{"error": …}` and pip-compile goes on: a report is evidence for a
shortcut, and without it the lock takes the long way.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

# Run by `python -c`, so that this file's folder (deploy/lock/, whose module names could shadow
# what pip imports) never goes on sys.path.
BOOT = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
_SOURCE = re.compile(r"^-[rc] (?P<path>.+) \(line \d+\)$")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def main(argv: list[str]) -> None:
    report_path, scopes_path, pages_path, *compile_args = argv
    if pages_path:
        _keep_pages(pages_path)
    if scopes_path:
        _report_after_resolving(report_path, scopes_path)
    _hashes_from_pages()
    from piptools.__main__ import cli

    cli(compile_args, prog_name="pip-compile")


def _report_after_resolving(report_path: str, scopes_path: str) -> None:
    with open(scopes_path, encoding="utf-8") as handle:
        asked = json.load(handle)
    try:
        from pip._internal.resolution.resolvelib import resolver as pip_resolver

        original: Callable[..., Any] = pip_resolver.Resolver.resolve
    except (ImportError, AttributeError):
        return  # another pip: pip-compile runs all the same, and the missing report says so

    def resolve(self: Any, root_reqs: list[Any], check_supported_wheels: bool) -> Any:
        req_set = original(self, root_reqs, check_supported_wheels)
        try:
            report: dict[str, Any] = _report(self, root_reqs, asked)
        except Exception as exc:  # any surprise in pip's internals means: no shortcut
            report = {"error": f"{type(exc).__name__}: {exc}"}
        with open(report_path, "w", encoding="utf-8") as out:
            json.dump(report, out)
        return req_set

    pip_resolver.Resolver.resolve = resolve  # type: ignore[method-assign]


def _hashes_from_pages() -> None:
    """Each page read once per run, and each pin's hashes from its files' links (see the docstring)."""
    try:
        from pip._internal.index import collector
        from piptools.repositories.pypi import PyPIRepository

        original_fetch: Callable[..., Any] = collector.LinkCollector.fetch_response
        original_hashes: Callable[..., Any] = PyPIRepository._get_req_hashes
        PyPIRepository._get_matching_candidates  # noqa: B018 - the method the patch relies on
    except (ImportError, AttributeError):
        return  # another pip or pip-tools: pip-compile gathers the hashes its own way
    fetched: dict[str, Any] = {}

    def fetch_response(self: Any, location: Any, package_name: str | None = None) -> Any:
        url = str(location.url)
        if url not in fetched:
            page = original_fetch(self, location, package_name)
            if page is None:
                return None  # not kept: a failed read is tried again, as pip-compile would
            fetched[url] = page
        return fetched[url]

    def get_req_hashes(self: Any, ireq: Any) -> set[str]:
        found: set[str] = set()
        for candidate in self._get_matching_candidates(ireq):
            listed = getattr(candidate.link, "_hashes", None)
            digest = listed.get("sha256") if isinstance(listed, dict) else None
            if not isinstance(digest, str) or _SHA256.fullmatch(digest) is None:
                return set(original_hashes(self, ireq))  # pip-compile's way, for every file of this pin
            found.add(f"sha256:{digest.lower()}")
        return found

    collector.LinkCollector.fetch_response = fetch_response  # type: ignore[method-assign]
    PyPIRepository._get_req_hashes = get_req_hashes  # type: ignore[method-assign]


def _keep_pages(folder: str) -> None:
    """Write each index page pip reads into `folder` (NNNNN.body, and NNNNN.json: its URL and content
    type), for the pylock step, which would otherwise fetch the same pages again (lock/pylocks.py)."""
    try:
        from pip._internal.index import collector

        original: Callable[..., Any] = collector._make_index_content
    except (ImportError, AttributeError):
        return  # another pip: the pylock step reads the index itself
    os.makedirs(folder, exist_ok=True)
    numbers = itertools.count()
    kept: set[str] = set()  # pip-tools reads each page again when it collects hashes

    def make_index_content(*args: Any, **kwargs: Any) -> Any:
        page = original(*args, **kwargs)
        if str(page.url) in kept:
            return page
        kept.add(str(page.url))
        try:
            stem = os.path.join(folder, f"{next(numbers):05d}")
            with open(f"{stem}.body", "wb") as body:
                body.write(page.content)
            with open(f"{stem}.json", "w", encoding="utf-8") as meta:
                json.dump({"url": str(page.url), "type": str(page.content_type)}, meta)
        except Exception:  # noqa: S110 - a page not kept is only read again by the pylock step
            pass
        return page

    collector._make_index_content = make_index_content


def _report(resolver: Any, root_reqs: list[Any], asked: dict[str, Any]) -> dict[str, Any]:
    from pip._internal.resolution.resolvelib.base import format_name
    from pip._internal.resolution.resolvelib.candidates import REQUIRES_PYTHON_IDENTIFIER
    from pip._vendor.packaging.specifiers import SpecifierSet
    from pip._vendor.packaging.utils import canonicalize_name

    result = resolver._result
    finder = resolver.factory._finder
    mapping = {key: cand for key, cand in result.mapping.items() if key != REQUIRES_PYTHON_IDENTIFIER}
    project = {key: str(canonicalize_name(cand.project_name)) for key, cand in mapping.items()}
    version = {key: str(cand.version) for key, cand in mapping.items()}
    # Whether any requirement on a name (a root line or a picked candidate's dependency) mentions a
    # pre-release: with one, pip's finder lets pre-releases in for that name.
    pre: set[str] = set()
    for key in mapping:
        for information in result.criteria[key].information:
            ireq = information.requirement.get_candidate_lookup()[1]
            if ireq is not None and ireq.req is not None and ireq.req.specifier.prereleases:
                pre.add(project[key])
    scopes: dict[str, Any] = {}
    for scope, run in asked["scopes"].items():
        seeds = {str(canonicalize_name(name)): value for name, value in run["preferences"].items()}
        # The rounds settle the scopes below first, and this run keeps their pins.
        seeds |= {name: found["picked"] for below in run["below"] for name, found in scopes[below].items()}
        wanted = {os.path.realpath(path) for path in run["files"]}
        mine = [ireq for ireq in root_reqs if _source(ireq) in wanted]
        starts: list[str] = []
        plain: dict[str, Any] = {}  # name -> specifiers of its plain lines and its constraints
        primary: dict[str, Any] = {}  # name -> every line's specifier (pip-tools' test for a seed)
        for ireq in mine:
            if ireq.req is None:
                raise ValueError(f"an unnamed requirement in the inputs ({ireq})")
            normalized = canonicalize_name(ireq.req.name)
            name = str(normalized)
            primary[name] = primary.get(name, SpecifierSet()) & ireq.req.specifier
            if not ireq.match_markers():
                continue
            if ireq.constraint or not ireq.extras:
                plain[name] = plain.get(name, SpecifierSet()) & ireq.req.specifier
            if not ireq.constraint:
                starts.append(name)
                if ireq.extras:
                    starts.append(format_name(normalized, frozenset(canonicalize_name(e) for e in ireq.extras)))
        missing = [key for key in starts if key not in mapping]
        if missing:
            raise ValueError(f"pip picked nothing for {', '.join(missing)}")
        closure = _reach(starts, lambda key: (child for child in result.graph.iter_children(key) if child in mapping))
        packages: dict[str, dict[str, str | None]] = {}
        for key in sorted(closure):
            name = project[key]
            if name in packages:
                continue
            seed = seeds.get(name)
            if seed is not None and primary.get(name, SpecifierSet()).contains(seed, prereleases=True):
                first: str | None = seed
            else:
                specifier = SpecifierSet(str(plain.get(name, "")), prereleases=True if name in pre else None)
                first = _first_candidate(finder, name, specifier)
            packages[name] = {"picked": version[key], "first": first}
        scopes[scope] = packages
    return {"scopes": scopes}


def _source(ireq: Any) -> str | None:
    """The file a root requirement was read from (`-r /tmp/…/base.in (line 2)`), as a real path."""
    match = _SOURCE.match(str(ireq.comes_from or ""))
    return os.path.realpath(match.group("path")) if match else None


def _reach(starts: Iterable[str], children: Callable[[str], Iterable[str]]) -> set[str]:
    reached: set[str] = set()
    stack = list(starts)
    while stack:
        key = stack.pop()
        if key not in reached:
            reached.add(key)
            stack.extend(children(key))
    return reached


def _first_candidate(finder: Any, name: str, specifier: Any) -> str | None:
    """The version pip's resolver tries first for `name` under `specifier` alone (its factory's loop:
    the finder's applicable candidates, best first, yanked ones skipped)."""
    found = finder.find_best_candidate(project_name=name, specifier=specifier, hashes=None)
    for candidate in reversed(found.applicable_candidates):
        if not candidate.link.is_yanked:
            return str(candidate.version)
    return None


if __name__ == "__main__":
    main(sys.argv[1:])
