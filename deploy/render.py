"""Text from outside shown as text only: one rule for every place that prints what a host, a
file or a tool said.

Whatever of a host's reply, a requirement file, a lock or a setting reaches a terminal or a log goes
through `inert()` (one line) or `inert_lines()` (an output tail): escape codes, newlines, bidi
overrides and the like are shown as escapes, so no quoted text can draw a line such as
"app1: switched" that pinship did not write, or drive the terminal. A setting's value an error
quotes goes through `shown()`. Stdlib only: the lock side, the deploying side and the onboarding
script all use it.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable, Collection, Mapping, Sequence

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Controls, format characters (bidi overrides and isolates, zero-width ones), line and paragraph
# separators, and lone surrogates (which cannot even be written out as UTF-8).
_ESCAPED = {"Cc", "Cf", "Zl", "Zp", "Cs"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    if char.isprintable() or unicodedata.category(char) not in _ESCAPED:
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def inert(text: str, limit: int = 300) -> str:
    """Host text as one line that shows only itself: each control or invisible format character as
    an escape (\\x1b, \\n, \\u202e), cut to `limit` characters with an ellipsis. It reads no more
    of `text` than it shows, so a 30 MB line from a host costs what 300 characters do."""
    pieces: list[str] = []
    length = 0
    for char in text:
        piece = _escape(char)
        length += len(piece)
        pieces.append(piece)
        if length > limit:
            break
    else:
        return "".join(pieces)
    while pieces and length > limit - 1:  # room for the ellipsis; an escape is never cut in half
        length -= len(pieces.pop())
    return "".join(pieces) + "…"


def inert_lines(text: str, max_lines: int, limit: int = 300) -> list[str]:
    """The last `max_lines` lines of a host's output (a restart's or health check's), each inert;
    the caller indents them. Earlier lines left out are counted in a first line of their own."""
    tail = text[-max_lines * (limit + 2) * 4 :] if max_lines > 0 else ""
    lines = tail.splitlines()  # every line break, CR, form feed and U+2028 alike, ends a line
    while lines and not lines[-1].strip():
        lines.pop()
    kept = lines[-max_lines:] if max_lines > 0 else []
    shown = [inert(line, limit) for line in kept]
    if len(tail) < len(text) or len(lines) > len(kept):
        return ["… (earlier output left out)", *shown]
    return shown


def shown(value: object, quote: bool = False) -> str:
    """A setting's value as an error shows it: at most a line, and ASCII only. Stricter than
    inert on purpose: settings are names and numbers, where a non-ASCII character (a look-alike
    letter or digit) is itself what is wrong, so it is shown as its escape."""
    text = str(value)
    plain = text.isprintable() and text.isascii() and text.strip() == text and text
    shown = text if plain and not quote else ascii(text)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def names(keys: set[str]) -> str:
    """Setting keys as an error lists them: sorted, each shown, at most ten."""
    more = f" and {len(keys) - 10} more" if len(keys) > 10 else ""
    return ", ".join(shown(key) for key in sorted(keys)[:10]) + more


def toml(value: object) -> str:
    """A pyproject value written back as TOML would have it, so the message quotes the file."""
    import json  # an error's text only: the commands that succeed never load it
    import math

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # nan, inf, -inf: TOML spells them the same
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


# Tables and the words in them: every table pinship prints is laid out here (the release side's
# in deploy/release/report.py, from these pieces).


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def size(count: int) -> str:
    """A byte count as a table shows it."""
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count / 1e3:.1f} kB" if count else "0"


def age(stamp: str | None) -> str:
    """How long ago a UTC time stamp (as the hosts' logs write it) was; '-' for none."""
    if not stamp:
        return "-"
    try:
        seconds = time.time() - time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) + time.timezone
    except ValueError:
        return stamp
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{int(seconds // length)}{unit} ago"
    return f"{int(seconds)}s ago"


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as left-aligned columns two spaces apart; the first row is the heading."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def lock_changes(
    changes: Mapping[str, Sequence[str]], path_of: Callable[[str], str], rewritten: Collection[str] = ()
) -> str:
    """What a lock changed, per layer: `path_of(layer)` is the lock file as the user sees it
    (the caller knows the project's folders; this module reads none). A layer in `rewritten` whose
    pins all stayed was written anyway (its header's input digests changed): "no pin changed", as
    "unchanged" says the file is as it was."""
    lines: list[str] = []
    for layer, changed in changes.items():
        if not changed:
            lines.append(f"{path_of(layer)}: {'no pin changed' if layer in rewritten else 'unchanged'}")
            continue
        lines.append(f"{path_of(layer)}:")
        lines += [f"  {line}" for line in changed]
    return "\n".join(lines)
