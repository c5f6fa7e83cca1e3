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
that is told apart first: from pip's retry warnings, or (when retries are off) by trying to connect.
Everything quoted from pip's output is cut to one short inert line: pip quotes the lines it read.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from packaging.version import InvalidVersion

from deploy.lock.layers import LayerGraph
from deploy.lock.lockfile import parse
from deploy.lock.reqfile import Line, canonical, clip, display, logical_lines, requirement_name

# What pip printed and the message quote: the first lines, each clipped (see reqfile.clip).
MAX_LINES = 10
Probe = Callable[[str, int], str | None]

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
_INDEXES = re.compile(r"^\s*Looking in indexes: (?P<urls>.+)$")
# WARNING: Retrying (Retry(total=4, …)) after connection broken by 'NewConnectionError("HTTPConnection(
#   host='127.0.0.1', port=9): Failed to establish a new connection: [Errno 111] Connection refused")': /simple/x/
_BROKEN = re.compile(
    r"connection broken by '(?P<error>\w+)\(.*?(?P<scheme>HTTPS?)Connection(?:Pool)?\(host='(?P<host>[^']*)', "
    r"port=(?P<port>\d+)\)(?P<detail>.*)$"
)
_ERRNO = re.compile(r"\[Errno -?\d+\] (?P<text>[^)\]\"']+)")
_NONE_FOUND = "(from versions: none)"
_UNAVAILABLE = "have no matching distributions available for your environment"
_CREDENTIALS = re.compile(r"://(?P<user>[^/@:\s]+)(?::(?P<password>[^/@\s]*))?@")


def explain(output: str, graph: LayerGraph, *, probe: Probe | None = None) -> str:
    """A message naming each package in conflict and which layer asked for what, without a trace.

    `probe(host, port)` says why a connection to an index fails (None: it does not); it is asked
    only when pip found no version at all and printed nothing about the network.
    """
    unavailable = _unavailable(output)
    # Network evidence first: to pip an index that is down (or hangs) is an index without files, and
    # with the existing pins as constraints that reads as a conflict between layers.
    if lines := unreachable(output, probe, suspect=bool(unavailable)):
        return _bounded(lines, "\n") + INDEX_FIX
    if lines := _unobtainable(output, graph, unavailable):
        names = " ".join(dict.fromkeys(line.split()[1].rstrip(":") for line in lines))
        return "the index offers no file pip may use for the locked versions:\n  " + _bounded(lines) + (
            "\n  fix: check that the index still serves that file and that no option (--no-binary, --only-binary, "
            f"a marker) excludes it; to move to another version, run: nox -s upgrade -- {clip(names)}"
        )
    if lines := _conflicts(output, graph):
        return "the layers cannot be locked together:\n  " + _bounded(lines) + (
            "\n  fix: change one of those requirements so they agree, then run: nox -s lock"
        )
    if lines := _hash_mismatch(output):
        names = " ".join(dict.fromkeys(line.split()[1] for line in lines))
        return "the index serves other files than were locked:\n  " + _bounded(lines) + (
            "\n  fix: find out why the file changed on the index; if you trust it, take it with: "
            f"nox -s upgrade -- {clip(names)}"
        )
    if lines := _missing(output, graph):
        return "the layers cannot be locked:\n  " + _bounded(lines) + (
            "\n  fix: check the name and version against the index, then run: nox -s lock"
        )
    # Otherwise show pip's ERROR lines, else the exception pip-compile died of: the trace above it
    # shows pip-tools' internals, not the user's files.
    summary = [raw.strip() for raw in output.splitlines() if _ERROR.match(raw)] or _exception(output)
    return "pip-compile could not lock the layers:\n    " + _bounded(summary, "\n    ") + (
        "\n  fix: correct the requirement it names, then run: nox -s lock"
    )


INDEX_FIX = (
    "\n  fix: check that URL (--index-url/-i in requirements/*.in or [tool.deploy] compile-options, "
    "else PIP_INDEX_URL or pip.conf) and the network or proxy, then run the command again"
)


def _bounded(lines: list[str], separator: str = "\n  ") -> str:
    """At most MAX_LINES distinct lines, each clipped: pip's output can quote whole input files."""
    unique = list(dict.fromkeys(lines))
    shown = [clip(_redact(line), 400) for line in unique[:MAX_LINES]]
    if len(unique) > MAX_LINES:
        shown.append(f"… and {len(unique) - MAX_LINES} more")
    return separator.join(shown)


def unreachable(output: str, probe: Probe | None = None, *, suspect: bool = False) -> list[str]:
    """`the package index URL could not be reached (reason)`, one line per index pip could not reach.

    Without pip's retry warnings each index is probed when pip found no file at all for something
    ("from versions: none"), or when the caller `suspect`s the index (pip found no distribution).
    """
    indexes = _indexes(output)
    found: dict[str, str] = {}
    for raw in output.splitlines():
        if match := _BROKEN.search(raw):
            host, port, scheme = match.group("host"), int(match.group("port")), match.group("scheme").lower()
            shown_port = "" if port == (443 if scheme == "https" else 80) else f":{port}"
            url = _index_for(indexes, host, port) or f"{scheme}://{host}{shown_port}"
            found.setdefault(url, _reason(match.group("error"), match.group("detail")))
    # With retries off pip says nothing of the network: all that shows is that nothing was found.
    for url in dict.fromkeys(indexes) if not found and (suspect or _NONE_FOUND in output) and probe else ():
        parts = urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            continue
        if parts.hostname and probe and (reason := probe(parts.hostname, port)) is not None:
            found[url] = reason
    return [f"the package index {_redact(url)} could not be reached ({clip(reason)})" for url, reason in found.items()]


def _indexes(output: str) -> list[str]:
    """The index URLs pip used (passwords already hidden by pip), from pip-tools' and pip's own lines."""
    urls: list[str] = []
    listing = False
    for raw in output.splitlines():
        if raw.strip() == "Using indexes:":  # pip-tools -v, printed for PyPI too
            listing = True
        elif listing and raw.startswith(" ") and "://" in raw:
            urls.append(raw.strip())
        else:
            listing = False
            if match := _INDEXES.match(raw):  # pip: only for an index other than PyPI
                urls += [url.strip() for url in match.group("urls").split(",") if url.strip()]
    return list(dict.fromkeys(urls))


def _index_for(indexes: list[str], host: str, port: int) -> str | None:
    for url in indexes:
        parts = urlsplit(url)
        try:
            default = 443 if parts.scheme == "https" else 80
            if parts.hostname == host.lower() and (parts.port or default) == port:
                return url
        except ValueError:
            continue
    return None


def _reason(error: str, detail: str) -> str:
    if "refused" in detail.lower():
        return "connection refused"
    if error == "NameResolutionError" or "resolve" in detail.lower():
        errno = _ERRNO.search(detail)
        return "DNS lookup failed" + (f": {errno.group('text').strip()}" if errno else "")
    if "Timeout" in error or "timed out" in detail:
        return "timed out"
    errno = _ERRNO.search(detail)
    return errno.group("text").strip().lower() if errno else error


def _redact(url: str) -> str:
    """pip hides passwords in the URLs it prints; hide any that reach a message some other way."""
    return _CREDENTIALS.sub(lambda m: f"://{m.group('user')}:****@" if m.group("password") else "://****@", url)


def probe(host: str, port: int, timeout: float = 5.0) -> str | None:
    """Why a TCP connection to host:port fails, in a few words; None when it succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror as exc:
        return f"DNS lookup failed: {exc.strerror}"
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return "timed out"
    except OSError as exc:
        return (exc.strerror or type(exc).__name__).lower()


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


def _unobtainable(output: str, graph: LayerGraph, unavailable: set[str]) -> list[str]:
    """Locked pins the index no longer offers a usable file for, told apart from a real conflict.

    pip-compile passes the existing pins as constraints; when every other requirement on a package
    admits its locked version and pip still found no file, the version itself could not be had.
    """
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
