"""What uv's resolver said of a conflict, restated in pip's words so that pipsays.py reads it as it reads pip's.

uv explains a failed solve as a derivation (`error: No solution found when resolving dependencies`,
then `cause: Because you require tool<8 and tool==9.2.0, we can conclude that your requirements are
unsatisfiable.`, with `And because …` lines for longer chains). Its facts are the ones pip lists
under "The conflict is caused by:": what the inputs require (`you require X<8`, which is `The user
requested X<8`, or, for a pin of a settled lower layer, `The user requested (constraint) X==9.2.0`)
and what a package needs (`y==1.0 depends on x<2`, pip's `y 1.0 depends on x<2`; `y>=1.1 depends on
x>=1.1` as `y 1.1 depends on x>=1.1`). The block is
added below uv's own output, which stays as it was; a derivation it cannot read adds nothing, and
the message shows uv's own lines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from deploy.lock.lockfile import Pin
from deploy.lock.reqfile import canonical

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*(?:\[[^\]]*\])?"
_SPEC = rf"(?P<spec>{_NAME}(?:===?|!=|<=|>=|~=|<|>)[^\s,]+(?:, ?(?:===?|!=|<=|>=|~=|<|>)[^\s,]+)*)"
_REQUIRE = re.compile(r"you require ")
_ONE = re.compile(_SPEC)
_AND = " and "
# `y==1.0 depends on x<2`, or for a range of y's versions, `y>=1.1 depends on x>=1.1` (y 1.1 and every
# later one; stated for 1.1, the one an upgrade past 1.0 would take first); other ranges are not restated.
_DEPENDS = re.compile(rf"(?P<parent>{_NAME})(?:==(?P<version>[^\s,]+)|>=(?P<lowest>[^\s,]+)(?:, ?<[^\s,]+)?) "
                      rf"depends on {_SPEC}")
_SOLVE_FAILED = "No solution found when resolving dependencies"


def restated(output: str, kept: Mapping[str, Pin]) -> str:
    """`output` with uv's derivation restated as pip's conflict block below it (unchanged if none)."""
    if _SOLVE_FAILED not in output:
        return output
    text = " ".join(line.strip() for line in output[output.index(_SOLVE_FAILED):].splitlines())
    facts: list[str] = []
    for match in _REQUIRE.finditer(text):
        if text.endswith("conclude that ", 0, match.start()):
            continue  # uv's own conclusion (`we can conclude that you require plugin!=1.1`), not an input
        at = match.end()
        while (one := _ONE.match(text, at)) is not None:  # `you require tool<8 and tool==9.2.0`
            spec = one.group("spec").replace(", ", ",").rstrip(".")
            name, _, version = spec.partition("==")
            pin = kept.get(canonical(name))
            settled = pin is not None and version == pin.version
            facts.append(f"The user requested {'(constraint) ' if settled else ''}{spec}")
            if not text.startswith(_AND, one.end()):
                break
            at = one.end() + len(_AND)
    for match in _DEPENDS.finditer(text):
        spec = match.group("spec").replace(", ", ",").rstrip(".")
        facts.append(f"{match.group('parent')} {match.group('version') or match.group('lowest')} depends on {spec}")
    if not facts:
        return output
    block = "\n".join(f"    {fact}" for fact in dict.fromkeys(facts))
    return f"{output.rstrip()}\n\nThe conflict is caused by:\n{block}\n\n"
