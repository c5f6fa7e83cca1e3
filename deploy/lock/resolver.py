"""The one place a joint solve's inputs become a resolver command: pip-compile (the default) or uv.

solve.py writes each layer's copy and `layers.union` (a `-r` of each) into a work folder, and the
existing pins into the output file; this turns that, the compile options and the upgrade request
into the process to run there. Both resolvers get the same meaning:

- hashes for every file of each pinned version; extras stripped; no index URL, find-links,
  trusted host or other option emitted; pip, setuptools and wheel pinned like any package
  (pip-compile's `--allow-unsafe` is uv's default); `# via` annotations on one line, which
  universe.read_universe reads (uv lists `-r` sources after the packages; select() does not care);
- the pins already in the output file are preferences (uv has read `-o` that way since uv#187, as
  pip-compile does), `--upgrade-package` frees a name, `--upgrade` frees all;
- the index the pip-tools path uses, by pip's precedence, which uv does not share (its command line
  and UV_* beat a file): a layer's `--index-url` beats compile-options' one, which beats
  PIP_INDEX_URL, and PIP_NO_INDEX turns every index off; candidates from every index count, as in
  pip (uv's default stops at the first index that has the name); transport settings
  (certificates, timeout, trusted hosts) as isolation.py keeps them for pip;
- nothing from this machine's uv configuration: `--no-config` (uv.toml, [tool.uv]) and only transport
  UV_* variables, the others named in one line, as isolation.py does for pip.

What uv does differently with the same inputs is in the README (uv as the resolver).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy.config import RESOLVERS
from deploy.errors import LockError
from deploy.lock import isolation
from deploy.lock.freshness import COMPILE_OPTIONS
from deploy.lock.reqfile import canonical, clip

PIP_TOOLS, UV = RESOLVERS
# The Python beside which uv is looked for first: this one, wherever it is (a project's .venv, a tool's).
# uv first, by hand (the add locks, and so needs it too), then into the dev lock for every clone.
UV_FIX = ('install it beside this Python: {python} -m pip install uv; then lock it for every clone: '
          'nox -s add -- --layer dev uv (or set resolver = "pip-tools" in pyproject.toml [tool.deploy])')

# pip-compile options that change only its output, which uv already writes that way (or that only
# make it talk more): nothing to pass on.
_UV_ALREADY = {
    "--generate-hashes", "--strip-extras", "--allow-unsafe", "--no-emit-index-url", "--no-emit-find-links",
    "--no-emit-trusted-host", "--no-emit-options", "--resolver=backtracking", "--no-config", "--no-header",
    "-v", "--verbose", "-q", "--quiet",
}
# pip-compile options that uv takes with the same meaning (and a value), under its own name.
_UV_SAME = {
    "--index-url": "--default-index", "-i": "--default-index", "--extra-index-url": "--extra-index-url",
    "--find-links": "--find-links", "-f": "--find-links", "--no-binary": "--no-binary",
    "--only-binary": "--only-binary", "--trusted-host": "--allow-insecure-host",
}
_UV_FLAGS = {"--no-index": ["--no-index"], "--pre": ["--prerelease", "allow"]}
_NAMES_INDEX = ("--index-url", "-i", "--no-index")
# uv's variables that say how to reach an index or where to cache, never what to choose.
_UV_TRANSPORT = {
    "UV_CACHE_DIR", "UV_NO_CACHE", "UV_HTTP_TIMEOUT", "UV_REQUEST_TIMEOUT", "UV_HTTP_RETRIES",
    "UV_CONCURRENT_DOWNLOADS", "UV_CONCURRENT_BUILDS", "UV_NATIVE_TLS", "UV_SYSTEM_CERTS", "UV_INSECURE_HOST",
    "UV_KEYRING_PROVIDER", "UV_NO_PROGRESS",
}
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Command:
    """A resolver process to run in the work folder: its arguments, environment, and what it left out."""

    resolver: str
    argv: list[str]
    env: dict[str, str]
    left_out: list[str] = field(default_factory=list)

    def note(self) -> str | None:
        """One line naming the settings of this machine the lock did not use (uv only: for pip-compile,
        compiler.py's isolation says it)."""
        if not self.left_out:
            return None
        return ("this machine's uv and pip settings are not used for a lock (only the index and how to reach it "
                "are): " + ", ".join(self.left_out))


def command(
    resolver: str,
    *,
    output: str,
    union_file: str,
    options: Sequence[str] = (),
    upgrade: Sequence[str] = (),
    upgrade_all: bool = False,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
    file_options: Sequence[str] = (),
) -> Command:
    """The command that solves `union_file` into `output` (relative to the work folder it runs in).

    `options` are [tool.deploy] compile-options (pip-compile's spelling); `file_options` the option
    lines of the layers (`--index-url URL` …), which uv reads from the files itself but which decide
    whether the environment's index applies; `python` is the interpreter the solve is for.
    """
    caller = dict(os.environ if env is None else env)
    upgrades = [arg for name in upgrade for arg in ("--upgrade-package", name)] + (["--upgrade"] if upgrade_all else [])
    if resolver == PIP_TOOLS:
        argv = [python, "-m", "piptools", "compile", *COMPILE_OPTIONS, *options]
        # -v: pip explains a conflict ("The conflict is caused by: …") only at that verbosity.
        argv += ["--annotation-style=line", "--no-header", "-v", "-o", output, union_file, *upgrades]
        return Command(PIP_TOOLS, argv, caller)
    if resolver != UV:
        raise LockError(f"unknown resolver {clip(resolver)!r} (known: {', '.join(RESOLVERS)})",
                        fix='set resolver = "pip-tools" or "uv" in pyproject.toml [tool.deploy]')
    uv = find_uv(path=caller.get("PATH"))
    run_env, left_out = uv_environment(caller)
    argv = [str(uv), "pip", "compile", "--no-config", "--python", python, "--generate-hashes",
            "--annotation-style=line", "--no-header", "--index-strategy", "unsafe-best-match", "--color", "never",
            *uv_options(options, file_names_index=_names_index(_words(file_options)))]
    argv += _environment_index(caller, run_env, named=_names_index([*options, *_words(file_options)]))
    argv += ["-o", output, union_file, *upgrades]
    return Command(UV, argv, run_env, left_out)


def find_uv(*, beside: Path | None = None, path: str | None = None) -> Path:
    """uv next to this Python (a venv's bin/, where `pip install uv` puts it), else on PATH."""
    folder = Path(sys.executable).parent if beside is None else beside
    for candidate in (folder / "uv", folder / "uv.exe"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("uv", path=path)
    if found is None:
        raise LockError(f'resolver = "uv" needs uv, which is neither in {folder} nor on PATH',
                        fix=UV_FIX.format(python=shlex.quote(str(folder / "python"))))
    return Path(found)


def installed_version(dist: str) -> str:
    """An installed distribution's version, as importlib.metadata.version gives it: the Version of
    the first `.dist-info` folder of that name on sys.path, read without loading importlib.metadata's
    machinery (25 ms of every lock)."""
    wanted = canonical(dist)
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        for name in names:
            if name.endswith(".dist-info") and canonical(name[: -len(".dist-info")].rpartition("-")[0]) == wanted:
                try:
                    with open(os.path.join(entry or ".", name, "METADATA"), encoding="utf-8") as metadata:
                        for line in metadata:
                            if line.startswith("Version:"):
                                return line.partition(":")[2].strip()
                            if not line.strip():
                                break
                except OSError:
                    pass
    return "unknown"


def uv_version(env: Mapping[str, str] | None = None) -> str:
    """The version of the uv a lock runs (find_uv's), as `uv --version` says it; "unknown" if it will not.

    Not the `uv` distribution installed beside this Python: a uv on PATH (a standalone binary, a
    symlink) has none, and may be another version than one that is."""
    import subprocess  # a lock has it loaded already

    try:
        uv = find_uv(path=(os.environ if env is None else env).get("PATH"))
        said = subprocess.run([str(uv), "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (LockError, OSError, subprocess.SubprocessError):
        return "unknown"
    words = said.stdout.split()
    return words[1] if said.returncode == 0 and len(words) >= 2 and words[0] == "uv" else "unknown"


def uv_options(options: Sequence[str], *, file_names_index: bool = False) -> list[str]:
    """[tool.deploy] compile-options in uv's spelling; one uv has no equivalent for is refused by name.

    pip-compile lets a layer's `--index-url` win over compile-options' one; uv would let its command
    line win, so when a layer names the index, compile-options' index is not passed on.
    """
    translated: list[str] = []
    words = list(options)
    while words:
        word = words.pop(0)
        name, equals, value = word.partition("=")
        if word in _UV_ALREADY:
            continue
        if word in _UV_FLAGS:
            translated += _UV_FLAGS[word]
        elif name in _UV_SAME:
            if not equals:
                if not words:
                    raise LockError(f"[tool.deploy] compile-options: {clip(word)} needs a value",
                                    fix=f'e.g. compile-options = ["{word}", "VALUE"]')
                value = words.pop(0)
            if not (file_names_index and name in ("--index-url", "-i")):
                translated += [_UV_SAME[name], value]
        else:
            raise LockError(
                f"[tool.deploy] compile-options: {clip(word)} is a pip-compile option uv has no equivalent for",
                fix='remove it, or set resolver = "pip-tools" in pyproject.toml [tool.deploy]',
            )
    return translated


def uv_environment(env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """`env` for uv: no UV_* variable that could change what it picks, pip's transport settings in uv's names.

    uv reads no pip setting, so a company CA or a trusted host set for pip would be lost: the ones
    isolation.py keeps for pip-compile (from the environment or pip.conf) are handed over, unless
    the uv variable is set already.
    """
    pip_env = isolation.pip_environment(env)
    kept = {key: value for key, value in pip_env.env.items() if not key.startswith("UV_") or key in _UV_TRANSPORT}
    left_out = sorted(key for key in env if key.startswith("UV_") and key not in _UV_TRANSPORT)
    pip = pip_env.env
    for pip_key, uv_key in (("PIP_CERT", "SSL_CERT_FILE"), ("PIP_TRUSTED_HOST", "UV_INSECURE_HOST"),
                            ("PIP_DEFAULT_TIMEOUT", "UV_HTTP_TIMEOUT"), ("PIP_TIMEOUT", "UV_HTTP_TIMEOUT")):
        if pip.get(pip_key) and uv_key not in kept:
            kept[uv_key] = pip[pip_key]
    return kept, left_out + pip_env.left_out


def _environment_index(caller: Mapping[str, str], run_env: dict[str, str], *, named: bool) -> list[str]:
    """The index the environment names for pip, for uv: a flag, or a variable (never an argument that
    `ps` shows to every user, since an index URL may hold a password).

    As in pip, PIP_NO_INDEX turns every index off, wherever one is named; PIP_INDEX_URL counts only
    when no layer and no compile-option `named` one.
    """
    if (caller.get("PIP_NO_INDEX") or "").strip().lower() in _TRUE:
        return ["--no-index"]
    url = (caller.get("PIP_INDEX_URL") or "").strip()
    if url and not named:
        run_env["UV_DEFAULT_INDEX"] = url
    return []


def _names_index(words: Sequence[str]) -> bool:
    return any(_option_name(word) in _NAMES_INDEX for word in words)


def _words(lines: Sequence[str]) -> list[str]:
    return [word for line in lines for word in line.split()]


def _option_name(word: str) -> str:
    name = word.partition("=")[0]
    return "-i" if name.startswith("-i") and not name.startswith("--") else name
