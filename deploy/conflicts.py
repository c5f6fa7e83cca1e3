"""Turn pip-compile's resolver failure into "package X: layer A needs …, layer B needs …".

pip's own message names requirements, not layers; the layer graph knows which layer asked for
what, so the user learns which `.in` lines disagree instead of reading a resolver trace.

What pip prints (pip-compile must run with -v, or pip keeps the explanation to itself)::

    Collecting y (from x->-r prod.in (line 1))        <- who pulled each package in
    The conflict is caused by:
        The user requested alpha==1.0                  <- an .in line asked for it directly
        y 1.0 depends on alpha<2                       <- a dependency asked for it
    ERROR: Could not find a version that satisfies the requirement nosuch (from versions: none)
"""

from __future__ import annotations

import re

from deploy.layers import LayerGraph
from deploy.reqfile import Line, canonical, logical_lines, requirement_name

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


def explain(output: str, graph: LayerGraph) -> str:
    """A message naming each package in conflict and which layer asked for what, without a trace."""
    if lines := _conflicts(output, graph):
        return "the layers cannot be locked together:\n  " + "\n  ".join(dict.fromkeys(lines)) + (
            "\n  fix: change one of those requirements so they agree, then run: nox -s lock"
        )
    if lines := _missing(output, graph):
        return "the layers cannot be locked:\n  " + "\n  ".join(dict.fromkeys(lines)) + (
            "\n  fix: check the name and version against the index, then run: nox -s lock"
        )
    if lines := _hash_mismatch(output):
        names = " ".join(dict.fromkeys(line.split()[1] for line in lines))
        return "the index serves other files than were locked:\n  " + "\n  ".join(lines) + (
            "\n  fix: find out why the file changed on the index; if you trust it, take it with: "
            f"nox -s upgrade -- {names}"
        )
    # Otherwise show pip's ERROR lines, else the exception pip-compile died of: the trace above it
    # shows pip-tools' internals, not the user's files.
    summary = [raw.strip() for raw in output.splitlines() if _ERROR.match(raw)] or _exception(output)
    return "pip-compile could not lock the layers:\n    " + "\n    ".join(summary) + (
        "\n  fix: correct the requirement it names, then run: nox -s lock"
    )


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
            reasons = [f"layer {layer} needs {spec} ({line.where(graph.root)})" for layer, line in declared]
            _add(needs, spec, reasons or [f"a constraint needs {spec}"])
        elif match := _DEPENDS.match(raw):
            parent, version, spec = match.group("parent", "version", "spec")
            holders = _declared(graph, parent) or pulled_in.get(requirement_name(parent) or parent, [])
            reasons = [f"layer {layer} needs {spec} (via {parent} {version}, {line.where(graph.root)})"
                       for layer, line in holders]
            _add(needs, spec, reasons or [f"{parent} {version} needs {spec}"])
    return [f"package {name}: {', '.join(dict.fromkeys(reasons))}" for name, reasons in needs.items()]


def _missing(output: str, graph: LayerGraph) -> list[str]:
    pulled_in = _pulled_in(output, graph)
    lines = []
    for raw in output.splitlines():
        if match := _NO_VERSION.search(raw):
            spec = match.group("spec")
            name = requirement_name(spec) or spec
            holders = _declared(graph, spec) or pulled_in.get(name, [])
            where = ", ".join(f"layer {layer} ({line.where(graph.root)})" for layer, line in holders)
            lines.append(f"package {name}: no version on the index matches {spec}, asked by {where or 'a dependency'}")
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
            lines = [line for line in logical_lines(path) if requirement_name(line.text) == wanted]
            found.extend((name, line) for line in lines[:1])
    return found
