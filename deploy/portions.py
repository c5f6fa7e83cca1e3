"""Parts of a fleet, as a count of hosts or a percentage of them: `waves` and `max-failures`.

A wave's value is the number of hosts switched once that wave ends (cumulative, so "25%" reads
as "a quarter of the fleet is on the new release"), rounded up: "25%" of 5 hosts is 2. A failure
budget is rounded down, as Ansible's max_fail_percentage is: "10%" of 5 hosts allows none.
Hosts past the last wave's total switch together in one final wave; no host is ever left out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_PERCENT = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,2})?)%")
_COUNT = re.compile(r"[0-9]+")
Portion = int | str  # a count of hosts, or a percentage of them written "25%"


def percent(value: str) -> float | None:
    """The number in "25%", or None when `value` is not a percentage from 0 to 100."""
    match = _PERCENT.fullmatch(value)
    number = float(match.group(1)) if match else None
    return number if number is not None and number <= 100 else None


def hosts_in(value: Portion, total: int, *, up: bool) -> int:
    """How many of `total` hosts `value` names: a count as it is (at most `total`), a percentage
    rounded up (`up`, for waves) or down (for a failure budget)."""
    if isinstance(value, int):
        return min(value, total)
    share = (percent(value) or 0.0) * total / 100
    return min(total, math.ceil(share - 1e-9) if up else math.floor(share + 1e-9))


def wave_sizes(waves: Sequence[Portion], total: int) -> list[tuple[Portion, int]]:
    """Each wave's setting and how many more hosts it switches, in order, for `total` hosts. A
    wave that reaches no further than the one before switches none (shown as 0, never dropped);
    hosts beyond the last wave form a final wave, named "rest"."""
    done, sizes = 0, []
    for value in waves:
        upto = max(done, hosts_in(value, total, up=True))
        sizes.append((value, upto - done))
        done = upto
    if done < total or not sizes:
        sizes.append(("rest", total - done))
    return sizes


def allowed_failures(value: Portion, total: int) -> int:
    """The failure budget of `total` hosts (max-failures): a count, or a percentage rounded down."""
    return value if isinstance(value, int) else hosts_in(value, total, up=False)


@dataclass(frozen=True)
class Rule:
    """A setting whose value is not one of the plain kinds: how it is checked, parsed from a flag,
    and described. `check` raises ValueError with what was expected, for the value given."""

    expected: str

    def check(self, value: object) -> Any:
        raise NotImplementedError

    def parse(self, text: str) -> Any:
        return self.check(text)


class Budget(Rule):
    """max-failures: a whole number of hosts, 0 or more, or a percentage of them."""

    def check(self, value: object) -> Portion:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and percent(value) is not None:
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError("a whole number, 0 or more")  # a number: say what a number must be
        raise ValueError(self.expected)

    def parse(self, text: str) -> Portion:
        if _COUNT.fullmatch(text):
            return int(text)
        try:
            float(text)  # "-2", "1.5", "nan": a number, but not a count
        except ValueError:
            return self.check(text)
        raise ValueError("a whole number, 0 or more")


class Waves(Rule):
    """waves: a list of counts (1 or more) and percentages (above 0), each reaching further than
    the one before it of its kind. A flag gives them comma-separated: --waves 1,25%,100%."""

    def check(self, value: object) -> tuple[Portion, ...]:
        if not isinstance(value, (list, tuple)):
            raise ValueError(self.expected)
        checked: list[Portion] = []
        for item in value:
            count = isinstance(item, int) and not isinstance(item, bool) and item >= 1
            if not (count or (isinstance(item, str) and (percent(item) or 0) > 0)):
                raise ValueError(f"{self.expected} ({_show(item)} is neither)")
            checked.append(item)
        counts = [v for v in checked if isinstance(v, int)]
        shares = [percent(v) or 0.0 for v in checked if isinstance(v, str)]
        if counts != sorted(set(counts)) or shares != sorted(set(shares)):
            raise ValueError(f"{self.expected}; each wave reaches further than the one before (they count the "
                             "hosts switched so far)")
        return tuple(checked)

    def parse(self, text: str) -> tuple[Portion, ...]:
        items = [item.strip() for item in text.split(",")]
        return self.check([int(item) if _COUNT.fullmatch(item) else item for item in items])


@dataclass(frozen=True)
class Choice(Rule):
    """A word from a fixed list."""

    choices: tuple[str, ...] = ()

    def check(self, value: object) -> str:
        if isinstance(value, str) and value in self.choices:
            return value
        raise ValueError(self.expected)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
