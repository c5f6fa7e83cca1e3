"""What pip-compile says while it runs: how far it got, what it warns about, and what is noise.

pip-compile -v writes pip's log (stdout) and its own (stderr). A few of pip's lines are stable
markers of progress, worded the same from pip 21 to 26: `Collecting NAME` when the resolver first
asks for a project, `Downloading FILE` / `Using cached FILE` / `Processing FILE` when it fetches
one, `Getting requirements to build ...` / `Preparing metadata ...` when an sdist is built for its
metadata, `INFO: pip is looking at multiple versions of NAME` when it backtracks, and pip-tools'
`Hashing FILE` once resolved. Those drive one status line. `WARNING:` and `DEPRECATION:` lines
are kept for the user (pip's `does not provide the extra 'x'` means a package is missing from the
lock), and so is pip-tools' `Discarding PIN to proceed the resolution`; pip's version check is
not. All of it stays in the output for a failure's explanation.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from deploy.render import inert

Log = Callable[[str], None]

_COLLECTING = re.compile(r"^Collecting (?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)")
_FETCHING = re.compile(r"^(?:Downloading|Using cached|Processing|Obtaining) (?P<what>\S+)")
_BUILDING = re.compile(r"^(?:Getting requirements to build|Preparing metadata|Installing build dependencies)")
_BACKTRACKING = re.compile(r"^INFO: pip is (?:still )?looking at multiple versions of (?P<name>\S+)")
_HASHING = re.compile(r"^Hashing (?P<what>\S+)")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")
# pip's and pip-tools' warnings; pip-tools says without a prefix that it dropped an existing pin
# (a preference) to find a solution, which moves a locked version.
_WARNING = re.compile(r"^(?:WARNING|DEPRECATION): |^Discarding .+ to proceed the resolution$")
# Not about the lock: pip's self version check, and the retry warnings network.py explains on failure.
_NOISE = re.compile(r"You are using pip version|A new release of pip|\[notice\]|^WARNING: Retrying \(")
# A warning pip continues on its next line (the reason given for a yanked release).
_CONTINUED = re.compile(r"^Reason for being yanked: ")


@dataclass
class Progress:
    """What pip-compile has done so far, read line by line from both of its streams."""

    collected: dict[str, None] = field(default_factory=dict)
    doing: str = "starting pip-compile"
    warnings: list[str] = field(default_factory=list)
    retries: int = 0
    indexes: list[str] = field(default_factory=list)
    _listing_indexes: bool = False
    _last_warning: bool = False

    def read(self, raw: str) -> bool:
        """Take one line of output; True when the status line changed."""
        before = (len(self.collected), self.doing)
        self._read(raw)
        return (len(self.collected), self.doing) != before

    def _read(self, raw: str) -> None:
        line = raw.strip()
        continued, self._last_warning = self._last_warning, False
        if self._listing_indexes and raw.startswith(" ") and _URL.match(line):
            self.indexes.append(line)
            return
        self._listing_indexes = line == "Using indexes:"
        if continued and _CONTINUED.match(line) and self.warnings:
            self.warnings[-1] += " " + line
        elif _NOISE.search(line):
            self.retries += line.startswith("WARNING: Retrying (")
        elif _WARNING.match(line):
            if line not in self.warnings:
                self.warnings.append(line)
            self._last_warning = True
        elif match := _COLLECTING.match(line):
            self.collected.setdefault(re.sub(r"[-_.]+", "-", match.group("name")).lower())
            self.doing = f"collecting {match.group('name')}"
        elif match := _FETCHING.match(line):
            self.doing = f"fetching {match.group('what')}"
        elif _BUILDING.match(line):
            if not self.doing.startswith("building"):
                self.doing = "building " + self.doing.removeprefix("fetching ").removeprefix("collecting ")
        elif match := _BACKTRACKING.match(line):
            self.doing = f"trying other versions of {match.group('name')}"
        elif match := _HASHING.match(line):
            self.doing = f"hashing {match.group('what')}"

    def status(self, elapsed: float) -> str:
        count = len(self.collected)
        noun = "package" if count == 1 else "packages"
        return inert(f"pip-compile: {count} {noun} so far, {self.doing} ({elapsed:.0f} s)", 200)


class Ticker:
    """The status line: redrawn in place on a terminal, else a plain line through log every `every` s.

    A CI log (nox's session.log is not a terminal there) gets a line now and then, not a redraw per
    package: after `every` seconds when something changed, after `quiet` seconds when nothing did (a
    stalled index still shows the run is alive). A terminal gets at most ten redraws a second, and
    the line is cleared at the end.
    """

    def __init__(self, log: Log, stream: TextIO | None, every: float = 5.0, quiet: float = 30.0) -> None:
        self.log = log
        self.stream = stream if stream is not None and _isatty(stream) else None
        self.every = every if self.stream is None else 0.1
        self.quiet = max(quiet, self.every)
        self.pending = False
        self.started = time.monotonic()
        self.shown = self.started
        self.drawn = False
        self.gone = False

    def tick(self, progress: Progress, *, changed: bool) -> None:
        now = time.monotonic()
        self.pending |= changed
        waited = now - self.shown
        if self.gone or waited < self.every or (not self.pending and (self.stream is not None or waited < self.quiet)):
            return
        self.shown, self.pending = now, False
        text = progress.status(now - self.started)
        if self.stream is None:
            self.log(text)
            return
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
        self._write(f"\r\x1b[2K{text[:width]}")
        self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            self._write("\r\x1b[2K")
            self.drawn = False

    def _write(self, text: str) -> None:
        if self.stream is None or self.gone:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError:  # the terminal went away: the status line is only news
            self.gone = True


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False
