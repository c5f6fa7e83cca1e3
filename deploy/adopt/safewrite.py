"""Writing init's files: never through a symlink, never over a folder or a special file, and a
--force replace by a rename, which swaps a symlink itself and leaves its target alone. Each write is
planned first (plan), so a refusal found later leaves nothing half written.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from deploy.errors import ConfigError
from deploy.render import inert


@dataclass(frozen=True)
class Write:
    """One file init will write, decided before anything is written."""

    path: Path
    text: str | bytes  # bytes: the vendored wheel of pinship
    replace: bool  # --force over an existing file or symlink: the link itself is replaced, never its target


def plan(root: Path, path: Path, text: str | bytes, force: bool) -> Write | str:
    """What to do at `path` (a write, or the line saying why it is kept), or a refusal naming it;
    nothing is written or printed here, so a refusal found later leaves no half-told story."""
    where = shown(path, root)
    parent = root
    for part in path.relative_to(root).parts[:-1]:
        parent = parent / part
        name = shown(parent, root)
        if parent.is_symlink():
            raise ConfigError(f"{name} is a symlink: init never writes through one",
                              fix=f"make {name} a real folder, or set [tool.deploy] requirements to one")
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{name} is a file, but init writes {where} inside it as a folder",
                              fix=f"move {name} away, or set [tool.deploy] requirements to another folder")
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return Write(path, text, replace=False)
    link = stat.S_ISLNK(mode)
    if not force:
        why = "a symlink; --force replaces the link, never its target" if link else "exists; --force overwrites it"
        return f"kept {where} ({why})"
    if not (link or stat.S_ISREG(mode)):
        raise ConfigError(f"{where} exists and is not a file (a folder or a special file): init does not replace it",
                          fix=f"move {where} away and run python -m deploy init again")
    return Write(path, text, replace=True)


def no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW, 0o666)


def write(planned: Write) -> None:
    """Create a new file (never following a link made since the check), or with --force replace
    what is there by a rename, which swaps a symlink itself and leaves its target untouched."""
    planned.path.parent.mkdir(parents=True, exist_ok=True)
    data = planned.text.encode("utf-8") if isinstance(planned.text, str) else planned.text
    if not planned.replace:
        with open(planned.path, "xb", opener=no_follow) as handle:
            handle.write(data)
        return
    temporary = planned.path.with_name(f".{planned.path.name}.init-{os.getpid()}")
    created = False
    try:
        with open(temporary, "xb", opener=no_follow) as handle:
            created = True
            handle.write(data)
        os.replace(temporary, planned.path)
    except BaseException:
        if created:  # something that was already at that name is left alone
            temporary.unlink(missing_ok=True)
        raise


def shown(path: Path, root: Path) -> str:
    return inert(path.relative_to(root).as_posix() if path != root else ".", 200)
