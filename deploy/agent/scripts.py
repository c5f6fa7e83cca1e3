"""Scripts of a venv: the `#!python` line the wheel spec rewrites, the /bin/sh trampoline for an
interpreter path a kernel cannot take, and the launchers of console and GUI entry points."""

from __future__ import annotations

import os

from .protocol import Refused


def quoted(text: bytes) -> bytes:
    """Bytes as one sh word in single quotes: never three quotes in a row, so Python's string holds."""
    return b"'" + text.replace(b"'", b"'\"'\"'") + b"'"


# Linux reads only the first 127 bytes of a shebang line before 5.1 (255 since), and no kernel
# takes an interpreter path with a space in it.
SHEBANG_MAX = 127


TRAMPOLINE = b"#!/bin/sh\n'''exec' %s \"$0\" \"$@\"\n' '''\n"


def script_head(python: str | bytes, args: bytes = b"") -> bytes:
    """The first line(s) of a script run by `python` with `args` (bytes, passed as one word, as the
    kernel passes a shebang's arguments). Where the path has whitespace or the line would be too
    long: a /bin/sh trampoline, as pip (distlib) and pypa/installer write. sh runs its `exec` line;
    to Python the same lines are a string."""
    python = os.fsencode(python)
    line = b"#!" + python + (b" " + args if args else b"") + b"\n"
    if not any(space in python for space in (b" ", b"\t", b"\n")) and len(line) <= SHEBANG_MAX:
        return line
    if b"\\" in python + args:
        raise Refused("cannot write a launcher naming %s: a backslash in the path (or in a script's #!python "
                      "arguments) cannot be quoted for both sh and Python; deploy to a path without one"
                      % ascii(os.fsdecode(python)))
    try:
        (python + args).decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("cannot write a launcher naming %s: the path is not UTF-8; deploy to a path that is"
                      % ascii(os.fsdecode(python))) from None
    return TRAMPOLINE % b" ".join([quoted(python)] + ([quoted(args)] if args else []))


def split_head(data: bytes, python: str) -> tuple[bytes, bytes] | None:
    """(args, rest) if `data` starts with script_head(python, args) for some args, else None: how a
    reused script is told from one that names another interpreter."""
    for args in candidate_args(data, os.fsencode(python)):
        try:
            head = script_head(python, args)
        except Refused:
            continue
        if data.startswith(head):
            return args, data[len(head):]
    return None


def candidate_args(data: bytes, python: bytes) -> list[bytes]:
    """The arguments `data`'s head would carry if it named `python`, in either form."""
    import shlex
    if data.startswith(b"#!" + python):
        line = data.partition(b"\n")[0][len(python) + 2:]
        return [line[1:]] if line[:1] == b" " else [b""]
    lines = data.split(b"\n", 2)
    prefix = b"'''exec' " + quoted(python)
    if len(lines) == 3 and lines[0] == b"#!/bin/sh" and lines[1].startswith(prefix):
        try:
            words = shlex.split(lines[1][len(prefix):].decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return []
        if words[-2:] == ["$0", "$@"] and len(words) <= 3:
            return [words[0].encode("utf-8") if len(words) == 3 else b""]
    return []


def script_bytes(data: bytes, python: str) -> bytes:
    """A first line starting with `#!python` names the venv's interpreter. The wheel spec says just
    that: a line *starting* with b"#!python", so `#!pythonw`, `#!python3`, `#!python3.12` too (pip
    and pypa/installer rewrite any such line). What follows the first word (`-u` in `#!python -u`)
    stays the interpreter's argument, as distlib keeps it (pip and installer drop it)."""
    if not data.startswith(b"#!python"):
        return data
    first, _, rest = data.partition(b"\n")
    words = first[2:].rstrip(b"\r").split(None, 1)
    return script_head(python, words[1].strip() if len(words) > 1 else b"") + rest


def entry_points(text: str) -> list[tuple[str, str, str]]:
    """console_scripts and gui_scripts from entry_points.txt, as (name, module, attribute)."""
    found, section = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]").strip()
            continue
        if section in ("console_scripts", "gui_scripts") and "=" in line:
            name, target = [part.strip() for part in line.split("=", 1)]
            module, _, attribute = [part.strip() for part in target.split("[")[0].partition(":")]  # extras: no matter
            shown = ascii("%s = %s" % (name, target))
            if not attribute:
                # A launcher would have nothing to call and crash when run; pip refuses it too.
                raise Refused("%s entry point %s names no function to call (the form is name = module:function)"
                              % (section, shown))
            if not (dotted(module) and dotted(attribute)) or name in ("", ".", "..") or "/" in name or "\0" in name:
                raise Refused("%s entry point %s is not of the form name = module:function" % (section, shown))
            found.append((name, module, attribute))
    return found


def dotted(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


def launcher(module: str, attribute: str, python: str) -> bytes:
    lines = ["import sys", "from %s import %s" % (module, attribute.split(".")[0]),
             "if __name__ == '__main__':",
             "    if sys.argv[0].endswith('-script.py'):",
             "        sys.argv[0] = sys.argv[0][:-len('-script.py')]",
             "    sys.exit(%s())" % attribute, ""]
    return script_head(python) + "\n".join(lines).encode()


