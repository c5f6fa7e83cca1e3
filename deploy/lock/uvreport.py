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
    A package no line of the scope names is known to uv only once a package that needs it is
    decided; so when, for each package of the scope that needs it, the newest version that one's
    requirement allows (as uv's -v log gives it) is the joint's, `first` is the joint's
    (_after_a_parent). Each rule errs toward a newer `first`, which can only fail the proof and run
    the rounds.

Only a lock that reads one index is accounted for (uv's --index-strategy unsafe-best-match weighs
every index's candidates); the files of its find-links folders are candidates beside the page's.
"""

from __future__ import annotations

import contextlib
import re
import urllib.error
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from deploy.lock import candidates, indexpage
from deploy.lock.lockfile import Pin
from deploy.lock.reqfile import canonical, logical_lines
from deploy.lock.universe import dependencies, reach

if TYPE_CHECKING:
    from deploy.config import Config
    from deploy.lock.layers import LayerGraph

# (package, version) -> name -> each range it needs that one in (None: a range not restated), from uv's log.
Needs = dict[tuple[str, str], dict[str, list[SpecifierSet | None]]]
_NEED = re.compile(
    r"^DEBUG Adding transitive dependency for (?P<parent>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>\S+): "
    r"(?P<child>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?(?:\{(?P<marker>[^}]*)\})?(?P<range>.*)$", re.MULTILINE)
_EXTRAS = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\[(?P<extras>[^\]]*)\](?P<rest>==\S*)", re.MULTILINE)


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


def of_run(config: Config, graph: LayerGraph, plan: Any, universe: Mapping[str, Pin],
           extras: Mapping[str, frozenset[str]], env: Mapping[str, str], read_ahead: object,
           said: str) -> dict[str, Any]:
    """The account of a joint uv run `plan` (a joint.Run), from the pages the pylock step reads anyway
    (`read_ahead`, when a pylocks.ReadAhead, has them under way), its output and its -v log (`said`);
    whatever fails is an error, and the rounds run."""
    from deploy.lock import indexfiles, pylocks, sources

    assert plan.report is not None
    found = sources.proof_sources(config, graph, plan.layers, env)
    if found is None:
        return {"error": "the lock reads more than one index"}
    index, folders = found
    pre = "--pre" in config.compile_options or any(
        option.name == "--pre" for name in plan.layers for option in graph.layers[name].option_list)
    with contextlib.ExitStack() as stack:
        ahead = read_ahead
        if not isinstance(ahead, pylocks.ReadAhead):
            ahead = stack.enter_context(pylocks.ReadAhead(config, graph, env))
            ahead(universe)

        def page_of(name: str) -> tuple[str, bytes]:
            try:
                return ahead.page(index, name)
            except urllib.error.HTTPError as exc:
                if exc.code == 404:  # not on the index (a find-links folder's own wheel): no files there
                    return "text/html", b""
                raise

        def ready(name: str) -> candidates.Files | None:
            """The page as the fetching thread read it (uvreport.read_page), once it has; else None (a
            failure is page_of's to tell)."""
            found = ahead.reading(indexfiles.page_url(index, canonical(name)))
            return found if isinstance(found, dict) else None

        try:
            return account(plan.report, lines_reader(graph, plan.kept.values()), universe, extras, page_of,
                           folders, needs_from_log(said), pre=pre, fresh=plan.fresh, ready=ready)
        except Exception as exc:  # any surprise on a page or in a line means: no shortcut, the rounds run
            return {"error": f"{type(exc).__name__}: {exc}"}


def account(
    scopes: Mapping[str, Any],
    lines_of: Callable[[Sequence[str]], tuple[list[str], list[str]]],
    universe: Mapping[str, Pin],
    extras: Mapping[str, frozenset[str]],
    page_of: Callable[[str], tuple[str, bytes]],
    folders: Sequence[Path] = (),
    needs: Needs | None = None,
    *,
    pre: bool = False,
    fresh: bool = False,
    ready: Callable[[str], candidates.Files | None] = lambda name: None,
) -> dict[str, Any]:
    """The report onerun.py reads, for `scopes` (name -> joint.Scope, lowest first).

    `lines_of(layers)` gives the requirement lines and the constraint lines (kept pins included) of
    a run over those layers; `page_of(name)` the index's page of a package, to which the files of
    the find-links `folders` are added (their Requires-Python unread: each counts); `needs` what each
    package at its version needs of another, as uv's log said it (needs_from_log); `pre` whether --pre
    or --prerelease is set; `fresh` whether the run takes no preferences (--upgrade); `ready(name)`
    the page already read into versions (read_page, in the thread that fetched it), or None.
    """
    python = candidates.running_python()
    report: dict[str, Any] = {}
    read: dict[str, candidates.Files] = {}  # each page parsed once, whatever the scopes
    local = candidates.folder_files(folders)

    def listed(name: str) -> candidates.Files:
        if name not in read:
            found = ready(name)
            if found is None:
                found = candidates.group(name, candidates.listed(*page_of(name)))
            read[name] = candidates.merged(found, candidates.group(name, candidates.local(name, local)))
        return read[name]

    graph = dependencies(universe)
    for scope_name, scope in scopes.items():
        wanted, constraints = lines_of(scope.layers)
        own = [_parse(text) for text in wanted]
        caps = [_parse(text) for text in constraints]
        mine = [req for req in own if req.marker is None or req.marker.evaluate()]
        held = [req for req in caps if req.marker is None or req.marker.evaluate()]
        starts = {canonical(req.name) for req in mine}
        closure = reach(starts, graph, universe)
        asked: dict[str, frozenset[str]] = {}
        for req in mine:
            key = canonical(req.name)
            asked[key] = asked.get(key, frozenset()) | {canonical(extra) for extra in req.extras}
        files = {f"-r {layer}.in" for layer in scope.layers}
        if not _accounted(closure, universe, extras, asked, files):
            continue  # an extra asked for from outside the scope: onerun.py says so, and the round runs
        seeds = {} if fresh else {canonical(pin.name): pin.version for pin in scope.preferences}
        seeds |= {name: found["picked"] for below in scope.below for name, found in report.get(below, {}).items()}
        lines: dict[str, list[Requirement]] = {}  # every line on each name, true markers or not
        plains: dict[str, list[SpecifierSet]] = {}  # its plain lines and constraints that apply here
        for req in own + caps:
            lines.setdefault(canonical(req.name), []).append(req)
        for req in [*(req for req in mine if not req.extras), *held]:
            plains.setdefault(canonical(req.name), []).append(req.specifier)
        packages: dict[str, dict[str, str | None]] = {}
        for name in sorted(closure):
            picked = universe[name].version
            every = lines.get(name, [])
            seed = seeds.get(name)
            if seed is not None and all(req.specifier.contains(seed, prereleases=True) for req in every):
                first: str | None = seed
            else:
                plain = plains.get(name, [])
                allow = pre or any(req.specifier.prereleases for req in every)
                first = candidates.first(plain, listed(name), python, pre=allow)
                if first != picked and not allow and name not in starts and needs is not None:
                    first = _after_a_parent(name, picked, first, plain, closure, universe, needs, listed(name), python)
            if first is not None and first != picked and candidates.same(first, picked):
                first = picked
            packages[name] = {"picked": picked, "first": first}
        report[scope_name] = packages
    return {"scopes": report}


def read_page(url: str, listed: Sequence[indexpage.File]) -> candidates.Files:
    """A project page's files (read once, by ReadAhead) as versions for account(): by the name its URL ends in."""
    return candidates.group(canonical(url.rstrip("/").rsplit("/", 1)[-1]), candidates.from_listing(listed))


def needs_from_log(text: str) -> Needs:
    """(package, version) -> each range it needs another package in, from uv's -v log (`DEBUG Adding
    transitive dependency for celery==5.7.0: vine>=5.1.0, <6.0`). The lines of a package's extras
    are logged under its own name and kept beside its own: uv decides a package and each of its
    extras apart, so any one of them may be the first to ask (the extras are the scope's own, as (a)
    checks).

    A range this cannot restate (a union `… | …`) is None; a dependency whose marker is false here
    is no need. A line it cannot read is left out: that package then has no known need of that
    name, and the proof goes without it.
    """
    found: Needs = {}
    for match in _NEED.finditer(text):
        marker = match.group("marker")
        try:
            if marker and not Marker(marker).evaluate():
                continue
        except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName):
            continue
        key = (canonical(match.group("parent")), match.group("version"))
        found.setdefault(key, {}).setdefault(canonical(match.group("child")), []).append(
            _range(match.group("range").strip()))
    return found


def _range(text: str) -> SpecifierSet | None:
    """uv's range (`>=1.0, <2`, `==5.7.0`, `*`) as a specifier; `<V+` (below every local version of
    V's) as `<=V`; None for what it cannot restate exactly."""
    if text == "*":
        return SpecifierSet()
    if "|" in text:
        return None
    clauses = []
    for clause in text.split(", "):
        if clause.startswith("<") and clause.endswith("+") and not clause.startswith("<="):
            clause = "<=" + clause[1:-1]
        if "+" in clause or not re.fullmatch(r"(?:==|!=|<=|>=|<|>)[0-9][0-9A-Za-z.!]*(?:\.\*)?", clause):
            return None
        clauses.append(clause)
    try:
        return SpecifierSet(",".join(clauses))
    except InvalidSpecifier:
        return None


def _parse(text: str) -> Requirement:
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise ValueError(f"a line uv's account cannot read ({exc})") from None
    if req.url:
        raise ValueError(f"a direct reference ({req.name} @ …)")
    return req


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


def _after_a_parent(name: str, picked: str, first: str | None, plain: Sequence[SpecifierSet], closure: set[str],
                    universe: Mapping[str, Pin], needs: Needs,
                    files: candidates.Files, python: Version) -> str | None:
    """`picked` when every package of the scope that needs `name` holds it there on its own.

    A package no line of the scope names becomes known to uv's run only when a package needing it
    is decided (at the joint's version, by the proof below it), so the range uv picks it from lies
    within that one's requirement and the scope's constraints: when the newest version each of them
    allows is the joint's, uv takes it whichever parent came first. Else `first`, unchanged.
    """
    parents = [canonical(reason) for reason in universe[name].via if not reason.startswith("-")
               and canonical(reason) in closure]
    if not parents or any(version.local for version in files):
        return first  # a local version is where uv's `<1.0+` and packaging's `<=1.0` part
    for parent in parents:
        caps = needs.get((parent, universe[parent].version), {}).get(name) or [None]
        for cap in caps:  # the package's own need and each extra's: any one may come first
            if cap is None or candidates.first([*plain, cap], files, python, pre=False) != picked:
                return first
    return picked


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
