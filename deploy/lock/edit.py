"""`nox -s add` and `nox -s remove`: change one requirement and every lock in one step, or nothing.

As `poetry add` and `uv add` do: the requirement is written where the layer takes it from (the
layer's `.in`; for the base layer also `[project] dependencies`, which verify keeps equal to
base.in), then the layers are locked. Every file the step may touch is read first; if the lock
fails (a spec nothing satisfies, a package the index does not have, Ctrl-C), each is put back byte
for byte and files the step created are removed, so a failed `add` leaves the project as it was,
and its error ends with a fix that asks for the edit again (lock/editfix.py).

A Poetry project's wheel declares `[tool.poetry.dependencies]`, in Poetry's own syntax: an entry
the base layer gains or loses is written there too, as the entry init reads back as the same
requirement (pyproject_deps.poetry_value), so verify's drift check agrees; a requirement that has no
such entry (`===`) is refused before anything is written, and an entry in table form (a source, an
optional one) is left as it is, with a warning.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from deploy.config import Config
from deploy.errors import DeployError, LockError, VerifyFailed
from deploy.lock import editfix, groupdrift, pyproject_deps
from deploy.lock.reqfile import canonical, clip, display, read_text, requirement_name
from deploy.lock.solve import LockResult, lock

Log = Callable[[str], None]
BASE = "base"
# A URL (`git+https://…`, `file:…`) or a path to an archive or a folder, given with no name.
_DIRECT = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://|file:|\.{0,2}/|[^\s;]+\.(?:whl|tar\.gz|zip)$)")


def add(
    config: Config,
    specs: Sequence[str],
    *,
    layer: str | None = None,
    env: Mapping[str, str] | None = None,
    log: Log = print,
) -> LockResult:
    """Write each spec into `layer` (default: the base layer, else the deploy layer), then lock."""
    parsed = [_parse(spec) for spec in specs]
    if not parsed:
        raise LockError("nothing to add", fix="name a requirement: nox -s add -- 'requests>=2.31'")
    target = _layer_file(config, layer)
    parsed = [(name, _merged(target, name, text, config.root)) for name, text in parsed]
    keeps_pyproject = target.stem == BASE and pyproject_deps.declares(config.root)
    poetry = target.stem == BASE and pyproject_deps.poetry_names(config.root) is not None
    values = {name: _poetry_value(name, text) for name, text in parsed} if poetry else {}
    table = ("pyproject.toml [project] dependencies" if keeps_pyproject
             else f"pyproject.toml {pyproject_deps.POETRY}" if poetry else None)
    files = [display(target, config.root), *([table] if table else [])]
    lock_file = display(target.with_suffix(".txt"), config.root)
    asked = editfix.Edit("add", list(specs), layer, files, names=[name for name, _ in parsed], lock=lock_file)
    with _all_or_nothing(config, asked):
        for name, text in parsed:
            _write_line(target, name, text, config.root)
            log(f"{display(target, config.root)}: {clip(text)}")
            if keeps_pyproject:
                pyproject_deps.put(config.root, name, text)
                log(f"pyproject.toml [project] dependencies: {clip(text)}")
            elif poetry and pyproject_deps.poetry_put(config.root, name, values[name]):
                log(f"pyproject.toml {pyproject_deps.POETRY}: {clip(name)} = {clip(values[name])}")
            elif poetry:
                log(f"warning: pyproject.toml {pyproject_deps.POETRY} holds {clip(name)} in a form this step does not "
                    f"edit (a table: a source, an extra): make it say {clip(text)} too, or verify will name both")
        result = lock(config, env=env, log=log)
    return result


def remove(
    config: Config,
    names: Sequence[str],
    *,
    layer: str | None = None,
    env: Mapping[str, str] | None = None,
    log: Log = print,
) -> LockResult:
    """Take each package's line out of the layers that ask for it (or only `layer`), then lock:
    what nothing else needs leaves every lock; what another requirement still needs stays."""
    if not names:
        raise LockError("nothing to remove", fix="name a package: nox -s remove -- requests")
    folder = config.requirements
    files = [_layer_file(config, layer)] if layer else sorted(folder.glob("*.in"))
    edited: list[str] = []  # the files that named a package, for a fix that repeats the edit by hand
    from_base: list[str] = []
    with _all_or_nothing(config, editfix.Edit("remove", list(names), layer, edited)):
        for name in names:
            key = canonical(name)
            found = False
            for path in files:
                if _drop_lines(path, key, config.root):
                    found = True
                    edited.append(display(path, config.root))
                    log(f"{display(path, config.root)}: removed {clip(name)}")
                    if path.stem == BASE and pyproject_deps.declares(config.root):
                        pyproject_deps.drop(config.root, key)
                        edited.append("pyproject.toml [project] dependencies")
                        log(f"pyproject.toml [project] dependencies: removed {clip(name)}")
                    elif path.stem == BASE and key in (pyproject_deps.poetry_names(config.root) or ()):
                        if pyproject_deps.poetry_drop(config.root, key):
                            edited.append(f"pyproject.toml {pyproject_deps.POETRY}")
                            log(f"pyproject.toml {pyproject_deps.POETRY}: removed {clip(name)}")
                        else:
                            from_base.append(name)
            if not found:
                where = display(files[0], config.root) if layer else f"{display(folder, config.root)}/*.in"
                raise LockError(f"no requirement line names {clip(name)} in {where}",
                                fix="check the name: nox -s remove -- PKG removes a package a layer asks for")
        result = lock(config, env=env, log=log)
    for name in from_base:
        log(f"warning: pyproject.toml {pyproject_deps.POETRY} still lists {clip(name)} on more than one line: "
            "take it out there too, or verify will name it")
    for name in names:  # a group's or an extra's entry: the user's to take out (other tools read those tables)
        for where in groupdrift.declaring(config.root, name):
            log(f"warning: {where} still lists {clip(name)}: take it out there too, or verify will name it")
    return result


def _poetry_value(name: str, text: str) -> str:
    value = pyproject_deps.poetry_value(name, text)
    if value is None:
        raise LockError(f"{clip(text)}: [tool.poetry.dependencies] has no entry that reads back as this requirement, "
                        "and the app's wheel is built from that table; nothing was changed",
                        fix="ask for it as Poetry's table can say it (==VERSION for ===VERSION), then run the add "
                            "again")
    return value


def _parse(spec: str) -> tuple[str, str]:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requirement = Requirement(spec)
    except InvalidRequirement as exc:
        if _DIRECT.match(spec.strip()):
            raise _direct(spec) from None
        # packaging's message goes on with the spec and a caret under the fault, on lines of their own.
        reason = str(exc).splitlines()[0] if str(exc).strip() else "unreadable"
        raise LockError(f"'{clip(spec)}' is not a requirement ({clip(reason)})",
                        fix="write it as PEP 508 does, e.g. nox -s add -- 'requests>=2.31'") from None
    if requirement.url:
        raise _direct(spec)
    return canonical(requirement.name), str(requirement)


def _direct(spec: str) -> LockError:
    return LockError(f"'{clip(spec)}' is a direct reference: a hash-checked lock pins versions from an index",
                     fix="add it by name and version, or vendor its wheel in a find-links folder")


def _layer_file(config: Config, layer: str | None) -> Path:
    folder = config.requirements
    name = layer or (BASE if (folder / f"{BASE}.in").is_file() else config.deploy_layer or "prod")
    path = folder / f"{name}.in"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.in"))) or "none"
        raise LockError(f"--layer {clip(name)}: there is no {display(path, config.root)} (layers: {clip(known)})",
                        fix="name one of the layers with --layer")
    return path


def _merged(path: Path, name: str, text: str, root: Path) -> str:
    """`text` as it replaces the layer's line for the same package, as `uv add` updates one: that line's
    extras kept beside any `text` names, and its version range and marker where `text` gives none
    (`add 'requests>=2.32'` over `requests[socks]>=2.31` is `requests[socks]>=2.32`)."""
    from packaging.requirements import InvalidRequirement, Requirement

    for raw in read_text(path, root).splitlines():
        line = raw.split(" #")[0].strip()
        if requirement_name(line) != name:
            continue
        try:
            old, new = Requirement(line), Requirement(text)
        except InvalidRequirement:
            return text
        new.extras = old.extras | new.extras
        new.specifier = new.specifier or old.specifier
        new.marker = new.marker or old.marker
        return str(new)
    return text


def _write_line(path: Path, name: str, text: str, root: Path) -> None:
    """Replace the line that names `name` (keeping its place and comment), or add one at the end."""
    lines = read_text(path, root).splitlines(keepends=True)
    for at, raw in enumerate(lines):
        if requirement_name(raw.split(" #")[0].strip()) == name:
            comment = raw[len(raw.split(" #")[0]):].rstrip("\n") if " #" in raw else ""
            lines[at] = f"{text}{comment}\n"
            break
    else:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(f"{text}\n")
    path.write_text("".join(lines), encoding="utf-8")


def _drop_lines(path: Path, key: str, root: Path) -> bool:
    lines = read_text(path, root).splitlines(keepends=True)
    kept = [raw for raw in lines if requirement_name(raw.split(" #")[0].strip()) != key]
    if len(kept) == len(lines):
        return False
    path.write_text("".join(kept), encoding="utf-8")
    return True


@contextlib.contextmanager
def _all_or_nothing(config: Config, edit: editfix.Edit) -> Iterator[None]:
    """Every file the step may change, put back exactly as it was if the step does not finish; an
    error then says so, with a fix that asks for the `edit` again (editfix.py)."""
    folder = config.requirements
    watched = [config.root / "pyproject.toml", *folder.glob("*.in"), *folder.glob("*.txt"),
               *folder.glob("pylock.*.toml")]
    saved = {path: path.read_bytes() for path in watched if path.is_file()}
    try:
        yield
    except BaseException as exc:
        for path in [*folder.glob("*.txt"), *folder.glob("pylock.*.toml"), *folder.glob("*.in")]:
            if path not in saved:
                path.unlink(missing_ok=True)
        for path, data in saved.items():
            if not path.is_file() or path.read_bytes() != data:
                temporary = path.with_name(f".{path.name}.restore")
                temporary.write_bytes(data)
                os.replace(temporary, path)
        if isinstance(exc, DeployError) and not isinstance(exc, VerifyFailed):
            raise editfix.undone(exc, edit) from None
        raise
