"""Every environment setting, declared once (key, type, range, default, help): pyproject.toml's
parser (environments.py), the command line's flags and their coercion (release/select.py, tasks.py) and
the task help all read this table, so the three can never disagree.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from deploy.errors import ConfigError
from deploy.portions import Budget, Choice, Rule, Waves
from deploy.render import shown

_WORD = re.compile(r"(?!-)[^\x00-\x1f\x7f]+")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
WEEK = 7 * 24 * 3600  # the longest wait any setting may ask for: every timer and socket can hold it


@dataclass(frozen=True)
class Setting:
    """One environment setting, declared once: pyproject.toml, the flags and their help read it.

    `kind` is bool, int, float (seconds), str, or tuple (the hosts). Numbers run from `least`
    (excluded when `above`, as for a timeout, where 0 would mean nothing) to `most`.
    """

    key: str
    kind: type
    default: Any
    help: str
    least: float = 0
    above: bool = False
    most: float | None = None
    zero: str = ""  # what 0 means, where it means something
    blank: bool = True  # whether an empty string (or list) means something
    word: bool = False  # a string that must not read as an option ('-…') or hold control characters
    rule: Rule | None = None  # a value of no plain kind (waves, a count or percentage): its own checks

    @property
    def attr(self) -> str:
        return self.key.replace("-", "_")

    @property
    def expected(self) -> str:
        if self.rule is not None:
            return self.rule.expected
        if self.kind is bool:
            return "true or false"
        if self.kind is int:
            high = f" and at most {self.most:g}" if self.most is not None else ""
            return (f"a whole number of at least {self.least:g}{high}" if self.least
                    else f"a whole number, 0 or more{high}")
        if self.kind is float:
            low = f"above {self.least:g}" if self.above else f"from {self.least:g}"
            high = f" {'and at most' if self.above else 'to'} {self.most:g}" if self.most is not None else ""
            week = " (a week)" if self.most == WEEK else ""
            return f"a number of seconds {low}{high}{week}" + (f"; 0: {self.zero}" if self.zero else "")
        if self.kind is tuple:
            return "a list of strings" if self.blank else "a list of at least one string"
        if self.word:  # and no control characters: "plain"
            return "a plain non-empty string (no leading '-')"
        return "a string" if self.blank else "a non-empty string"

    @property
    def described(self) -> str:
        """The help text, with the default when there is one worth showing."""
        if self.kind is int:
            return f"{self.help} (default {self.default}; at least {self.least:g})"
        if self.kind is float:
            low = f"above {self.least:g}" if self.above else f"{self.least:g} or more"
            zero = f"; 0: {self.zero}" if self.zero else ""
            high = f", at most {self.most:g}" if self.most is not None else ""
            return f"{self.help} (default {self.default:g}; {low}{high}{zero})"
        return f"{self.help} (default {str(self.default).lower()})" if self.kind is bool else self.help

    def check(self, value: object) -> Any:
        """The value with this setting's type, or ValueError: bool is no number, nan no time."""
        if self.rule is not None:
            return self.rule.check(value)
        checked = self._check(value)
        if self.kind is int and self.most is not None and checked > self.most:
            raise ValueError(self.expected)
        return checked

    def _check(self, value: object) -> Any:
        if self.kind is tuple:
            if isinstance(value, list) and all(isinstance(v, str) for v in value) and (value or self.blank):
                return value
        elif isinstance(value, bool) or self.kind is bool:
            if isinstance(value, bool) and self.kind is bool:
                return value
        elif self.kind is str:
            if isinstance(value, str) and (value.strip() or self.blank) and (not self.word or _WORD.fullmatch(value)):
                return value
        elif isinstance(value, int) or (self.kind is float and isinstance(value, float)):
            try:
                number = self.kind(value)
            except OverflowError:  # an int too large for a float: no timer holds it either
                raise ValueError(self.expected) from None
            if (math.isfinite(number) and (number > self.least if self.above else number >= self.least)
                    and (self.most is None or number <= self.most)):
                return number
        raise ValueError(self.expected)

    def parse(self, text: str) -> Any:
        """A flag's value: invoke hands over the text of a flag whose default is None."""
        if self.rule is not None:
            return self.rule.parse(text)
        if self.kind not in (int, float):
            return self.check(text)
        # ASCII digits only, as TOML has them: int() would also take full-width digits, '1_0' and ' 5 '.
        if not (_INTEGER if self.kind is int else _DECIMAL).fullmatch(text):
            raise ValueError(self.expected)
        return self.check(self.kind(text))


SETTINGS = {s.attr: s for s in (
    # An empty list would quietly turn a fleet into a deploy on this machine: leave hosts out for that.
    Setting("hosts", tuple, (), "hosts as user@host[:port]; none: deploy on this machine", blank=False),
    Setting("path", str, ".deploy/local", "where releases live on each host (absolute on SSH hosts)",
            blank=False, word=True),
    Setting("known-hosts", str, None, "pinned host keys file, inside the project", blank=False, word=True),
    Setting("identity", str, None, "SSH private key file", blank=False, word=True),
    Setting("jump", str, None, "bastion the hosts are reached through, as user@host[:port] (its key pinned "
            "in known-hosts like any host's)", blank=False, word=True),
    Setting("python", str, "python3", "interpreter on the hosts used to make release venvs", blank=False,
            word=True),
    Setting("keep-releases", int, 5, "releases kept per host; the live and the previous one are never pruned",
            least=1, most=10_000),
    Setting("parallel", int, 10, "hosts worked on at once", least=1, most=1_000),
    Setting("max-failures", object, 0, "hosts that may fail (staging, or a wave's post-switch check) while the "
            'others still switch: a count, or a percentage of the hosts rounded down ("10%" of 5 is 0; default 0)',
            rule=Budget('a whole number, 0 or more, or a percentage of the hosts such as "10%"')),
    Setting("waves", tuple, (), 'hosts switched by the end of each wave, in order: counts and percentages rounded '
            'up ("25%" of 5 is 2), e.g. [1, "25%", "100%"] or --waves 1,25%,100%; hosts beyond the last wave '
            "switch last (default: one wave)",
            rule=Waves('a list of counts (1 or more) and percentages such as "25%"')),
    Setting("on-wave-failure", str, "rollback", "when a wave fails: rollback (every host this run switched goes "
            "back) or keep (the waves that passed stay)", rule=Choice('"rollback" or "keep"', ("rollback", "keep"))),
    Setting("run-once", str, None, "command run once per release, on the first host of the first wave, in the new "
            "release, after every host staged and before any switches (e.g. migrations); a failure switches nobody",
            blank=False),
    Setting("post-switch", str, None, "command run on each host after its switch and restart (e.g. curl -fsS "
            "--retry 5 URL); a failure fails the host's wave and switches it back", blank=False),
    Setting("hook-timeout", float, 300.0, "seconds run-once and post-switch may each take", above=True, most=WEEK),
    Setting("healthcheck", str, None, "command run in the new release before the switch"),
    Setting("restart", str, None, "command run after the switch; a failure switches that host back"),
    Setting("confirm", bool, False, "ask before deploying; --yes skips the question"),
    Setting("connect-timeout", float, 15.0, "seconds to wait for a host to answer when connecting",
            above=True, most=WEEK),
    Setting("command-timeout", float, 600.0, "seconds one remote step may take before the host counts as hung",
            above=True, most=WEEK),
    Setting("keep-alive", float, 60.0, "seconds the hosts' connections are kept for the next run",
            most=WEEK, zero="close them at the end"),
)}


def flag_value(attr: str, value: object) -> Any:
    """A command-line value for setting `attr`, checked by the same rules as pyproject.toml."""
    setting = SETTINGS[attr]
    try:
        return setting.parse(value) if isinstance(value, str) else setting.check(value)
    except ValueError as exc:
        raise ConfigError(f"--{setting.key} {shown(value)}: expected {exc}") from None
