"""Option lines of requirement files: which options pip takes, where their paths point, and which
of them reach the solve and the lock.

pip reads a relative `--find-links` against the requirements file's own folder when that path
exists there (pip's req_file.py); pip-compile reads pinship's copies of the layers in a temporary
folder, so it is handed such a path resolved, while the lock keeps the user's relative spelling:
pip resolves it against the lock's folder, and a fresh clone finds the same wheels.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from deploy.errors import LayerError
from deploy.lock.reqfile import ENV_VARIABLE, Line, clip, display

# The options pip's requirement-file parser takes (pip's req_file.py), and whether each takes a value:
# on a line of their own, and after a requirement on its line.
FILE_OPTIONS = {
    "-i": True, "--index-url": True, "--extra-index-url": True, "--no-index": False, "-f": True,
    "--find-links": True, "--no-binary": True, "--only-binary": True, "--prefer-binary": False,
    "--require-hashes": False, "--pre": False, "--trusted-host": True, "--use-feature": True,
    "-e": True, "--editable": True, "-r": True, "--requirement": True, "-c": True, "--constraint": True,
}
REQUIREMENT_OPTIONS = {"--hash": True, "--config-settings": True, "--global-option": True}
_SHORT_OPTIONS = {"-i": "--index-url", "-f": "--find-links", "-e": "--editable", "-r": "--requirement",
                  "-c": "--constraint"}
# Options that decide, for every package of the one solve of a group of layers, where its files come
# from and which of them count. A layer that has one and a layer of its group that lacks it would be
# solved as neither says: they must agree. `--find-links` only adds files (and its lock carries it).
SOLVE_WIDE = ("--index-url", "--extra-index-url", "--no-index", "--pre", "--no-binary", "--only-binary",
              "--prefer-binary")


class Option(NamedTuple):
    """One option of an option line, in pip's long spelling, with its value as written."""

    line: Line
    name: str
    value: str = ""
    # A local --find-links folder, resolved as pip resolves it from the line's own file.
    local: Path | None = None

    def spelled(self, value: str | None = None) -> str:
        shown = self.value if value is None else value
        return f"{self.name} {shown}" if shown else self.name

    def shown(self) -> str:
        """The option as a message quotes it: an index URL's password is never shown."""
        return clip(hide_password(self.spelled()))


def hide_password(text: str) -> str:
    """`https://user:secret@host/` as `https://user:****@host/`: a URL in a message or a log."""
    head, sep, rest = text.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return text
    authority, slash, path = rest.partition("/")
    user_info, _, host = authority.rpartition("@")
    user = user_info.split(":", 1)[0]
    return f"{head}://{user}:****@{host}{slash}{path}" if ":" in user_info else text


def read_options(line: Line, words: list[str], allowed: dict[str, bool], root: Path) -> list[Option]:
    """Parse the options of a line as pip does; refuse one pip would reject with an error naming no line."""
    found: list[Option] = []
    index = 0
    while index < len(words):
        word = words[index]
        option, equals, value = word.partition("=")
        if option[:2] in _SHORT_OPTIONS and len(option) > 2 and not option.startswith("--"):
            option, equals, value = option[:2], "=", word[2:]
        if option not in allowed:
            kind = "a requirements file" if allowed is FILE_OPTIONS else "a requirement line"
            raise LayerError(
                f"{line.where(root)}: '{clip(option)}' is not an option pip takes in {kind}",
                fix="remove it, or pass pip-compile flags in [tool.deploy] compile-options",
            )
        takes_value = allowed[option]
        if takes_value and not equals:
            index += 1
            value = words[index] if index < len(words) else ""
        if takes_value and not value:
            raise LayerError(f"{line.where(root)}: '{clip(option)}' needs a value", fix=f"write {option} VALUE")
        if not takes_value and equals:
            raise LayerError(f"{line.where(root)}: '{clip(option)}' takes no value", fix=f"write {option} alone")
        if option == "--hash" and value.split(":", 1)[0] not in ("sha256", "sha384", "sha512"):
            raise LayerError(
                f"{line.where(root)}: '--hash={clip(value)}': pip takes only sha256, sha384 and sha512 hashes",
                fix="write --hash=sha256:HEX",
            )
        if option in ("-e", "--editable"):
            _refuse_editable(line, value, root)
        name = _SHORT_OPTIONS.get(option, option)
        local = _find_links_folder(line, value, root) if name == "--find-links" else None
        found.append(Option(line, name, value if takes_value else "", local))
        index += 1
    return found


def _refuse_editable(line: Line, value: str, root: Path) -> None:
    # An editable install has no file to hash: pip-compile writes it without --hash, and the
    # hash-checking install on every host then refuses the whole lock.
    target = (root / Path(_url_path(value)).expanduser()).resolve()
    where = line.where(root)
    if target == root.resolve():
        raise LayerError(
            f"{where}: '{clip(line.text)}': hash-checking mode cannot lock an editable requirement; the project "
            "itself is installed by onboarding (python3 scripts/onboard.py installs it editable after the lock), "
            "and deploys ship its own wheel",
            fix=f"delete that line from {display(line.path, root)}",
        )
    raise LayerError(
        f"{where}: '{clip(line.text)}': hash-checking mode cannot lock an editable requirement (it has no file to "
        "hash)",
        fix="write 'NAME @ file:///path' for another local project, or depend on a released version of it",
    )


def _url_path(value: str) -> str:
    if value.split(":", 1)[0].lower().endswith("file") and ":" in value:
        return unquote(urlsplit(value.split("+", 1)[-1]).path) or "."
    return value


def _find_links_folder(line: Line, value: str, root: Path) -> Path | None:
    """Where a local --find-links points, read from the line's own folder as pip reads it; None for a URL."""
    no_variable(value, line.where(root))
    if "://" in value and not value.lower().startswith("file:"):
        return None
    path = Path(_url_path(value)).expanduser()
    if path.is_absolute():
        return path.resolve()
    target = (line.path.parent / path).resolve()
    if not target.exists():
        # pip would then take it from whatever folder it was started in: a different lock per checkout.
        folder = display(line.path.parent, root)
        raise LayerError(
            f"{line.where(root)}: '--find-links {clip(value)}': {clip(display(target, root))} does not exist; pip "
            f"reads a relative find-links path from the folder of the file that names it ({folder}/)",
            fix=f"create {clip(display(target, root))} holding the wheels to lock, or write the path from {folder}/",
        )
    return target


def no_variable(path: str, where: str) -> None:
    """Refuse a path holding `${NAME}`: pip would put the environment's value there, a path that
    cannot be checked before pip reads it."""
    if ENV_VARIABLE.search(path):
        raise LayerError(
            f"{where}: '{clip(path)}' names an environment variable, so what pip reads there depends on the machine",
            fix="write the path itself (inside the project, or in a folder listed in allow-inputs-outside)",
        )


def pip_line(line: Line, options: list[Option]) -> Line:
    """The line as pip-compile must read it from a copy in another folder: local paths resolved."""
    if not any(option.local is not None for option in options):
        return line
    words = [option.spelled(str(option.local) if option.local is not None else None) for option in options]
    return Line(line.path, line.number, " ".join(words))


def lock_lines(options: Iterable[Option], lock_folder: Path) -> list[str]:
    """The option lines a lock carries: each local --find-links, relative to the lock's own folder.

    pip resolves them there, so a fresh clone's `pip install --require-hashes -r LOCK` finds the
    same wheels. Index URLs stay out (they may hold credentials, and where a machine fetches from is
    its own pip configuration); a local folder named by an absolute path is written relative too,
    since an absolute one names one machine's layout.
    """
    lines: list[str] = []
    for option in options:
        if option.local is None:
            continue
        written = Path(option.value)
        if option.line.path.parent == lock_folder and not written.is_absolute() and ":" not in option.value:
            relative = written.as_posix()
        else:
            relative = Path(os.path.relpath(option.local, lock_folder)).as_posix()
        text = f"--find-links {relative}"
        if text not in lines:
            lines.append(text)
    return lines


def check_agreement(
    groups: list[list[str]], options: dict[str, list[Option]], files: dict[str, Path], root: Path
) -> None:
    """Refuse a group of layers whose solve-wide options differ, naming both lines (or the layer
    that lacks one): the group is solved together, so one layer's `--index-url` would otherwise
    apply to every layer of it, against what the others say."""
    for group in groups:
        first = group[0]
        wide = {name: [o for o in options[name] if o.name in SOLVE_WIDE] for name in group}
        for name in group[1:]:
            # The later layer's line first: it is the one that differs from what the group already says.
            for one, other in ((name, first), (first, name)):
                theirs = {(o.name, o.value) for o in wide[other]}
                missing = [o for o in wide[one] if (o.name, o.value) not in theirs]
                if not missing:
                    continue
                option = missing[0]
                rival = next((o for o in wide[other] if o.name == option.name), None)
                said = (
                    f"{rival.line.where(root)} says '{rival.shown()}'"
                    if rival is not None
                    else f"{display(files[other], root)} does not say it"
                )
                raise LayerError(
                    f"{option.line.where(root)}: '{option.shown()}' but {said}; the layers "
                    f"{', '.join(group)} are solved together, so their index and pre-release options must agree",
                    fix="write the same option lines in each of those layers (a layer's lines reach every layer that "
                    "-r's it), or set them once in [tool.deploy] compile-options",
                )

