"""How pinship itself reaches an adopting project: a wheel vendored into its requirements folder.

pinship is not on the package index, so a layer cannot simply name it: init writes a wheel of the
pinship running now into `requirements/wheels/` and the two lines `--find-links wheels` and
`pinship==X` into test.in (CI installs the test layer and runs `python -m deploy verify`; dev.in
includes it). pip resolves a relative find-links against the requirements file's own folder, and
the locks carry that line, so `pip install --require-hashes -r requirements/test.txt` (or dev.txt)
finds the wheel (by its sha256 in the lock) in any fresh clone: CI and onboarding need nothing else.
pinship's own dependencies are solved above the deploy layer: a lock never lets an upper layer move
a lower one's pins (issue 14), so the deploy tool never moves what ships.

The wheel is built honestly from the code that runs: the file pinship was installed from when it is
still there (PEP 610 archive_info), else the source tree it was installed from (dir_info) or runs
from, built by `pip wheel --no-deps --no-build-isolation` away from this machine's pip config (or,
when this Python lacks the build requirements, with them fetched from the user's index). When
neither works, init says why in one line and prints the install command instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

FOLDER = "wheels"  # inside the requirements folder, so the relative find-links line reads as pip resolves it
# What the wheel is built from: the package and the files its metadata reads (pyproject.toml names
# the readme and the license); tests, benchmarks and a venv beside them are no part of it.
_PACKAGE = Path(__file__).resolve().parents[1].name
_TOP_FILES = ("pyproject.toml", "README.md", "LICENSE", "LICENSE.txt", "setup.cfg", "setup.py", "MANIFEST.in")
_NOT_SOURCE = ("__pycache__", "*.pyc", "*.egg-info")
_BUILD_SECONDS = 300
# Zip entries carry file times; a fixed one makes two builds of the same source the same bytes,
# so init --force over an unchanged pinship leaves the lock's hash valid.
_EPOCH = "315532800"  # 1980-01-01, the earliest time a zip entry can hold


@dataclass(frozen=True)
class Wheel:
    """A wheel of the running pinship, ready to be written into the adopter's requirements folder."""

    filename: str
    data: bytes
    version: str
    origin: str  # said to the user: where the bytes came from


class NotVendored(Exception):
    """Why no wheel of pinship could be made: one line, said before the fallback command."""


def requirement_lines(wheel: Wheel) -> list[str]:
    """The layer's lines for pinship: the vendored folder, then the exact version it holds."""
    return [f"--find-links {FOLDER}", f"pinship=={wheel.version}"]


def vendored_wheel(folder: Path | None = None) -> Wheel:
    """A wheel of the running pinship, or NotVendored saying why there is none: one from where it was
    installed, else the one of its version `folder` (a project's requirements/wheels) holds already
    (a fresh clone's onboard installs pinship from there, which pip records as from an index)."""
    dist = _distribution()
    try:
        return _from_origin(dist)
    except NotVendored:
        if folder is not None and dist is not None and folder.is_dir():
            for kept in sorted(folder.glob(f"pinship-{dist.version}-*.whl")):
                return Wheel(kept.name, kept.read_bytes(), dist.version,
                             f"kept in {folder.parent.name}/{folder.name}/")
        raise


def _from_origin(dist: importlib.metadata.Distribution | None) -> Wheel:
    origin = _direct_url(dist) if dist is not None else None
    archive = _archive(origin)
    if archive is not None:
        return archive
    source = _source_tree(origin)
    if source is None:
        installed = f"pinship {dist.version} was installed from an index" if dist else "pinship is not installed"
        raise NotVendored(f"{installed} and no source tree of it is on this machine to build a wheel from")
    return _build(source)


def install_command() -> str:
    """`pip install …` for the pinship running now: its index version, or the URL it came from."""
    dist = _distribution()
    if dist is None:
        return "pip install pinship"
    origin = _direct_url(dist)
    if origin is None:
        return f"pip install pinship=={dist.version}"
    url = str(origin["url"])
    vcs = origin.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("vcs") and vcs.get("commit_id"):
        return "pip install " + shlex.quote(f"pinship @ {vcs['vcs']}+{url}@{vcs['commit_id']}")
    if "dir_info" in origin and url.startswith("file:"):
        # A checkout on this machine: a fresh clone elsewhere needs a wheel or a repository URL instead.
        return "pip install " + shlex.quote(unquote(urlsplit(url).path))
    return "pip install " + shlex.quote(f"pinship @ {url}")


def _distribution() -> importlib.metadata.Distribution | None:
    try:
        return importlib.metadata.distribution("pinship")
    except importlib.metadata.PackageNotFoundError:
        return None


def _direct_url(dist: importlib.metadata.Distribution) -> dict[str, object] | None:
    """PEP 610's record of where pinship was installed from, when it was not from an index."""
    try:
        origin = json.loads(dist.read_text("direct_url.json") or "null")
    except json.JSONDecodeError:
        return None
    return origin if isinstance(origin, dict) and isinstance(origin.get("url"), str) else None


def _local(url: object) -> Path | None:
    if not isinstance(url, str) or not url.startswith("file:"):
        return None
    return Path(unquote(urlsplit(url).path))


def _archive(origin: dict[str, object] | None) -> Wheel | None:
    """The wheel file pinship was installed from, when it is still there with the hash pip recorded."""
    if origin is None or not isinstance(origin.get("archive_info"), dict):
        return None
    path = _local(origin["url"])
    if path is None or not path.name.endswith(".whl") or not path.is_file():
        return None
    data = path.read_bytes()
    info = origin["archive_info"]
    assert isinstance(info, dict)
    recorded = info.get("hashes", {}).get("sha256") if isinstance(info.get("hashes"), dict) else None
    if isinstance(recorded, str) and hashlib.sha256(data).hexdigest() != recorded:
        return None  # replaced since: not what runs
    return Wheel(path.name, data, path.name.split("-")[1], f"the wheel pinship was installed from ({path})")


def _source_tree(origin: dict[str, object] | None) -> Path | None:
    """The pinship checkout: the folder it was installed from, or the one above the running package."""
    candidates = [_local(origin["url"])] if origin is not None and "dir_info" in origin else []
    candidates.append(Path(__file__).resolve().parents[2])  # deploy/adopt/itself.py
    for folder in candidates:
        if folder is not None and _is_pinship(folder / "pyproject.toml"):
            return folder
    return None


def _is_pinship(pyproject: Path) -> bool:
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return isinstance(project, dict) and project.get("name") == "pinship"


def _build(source: Path) -> Wheel:
    """`pip wheel` of a copy of the source tree (the checkout is never written into), offline; a
    build of the same files is taken from the cache, so init runs in a second after the first."""
    with tempfile.TemporaryDirectory(prefix="pinship-wheel-") as work:
        tree, out = Path(work, "src"), Path(work, "out")
        shutil.copytree(source / _PACKAGE, tree / _PACKAGE, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
        for name in _TOP_FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, tree / name)
        cached = _cache() / _digest(tree)
        found = sorted(cached.glob("pinship-*.whl")) if cached.is_dir() else []
        if found:
            return Wheel(found[0].name, found[0].read_bytes(), found[0].name.split("-")[1], f"built from {source}")
        wheels, last = _pip_wheel(tree, out, offline=True)
        if not wheels:
            # This Python lacks the build requirements (a fresh venv's setuptools is older than
            # pyproject asks): pip fetches them into an isolated build environment from the
            # user's own index, as any `pip install` of the checkout would.
            wheels, last = _pip_wheel(tree, out, offline=False)
        if not wheels:
            raise NotVendored(f"pip wheel of {source} failed ({last}), with this Python's own setuptools and "
                              "with build requirements from your index")
        wheel = wheels[0]
        _keep(cached, wheel)
        return Wheel(wheel.name, wheel.read_bytes(), wheel.name.split("-")[1], f"built from {source}")


def _pip_wheel(tree: Path, out: Path, *, offline: bool) -> tuple[list[Path], str]:
    """`pip wheel --no-deps` of `tree` into `out`: offline with this Python's build tools, or with an
    isolated build environment from the user's index; the wheels made and pip's last line."""
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(tree)]
    if offline:
        command[4:4] = ["--no-build-isolation", "--no-index"]
        env = _pip_env()
    else:
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "SOURCE_DATE_EPOCH": _EPOCH,
               "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace", env=env,
                              timeout=_BUILD_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], str(exc)[:200]
    wheels = sorted(out.glob("pinship-*.whl")) if done.returncode == 0 else []
    last = (done.stderr.strip().splitlines() or ["no output"])[-1].strip()[:200]
    return wheels, last


def _digest(tree: Path) -> str:
    """What the wheel is built from: every file's path and bytes."""
    digest = hashlib.sha256()
    for path in sorted(tree.rglob("*")):
        if path.is_file() and not path.is_symlink():
            digest.update(path.relative_to(tree).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


def _cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base, "pinship", "wheels")


def _keep(folder: Path, wheel: Path) -> None:
    """Store a built wheel for the next init; a cache that cannot be written only costs a rebuild."""
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{wheel.name}.{os.getpid()}"
        shutil.copyfile(wheel, partial)
        os.replace(partial, folder / wheel.name)


def _pip_env() -> dict[str, str]:
    """This environment less every pip setting: no config file or PIP_* variable chooses what pip builds."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               SOURCE_DATE_EPOCH=_EPOCH, PYTHONDONTWRITEBYTECODE="1")
    return env
