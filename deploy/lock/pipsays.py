"""What pip's resolver said, read back as the user's lines: its conflict block and who asked for what.

pip names requirements, not layers (`The user requested alpha==1.0`, `y 1.0 depends on alpha<2`,
`Collecting y (from x->-r prod.in (line 1))`); here each becomes the layer file and line that asked,
a constraint file's line, or the lower lock whose pin a solve had to keep. conflicts.py turns these
lines into the message; upgrade.py asks what holds a package back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from deploy.lock.layers import LayerGraph
from deploy.lock.network import redact
from deploy.lock.reqfile import Line, clip, logical_lines, requirement_name

# What pip printed and the message quote: the first lines, each clipped (see reqfile.clip).
MAX_LINES = 10

CAUSED_BY = re.compile(r"^\s*The conflict is caused by:\s*$")
# pip 26 joins the specifiers of one requirement with " and " (`redis<6.0 and >=5.0`), older pips with
# commas; joined_spec() gives either as the one PEP 508 requirement (`redis<6.0,>=5.0`).
_SPEC = r"(?P<spec>\S+(?: and [<>=!~]\S*)*)"
USER = re.compile(r"^\s*The user requested (?P<constraint>\(constraint\) )?" + _SPEC)
DEPENDS = re.compile(r"^\s*(?P<parent>\S+) (?P<version>\S+) depends on " + _SPEC)
# The chain ends in the layer file (as solve() writes it: work/NAME.in) and its line.
COLLECTING = re.compile(
    r"^\s*Collecting (?P<spec>\S+) \(from (?:\S+->)?-r (?P<layer>[^\s/]+)\.in \(line (?P<line>\d+)\)\)"
)


def joined_spec(match: re.Match[str]) -> str:
    """The requirement a USER or DEPENDS line names, its specifiers joined by commas."""
    return match.group("spec").replace(" and ", ",").rstrip(";,")


def blamed(output: str) -> Iterator[str]:
    """The lines of each "The conflict is caused by:" block of pip's output, up to the blank line that ends it."""
    in_block = False
    for raw in output.splitlines():
        if CAUSED_BY.match(raw):
            in_block = True
        elif not raw.strip():
            in_block = False
        elif in_block:
            yield raw


def needs_by_package(output: str, graph: LayerGraph, kept_at: Mapping[str, str]) -> list[str]:
    """Each package in conflict with the lines that constrain it; a bare `pytest` constrains nothing."""
    pulled = pulled_in(output, graph)
    needs: dict[str, list[str]] = {}
    for raw in blamed(output):
        if match := USER.match(raw):
            spec = joined_spec(match)
            if bare(spec):
                continue
            name = requirement_name(spec)
            if match.group("constraint") and name is not None and name in kept_at and "==" in spec:
                # pip joins the constraints on one package (`alpha<2,==1.0`): the pin is the `==` part.
                pinned = next(part for part in spec.split(",") if "==" in part).split("==")[-1]
                _add(needs, spec, [f"the lower layer's lock {kept_at[name]} pins {clip(name)}=={clip(pinned)}"])
                if "," not in spec:
                    continue
            places = constrained(graph, spec) if match.group("constraint") else declared(graph, spec)
            reasons = [f"layer {layer} needs {clip(spec)} ({line.where(graph.root)})" for layer, line in places]
            _add(needs, spec, reasons or [f"a constraint needs {clip(spec)}"])
        elif match := DEPENDS.match(raw):
            parent, version, spec = match.group("parent"), match.group("version"), joined_spec(match)
            if bare(spec):
                continue
            holders = declared(graph, parent) or pulled.get(requirement_name(parent) or parent, [])
            via = f"{clip(parent)} {clip(version)}"
            reasons = [f"layer {layer} needs {clip(spec)} (via {via}, {line.where(graph.root)})"
                       for layer, line in holders]
            _add(needs, spec, reasons or [f"{via} needs {clip(spec)}"])
    return [f"package {clip(name)}: {', '.join(dict.fromkeys(reasons))}" for name, reasons in needs.items()]


def conflict_lines(output: str, graph: LayerGraph, kept_at: Mapping[str, str] | None = None) -> list[str]:
    """Each package of pip's conflict with the lines that constrain it: [] when pip reported none."""
    lines = list(dict.fromkeys(needs_by_package(output, graph, kept_at or {})))
    return [clip(redact(line), 400) for line in lines[:MAX_LINES]]


def holding_back(output: str, graph: LayerGraph, target: str, asked: str = "") -> list[str]:
    """What keeps `target` from the version asked for (`asked`, as the upgrade put it to the resolver),
    from pip's conflict block, one short line each: `requirements/prod.in:3 pins alpha<1.1`, `beta
    1.1 needs alpha>=1.1`."""
    found: list[str] = []
    for raw in blamed(output):
        if match := USER.match(raw):
            spec = joined_spec(match)
            if asked and "".join(spec.split()) == "".join(asked.split()):
                continue  # the upgrade's own request (uv names it as the user's), never a line of a layer
            places = constrained(graph, spec) if match.group("constraint") else declared(graph, spec)
            if bare(spec) or (match.group("constraint") and not places and requirement_name(spec) == target):
                continue  # any version will do, or it is the upgrade's own target
            where = ", ".join(dict.fromkeys(line.where(graph.root) for _, line in places)) or "a constraint"
            found.append(f"{where} pins {clip(spec)}")
        elif (match := DEPENDS.match(raw)) and not bare(spec := joined_spec(match)):
            found.append(f"{clip(match.group('parent'))} {clip(match.group('version'))} needs {clip(spec)}")
    return list(dict.fromkeys(found))[:MAX_LINES]


def bare(spec: str) -> bool:
    """`pytest` or `pytest[extra]`: any version will do, so it is no side of a conflict."""
    return not any(mark in spec for mark in "<>=!~@;")


def pulled_in(output: str, graph: LayerGraph) -> dict[str, list[tuple[str, Line]]]:
    """Which layer line brought each package into the solve, from pip's `Collecting` lines."""
    found: dict[str, list[tuple[str, Line]]] = {}
    for raw in output.splitlines():
        match = COLLECTING.match(raw)
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


def declared(graph: LayerGraph, spec: str) -> list[tuple[str, Line]]:
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


def constrained(graph: LayerGraph, spec: str) -> list[tuple[str, Line]]:
    """Layers whose `-c` files (outside the layer graph) constrain the project `spec` names."""
    wanted = requirement_name(spec)
    found: list[tuple[str, Line]] = []
    for name in graph.order:
        for path in graph.layers[name].external_constraints:
            lines = [line for line in logical_lines(path, root=graph.root) if requirement_name(line.text) == wanted]
            found.extend((name, line) for line in lines[:1])
    return found
