"""The app's own wheel, built with the project's own build backend (PEP 517), once per source.

A release without the app would install its dependencies and nothing of the project's, and say
"switched": so a project with nothing to build is refused before any host is contacted, and a
build that fails is shown by the backend's own last lines. Whatever the backend is (setuptools,
poetry-core, hatchling, an in-tree one), it is called as pip would call it: directly when this
environment has its build requirements already, else by `pip wheel` in an isolated environment
that fetches them from the index the locks are compiled against.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import tempfile
import threading
import tomllib
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from pyproject_hooks import BuildBackendHookCaller

from deploy.config import Config
from deploy.errors import DeployError
from deploy.lock.lockfile import parse
from deploy.lock.reqfile import canonical
from deploy.release.cache import Cache, Wheel
from deploy.release.process import pip, run_checked

Log = Callable[[str], None]

_REPRODUCIBLE = {"SOURCE_DATE_EPOCH": "315532800"}  # the same source gives the same wheel, byte for byte
_BUILD_FIX = "fix the build (try: pip wheel --no-deps . and read its error), then deploy again"
# pip options of [tool.deploy] compile-options that say where packages come from: the app's
# build requirements (e.g. poetry-core) come from the index its locks come from.
_INDEX_OPTIONS = ("--index-url", "-i", "--extra-index-url", "--find-links", "-f", "--trusted-host")
_INDEX_FLAGS = ("--no-index",)
# Folders at the project's top that tools write and no build reads (see _is_output); at any depth,
# only __pycache__ and *.egg-info, as a package may well have a sub-package called build.
_OUTPUT_FOLDERS = {".deploy", ".git", ".nox", ".tox", ".venv", "venv", "build", "dist", ".mypy_cache",
                   ".pytest_cache", ".ruff_cache"}
_SAID: set[str] = set()  # source digests this process has said something about


def _pyproject(root: Path) -> dict[str, Any]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError:
        return {}  # loading the config reports that, with its line


def app_name(config: Config) -> str | None:
    """The app's distribution name: [project] name, or a Poetry project's [tool.poetry] name."""
    if config.app_name:
        return config.app_name
    tool = _pyproject(config.root).get("tool")
    poetry = tool.get("poetry") if isinstance(tool, dict) else None
    name = poetry.get("name") if isinstance(poetry, dict) else None
    return name if isinstance(name, str) and name else None


def has_app(config: Config) -> bool:
    """Whether the project names a package of its own to build (or has a setup script to)."""
    return bool(app_name(config)) or any((config.root / name).is_file() for name in ("setup.py", "setup.cfg"))


def check_app(config: Config) -> None:
    """Refuse, before any host is contacted, a project that has no app of its own to build."""
    if has_app(config):
        return
    raise DeployError(
        "there is no app to deploy: pyproject.toml has no [project] table (name, version), so no wheel of "
        "the project can be built, and a release of its dependencies alone would serve nothing",
        fix="add a [project] table with the app's name, version and packages, and a [build-system], then "
            "deploy again")


def app_wheel(config: Config, cache: Cache, log: Log, stop: threading.Event | None = None) -> Wheel | None:
    """The app's wheel from the cache, or built into it by the project's own backend when its
    source changed since (see source_digest); None for a project with no app (deploy and its dry
    run refuse one, with check_app, before this)."""
    if not has_app(config):
        return None
    digest = source_digest(config.root)
    tools = _build_tools(config)
    # The wheel of one source differs by its backend's version (setuptools 65 writes Metadata 2.1,
    # 84 writes 2.4): a wheel another backend built is not this one.
    key = digest if tools is None else digest + "+" + ",".join(f"{name}=={version}" for name, version in tools)
    known = cache.app_wheel(key)
    if known is not None:
        if key not in _SAID:  # the engine asks twice a run (while probing, then building)
            _SAID.add(key)
            log(f"app wheel unchanged (source digest {digest[:12]}), not rebuilt")
            _warn_left_out(config.root, cache.by_hash[known.sha256], log)
            _warn_unlocked_tools(config, tools or [], log)
        return known
    name = app_name(config) or "the app"
    made_with = f", with {', '.join(f'{tool} {version}' for tool, version in tools)}" if tools else ""
    log(f"building the wheel of {name} (source digest {digest[:12]}{made_with})")
    with tempfile.TemporaryDirectory(prefix="pinship-app-") as tmp:
        env = {**_REPRODUCIBLE, **_setuptools_scratch(Path(tmp) / "setuptools")}
        out = Path(tmp) / "wheel"
        out.mkdir()
        if tools is None or not _build_with_local_tools(config, out, name, env, stop):
            # Build requirements this environment lacks: pip fetches them into an isolated one.
            pip(["wheel", "--no-deps", *index_options(config.compile_options), "-w", str(out), str(config.root)],
                config.root, fix=_BUILD_FIX, extra_env=env, stop=stop, what=f"building the wheel of {name}")
        built = sorted(out.glob("*.whl"))
        if not built:
            raise DeployError(f"the build backend produced no wheel for {name}", fix=_BUILD_FIX)
        wheel = cache.add(built[0])
    cache.remember_app(key, wheel.sha256)
    _SAID.add(key)
    _warn_left_out(config.root, cache.by_hash[wheel.sha256], log)
    _warn_unlocked_tools(config, tools or [], log)
    return wheel


def _build_tools(config: Config) -> list[tuple[str, str]] | None:
    """(name, version) of each build requirement as this environment has it, when it has them all
    (the app is then built with them, _build_with_local_tools); None when pip must fetch them."""
    found: list[tuple[str, str]] = []
    for line in _build_system(config.root)["requires"]:
        if not _installed(line):
            return None
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate():
            found.append((canonical(requirement.name), importlib.metadata.version(requirement.name)))
    return found


def _build_system(root: Path) -> dict[str, Any]:
    """pyproject.toml's [build-system], with PEP 517/518's defaults for a project that names none."""
    system = _pyproject(root).get("build-system", {})
    return {"requires": ["setuptools>=40.8.0"], "build-backend": "setuptools.build_meta:__legacy__", **system}


def _warn_unlocked_tools(config: Config, tools: Sequence[tuple[str, str]], log: Log) -> None:
    """Say when the app is built with a backend at another version than the project's locks pin: a
    machine with the locked one (a fresh clone's onboarded .venv, CI) builds another wheel of the
    same source, so another release, and a promote from it finds another app."""
    pinned: dict[str, str] = {}
    for path in sorted(config.requirements.glob("*.txt")):
        try:
            pins = parse(path, config.root).pins.values()
        except DeployError:
            continue  # verify names a lock it cannot read
        for pin in pins:
            pinned.setdefault(canonical(pin.name), pin.version)
    off = [f"{name} {version} (the locks pin {pinned[name]})" for name, version in tools
           if name in pinned and pinned[name] != version]
    if off:
        log(f"warning: the app's wheel is built with {', '.join(off)}: a machine with the locked version builds "
            "another wheel of the same source, so another release; deploy from the project's own environment "
            "(python3 scripts/onboard.py makes it)")


def _warn_left_out(root: Path, wheel: Path, log: Log) -> None:
    """Say which files of the packages the app's wheel ships it leaves out: no release has them.

    setuptools puts only a package's .py files into a wheel unless package data says more, so a
    Django app's templates and static files stay behind without a word, and the app fails only
    once deployed (a trial's did: TemplateDoesNotExist). A sub-folder without __init__.py that
    find_packages skips is the same. The wheel is the backend's to make; the warning names what it
    left and how to ship it."""
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    packages = {name.split("/", 1)[0] for name in shipped if "/" in name}
    packages = {name for name in packages if not name.endswith((".dist-info", ".data"))}
    missing: list[tuple[str, str]] = []  # (the file as the project has it, as the wheel would hold it)
    for path in _source_files(root):
        relative = path.relative_to(root).as_posix()
        inside = next((candidate for candidate in (relative, relative.removeprefix("src/"))
                       if "/" in candidate and candidate.split("/", 1)[0] in packages), None)
        if inside is not None and inside not in shipped:
            missing.append((relative, inside))
    if not missing:
        return
    shown = ", ".join(relative for relative, _ in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5
                                                                   else "")
    globs: dict[str, list[str]] = {}
    for _, inside in missing:
        package, rest = inside.split("/", 1)
        glob = f"{rest.split('/', 1)[0]}/**/*" if "/" in rest else f"*{PurePosixPath(rest).suffix}"
        if glob not in globs.setdefault(package, []):
            globs[package].append(glob)
    example = "; ".join(f"{package} = [{', '.join(json.dumps(glob) for glob in found)}]"
                        for package, found in sorted(globs.items()))
    backend = str(_build_system(root)["build-backend"])
    how = (f"as package data in [tool.setuptools.package-data] ({example})" if backend.startswith("setuptools")
           else "as package data in the build backend's configuration")
    log(f"warning: the app's wheel leaves out {len(missing)} file(s) of its packages, so no release has them: "
        f"{shown}; if the app reads them, declare them {how}, then deploy again")


def index_options(options: Sequence[str]) -> list[str]:
    """The options of `options` (pip-compile's) that choose the index, for pip to use the same."""
    chosen: list[str] = []
    for at, option in enumerate(options):
        flag = option.split("=", 1)[0]
        if flag in _INDEX_FLAGS:
            chosen.append(option)
        elif flag in _INDEX_OPTIONS:
            chosen += [option] if "=" in option or at + 1 == len(options) else [option, options[at + 1]]
    return chosen


def _setuptools_scratch(folder: Path) -> dict[str, str]:
    """The variable that sends setuptools' build/ and *.egg-info into `folder`, out of the project.

    In the project's own build/lib, setuptools never removes a file whose source is gone, so a
    module deleted since the last build would ship again in the app's wheel (and the tree would be
    left with build/ and *.egg-info that git status shows). DIST_EXTRA_CONFIG names a config file
    read after the project's setup.cfg (setuptools 65.4+, pypa/distutils#177); other build
    backends never read it."""
    folder.mkdir()
    config = folder / "setup.cfg"
    config.write_text(f"[build]\nbuild_base = {folder / 'build'}\n\n[egg_info]\negg_base = {folder}\n",
                      encoding="utf-8")
    return {"DIST_EXTRA_CONFIG": str(config)}


def _build_with_local_tools(config: Config, out: Path, name: str, env: Mapping[str, str],
                            stop: threading.Event | None) -> bool:
    """Build the app's wheel by calling its PEP 517 backend directly, as `pip wheel
    --no-build-isolation` would, when this environment already has every build requirement at a
    version they allow (the dev layer pins them, _build_tools found them): one backend process instead
    of pip's start-up and an isolated environment. Returns False when the backend cannot be found."""
    system = _build_system(config.root)
    backend = str(system["build-backend"])
    if not system.get("backend-path") and importlib.util.find_spec(backend.split(":")[0].split(".")[0]) is None:
        return False

    def runner(cmd: Sequence[str], cwd: str | None = None, extra_environ: Mapping[str, str] | None = None) -> None:
        run_checked(list(cmd), cwd, {**(extra_environ or {}), **env}, f"building the wheel of {name}", _BUILD_FIX,
                    stop)

    hooks = BuildBackendHookCaller(str(config.root), backend, backend_path=system.get("backend-path"),
                                   runner=runner, python_executable=sys.executable)
    hooks.build_wheel(str(out))
    return True


def _installed(line: str) -> bool:
    try:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            return True
        version = importlib.metadata.version(requirement.name)
    except (InvalidRequirement, importlib.metadata.PackageNotFoundError):
        return False
    return requirement.specifier.contains(version, prereleases=True)


def source_digest(root: Path) -> str:
    """What the app's wheel is built from, by name and content: every file git would ship (tracked,
    or untracked and not ignored; without git, every file), less what tools write there (see
    _OUTPUTS). Conservative on purpose: a file no backend reads costs a rebuild when it changes,
    while a file left out that one does read would ship a stale app."""
    digest = hashlib.sha256()
    for path in _source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(_as_built_from(path, root)).digest())
    return digest.hexdigest()


def _as_built_from(path: Path, root: Path) -> bytes:
    """A file's content as far as a build can tell: pyproject.toml without [tool.deploy], which
    only pinship reads (a changed host or timeout is no new app); every other file as it is."""
    data = path.read_bytes()
    if path != root / "pyproject.toml":
        return data
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return data
    tool = table.get("tool")
    if isinstance(tool, dict):
        tool.pop("deploy", None)
    return json.dumps(table, sort_keys=True, default=str).encode()


def _is_output(relative: PurePosixPath) -> bool:
    """Whether a file is something a build, a tool or pinship wrote, not a source: these change
    with every build (setuptools writes build/ and *.egg-info/ into the tree) and would make every
    deploy rebuild the app even when no .gitignore leaves them out."""
    folders = relative.parts[:-1]
    return ((bool(folders) and folders[0] in _OUTPUT_FOLDERS) or relative.suffix in (".pyc", ".pyo")
            or any(part == "__pycache__" or part.endswith(".egg-info") for part in folders))


def _source_files(root: Path) -> list[Path]:
    proc = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, capture_output=True, check=False
    )
    if proc.returncode == 0:
        names = sorted({name for name in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if name})
        found = [root / name for name in names]
    else:
        found = sorted(p for p in root.rglob("*") if ".git" not in p.relative_to(root).parts)
    return [path for path in found
            if not _is_output(PurePosixPath(path.relative_to(root).as_posix())) and path.is_file()]
