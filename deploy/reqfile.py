"""Reading requirement files as pip does: logical lines, references and options.

Both `.in` sources and compiled `.txt` locks are read here, with line numbers kept so that every
message can point at `file:line`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_REFERENCE = re.compile(r"^(-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+)(\S+)$")


def canonical(name: str) -> str:
    """Normalise a project name the way PEP 503 does, so `Django_Foo` and `django-foo` match."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Line:
    """One logical line (continuations joined, comment stripped), with where it starts."""

    path: Path
    number: int
    text: str

    def where(self, root: Path) -> str:
        return f"{display(self.path, root)}:{self.number}"


def display(path: Path, root: Path) -> str:
    """A path as a user should see it: relative to the project when it is inside it."""
    # Paths here are usually already absolute and plain, so try without touching the disk first.
    if path.is_absolute() and root.is_absolute() and ".." not in path.parts and ".." not in root.parts:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def logical_lines(path: Path, text: str | None = None) -> Iterator[Line]:
    """Yield the logical lines of a requirements file, skipping blanks and comments."""
    if text is None:
        text = path.read_text(encoding="utf-8")
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        stripped = _strip_comment(raw)
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        joined = " ".join(part.strip() for part in pending).strip()
        pending = []
        if joined:
            yield Line(path, start, joined)
    if pending:
        joined = " ".join(part.strip() for part in pending).strip()
        if joined:
            yield Line(path, start, joined)


def _strip_comment(raw: str) -> str:
    # pip treats '#' as a comment at the line start or after whitespace only (URLs keep fragments).
    if raw.lstrip().startswith("#"):
        return ""
    return re.sub(r"\s+#.*$", "", raw).rstrip()


@dataclass(frozen=True)
class Reference:
    """A `-r`/`-c` line: which file it names, resolved against the including file's folder."""

    line: Line
    kind: str  # "r" or "c"
    target: Path


def parse_reference(line: Line) -> Reference | None:
    match = _REFERENCE.match(line.text)
    if match is None:
        return None
    kind = "c" if match.group(1) in ("-c", "--constraint") else "r"
    return Reference(line, kind, (line.path.parent / match.group(2)).resolve())


def requirement_name(text: str) -> str | None:
    """The project name a requirement line asks for, or None for options and URLs."""
    if text.startswith("-"):
        return None
    if " @ " in text:
        text = text.split(" @ ", 1)[0]
    match = _NAME.match(text)
    return canonical(match.group(1)) if match else None
