"""Turn pip-compile's resolver failure into "package X: layer A needs …, layer B needs …".

pip's own message names requirements, not layers; the layer graph knows which layer asked for
what, so the user learns which `.in` lines disagree instead of reading a resolver trace.
"""

from __future__ import annotations

import re

from deploy.layers import LayerGraph
from deploy.reqfile import requirement_name

_USER = re.compile(r"^\s*The user requested (?P<spec>\S+)")
_DEPENDS = re.compile(r"^\s*(?P<parent>\S+) (?P<version>\S+) depends on (?P<spec>\S+)")
_MISSING = re.compile(r"No matching distribution found for (?P<spec>\S+)")
_NO_VERSION = re.compile(r"Could not find a version that (?:matches|satisfies the requirement) (?P<spec>\S+)")


def explain(output: str, graph: LayerGraph) -> str:
    needs: dict[str, list[str]] = {}
    for raw in output.splitlines():
        if match := _USER.match(raw):
            spec = match.group("spec")
            _add(needs, spec, [f"layer {n} needs {spec} ({w})" for n, w in _declared(graph, spec)])
        elif match := _DEPENDS.match(raw):
            parent, version, spec = match.group("parent", "version", "spec")
            holders = _declared(graph, parent)
            why = [f"layer {n} needs {spec} (via {parent} {version}, {w})" for n, w in holders]
            _add(needs, spec, why or [f"{parent} {version} needs {spec}"])
    lines = [f"package {name}: {', '.join(dict.fromkeys(reasons))}" for name, reasons in needs.items()]
    if not lines:
        for raw in output.splitlines():
            match = _MISSING.search(raw) or _NO_VERSION.search(raw)
            if match:
                spec = match.group("spec").rstrip(")")
                where = ", ".join(f"layer {n} ({w})" for n, w in _declared(graph, spec)) or "a dependency"
                lines.append(f"package {requirement_name(spec) or spec}: no version on the index matches {spec}, asked by {where}")
    if lines:
        return "the layers cannot be locked together:\n  " + "\n  ".join(dict.fromkeys(lines)) + (
            "\n  fix: change one of those requirements so they agree, then run: nox -s lock"
        )
    tail = "\n    ".join(output.strip().splitlines()[-20:])
    return f"pip-compile could not lock the layers:\n    {tail}\n  fix: correct the requirement it names, then run: nox -s lock"


def _add(needs: dict[str, list[str]], spec: str, reasons: list[str]) -> None:
    name = requirement_name(spec)
    if name is not None and reasons:
        needs.setdefault(name, []).extend(reasons)


def _declared(graph: LayerGraph, spec: str) -> list[tuple[str, str]]:
    """Layers whose own lines ask for the project `spec` names, with file:line."""
    wanted = requirement_name(spec)
    compact = spec.replace(" ", "")
    found: list[tuple[str, str]] = []
    for name in graph.order:
        matches = [line for line in graph.layers[name].requirements if requirement_name(line.text) == wanted]
        exact = [line for line in matches if line.text.replace(" ", "") == compact] or matches
        found.extend((name, line.where(graph.root)) for line in exact[:1])
    exact_layers = [item for item in found if any(
        line.text.replace(" ", "") == compact for line in graph.layers[item[0]].requirements)]
    return exact_layers or found
