"""The compiled `.txt` format: a header that records what it was made from, then pins.

The header carries a digest of every input (so `verify` can say which file changed) and a digest
of the body (so a hand edit is caught). The body is what pip reads:
`name==version --hash=sha256:…` lines, each annotated with why it is there.

Stdlib only, and no syntax newer than Python 3.7 (no `:=`): scripts/onboard.py imports this module
under whatever python3 a user starts it with, and must still be able to tell 3.7 it is too old.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from deploy.lock.reqfile import canonical, clip, display, logical_lines, read_text, requirement_name

if TYPE_CHECKING:
    _Digests = dict[str, str]
else:  # dict[str, str] is no class before Python 3.9, and scripts/onboard.py imports this module on 3.7
    _Digests = dict

REGENERATE = "nox -s lock"
_INPUT = re.compile(r"^#\s{3}(\S.*?)\s+([0-9a-f]{16})$")
_CONTENT = re.compile(r"^# content: sha256:([0-9a-f]{64})$")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)")
_HASH = re.compile(r"--hash[= ](\S+)")
# A pin in any form pip accepts and pip-compile writes: `Name[extras] == version ; marker`. Compiled
# by re on first use: only installing from a lock reads one (verify never does).
_PIP_PIN = (
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[^\]]*\])?\s*"
    r"==\s*(?P<version>[^\s;*]+)\s*(?:;\s*(?P<marker>.*))?"
)


@dataclass(frozen=True)
class Pin:
    """One locked distribution: the exact version and every acceptable file hash."""

    name: str
    version: str
    hashes: tuple[str, ...]
    via: tuple[str, ...] = ()
    line: int = 0

    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass
class LockFile:
    """A parsed `.txt` lock: its header's digests, its body, and the pins and option lines in it."""

    path: Path
    inputs: dict[str, str] = field(default_factory=dict)
    content_digest: str | None = None
    body: str = ""
    body_start: int = 1
    pins: dict[str, Pin] = field(default_factory=dict)
    problems: list[tuple[int, str]] = field(default_factory=list)
    # Option lines of the body (`--find-links wheels`), by line number: verify checks them against
    # the options the inputs give the lock (LayerGraph.lock_options).
    options: list[tuple[int, str]] = field(default_factory=list)
    text: str = ""

    def body_is_intact(self) -> bool:
        return self.content_digest == content_digest(self.body)

    def find_links(self) -> list[Path]:
        """The local folders its `--find-links` lines name, resolved as pip resolves them: from the
        lock's own folder. A tool that installs the pins from a requirements file of its own (not
        this one) passes them on, or a vendored wheel is not found."""
        found = []
        for _, text in self.options:
            option, _, value = text.partition(" ")
            if option in ("--find-links", "-f") and value and "://" not in value:
                found.append((self.path.parent / value.strip()).resolve())
        return found


class PinLine(NamedTuple):
    """One logical lock line as pip reads it: the requirement, its marker and its `--hash` values.

    `parse` insists on the plain `name==version` that pinship writes; this reading also takes what
    pip-compile writes elsewhere (extras, spaces around `==`, a marker), for a reader that installs
    from any lock, as scripts/onboard.py does.
    """

    requirement: str  # the line without its --hash options, as messages quote it
    hashes: tuple[str, ...]
    name: str | None = None  # canonical; None when the line is not pinned with ==
    version: str = ""
    marker: str | None = None


def hashes_of(text: str) -> tuple[str, ...]:
    """The `--hash` values on a logical lock line, in the order written."""
    return tuple(_HASH.findall(text))


def read_pin_line(text: str) -> PinLine:
    """Split a logical lock line (not an option line) into requirement, marker and hashes."""
    requirement = " ".join(_HASH.sub(" ", text).split())
    match = re.fullmatch(_PIP_PIN, requirement)
    if match is None:
        return PinLine(requirement, hashes_of(text))
    return PinLine(requirement, hashes_of(text), canonical(match["name"]), match["version"], match["marker"] or None)


def content_digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


class LockInputs(_Digests):
    """What a lock is made from: a digest per input file (as the header lists them), and the option
    lines its body carries ahead of the pins (a local `--find-links`, LayerGraph.lock_options)."""

    def __init__(self, digests: Mapping[str, str], options: Iterable[str] = ()) -> None:
        super().__init__(digests)
        self.options = list(options)


def render(
    header_lines: list[str], inputs: Mapping[str, str], pins: list[Pin], options: Sequence[str] | None = None
) -> str:
    """The full text of a lock file, header first; `options` default to the inputs' (LockInputs)."""
    if options is None:
        options = inputs.options if isinstance(inputs, LockInputs) else ()
    body = "".join(line + "\n" for line in options) + render_body(pins)
    width = max(len(name) for name in inputs)
    lines = ["#", *(f"# {text}" if text else "#" for text in header_lines), "#", "# inputs:"]
    lines += [f"#   {name.ljust(width)}  {value}" for name, value in inputs.items()]
    lines += [f"# content: sha256:{content_digest(body)}", "#"]
    return "\n".join(lines) + "\n" + body


def render_body(pins: list[Pin]) -> str:
    out: list[str] = []
    for pin in sorted(pins, key=lambda p: canonical(p.name)):
        out.append(f"{pin.name}=={pin.version} \\")
        hashes = sorted(pin.hashes)
        for i, value in enumerate(hashes):
            out.append(f"    --hash={value}" + (" \\" if i < len(hashes) - 1 else ""))
        if pin.via:
            if len(pin.via) == 1:
                out.append(f"    # via {pin.via[0]}")
            else:
                out.append("    # via")
                out.extend(f"    #   {reason}" for reason in pin.via)
    return "\n".join(out) + "\n"


def parse(path: Path, root: Path | None = None) -> LockFile:
    """Read a lock file; what is wrong with its lines goes to `.problems` with line numbers.

    `root` is the project, for naming the file in an error (default: the lock's own folder).
    """
    where = root or path.parent
    text = read_text(path, where, fix=f"it is generated: delete {display(path, where)} and run: {REGENERATE}")
    lock = LockFile(path, text=text)
    raw_lines = text.splitlines(keepends=True)
    header_end = 0
    for index, raw in enumerate(raw_lines):
        line = raw.rstrip("\n")
        if not line.startswith("#"):
            break
        header_end = index + 1
        named, digest = _INPUT.match(line), _CONTENT.match(line)
        if named:
            lock.inputs[named.group(1)] = named.group(2)
        elif digest:
            lock.content_digest = digest.group(1)
            header_end = index + 2  # the closing "#" belongs to the header too
            break
    lock.body = "".join(raw_lines[header_end:])
    lock.body_start = header_end + 1
    _parse_pins(lock, "\n" * header_end + lock.body)
    return lock


def _parse_pins(lock: LockFile, text: str) -> None:
    for line in logical_lines(lock.path, text):
        if line.text.startswith("-"):
            lock.options.append((line.number, line.text))
            continue
        name = requirement_name(line.text)
        match = _PIN.match(line.text)
        if match is None or name is None:
            lock.problems.append((line.number, f"'{clip(line.text)}' is not pinned with =="))
            continue
        hashes = hashes_of(line.text)
        if not hashes:
            lock.problems.append((line.number, f"{clip(match.group(0))} has no --hash"))
        if name in lock.pins:
            lock.problems.append((line.number, f"{clip(name)} is pinned twice"))
        lock.pins[name] = Pin(match.group(1), match.group(2), hashes, line=line.number)
