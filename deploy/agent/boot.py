"""Host side, the first thing run: make the agent's modules importable, compiled once.

The loader (deploy/remote/bundle.py LOADER) executes this with the first request, which carries
the agent's parts (module name -> source: the package deploy/agent/ as PARTS in its __init__.py
declares it) and their sha256. An importer installed here answers `import pinship_agent.<part>`
from them, so each part imports the others as it would in any package; then the serve loop runs.

Compiling the 40 kB agent costs a host more CPU than most steps, so the code objects are kept
under the deploy path, named by the digest and the interpreter's version: a changed agent or
Python gets its own file, and an unreadable one is compiled again. Code is loaded only from a
real directory and file of the user the agent runs as (never through a link): loading code is
running it. Stdlib only, any Python 3.8+.
"""

from __future__ import annotations

import marshal
import os
import stat
import sys
from types import CodeType

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a host's every session an import; the annotations need none
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

# The package the parts form on a host: not deploy.agent, for a host has no pinship installed and
# must never import a deploying side's copy.
PACKAGE = "pinship_agent"


class Importer:
    """The agent's parts as a package, from their code objects: a meta path finder that is its
    own loader (PEP 451). It is duck-typed, not derived from importlib.abc, whose import costs
    newer Pythons more than the agent's start."""

    def __init__(self, codes: dict[str, CodeType]) -> None:
        self.codes = codes

    def part(self, fullname: str) -> str | None:
        if fullname == PACKAGE:
            return "__init__"
        if fullname.startswith(PACKAGE + ".") and fullname[len(PACKAGE) + 1:] in self.codes:
            return fullname[len(PACKAGE) + 1:]
        return None

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        part = self.part(fullname)
        if part is None:
            return None
        try:  # the import system's own class, loaded already: importlib.machinery costs ms to import
            from _frozen_importlib import ModuleSpec
        except ImportError:  # not CPython
            from importlib.machinery import ModuleSpec

        return ModuleSpec(fullname, self, origin=self.codes[part].co_filename,  # type: ignore[arg-type]
                          is_package=part == "__init__")

    def create_module(self, spec: ModuleSpec) -> None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        part = self.part(module.__name__)
        assert part is not None
        exec(self.codes[part], module.__dict__)  # noqa: S102 (the agent's own code, sent by the deploying side)


def compile_parts(parts: dict[str, str]) -> dict[str, CodeType]:
    return {name: compile(source, "pinship-agent/%s.py" % name, "exec") for name, source in parts.items()}


def install(codes: dict[str, CodeType]) -> Any:
    """Make the parts importable as PACKAGE; the serve module."""
    sys.meta_path.insert(0, Importer(codes))
    return __import__(PACKAGE + ".serve", fromlist=["serve"])


def ours(path: str, directory: bool) -> bool:
    """Whether `path` is a real directory (or file) of this user, examined without following links."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    kind = stat.S_ISDIR if directory else stat.S_ISREG
    return kind(info.st_mode) and info.st_uid == os.geteuid()


def load_cached(folder: str, cached: str, names: set[str]) -> dict[str, CodeType] | None:
    """The code objects cached for exactly these parts, or None (to compile them again)."""
    if not ours(folder, True):
        return None
    try:
        descriptor = os.open(cached, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return None
        try:
            codes = marshal.load(handle)  # noqa: S302 (this user's own file: whoever could forge it runs as this user anyway)
        except (EOFError, ValueError, TypeError):
            return None
    if not (isinstance(codes, dict) and set(codes) == names
            and all(isinstance(code, CodeType) for code in codes.values())):
        return None
    return codes


def agent_codes(request: dict[str, Any]) -> dict[str, CodeType]:
    """The parts the first request carries, compiled (or loaded as an earlier run compiled them)."""
    parts, digest = request.pop("parts"), request.pop("digest")
    folder = os.path.join(request["path"], ".agent")
    cached = os.path.join(folder, "code-%s-%x.bin" % (digest[:32], sys.hexversion))
    codes = load_cached(folder, cached, set(parts))
    if codes is not None:
        return codes
    codes = compile_parts(parts)
    # Never create the deploy path just to cache in it, nor write through a link or into a
    # folder of another user.
    plain = len(digest) >= 32 and all(char in "0123456789abcdef" for char in digest[:32])
    if plain and os.path.isdir(request["path"]) and (not os.path.lexists(folder) or ours(folder, True)):
        partial = "%s.%d" % (cached, os.getpid())
        try:
            if not os.path.lexists(folder):
                os.mkdir(folder)
            with open(partial, "wb") as handle:
                marshal.dump(codes, handle)
            os.replace(partial, cached)
            for name in os.listdir(folder):  # other agents' code: from older versions of pinship
                if name.startswith("code-") and name != os.path.basename(cached):
                    os.remove(os.path.join(folder, name))
        except OSError:
            pass
    return codes


if __name__ == "__agent__":  # run by the loader, which passes the first request as REQUEST
    REQUEST = globals()["REQUEST"]
    install(agent_codes(REQUEST)).serve(REQUEST)
