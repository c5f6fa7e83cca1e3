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
from collections.abc import Callable
from dataclasses import dataclass

from packaging.version import InvalidVersion

from deploy.lock.layers import LayerGraph
from deploy.lock.lockfile import parse
from deploy.lock.network import INDEX_FIX, Probe, redact, unreachable
from deploy.lock.reqfile import Line, canonical, clip, display, logical_lines, requirement_name

# What pip printed and the message quote: the first lines, each clipped (see reqfile.clip).
MAX_LINES = 10

_CAUSED_BY = re.compile(r"^\s*The conflict is caused by:\s*$")
_USER = re.compile(r"^\s*The user requested (?P<constraint>\(constraint\) )?(?P<spec>\S+)")
_DEPENDS = re.compile(r"^\s*(?P<parent>\S+) (?P<version>\S+) depends on (?P<spec>\S+)")
# The chain ends in the layer file (as solve() writes it: work/NAME.in) and its line.
_COLLECTING = re.compile(
    r"^\s*Collecting (?P<spec>\S+) \(from (?:\S+->)?-r (?P<layer>[^\s/]+)\.in \(line (?P<line>\d+)\)\)"
)
_NO_VERSION = re.compile(r"Could not find a version that (?:matches|satisfies the requirement) (?P<spec>[^\s)]+)")
_ERROR = re.compile(r"^\s*(ERROR|Error|error):")
_TRACE = ("Traceback", "The above exception", "During handling")
_HASHES_DIFFER = "DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE"
_MISMATCHED = re.compile(r"^\s+(?P<name>[A-Za-z0-9][\w.-]*)==(?P<version>\S+) from \S+")
_GOT = re.compile(r"^\s+Got\s+(?P<sha>[0-9a-f]{64})\s*$")
_UNAVAILABLE = "have no matching distributions available for your environment"


def explain(output: str, graph: LayerGraph, *, probe: Probe | None = None) -> str:
    """A message naming each package in conflict and which layer asked for what, without a trace.

    `probe(host, port)` says why a connection to an index fails (None: it does not); it is asked
    only when pip found no version at all and printed nothing about the network.
    """
    # Network evidence first: to pip an index that is down (or hangs) is an index without files, and
    # with the existing pins as constraints that reads as a conflict between layers.
    if lines := unreachable(output, probe, suspect=bool(_unavailable(output))):
        return _bounded(lines, "\n") + INDEX_FIX
    for explainer in EXPLAINERS:
        if lines := explainer.find(output, graph):
            return explainer.message(lines)
    # Otherwise show pip's ERROR lines, else the exception pip-compile died of: the trace above it
    # shows pip-tools' internals, not the user's files.
    summary = [raw.strip() for raw in output.splitlines() if _ERROR.match(raw)] or _exception(output)
    return "pip-compile could not lock the layers:\n    " + _bounded(summary, "\n    ") + (
        "\n  fix: correct the requirement it names, then run: nox -s lock"
    )


@dataclass(frozen=True)
class Explainer:
    """One kind of resolver failure: how to find it in pip's output, and what the user is told."""

    find: Callable[[str, LayerGraph], list[str]]  # one line per package, each `package NAME…`
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


def _conflicts(output: str, graph: LayerGraph) -> list[str]:
    pulled_in = _pulled_in(output, graph)
    needs: dict[str, list[str]] = {}
    in_block = False
    for raw in output.splitlines():
        if _CAUSED_BY.match(raw):
            in_block = True
            continue
        if not in_block:
            continue
        if not raw.strip():
            in_block = False
        elif match := _USER.match(raw):
            spec = match.group("spec")
            declared = _constrained(graph, spec) if match.group("constraint") else _declared(graph, spec)
            reasons = [f"layer {layer} needs {clip(spec)} ({line.where(graph.root)})" for layer, line in declared]
            _add(needs, spec, reasons or [f"a constraint needs {clip(spec)}"])
        elif match := _DEPENDS.match(raw):
            parent, version, spec = match.group("parent", "version", "spec")
            holders = _declared(graph, parent) or pulled_in.get(requirement_name(parent) or parent, [])
            via = f"{clip(parent)} {clip(version)}"
            reasons = [f"layer {layer} needs {clip(spec)} (via {via}, {line.where(graph.root)})"
                       for layer, line in holders]
            _add(needs, spec, reasons or [f"{via} needs {clip(spec)}"])
    return [f"package {clip(name)}: {', '.join(dict.fromkeys(reasons))}" for name, reasons in needs.items()]


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


def _unobtainable(output: str, graph: LayerGraph) -> list[str]:
    """Locked pins the index no longer offers a usable file for, told apart from a real conflict.

    pip-compile passes the existing pins as constraints; when every other requirement on a package
    admits its locked version and pip still found no file, the version itself could not be had.
    """
    unavailable = _unavailable(output)
    if not unavailable:
        return []
    wanted: dict[str, list[str]] = {}
    pinned: dict[str, str] = {}
    in_block = False
    for raw in output.splitlines():
        if _CAUSED_BY.match(raw):
            in_block = True
            continue
        if not in_block or not raw.strip():
            in_block = False
            continue
        if (match := _USER.match(raw)) or (match := _DEPENDS.match(raw)):
            spec = match.group("spec")
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


def _missing(output: str, graph: LayerGraph) -> list[str]:
    pulled_in = _pulled_in(output, graph)
    lines = []
    for raw in output.splitlines():
        if match := _NO_VERSION.search(raw):
            spec = match.group("spec")
            name = requirement_name(spec) or spec
            holders = _declared(graph, spec) or pulled_in.get(name, [])
            where = ", ".join(f"layer {layer} ({line.where(graph.root)})" for layer, line in holders)
            lines.append(f"package {clip(name)}: no version on the index matches {clip(spec)}, "
                         f"asked by {where or 'a dependency'}")
    return lines


def _pulled_in(output: str, graph: LayerGraph) -> dict[str, list[tuple[str, Line]]]:
    """Which layer line brought each package into the solve, from pip's `Collecting` lines."""
    found: dict[str, list[tuple[str, Line]]] = {}
    for raw in output.splitlines():
        match = _COLLECTING.match(raw)
        if match is None or match.group("layer") not in graph.layers:
            continue
        name = requirement_name(match.group("spec"))
        layer = graph.layers[match.group("layer")]
        # solve() writes a layer's option lines first, then its requirement lines.
        index = int(match.group("line")) - 1 - len(layer.options)
        if name is not None and 0 <= index < len(layer.requirements):
            found.setdefault(name, []).append((layer.name, layer.requirements[index]))
    return found


def _add(needs: dict[str, list[str]], spec: str, reasons: list[str]) -> None:
    name = requirement_name(spec)
    if name is not None and reasons:
        needs.setdefault(name, []).extend(reasons)


def _declared(graph: LayerGraph, spec: str) -> list[tuple[str, Line]]:
    """Layers whose own lines ask for the project `spec` names; exact matches win."""
    wanted = requirement_name(spec)
    compact = spec.replace(" ", "")
    found: list[tuple[str, Line]] = []
    exact: list[tuple[str, Line]] = []
    for name in graph.order:
        matches = [line for line in graph.layers[name].requirements if requirement_name(line.text) == wanted]
        same = [line for line in matches if line.text.replace(" ", "") == compact]
        found.extend((name, line) for line in matches[:1])
        exact.extend((name, line) for line in same[:1])
    return exact or found


def _constrained(graph: LayerGraph, spec: str) -> list[tuple[str, Line]]:
    """Layers whose `-c` files (outside the layer graph) constrain the project `spec` names."""
    wanted = requirement_name(spec)
    found: list[tuple[str, Line]] = []
    for name in graph.order:
        for path in graph.layers[name].external_constraints:
            lines = [line for line in logical_lines(path, root=graph.root) if requirement_name(line.text) == wanted]
            found.extend((name, line) for line in lines[:1])
    return found


# Told apart in this order: a locked version the index no longer offers also shows as a conflict.
EXPLAINERS = (
    Explainer(
        _unobtainable,
        "the index offers no file pip may use for the locked versions",
        "check that the index still serves that file and that no option (--no-binary, --only-binary, a marker) "
        "excludes it; to move to another version, run: nox -s upgrade -- {names}",
    ),
    Explainer(
        _conflicts,
        "the layers cannot be locked together",
        "change one of those requirements so they agree, then run: nox -s lock",
    ),
    Explainer(
        lambda output, _graph: _hash_mismatch(output),  # pip names the package: no layer to look up
        "the index serves other files than were locked",
        "find out why the file changed on the index; if you trust it, take it with: nox -s upgrade -- {names}",
    ),
    Explainer(
        _missing,
        "the layers cannot be locked",
        "check the name and version against the index, then run: nox -s lock",
    ),
)
