"""A lock in one pip-compile run, taken only when pip's own account proves the rounds would agree.

rounds.py solves the stale layers of a group level by level: each stale lower layer on its own
inputs (base alone, then prod keeping base's pins, …), then the top layers keeping all of those,
one pip-compile run each, every run keeping the pins of the lower layers left as locked. A first
lock has every level to solve; `add` or `remove` in a low layer, every level above it. Here the
rounds' layers are solved in one run (keeping the same pins, with the same preferences) whose
resolver also reports what it saw (lock/pipreport.py). The rounds are skipped when, for every run
they would make (each stale lower layer on its own inputs, and the top layers on theirs), that
report shows:

  (a) the packages the run's requirement lines reach through the picked candidates' dependencies
      (extras and markers as pip applied them) are exactly what select() gives the layer from the
      joint universe: no layer above brought anything in (an `orm[postgres]` asked only by dev.in);
  (b) each of those packages is at the version pip would try first for it in that run alone: the
      version a lower round settled (that run keeps it as an `==` constraint), else that run's
      preferred version (its layers' existing pin, init's seed) where its lines allow it, else the
      best candidate pip's finder offers under that run's own specifiers and constraints.

Why that is enough: pip's resolver (resolvelib) pins one name at a time, trying its candidates best
first among those that meet every requirement known so far on it: the run's own lines for that name
from the start, the rest from candidates already pinned. If every earlier pin is the joint's, those
requirements are among the ones the joint met, so the joint's version meets them; and by (b) no
candidate pip ranks above it meets even the run's own lines (pre-releases counted wherever any
requirement on the name could let them in). So it is tried first and pinned. Whatever order pip
takes the names in, every pin is the joint's at its first try, no conflict arises, nothing is
backtracked, and the run ends with exactly the joint's packages (a). The `==` constraints the
rounds add (the kept and the settled lower pins, the preferences) agree with it.

A run of peer layers (two on one level, solved together by the rounds) is covered by each one's
check, made with that round's preferences: their union reaches the union of their packages, each
at a version none of their lines can move. What it rests on, read in pip-tools 7.6 and pip 26.3:
pip-tools passes the preferences as `==` constraints unless a line of the run excludes them; pip's
factory asks its finder for a name's candidates with the combined specifier of what is known
(`find_best_candidate`, yanked releases skipped); the index answers the same within one lock.
pip-tools' hashes and annotations follow from the pins. Whatever the report lacks or contradicts,
the rounds run as before and the result is exactly theirs: the check only ever decides to skip
work whose outcome it has proven. That holds per run, too: the lowest rounds whose layers it
proved are taken from the one run, the others run, and a round whose scope it proved is still
taken above one that ran, when that one came out with the one run's pins: the proof of a scope
assumes no more of the rounds below it than their pins. (In an adopted project the test layer's
own round often runs: pinship's dependencies cap invoke below its newest, so pip would try the
newest first; it backs off to the joint's version, and dev is then taken.)
With resolver = "uv" the same checks read uvreport.py's account instead: uv reports nothing of
its run, so (a) comes from the `# via` graph of the one run with the extras it names, and (b) from
the index pages the pylock step reads, under rules that err toward failing (see there). PubGrub, as
uv runs it, decides one name at a time, taking the preference when the range at hand allows it and
else the newest version it can use in that range; the argument above holds for it word for word.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from deploy.config import Config
from deploy.lock import joint, preferences, sources
from deploy.lock.layers import LayerGraph
from deploy.lock.lockfile import Pin
from deploy.lock.reqfile import canonical, clip
from deploy.lock.resolver import UV
from deploy.lock.universe import select

Log = Callable[[str], None]
# Tests turn this off to lock the same project the long way and compare the files byte for byte.
ENABLED = True
TOP = "(the layers above)"
FALLBACK = "solving the lower layers on their own inputs first"


@dataclass
class OneRun:
    """The one run's universe, and the scopes it proved (their checks hold, given the pins below)."""

    universe: dict[str, Pin]
    proven: list[str]  # lower layers
    top: bool  # the top layers' scope: their round gives these pins if every round below does
    complete: bool  # every scope holds: every layer's pins are select() of this universe

    def pins(self, graph: LayerGraph, names: Sequence[str]) -> dict[str, list[Pin]]:
        return {name: select(graph, name, self.universe) for name in names}


def solve(
    config: Config,
    graph: LayerGraph,
    group: Sequence[str],
    rounds: Sequence[Sequence[str]],
    preferred: Callable[[Sequence[str]], Mapping[str, Pin]],
    kept: Mapping[str, Sequence[Pin]],
    kept_at: Mapping[str, str],
    *,
    env: Mapping[str, str] | None,
    log: Log,
    pages: joint.Pages | None = None,
) -> OneRun | None:
    """The one run of the group's rounds and what it proved, or None when it failed (the rounds explain).

    `rounds` are rounds.plan's (the last one the top layers); `kept` the lower layers left as locked,
    whose pins every round keeps; `preferred(members)` a round's preferences, as the rounds take them.
    """
    if config.resolver == UV and sources.proof_sources(config, graph, graph.closure(group), env) is None:
        # uvreport.py reads one index's pages: with two, the one run could only be thrown away.
        log(f"uv's one run is proven on a lock that reads one index, and this one reads more: {FALLBACK}")
        return None
    hard = {canonical(pin.name): pin for pins in kept.values() for pin in pins}

    def wished(members: Sequence[str]) -> list[Pin]:
        return list((dict(preferred(members)) | hard).values())

    top = rounds[-1]
    lower = [name for members in rounds[:-1] for name in members]
    scopes: dict[str, joint.Scope] = {}
    for depth, members in enumerate(rounds):
        below = [name for earlier in rounds[:depth] for name in earlier]
        for name in [TOP] if depth == len(rounds) - 1 else members:
            scopes[name] = joint.Scope(graph.closure(top if name == TOP else [name]), wished(members), below)
    layers = graph.closure(group)
    stale = [name for members in rounds for name in members]
    tool = "uv pip compile" if config.resolver == UV else "pip-compile"
    log(f"resolving {', '.join(stale)} together with {tool}, keeping the pins of {', '.join(kept)}" if kept
        else f"resolving {len(layers)} layers together with {tool}")
    run = joint.Run(layers, wished(group), hard, dict(kept_at), report=scopes)
    outcome = joint.run(config, graph, run, env=env, log=log, pages=pages)
    if outcome.universe is None:
        log(f"that run failed; {FALLBACK}, to name the lines that disagree")
        return None
    report = outcome.report or {"error": "no report"}
    who = "uv" if config.resolver == UV else "pip"
    why = {scope: _why_not(graph, scope, top, outcome.universe, report, who) for scope in [*lower, TOP]}
    failed = [reason for reason in why.values() if reason is not None]
    if not failed:
        log(f"each lower layer ({', '.join(lower)}) is what its own inputs give: one run locked the group")
    else:
        log(f"{failed[0]}: {FALLBACK}")
    return OneRun(outcome.universe, [name for name in lower if why[name] is None], why[TOP] is None, not failed)


def _why_not(graph: LayerGraph, scope: str, top: Sequence[str], universe: Mapping[str, Pin],
             report: Mapping[str, Any], who: str = "pip") -> str | None:
    """What keeps the joint run from standing for the run of `scope` in the rounds, or None.

    `who` names the resolver: pip's account comes from pipreport.py, uv's from uvreport.py.
    """
    if "error" in report or not isinstance(report.get("scopes"), dict):
        return f"{who}'s resolver gave no account of its run ({clip(str(report.get('error', 'unreadable')))})"
    seen = report["scopes"].get(scope)
    if not isinstance(seen, dict):
        if who == "uv":  # uvreport.py leaves out a scope whose packages may ask for other extras on their own
            return (f"the joint run takes a package of {'the top layers' if scope == TOP else scope} with an extra "
                    "that its own inputs may not ask for")
        return f"pip's resolver gave no account of {scope}"
    members = [scope] if scope != TOP else top
    given = {canonical(pin.name) for name in members for pin in select(graph, name, universe)}
    reached = {canonical(name) for name in seen}
    if given != reached:
        return _extra(scope, sorted(given - reached), sorted(reached - given))
    for name, found in sorted(seen.items()):
        picked, first = found.get("picked"), found.get("first")
        pinned = universe.get(canonical(name))
        if pinned is None or pinned.version != picked:
            return f"{who}'s account of {clip(name)} disagrees with the lock it wrote"
        if picked != first:
            return _moved(graph, scope, canonical(name), str(picked), first, who)
    return None


def _extra(scope: str, more: Sequence[str], fewer: Sequence[str]) -> str:
    where = "the top layers" if scope == TOP else scope
    if more:
        return (f"the joint run gives {where} {', '.join(clip(name) for name in more)}, which its own inputs "
                "do not reach (an extra asked for by a layer above)")
    return f"{where}'s own inputs reach {', '.join(clip(name) for name in fewer)}, which the joint run does not give it"


def _moved(graph: LayerGraph, scope: str, name: str, picked: str, first: object, who: str = "pip") -> str:
    where = "the top layers" if scope == TOP else scope
    if not isinstance(first, str):
        return f"{who} finds no version of {clip(name)} it would try first on the inputs of {where} alone"
    if scope == TOP:
        return (f"{clip(name)} {clip(picked)} is not the version {who} tries first for it ({clip(first)}), "
                "so another order of solving could pick otherwise")
    above = [layer for layer in graph.order if scope in graph.depends_on(layer)]
    line = preferences.excluding(graph, above, name, first)
    if line is not None:
        return (f"{line.where(graph.root)} '{clip(line.text)}' holds {clip(name)} below the version {who} tries "
                f"first on {scope}'s own inputs ({clip(first)})")
    return (f"{who} tries {clip(name)} {clip(first)} first on {scope}'s own inputs, where the joint run has "
            f"{clip(picked)}, so {scope}'s own run could pick otherwise")
