"""One pip-compile run over some layers of a group: their union solved together, read back as pins.

Each round of a lock (lock/rounds.py) and each step of an upgrade (lock/upgrade.py) is one such run.
A run may take the pins of layers already settled as hard constraints (`kept`: pip must keep them,
or fail saying so) and the existing pins as preferences (pip-compile's output file: kept where the
inputs allow, their hashes reused). The layers are written into a temporary folder as copies whose
line N is one known line of the user's files, so that pip's messages can be mapped back to them.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy.config import Config
from deploy.errors import LockError
from deploy.lock import compiler, pipreport, resolver, sources
from deploy.lock.freshness import COMPILE_OPTIONS
from deploy.lock.layers import LayerGraph
from deploy.lock.lockfile import Pin
from deploy.lock.network import redact
from deploy.lock.reqfile import canonical, display
from deploy.lock.universe import pin_lines, read_universe
from deploy.render import inert

if TYPE_CHECKING:
    from deploy.lock import pylocks
    from deploy.lock.indexpage import File

Log = Callable[[str], None]
# The settled layers' pins, as the run's hard constraints. Not a layer name: layers are `NAME.in`.
KEPT_FILE = "kept-below.txt"
REPORT_FILE, SCOPES_FILE, PAGES_FOLDER = "pipreport.json", "pipscopes.json", "pages"  # see lock/pipreport.py


class Pages(dict[str, tuple[str, bytes]]):
    """Every index page a lock's runs read: URL -> content type and body (pip-compile's, through
    pipreport.py). uv's runs give none: `ahead`, once a uv run has started and called `open_ahead`
    (which the lock sets when it writes pylock files), is told the names each uv run picks and locked,
    so that the proof's and the pylock step's fetches of their pages run while uv solves. It is made
    only then, so that uv starts before the pylock step's modules load."""

    ahead: pylocks.ReadAhead | None = None
    open_ahead: Callable[[], None] | None = None


_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|AUTH|PRIVATE|SESSION", re.IGNORECASE)
_CONSTRAINT = re.compile(
    r"The user requested \(constraint\) (?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<spec>\S*(?: and [<>=!~]\S*)*)")
_SELECTING = "DEBUG Selecting: "  # uv -v: `DEBUG Selecting: celery==5.7.0 [compatible] (celery-5.7.0-py3-none-any.whl)`
# uv -v: `DEBUG Adding transitive dependency for celery==5.7.0: vine>=5.1.0, <6.0` (a marker comes as `{…}`)
_NEEDED = re.compile(r"DEBUG Adding transitive dependency for [^:]+: (?P<child>[A-Za-z0-9][A-Za-z0-9._-]*)"
                     r"(?:\[[^\]]*\])?(?P<marker>\{)?")
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@dataclass
class Scope:
    """A run the rounds would make, which one joint run asks pip to account for (pipreport.py)."""

    layers: Sequence[str]  # the layers it takes in (a layer with all it includes)
    preferences: Sequence[Pin] = ()  # that run's own preferences
    below: Sequence[str] = ()  # the scopes settled before it: their pins are its constraints


@dataclass
class Run:
    """What one pip-compile run solves, and with what it must agree."""

    layers: Sequence[str]  # every layer whose requirement lines go in (a layer with all it includes)
    preferences: Sequence[Pin] = ()  # kept where the inputs allow (pip-compile's output file)
    kept: Mapping[str, Pin] = field(default_factory=dict)  # must be kept: name -> pin of a settled layer
    kept_at: Mapping[str, str] = field(default_factory=dict)  # name -> `requirements/prod.txt:7`
    upgrade: Sequence[str] = ()  # --upgrade-package values (a name, or a name with a specifier)
    fresh: bool = False  # --upgrade: no preferences at all
    # scope name -> a run of the rounds, lowest first: ask pip what it saw (pipreport.py)
    report: Mapping[str, Scope] | None = None


@dataclass
class Outcome:
    """A run's universe (every pin with its `via`), or pip's output mapped to the user's files."""

    universe: dict[str, Pin] | None
    output: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    report: dict[str, Any] | None = None  # pipreport.py's, when asked for and pip-compile succeeded
    tool: str = "pip-compile"  # the resolver that ran, as a message names it

    def blames_kept(self, kept: Mapping[str, Pin]) -> bool:
        """Whether pip's conflict involves a settled layer's pin: `The user requested (constraint) x==1`,
        or `x<2,==1` (pip 26: `x<2 and ==1`) when a constraint file caps the same package."""
        for match in _CONSTRAINT.finditer(self.output):
            pin = kept.get(canonical(match.group("name")))
            if pin is not None and f"=={pin.version}" in match.group("spec").replace(" and ", ",").split(","):
                return True
        return False


def run(
    config: Config, graph: LayerGraph, plan: Run, *, env: Mapping[str, str] | None, log: Log, pages: Pages | None = None
) -> Outcome:
    """Run pip-compile once for `plan`; a failure comes back as pip's output, to be explained.

    `pages`, when given, gains every index page pip read (URL -> content type and body), which the
    pylock step then need not fetch again (uv's runs give none).
    """
    run_env = env if env is not None else os.environ
    with tempfile.TemporaryDirectory(prefix="pinship-lock-") as tmp:
        work = Path(tmp)
        for name in plan.layers:
            layer = graph.layers[name]
            lines = [line.text for line in layer.options + layer.requirements]
            lines += [f"-c {path}" for path in layer.external_constraints]
            (work / f"{name}.in").write_text("\n".join(lines) + "\n", encoding="utf-8")
        # Not `all.in`: a layer may be called `all` (init names one after an extra such as `all`).
        union = "".join(f"-r {name}.in\n" for name in plan.layers)
        if plan.kept:
            (work / KEPT_FILE).write_text("".join(f"{pin.requirement()}\n" for pin in plan.kept.values()),
                                          encoding="utf-8")
            union += f"-c {KEPT_FILE}\n"
        (work / "layers.union").write_text(union, encoding="utf-8")
        if plan.preferences and not plan.fresh:
            # The existing pins (with hashes) are pip-compile's preferences: nothing moves unless an
            # input demands it or an upgrade is asked for, and known hashes are reused.
            (work / "all.txt").write_text("\n".join(pin_lines(list(plan.preferences))) + "\n", encoding="utf-8")
        places = lambda text: real_places(text, work, graph)  # noqa: E731
        if config.resolver == resolver.UV:
            uv = resolver.command(
                resolver.UV, output="all.txt", union_file="layers.union", options=config.compile_options,
                upgrade=plan.upgrade, upgrade_all=plan.fresh, env=run_env,
                file_options=[line.text for name in plan.layers for line in graph.layers[name].options],
            )
            if (note := uv.note()) is not None:
                log(note)
            for index in sources.indexes(config, graph, plan.layers, run_env):  # as pip-compile's -v output names them
                log(f"index: {inert(redact(index))}")
            # The extras each package is taken with: uvreport.py's evidence that a scope asks for them too.
            # -v: what each package needs of another, which the proof reads too (uvreport.needs_from_log).
            argv = [*uv.argv[:3], "--no-strip-extras", "-v", *uv.argv[3:]] if plan.report is not None else uv.argv
            reading = pages if pages is not None and plan.report is not None else None
            compiled = compiler.run(argv, work, run_env, log, places=places, own_env=uv.env,
                                    started=functools.partial(_uv_started, pages, plan.report is not None),
                                    heard=None if reading is None else functools.partial(_heard, reading))
        else:
            command = [sys.executable, "-m", "piptools", "compile", *COMPILE_OPTIONS, *config.compile_options]
            # -v: pip explains a conflict ("The conflict is caused by: …") only at that verbosity.
            command += ["--annotation-style=line", "--no-header", "-v", "-o", "all.txt", "layers.union"]
            command += [arg for value in plan.upgrade for arg in ("--upgrade-package", value)]
            if plan.fresh:
                command.append("--upgrade")
            # Always through pipreport.py, which takes each file's hash from the index page that
            # lists it (pip-compile reads every page again, then downloads or asks PyPI's JSON API).
            if plan.report is not None:
                _ask_for_report(work, graph, plan)
            asked = [SCOPES_FILE if plan.report is not None else "", PAGES_FOLDER if pages is not None else ""]
            command[1:3] = ["-c", pipreport.BOOT, pipreport.__file__, REPORT_FILE, *asked]
            compiled = compiler.run(command, work, run_env, log, places=places)
        if compiled.returncode != 0:
            if config.resolver == resolver.UV:  # uv's derivation, in the words pipsays.py reads
                from deploy.lock import uvsays  # a failure's words: only a failed run needs them

                said = uvsays.restated(compiled.output, plan.kept)
                return Outcome(None, real_places(said, work, graph), run_env, tool="uv pip compile")
            return Outcome(None, real_places(compiled.output, work, graph), run_env)
        if pages is not None:
            pages.update(_read_pages(work / PAGES_FOLDER))
        uv_report = config.resolver == resolver.UV and plan.report is not None
        extras = _uv_extras(work / "all.txt") if uv_report else {}
        universe = _own_constraints(read_universe(work / "all.txt"), work, graph, plan.layers)
        if pages is not None and pages.ahead is not None:
            pages.ahead(universe)
        report: dict[str, Any] | None = None
        if uv_report:
            from deploy.lock import uvreport

            report = uvreport.of_run(config, graph, plan, universe, extras, run_env,
                                     pages.ahead if pages is not None else None, compiled.output)
        elif plan.report is not None:
            report = _read_report(work)
        return Outcome(universe, env=run_env, report=report)


def _uv_started(pages: Pages | None, proof: bool) -> None:
    """Once uv runs, what only its outcome needs loads while it solves: the page fetches of the pylock
    step (`pages`, when they are read ahead) for any run, and for a run the proof reads (`proof`)
    uvreport.py's parsers (packaging's), in a thread, with each page read in the fetching threads."""
    if proof:
        threading.Thread(target=importlib.import_module, args=("deploy.lock.uvreport",), daemon=True).start()
    if pages is not None and pages.open_ahead is not None:
        pages.open_ahead()
    if proof and pages is not None and pages.ahead is not None:
        pages.ahead.read_with(_read_page)


def _heard(pages: Pages, line: str) -> None:
    if pages.ahead is not None:
        _picked(pages.ahead, line)


def _picked(read_ahead: Callable[[Iterable[str]], None], line: str) -> None:
    """Start on the page of each package uv's -v log says it picked, while it goes on solving: the
    proof and the pylock step read them as soon as it ends. A package some picked one needs (with no
    marker, which may be false here) is started on at once: uv picks it later (on PyPI, botocore's
    3 MB page came 300 ms after boto3's needs were known, and was the last one the proof waited for)."""
    if line.startswith(_SELECTING):
        name = line[len(_SELECTING):].partition("==")[0]
    elif (needed := _NEEDED.match(line)) is not None and needed.group("marker") is None:
        name = needed.group("child")
    else:
        return
    if name:
        read_ahead([name])


def _read_page(url: str, listed: Sequence[File]) -> object:
    from deploy.lock import uvreport  # in a fetching thread: packaging's parsers load there

    return uvreport.read_page(url, listed)


def _uv_extras(path: Path) -> dict[str, frozenset[str]]:
    from deploy.lock import uvreport  # packaging's parsers: only a uv lock's one run needs them

    return uvreport.strip_extras(path)


def _ask_for_report(work: Path, graph: LayerGraph, plan: Run) -> None:
    """SCOPES_FILE for pipreport.py: each scope's input files as pip will name them (the kept pins are
    every round's constraints), its preferences, and the scopes below it."""
    assert plan.report is not None
    kept = [str(work / KEPT_FILE)] if plan.kept else []
    scopes = {
        name: {
            "files": [str(work / f"{layer}.in") for layer in scope.layers] + kept
            + [str(path) for layer in scope.layers for path in graph.layers[layer].external_constraints],
            "preferences": {} if plan.fresh else {pin.name: pin.version for pin in scope.preferences},
            "below": list(scope.below),
        }
        for name, scope in plan.report.items()
    }
    (work / SCOPES_FILE).write_text(json.dumps({"scopes": scopes}), encoding="utf-8")


def _read_pages(folder: Path) -> Pages:
    """The pages pipreport.py kept: a page it could not write whole is left out (read again later)."""
    found = Pages()
    for meta in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            said = json.loads(meta.read_text(encoding="utf-8"))
            found[str(said["url"])] = (str(said["type"]), meta.with_suffix(".body").read_bytes())
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def _read_report(work: Path) -> dict[str, Any]:
    try:
        report = json.loads((work / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {"error": f"no report file: {type(exc).__name__}"}
    return report if isinstance(report, dict) else {"error": "pip's resolver left a report of another shape"}


def _own_constraints(universe: dict[str, Pin], work: Path, graph: LayerGraph, layers: Sequence[str]) -> dict[str, Pin]:
    """Each `via -c PATH` (pip-compile writes it relative to the work folder) as the user's constraint
    file, by its full path; the settled layers' pins (KEPT_FILE) are this run's own, not a reason."""
    files = {path.resolve(): path for name in layers for path in graph.layers[name].external_constraints}
    for key, pin in universe.items():
        if not any(reason.startswith("-c ") for reason in pin.via):
            continue
        via = []
        for reason in pin.via:
            if not reason.startswith("-c "):
                via.append(reason)
            elif (path := files.get((work / reason[3:].strip()).resolve())) is not None:
                via.append(f"-c {path}")
        universe[key] = dataclasses.replace(pin, via=tuple(via))
    return universe


def explain(outcome: Outcome, graph: LayerGraph, kept_at: Mapping[str, str] | None = None) -> str:
    """pip's failure as "package X: layer A needs …, layer B needs …", without a trace or a secret."""
    # Through a proxy, a direct connection says nothing about whether pip reached the index.
    from deploy.lock import conflicts, network  # packaging's versions, and pip's words: for a failure only

    proxied = any(outcome.env.get(key) for key in _PROXIES)
    probe = None if proxied else network.probe
    message = conflicts.explain(outcome.output, graph, probe=probe, kept_at=kept_at, tool=outcome.tool)
    return hide_secrets(message, outcome.env)


def fail(outcome: Outcome, graph: LayerGraph, kept_at: Mapping[str, str] | None = None) -> LockError:
    return LockError(explain(outcome, graph, kept_at), fix=None)


def real_places(output: str, work: Path, graph: LayerGraph) -> str:
    """pip's output with the temporary layer copies named by the real file and line.

    run() writes each layer's option lines, then its requirement lines, then its `-c` lines, so
    line N of the copy is one known line of the user's files.
    """
    def place(layer_name: str, number: int) -> str | None:
        layer = graph.layers.get(layer_name)
        if layer is None:
            return None
        lines = layer.options + layer.requirements
        if 1 <= number <= len(lines):
            return lines[number - 1].where(graph.root)
        extra = number - len(lines) - 1
        if 0 <= extra < len(layer.external_constraints):
            return display(layer.external_constraints[extra], graph.root)
        return None

    def from_line(match: re.Match[str]) -> str:
        where = place(match.group("layer"), int(match.group("line")))
        return f"from {where}" if where else match.group(0)

    folder = re.escape(str(work))
    # pip-tools reads the existing pins from its output file: "Discarding x==1.0 (from -r all.txt (line 3))".
    output = re.sub(r"\(from -r all\.txt \(line \d+\)\)", "(an existing lock's pin)", output)
    output = re.sub(rf"from line (?P<line>\d+) of {folder}/(?P<layer>[^\s/)]+)\.in", from_line, output)
    return output.replace(str(work), display(graph.folder, graph.root))


def hide_secrets(message: str, env: Mapping[str, str]) -> str:
    """Blank out the values of secret-looking variables: pip expands `${VAR}` in requirement files
    and then quotes the line it could not use, so an `.in` line can carry a CI secret into a log."""
    for key, value in env.items():
        if len(value) >= 6 and _SECRET_NAME.search(key) and value in message:
            message = message.replace(value, "****")
    return message
