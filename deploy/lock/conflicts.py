"""Turn pip-compile's resolver failure into "package X: layer A needs …, layer B needs …".

pip's own message names requirements, not layers; the layer graph knows which layer asked for
what, so the user learns which `.in` lines disagree instead of reading a resolver trace.

What pip prints (pip-compile must run with -v, or pip keeps the explanation to itself)::

    Collecting y (from x->-r prod.in (line 1))        <- who pulled each package in
    The conflict is caused by:
        The user requested alpha==1.0                  <- an .in line asked for it directly
        y 1.0 depends on alpha<2                       <- a dependency asked for it
    ERROR: Could not find a version that satisfies the requirement nosuch (from versions: none)

An index that cannot be reached looks like a missing package to pip ("from versions: none"), so
that is told apart first (lock/network.py); then each kind of failure in EXPLAINERS, in turn.
Everything quoted from pip's output is cut to one short inert line: pip quotes the lines it read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from packaging.version import InvalidVersion

from deploy.lock.layers import LayerGraph
from deploy.lock.lockfile import parse
from deploy.lock.network import INDEX_FIX, Probe, redact, unreachable
from deploy.lock.pipsays import (
    DEPENDS,
    MAX_LINES,
    USER,
    blamed,
    declared,
    joined_spec,
    needs_by_package,
    pulled_in,
)
from deploy.lock.reqfile import canonical, clip, display, requirement_name

_NO_VERSION = re.compile(r"Could not find a version that (?:matches|satisfies the requirement) (?P<spec>[^\s)]+)")
# pip found no version at all: no page for the name, or no file on it this Python may install; the
# latter (Requires-Python, yanked) it says on the line above, "Ignored the following versions …".
_NONE = "(from versions: none)"
_IGNORED = "Ignored the following"
_ERROR = re.compile(r"^\s*(ERROR|Error|error):")
_CAUSE = re.compile(r"^\s*(cause|hint|help):")  # uv's lines under its error: why, and what to try
_TRACE = ("Traceback", "The above exception", "During handling")
_HASHES_DIFFER = "DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE"
_MISMATCHED = re.compile(r"^\s+(?P<name>[A-Za-z0-9][\w.-]*)==(?P<version>\S+) from \S+")
_GOT = re.compile(r"^\s+Got\s+(?P<sha>[0-9a-f]{64})\s*$")
_UNAVAILABLE = "have no matching distributions available for your environment"


def explain(
    output: str, graph: LayerGraph, *, probe: Probe | None = None, kept_at: Mapping[str, str] | None = None,
    tool: str = "pip-compile",
) -> str:
    """A message naming each package in conflict and which layer asked for what, without a trace.

    `probe(host, port)` says why a connection to an index fails (None: it does not); it is asked
    only when pip found no version at all and printed nothing about the network. `kept_at` names
    the lock line (`requirements/prod.txt:7`) of each pin the solve had to keep (a lower layer's).
    """
    # Network evidence first: to pip an index that is down (or hangs) is an index without files, and
    # with the existing pins as constraints that reads as a conflict between layers.
    if lines := unreachable(output, probe, suspect=bool(_unavailable(output))):
        return _bounded(lines, "\n") + INDEX_FIX
    for explainer in EXPLAINERS:
        if lines := explainer.find(output, graph, kept_at or {}):
            return explainer.message(lines)
    # Otherwise show pip's ERROR lines, else the exception pip-compile died of: the trace above it
    # shows pip-tools' internals, not the user's files.
    summary = [raw.strip() for raw in output.splitlines() if _ERROR.match(raw) or _CAUSE.match(raw)]
    summary = summary or _exception(output)
    return f"{tool} could not lock the layers:\n    " + _bounded(summary, "\n    ") + (
        "\n  fix: correct the requirement it names, then run: nox -s lock"
    )


@dataclass(frozen=True)
class Explainer:
    """One kind of resolver failure: how to find it in pip's output, and what the user is told."""

    find: Callable[[str, LayerGraph, Mapping[str, str]], list[str]]  # one line per package: `package NAME…`
    headline: str
    fix: str  # `{names}` stands for the packages found

    def message(self, lines: list[str]) -> str:
        names = " ".join(dict.fromkeys(line.split()[1].rstrip(":") for line in lines))
        return f"{self.headline}:\n  {_bounded(lines)}\n  fix: {self.fix.format(names=clip(names))}"


def _bounded(lines: list[str], separator: str = "\n  ") -> str:
    """At most MAX_LINES distinct lines, each clipped: pip's output can quote whole input files."""
    unique = list(dict.fromkeys(lines))
    shown = [clip(redact(line), 400) for line in unique[:MAX_LINES]]
    if len(unique) > MAX_LINES:
        shown.append(f"… and {len(unique) - MAX_LINES} more")
    return separator.join(shown)


def _exception(output: str) -> list[str]:
    """The last unindented line that is not part of a trace, with what is indented under it."""
    lines = output.rstrip().splitlines()
    starts = [i for i, raw in enumerate(lines) if raw[:1].strip() and not raw.startswith(_TRACE)]
    if not starts:
        return lines[-1:]
    return [raw.strip() for raw in lines[starts[-1]:] if raw.strip()]


def _hash_mismatch(output: str) -> list[str]:
    """pip's HashMismatch: a file on the index no longer has a hash the existing locks list."""
    if _HASHES_DIFFER not in output:
        return []
    found: list[str] = []
    pin: re.Match[str] | None = None
    for raw in output.splitlines():
        if match := _MISMATCHED.match(raw):
            pin = match
        elif (got := _GOT.match(raw)) and pin is not None:
            found.append(f"package {canonical(pin.group('name'))} {pin.group('version')}: the index serves a file "
                         f"with sha256:{got.group('sha')}, which is not among the hashes locked for it")
            pin = None
    return found


def _unavailable(output: str) -> set[str]:
    """Packages pip found no usable file for: its "no matching distributions available" block."""
    names: set[str] = set()
    listing = False
    for raw in output.splitlines():
        if _UNAVAILABLE in raw:
            listing = True
        elif listing and raw.startswith("    ") and raw.strip():
            names.add(canonical(raw.strip()))
        else:
            listing = False
    return names


def _unobtainable(output: str, graph: LayerGraph, _kept_at: Mapping[str, str]) -> list[str]:
    """Locked pins the index no longer offers a usable file for, told apart from a real conflict.

    pip-compile passes the existing pins as constraints; when every other requirement on a package
    admits its locked version and pip still found no file, the version itself could not be had.
    """
    unavailable = _unavailable(output)
    if not unavailable:
        return []
    wanted: dict[str, list[str]] = {}
    pinned: dict[str, str] = {}
    for raw in blamed(output):
        if (match := USER.match(raw)) or (match := DEPENDS.match(raw)):
            spec = joined_spec(match)
            name = requirement_name(spec)
            if name is None or name not in unavailable:
                continue
            version = spec.split("==", 1)[1] if "==" in spec else None
            if "constraint" in match.groupdict() and match.group("constraint") and version is not None:
                pinned[name] = version
            else:
                wanted.setdefault(name, []).append(spec)
    found = []
    for name, version in pinned.items():
        where = _locked_at(graph, name, version)
        if where is None or not all(_admits(spec, version) for spec in wanted.get(name, [])):
            continue
        found.append(f"package {clip(name)}: the locked {clip(name)}=={clip(version)} ({where}) cannot be obtained: "
                     "the index offers no file of it that pip may use")
    return found


def _locked_at(graph: LayerGraph, name: str, version: str) -> str | None:
    """Where an existing lock pins `name==version` (the first layer that does), as file:line."""
    for layer in graph.order:
        path = graph.layers[layer].lock
        if not path.is_file():
            continue
        pin = parse(path, graph.root).pins.get(name)
        if pin is not None and pin.version == version:
            return f"{display(path, graph.root)}:{pin.line}"
    return None


def _admits(spec: str, version: str) -> bool:
    from packaging.requirements import InvalidRequirement, Requirement  # only when explaining a failure

    try:
        return Requirement(spec).specifier.contains(version, prereleases=True)
    except (InvalidRequirement, InvalidVersion):
        return False


def _missing(output: str, graph: LayerGraph, _kept_at: Mapping[str, str]) -> list[str]:
    pulled = pulled_in(output, graph)
    lines = []
    before = ""  # the line above, where pip says which versions it set aside
    for raw in output.splitlines():
        if match := _NO_VERSION.search(raw):
            spec = match.group("spec")
            name = requirement_name(spec) or spec
            holders = declared(graph, spec) or pulled.get(name, [])
            where = ", ".join(f"layer {layer} ({line.where(graph.root)})" for layer, line in holders)
            if _NONE in raw and _IGNORED not in before:
                what = f"the index has no project named {clip(name)} (or none of its files fits this Python)"
            else:
                what = f"no version on the index matches {clip(spec)}"
            lines.append(f"package {clip(name)}: {what}, asked by {where or 'a dependency'}")
        if raw.strip():
            before = raw
    return lines


# Told apart in this order: a locked version the index no longer offers also shows as a conflict.
EXPLAINERS = (
    Explainer(
        _unobtainable,
        "the index offers no file pip may use for the locked versions",
        "check that the index still serves that file and that no option (--no-binary, --only-binary, a marker) "
        "excludes it; to move to another version, run: nox -s upgrade -- {names}",
    ),
    Explainer(
        needs_by_package,
        "the layers cannot be locked together",
        "change one of those requirements so they agree, then run: nox -s lock",
    ),
    Explainer(
        lambda output, _graph, _kept: _hash_mismatch(output),  # pip names the package: no layer to look up
        "the index serves other files than were locked",
        "find out why the file changed on the index; if you trust it, take it with: nox -s upgrade -- {names}",
    ),
    Explainer(
        _missing,
        "the layers cannot be locked",
        "check the name and version against the index, then run: nox -s lock",
    ),
)
