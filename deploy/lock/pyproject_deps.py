"""Edit `[project] dependencies` in pyproject.toml as text, keeping everything else byte for byte.

`nox -s add`/`remove` change the base layer, whose requirements pyproject.toml also declares (the
app's wheel carries them; verify's drift check keeps both lists equal). A TOML library would
rewrite the whole file, losing its comments and layout, so the array is found and edited in place:
its strings are read as TOML strings (basic or literal), and only the one entry changes, or a new
entry goes in after the last one, in the array's own style (one per line, or all on one).
A Poetry project's wheel declares `[tool.poetry.dependencies]` instead, in Poetry's own syntax: a
requirement goes in as the entry that init (adopt/poetry.py) reads back as that same requirement
(`web>=1,<2` as `web = "<2,>=1"`, extras and markers as an inline table), in place of a one-line
string entry or on a line after the table's last entry, and only when that round trip holds; an
entry in another form (a source, an optional one, one over several lines) is left for the user,
with a warning.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from deploy.errors import LockError
from deploy.lock.reqfile import canonical, clip, read_text

POETRY = "[tool.poetry.dependencies]"
_TABLE = re.compile(r"^\s*\[\s*project\s*\]\s*(?:#.*)?$", re.MULTILINE)
_NEXT_TABLE = re.compile(r"^\s*\[", re.MULTILINE)
_KEY = re.compile(r"^\s*(?:dependencies|\"dependencies\"|'dependencies')\s*=\s*\[", re.MULTILINE)
_POETRY_TABLE = re.compile(r"^[ \t]*\[[ \t]*tool[ \t]*\.[ \t]*poetry[ \t]*\.[ \t]*dependencies[ \t]*\][ \t]*(?:#.*)?$",
                           re.MULTILINE)
_WRITTEN = {"version", "extras", "markers"}  # the keys of the entries poetry_value writes
_POETRY_KEY = re.compile(r"""^[ \t]*(?:"([^"\\]+)"|'([^']+)'|([A-Za-z0-9_.-]+))[ \t]*=""")


@dataclass
class _Entry:
    start: int  # of the string token, in the file's text
    end: int
    value: str


def declares(root: Path) -> bool:
    """Whether pyproject.toml has a static `[project] dependencies` list that add/remove must keep."""
    path = root / "pyproject.toml"
    if not path.is_file():
        return False
    try:
        project = tomllib.loads(read_text(path, root)).get("project")
    except tomllib.TOMLDecodeError:
        return False
    return (isinstance(project, dict) and isinstance(project.get("dependencies"), list)
            and "dependencies" not in (project.get("dynamic") or []))


def poetry_names(root: Path) -> set[str] | None:
    """The projects pyproject.toml's `[tool.poetry.dependencies]`, from which poetry-core builds the
    app's wheel, names (canonical); None where that table is not what the wheel declares (there is
    none, or `[project] dependencies` is, which add/remove keep themselves)."""
    path = root / "pyproject.toml"
    if declares(root) or not path.is_file():
        return None
    try:
        tool = tomllib.loads(read_text(path, root)).get("tool")
    except tomllib.TOMLDecodeError:
        return None
    poetry = tool.get("poetry") if isinstance(tool, dict) else None
    table = poetry.get("dependencies") if isinstance(poetry, dict) else None
    if not isinstance(table, dict):
        return None
    return {canonical(key) for key in table}


def put(root: Path, name: str, text: str) -> None:
    """Replace the entry for `name` with `text`, or append `text` to the list."""
    path = root / "pyproject.toml"
    source = read_text(path, root)
    opening, entries, closing = _array(source)
    for entry in entries:
        if _name(entry.value) == name:
            _save(path, source[:entry.start] + _quote(text) + source[entry.end:])
            return
    if not entries:
        _save(path, source[:opening + 1] + _quote(text) + source[opening + 1:])
        return
    inside = source[opening + 1:closing]
    indent = re.search(r"\n([ \t]*)[\"']", inside)
    pad = indent[1] if indent else "    "
    pos = entries[-1].end
    comma = re.match(r"[ \t]*,", source[pos:])
    if comma:
        pos += comma.end()
    else:
        source = source[:pos] + "," + source[pos:]
        pos, closing = pos + 1, closing + 1
    line_end = source.find("\n", pos)
    if line_end == -1 or line_end > closing:  # the list ends on this line: stay on it
        _save(path, source[:pos] + f" {_quote(text)}" + source[pos:])
    else:  # one entry per line: a line of its own, after the last entry's (and its comment)
        _save(path, source[:line_end] + f"\n{pad}{_quote(text)}," + source[line_end:])


def drop(root: Path, name: str) -> None:
    """Take the entry for `name` out of the list, with its comma (and its line, when alone on it)."""
    path = root / "pyproject.toml"
    source = read_text(path, root)
    _opening, entries, _closing = _array(source)
    for entry in entries:
        if _name(entry.value) != name:
            continue
        end = entry.end
        after = re.match(r"\s*,[ \t]*", source[end:])
        end += after.end() if after else 0
        start = entry.start
        line_start = source.rfind("\n", 0, start) + 1
        line_end = source.find("\n", end)
        tail = source[end:] if line_end == -1 else source[end:line_end]
        if not source[line_start:start].strip() and (not tail.strip() or tail.strip().startswith("#")):
            start, end = line_start, (len(source) if line_end == -1 else line_end + 1)
        elif not after:
            before = re.search(r",\s*$", source[:start])
            start = before.start() if before else start
        _save(path, source[:start] + source[end:])
        return


def poetry_value(name: str, text: str) -> str | None:
    """The `[tool.poetry.dependencies]` value (TOML) that init reads back as requirement `text`, or
    None where there is none (a URL, `===`, which Poetry's constraints cannot say)."""
    from packaging.requirements import InvalidRequirement, Requirement

    from deploy.adopt import poetry
    from deploy.lock.drift import same_requirement

    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return None
    if requirement.url:
        return None
    version = _quote(str(requirement.specifier) or "*")
    fields = [f"version = {version}"]
    if requirement.extras:
        fields.append(f"extras = [{', '.join(_quote(extra) for extra in sorted(requirement.extras))}]")
    if requirement.marker is not None:
        fields.append(f"markers = {_quote(str(requirement.marker))}")
    value = version if len(fields) == 1 else "{" + ", ".join(fields) + "}"
    try:
        lines = poetry.requirement_lines(name, tomllib.loads(f"x = {value}")["x"])
    except (poetry.Untranslatable, tomllib.TOMLDecodeError, LockError, ValueError):
        return None
    return value if len(lines) == 1 and same_requirement(lines[0], text) else None


def poetry_put(root: Path, name: str, value: str) -> bool:
    """`name = value` into `[tool.poetry.dependencies]`: in place of the entry for `name` when that is a
    version string or an inline table of what poetry_value writes (version, extras, markers), on one
    line, else on a line after the table's last entry. False (nothing written) when the table holds
    `name` in another form (a source, an optional one, a git one), which is the user's to change."""
    path = root / "pyproject.toml"
    source = read_text(path, root)
    start, end = _poetry_table(source)
    last = None  # where the table's last entry line ends: a new entry goes on a line after it
    for line_start, line_end, key, entry in _poetry_entries(source, start, end):
        if canonical(key) == name:
            if not isinstance(entry, str) and not (isinstance(entry, dict) and set(entry) <= _WRITTEN):
                return False
            _save(path, source[:line_start] + source[line_start:line_end].split("=", 1)[0] + f"= {value}"
                  + source[line_end:])
            return True
        last = line_end
    if last is None:
        _save(path, source[:start] + f"{name} = {value}\n" + source[start:])
    else:
        _save(path, source[:last] + f"\n{name} = {value}" + source[last:])
    return True


def poetry_drop(root: Path, name: str) -> bool:
    """Take `name`'s line out of `[tool.poetry.dependencies]`; False (nothing changed) when its entry
    is not on one line of its own."""
    path = root / "pyproject.toml"
    source = read_text(path, root)
    start, end = _poetry_table(source)
    for line_start, line_end, key, _entry in _poetry_entries(source, start, end):
        if canonical(key) == name:
            _save(path, source[:line_start] + source[line_end + 1:])
            return True
    return False


def _poetry_table(source: str) -> tuple[int, int]:
    """Where `[tool.poetry.dependencies]`'s entries start (after its header line) and end."""
    header = _POETRY_TABLE.search(source)
    if header is None:
        raise LockError("pyproject.toml: no [tool.poetry.dependencies] header to edit (a dotted key or an inline "
                        "table)", fix="edit [tool.poetry.dependencies] and requirements/base.in by hand, then run: "
                        "nox -s lock")
    start = source.find("\n", header.end()) + 1 or len(source)
    following = _NEXT_TABLE.search(source, start)
    return start, following.start() if following else len(source)


def _poetry_entries(source: str, start: int, end: int) -> list[tuple[int, int, str, object]]:
    """Each one-line `key = value` of the table: (line start, line end without its newline, key, value)."""
    found = []
    at = start
    while at < end:
        line_end = source.find("\n", at)
        line_end = end if line_end == -1 or line_end > end else line_end
        line = source[at:line_end]
        match = _POETRY_KEY.match(line)
        if match:
            try:
                value = tomllib.loads(line)
            except tomllib.TOMLDecodeError:
                value = {}  # a value over several lines: not one this module edits
            if len(value) == 1:
                found.append((at, line_end, next(iter(value)), next(iter(value.values()))))
        at = line_end + 1
    return found


def _array(source: str) -> tuple[int, list[_Entry], int]:
    """(offset of `[`, the string entries, offset of the closing `]`) of `[project] dependencies`."""
    table = _TABLE.search(source)
    if table is None:
        raise _unreadable("no [project] table")
    following = _NEXT_TABLE.search(source, table.end())
    section_end = following.start() if following else len(source)
    key = _KEY.search(source, table.end(), section_end)
    if key is None:
        raise _unreadable("no dependencies = [ … ] in [project]")
    at = key.end()
    entries: list[_Entry] = []
    while at < len(source):
        char = source[at]
        if char == "]":
            return key.end() - 1, entries, at
        if char == "#":
            at = source.find("\n", at)
            at = len(source) if at == -1 else at
        elif char in "\"'":
            end = _string_end(source, at)
            entries.append(_Entry(at, end, tomllib.loads(f"v = {source[at:end]}")["v"]))
            at = end
        elif char in " \t\r\n,":
            at += 1
        else:
            raise _unreadable("an entry that is not a string")
    raise _unreadable("an unclosed dependencies array")


def _string_end(source: str, start: int) -> int:
    quote = source[start]
    if source.startswith(quote * 3, start):
        end = source.find(quote * 3, start + 3)
        if end == -1:
            raise _unreadable("an unclosed string")
        return end + 3
    at = start + 1
    while at < len(source):
        if quote == '"' and source[at] == "\\":
            at += 2
            continue
        if source[at] == quote:
            return at + 1
        if source[at] == "\n":
            break
        at += 1
    raise _unreadable("an unclosed string")


def _name(value: str) -> str | None:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", value)
    return canonical(match[1]) if match else None


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _save(path: Path, text: str) -> None:
    try:
        tomllib.loads(text)  # never write a pyproject.toml that no longer parses
    except tomllib.TOMLDecodeError as exc:
        raise LockError(f"pyproject.toml: the edit would not parse ({clip(str(exc))})",
                        fix="edit pyproject.toml and requirements/base.in by hand, then run: nox -s lock") from None
    path.write_text(text, encoding="utf-8")


def _unreadable(what: str) -> LockError:
    return LockError(f"pyproject.toml: cannot edit [project] dependencies ({clip(what)})",
                     fix="edit [project] dependencies and requirements/base.in by hand, then run: nox -s lock")
