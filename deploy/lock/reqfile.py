"""Reading requirement files as pip does: logical lines, references and options.

Both `.in` sources and compiled `.txt` locks are read here, with line numbers kept so that every
message can point at `file:line`.
"""

from __future__ import annotations

import codecs
import functools
import os
import re
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from deploy.errors import DeployError
from deploy.render import inert

# No message quotes more of a file (or of a tool's output) than this many characters of one line:
# an input may be /proc/self/environ or a 10 MB line, and messages end up in CI logs.
SHOWN = 200
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_REFERENCE = re.compile(r"^(-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+)(\S+)$")
# pip's requirement-file parser takes every option on a line, attached values (`-r/etc/x`) and
# unambiguous long prefixes (`--requirem x`): any of these also makes pip read another file.
_PREFIXES = "|".join(word[:i] for word in ("requirement", "constraint") for i in range(1, len(word) + 1))
_HIDDEN_REFERENCE = rf"^(?:-[rc]|--(?:{_PREFIXES})(?:=|$))"  # compiled by re when an option line first needs it

# Options whose value pip reads from the local disk: a file: URL always, a bare path where True.
# (--find-links is read by lock/options.py: pip takes a relative one from its file's folder.)
_PATH_OPTIONS = {"-e": True, "--editable": True, "-i": False, "--index-url": False, "--extra-index-url": False}
# pip replaces ${NAME} in requirement files with the environment's value (pip's own pattern).
ENV_VARIABLE = re.compile(r"\$\{[A-Z0-9_]+\}")


# Longest first: a UTF-32-LE mark begins with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}


class UnreadableInput(DeployError):
    """A requirement or lock file that cannot be read as text (not UTF-8)."""


def clip(text: str, limit: int = SHOWN) -> str:
    """Text from a file or a tool as a message may show it: one inert line (render.inert, the one
    rule for all quoted text), at most `limit` characters."""
    return inert(text, limit)


def read_bytes(path: Path, root: Path, *, fix: str | None = None) -> bytes:
    """A requirement or lock file's bytes, from a regular file only.

    Opened without blocking and checked before reading: a FIFO would stall `verify` (and the
    deploy gate) forever, and /dev/zero would never end.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _unreadable(path, root, exc, fix) from None
    kind = os.fstat(fd).st_mode
    if not stat.S_ISREG(kind):
        os.close(fd)
        name = clip(display(path, root))
        raise UnreadableInput(
            f"{name}: is {_KINDS.get(stat.S_IFMT(kind), 'not a regular file')}, not a regular file; "
            "requirement and lock files are read only from regular files",
            fix=f"replace {name} with an ordinary file (or remove the line that names it)",
        )
    with os.fdopen(fd, "rb") as handle:
        try:
            return handle.read()
        except OSError as exc:
            raise _unreadable(path, root, exc, fix) from None


def _unreadable(path: Path, root: Path, exc: OSError, fix: str | None) -> UnreadableInput:
    # Named here, when a read fails, rather than before every read: verify reads dozens of files.
    name = clip(display(path, root))
    return UnreadableInput(f"{name}: cannot be read ({exc.strerror or exc})", fix=fix or f"make {name} a readable file")


def read_text(path: Path, root: Path, *, fix: str | None = None) -> str:
    """A requirement or lock file's text, decoded as pip decodes it.

    pip honours a byte-order mark (UTF-8, UTF-16 or UTF-32) and otherwise reads UTF-8; so does this,
    and the mark is not part of the text: left in, it would glue itself to the first line's name.
    Anything else that is not UTF-8 is one line naming file:line and the byte offset.
    """
    data = read_bytes(path, root, fix=fix)
    skipped, encoding = next(((len(mark), marked) for mark, marked in _BOMS if data.startswith(mark)), (0, "utf-8"))
    try:
        return data[skipped:].decode(encoding)
    except UnicodeDecodeError as exc:
        name = display(path, root)
        offset = skipped + exc.start
        if encoding != "utf-8":
            raise UnreadableInput(
                f"{name}: starts with a {encoding.upper()} byte-order mark but is not {encoding.upper()} "
                f"(at byte offset {offset})",
                fix=fix or f"save {name} as UTF-8",
            ) from None
        line = data.count(b"\n", 0, offset) + 1
        raise UnreadableInput(
            f"{name}:{line}: is not UTF-8 (byte 0x{data[offset]:02x} at offset {offset}); pip and pinship read "
            "requirement files as UTF-8",
            fix=fix or f"save it as UTF-8, e.g.: iconv -f latin1 -t utf-8 {name} > {name}.new && mv {name}.new {name}",
        ) from None


def unusable_file(exc: OSError) -> str:
    """An OSError an entry point caught, as one line naming the file (a lock folder not writable …)."""
    name = clip(str(exc.filename)) if exc.filename is not None else "a file"
    return f"{name}: {clip(exc.strerror or type(exc).__name__)}; check that path and its permissions"


def is_inside(path: Path, folders: Sequence[Path]) -> bool:
    """Whether an already resolved path lies in one of `folders` (resolved by the caller)."""
    return any(path == folder or path.is_relative_to(folder) for folder in folders)


_SEPARATORS = re.compile(r"[-_.]+")


@functools.lru_cache(maxsize=4096)  # a lock asks for the same hundred names thousands of times
def canonical(name: str) -> str:
    """Normalise a project name the way PEP 503 does, so `Django_Foo` and `django-foo` match."""
    return _SEPARATORS.sub("-", name).lower()


class Line(NamedTuple):
    """One logical line (continuations joined, comment stripped), with where it starts.

    The records read from these files (this, Reference, options.Option, lockfile.PinLine) are
    NamedTuples, not frozen dataclasses: as immutable, and `verify`, whose run is mostly imports,
    creates each class in a tenth of the time (a dataclass compiles six methods per class).
    """

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


def logical_lines(path: Path, text: str | None = None, *, root: Path | None = None) -> Iterator[Line]:
    """Yield the logical lines of a requirements file, skipping blanks and comments."""
    if text is None:
        text = read_text(path, root or path.parent)
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


def requirement_text(path: Path, root: Path) -> str:
    """A requirements file as what it asks pip for: its logical lines, without comments or blanks.

    Two files that differ only in comments, blank lines, trailing spaces or where a line is
    continued read the same here, as pip reads them the same.
    """
    return "".join(line.text + "\n" for line in logical_lines(path, read_text(path, root)))


def _strip_comment(raw: str) -> str:
    # pip treats '#' as a comment at the line start or after whitespace only (URLs keep fragments).
    if raw.lstrip().startswith("#"):
        return ""
    if "#" not in raw:  # most lines: no pattern to run
        return raw.rstrip()
    return re.sub(r"\s+#.*$", "", raw).rstrip()


class Reference(NamedTuple):
    """A `-r`/`-c` line: which file it names, resolved against the including file's folder."""

    line: Line
    kind: str  # "r" or "c"
    target: Path
    written: str  # the path as the line spells it


def parse_reference(line: Line) -> Reference | None:
    match = _REFERENCE.match(line.text)
    if match is None:
        return None
    kind = "c" if match.group(1) in ("-c", "--constraint") else "r"
    written = match.group(2)
    if _is_file_url(written):
        # pip opens a file: URL as the path it names; a relative one is taken like any relative -r.
        named = Path(unquote(urlsplit(written).path) or ".")
        return Reference(line, kind, (line.path.parent / named).resolve(), written)
    return Reference(line, kind, (line.path.parent / written).resolve(), written)


def is_remote(written: str) -> bool:
    """A -r/-c value pip would download (http://, https://) rather than read from the disk."""
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", written)) and not _is_file_url(written)


def local_paths(line: Line) -> list[str]:
    """What a line makes pip read from the local disk besides -r/-c: editable or plain paths,
    `file:` URLs (in a requirement or an index/find-links option), as the line spells them."""
    tokens = line.text.split()
    found: list[str] = []
    if line.text.startswith("-"):
        for index, token in enumerate(tokens):
            option, _, attached = token.partition("=")
            if option not in _PATH_OPTIONS and token[:2] in ("-e", "-i") and len(token) > 2:
                option, attached = token[:2], token[2:]
            if option not in _PATH_OPTIONS:
                continue
            value = attached or (tokens[index + 1] if index + 1 < len(tokens) else "")
            if _is_file_url(value) or (value and _PATH_OPTIONS[option] and "://" not in value):
                found.append(value)
        return found
    first = tokens[0].split(";")[0] if tokens else ""
    if " @ " in line.text:
        url = line.text.split(" @ ", 1)[1].split(";")[0].strip()
        return [url] if _is_file_url(url) else []
    if _is_file_url(first) or ("://" not in first and (first.startswith((".", "~")) or "/" in first)):
        return [first]
    return []


def _is_file_url(value: str) -> bool:
    return value.split(":", 1)[0].lower().endswith("file") and ":" in value


def local_target(value: str, root: Path) -> Path:
    """The resolved path a `local_paths` value names (relative ones as pip takes them: from the project)."""
    if _is_file_url(value):
        value = unquote(urlsplit(value.split("+", 1)[-1]).path)
    return (root / Path(value).expanduser()).resolve()


def hides_reference(line: Line) -> bool:
    """An option line that makes pip read another file in a form other than `-r FILE` alone on its line."""
    return line.text.startswith("-") and any(re.match(_HIDDEN_REFERENCE, token) for token in line.text.split())


# `name`, `name[extra, …]`, then comparisons with plain release numbers (`>=1.2, <2`): a subset of
# PEP 508 that packaging always accepts. verify loads every layer, and importing packaging's
# requirement parser cost it more than the whole check; other lines are parsed by packaging.
_NAME_508 = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_COMPARISON = r"\s*(?:==|!=|>=|<=|>|<)\s*[0-9]+(?:\.[0-9]+)*"
_PLAIN_REQUIREMENT = re.compile(
    rf"{_NAME_508}(?:\s*\[\s*{_NAME_508}(?:\s*,\s*{_NAME_508})*\s*\])?(?:{_COMPARISON}(?:\s*,{_COMPARISON})*)?\s*")


def requirement_problem(text: str) -> str | None:
    """Why a requirement line (not an option line) is not one pinship can lock; None when it is.

    pip-compile would reject it with its own trace naming a temporary copy, or accept a bare path or
    URL whose pin no layer could then claim: every line must be a PEP 508 requirement
    (`name[extras] specifier ; marker` or `name @ URL`), optionally followed by pip's per-line options.
    """
    if ENV_VARIABLE.search(text):
        return "it names an environment variable, so what pip locks there depends on the machine"
    words = text.split()
    first_option = next((i for i, word in enumerate(words) if word.startswith("-")), len(words))
    requirement = " ".join(words[:first_option])
    if _PLAIN_REQUIREMENT.fullmatch(requirement):
        return None  # the common case, valid PEP 508 by construction: no parser to import
    from packaging.requirements import InvalidRequirement, Requirement  # ~40 ms: only for the rest

    try:
        Requirement(requirement)
    except InvalidRequirement as exc:
        return f"it is not a requirement ({str(exc).splitlines()[0] if str(exc) else 'invalid'})"
    return None


def requirement_name(text: str) -> str | None:
    """The project name a requirement line asks for, or None for options and URLs."""
    if text.startswith("-"):
        return None
    if " @ " in text:
        text = text.split(" @ ", 1)[0]
    match = _NAME.match(text)
    return canonical(match.group(1)) if match else None
