"""Where a setting may point: a host-less environment's folder on this machine, a deploy path on
SSH hosts, and files pinship writes (inside the project). Each rule refuses in one line that
names the setting and the value."""

from __future__ import annotations

from pathlib import Path

from deploy.errors import ConfigError
from deploy.render import shown as _shown


def local_path(path: str | None, name: str, root: Path, base: Path, where: str) -> str:
    """Where a host-less environment deploys on this machine: `.deploy/<name>` unless set.

    A relative path is taken from `base` (the root for pyproject.toml, the working folder for a
    flag), never from wherever the command happens to run. The project root or a folder above
    it is refused: releases/, wheels/ and current would land among the project's own files, and
    the agent prunes releases/.
    """
    if path is None:
        return str(root / ".deploy" / name)
    folder = (base / Path(path).expanduser()).resolve()
    if folder == root or folder in root.parents:
        what = "the project root" if folder == root else "above the project root"
        raise ConfigError(
            f"{where}: path {_shown(path, quote=True)} is {what} ({folder}): releases, wheels and current would "
            "land among the project's files",
            fix=f'deploy to a folder of its own, e.g. path = ".deploy/{name}"',
        )
    return str(folder)


def remote_path(path: str, where: str) -> str:
    """A deploy path on SSH hosts: absolute (a relative one, or '~', would land in whatever the
    login's home is), and not '/' itself, where releases/ and current would fill the root."""
    if not path.startswith("/") or Path(path) == Path("/") or "/../" in f"{path}/":
        raise ConfigError(f"{where} {_shown(path, quote=True)}: the deploy path on SSH hosts must be an absolute "
                          "folder of its own, without '..'", fix='e.g. path = "/srv/myapp"')
    return path


def inside_root(path: str, root: Path, where: str) -> Path:
    """A place named by a setting that pinship writes (known-hosts: `invoke trust`; the
    requirements folder: `nox -s lock`), which must stay inside the project."""
    resolved = (root / Path(path).expanduser()).resolve()
    if resolved != root and root not in resolved.parents:
        raise ConfigError(f"{where} {_shown(path, quote=True)}: {resolved} is outside the project ({root}), "
                          "and pinship writes there", fix="name a path inside the project")
    return resolved
