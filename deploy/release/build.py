"""Build once, locally: the deploy layer's wheels (hash-checked) and the app's own wheel.

Everything lands in a content-addressed cache under `.deploy/cache`, so a second deploy of the
same lock builds and downloads nothing, and the release id is a function of content alone.
"""

from __future__ import annotations

import getpass
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from pyproject_hooks import BuildBackendHookCaller

from deploy.config import Config
from deploy.errors import DeployError
from deploy.lock.layers import load as load_layers
from deploy.lock.lockfile import Pin, parse
from deploy.lock.reqfile import canonical, display
from deploy.lock.verify import deploy_layer
from deploy.release.platforms import Interpreter

Log = Callable[[str], None]

# A release id is the first 12 hex digits of the sha256 of the release's requirements.lock: it
# names a folder on every host, so nothing of any other form may ever be used as one.
RELEASE_ID = re.compile(r"[0-9a-f]{12}")


def release_id(lock_text: str) -> str:
    return hashlib.sha256(lock_text.encode()).hexdigest()[:12]


def is_release_id(value: object) -> bool:
    return isinstance(value, str) and RELEASE_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class Wheel:
    filename: str
    name: str
    version: str
    sha256: str
    size: int


@dataclass
class Build:
    release: str
    wheels: list[Wheel]
    lock_text: str
    manifest: dict[str, object]
    files: dict[str, Path]  # sha256 -> the wheel's file in the local cache

    def file(self, wheel: Wheel) -> Path:
        return self.files[wheel.sha256]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wheel_identity(filename: str) -> tuple[str, str]:
    name, version = filename.split("-")[:2]
    return canonical(name), version


class Cache:
    """`.deploy/cache`: wheels by sha256, plus what we built from which sdist."""

    def __init__(self, folder: Path, scratch: Path | None = None) -> None:
        # With `scratch` (a dry run) the cache is read as it is and anything new goes there.
        self.folder = scratch or folder
        built = folder / "built.json"
        self.index_file = self.folder / "built.json"
        self.built: dict[str, str] = json.loads(built.read_text()) if built.is_file() else {}
        self.by_hash = {p.parent.name: p for p in (folder / "wheels").glob("*/*.whl")}

    def add(self, source: Path) -> Wheel:
        sha = file_sha256(source)
        if sha in self.by_hash:
            return self.wheel(sha)
        target = self.folder / "wheels" / sha / source.name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = _partial(target)
            shutil.copyfile(source, partial)
            partial.replace(target)
        self.by_hash[sha] = target
        return self.wheel(sha)

    def wheel(self, sha: str) -> Wheel:
        path = self.by_hash[sha]
        name, version = wheel_identity(path.name)
        return Wheel(path.name, name, version, sha, path.stat().st_size)

    def remember(self, key: str, sha: str) -> None:
        self.built[key] = sha
        partial = _partial(self.index_file)
        partial.write_text(json.dumps(self.built, indent=1, sort_keys=True))
        partial.replace(self.index_file)

    def find(self, pin: Pin, target: Interpreter) -> Wheel | None:
        """A cached wheel for `pin` that installs on `target` (a lock lists every platform's files)."""
        for value in pin.hashes:
            sha = value.removeprefix("sha256:")
            if sha in self.by_hash and target.fits(self.by_hash[sha].name):
                return self.wheel(sha)
        built = self.built.get(sdist_key(pin))
        if built in self.by_hash and target.fits(self.by_hash[built].name):
            return self.wheel(built)
        return None


def _partial(path: Path) -> Path:
    """Where to write `path` before renaming it into place: a second deploy from the same
    checkout, running at the same time, must never read a half-written cache file."""
    return path.with_name(f".{path.name}.{os.getpid()}")


def sdist_key(pin: Pin) -> str:
    return f"{canonical(pin.name)}=={pin.version} " + ",".join(sorted(pin.hashes))


def build(config: Config, log: Log = print, scratch: Path | None = None, target: Interpreter | None = None) -> Build:
    """Build (or find cached) every wheel of a release for `target` (default: this interpreter);
    with `scratch`, write only there."""
    target = target or Interpreter.here()
    graph = load_layers(config.root, config.requirements, config.inputs_outside)
    layer = deploy_layer(config, graph)
    if layer is None or not graph.layers[layer].lock.is_file():
        raise DeployError("there is no deploy layer lock to ship", fix="create requirements/prod.in, run: nox -s lock")
    pins = list(parse(graph.layers[layer].lock, graph.root).pins.values())
    cache = Cache(config.root / ".deploy" / "cache", scratch)
    wheels = _dependency_wheels(config, pins, cache, log, target)
    app = _app_wheel(config, cache, log)
    if app is not None and not target.fits(app.filename):
        raise DeployError(f"the app's wheel {app.filename} does not install on {target.describe()}",
                          fix="deploy from a machine (e.g. CI) that runs the hosts' interpreter")
    if app is not None:
        wheels = [w for w in wheels if w.name != app.name] + [app]
    ordered = sorted(wheels, key=lambda w: w.name)
    lock_text = "".join(f"{w.name}=={w.version} --hash=sha256:{w.sha256}\n" for w in ordered)
    release = release_id(lock_text)
    manifest: dict[str, object] = {
        "release": release,
        "app": {"name": app.name, "version": app.version} if app else None,
        "lock_sha256": hashlib.sha256(lock_text.encode()).hexdigest(),
        "layer": display(graph.layers[layer].lock, config.root),
        "git": _git_revision(config.root),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "built_by": f"{getpass.getuser()}@{socket.gethostname()}",
        "python": target.describe(),
        "wheels": [asdict(w) for w in sorted(wheels, key=lambda w: w.name)],
    }
    return Build(release, wheels, lock_text, manifest, dict(cache.by_hash))


def _dependency_wheels(config: Config, pins: list[Pin], cache: Cache, log: Log, target: Interpreter) -> list[Wheel]:
    wheels = {canonical(pin.name): cache.find(pin, target) for pin in pins}
    missing = [pin for pin in pins if wheels[canonical(pin.name)] is None]
    if missing:
        log(f"fetching {len(missing)} wheels for the deploy layer (hash-checked)")
        with tempfile.TemporaryDirectory(prefix="pinship-wheels-") as tmp:
            requirements = Path(tmp) / "requirements.txt"
            requirements.write_text(
                "".join(f"{pin.requirement()} " + " ".join(f"--hash={h}" for h in pin.hashes) + "\n" for pin in missing)
            )
            out = Path(tmp) / "out"
            if target.same_as(Interpreter.here()):
                _pip(["wheel", "--no-deps", "--require-hashes", "-r", str(requirements), "-w", str(out)], config.root)
            else:
                log(f"fetching wheels for the hosts' {target.describe()}")
                _pip(["download", "--no-deps", "--require-hashes", "-r", str(requirements), "-d", str(out),
                      *target.download_options()], config.root,
                     fix=f"a package with no wheel for {target.describe()} cannot be built here: deploy from a "
                     "machine (e.g. CI) that runs the hosts' interpreter")
            by_name = {pin_name: pin for pin in missing if (pin_name := canonical(pin.name))}
            for path in sorted(out.glob("*.whl")):
                wheel = cache.add(path)
                pin = by_name[wheel.name]
                if f"sha256:{wheel.sha256}" not in pin.hashes:
                    cache.remember(sdist_key(pin), wheel.sha256)  # built from a hash-checked sdist
                wheels[wheel.name] = wheel
    absent = [name for name, wheel in wheels.items() if wheel is None]
    if absent:
        raise DeployError(f"no wheel was produced for: {', '.join(absent)}")
    return [w for w in wheels.values() if w is not None]


def prebuild_app(config: Config, log: Log = print) -> None:
    """Build the app's wheel into the cache (if it is not there yet), for `build` to find: the
    engine runs this while it probes the hosts, as the app's wheel does not depend on them."""
    _app_wheel(config, Cache(config.root / ".deploy" / "cache"), log)


def _app_wheel(config: Config, cache: Cache, log: Log) -> Wheel | None:
    if not config.app_name:
        return None
    key = f"app {_source_digest(config.root)}"
    known = cache.built.get(key)
    if known in cache.by_hash:
        return cache.wheel(known)
    log(f"building the wheel of {config.app_name}")
    with tempfile.TemporaryDirectory(prefix="pinship-app-") as tmp:
        if not _build_with_local_tools(config, Path(tmp)):
            # Build requirements this environment lacks: pip fetches them into an isolated one.
            _pip(["wheel", "--no-deps", "-w", tmp, str(config.root)], config.root, extra_env=_REPRODUCIBLE)
        built = sorted(Path(tmp).glob("*.whl"))
        if not built:
            raise DeployError(f"pip wheel produced no wheel for {config.app_name}")
        wheel = cache.add(built[0])
    cache.remember(key, wheel.sha256)
    return wheel


_REPRODUCIBLE = {"SOURCE_DATE_EPOCH": "315532800"}  # the same source gives the same wheel, byte for byte


def _build_with_local_tools(config: Config, out: Path) -> bool:
    """Build the app's wheel by calling its PEP 517 backend directly, as `pip wheel
    --no-build-isolation` would, when this environment already has every build requirement at a
    version they allow (the dev layer pins them): one backend process instead of pip's start-up
    and an isolated environment. Returns False when something is missing."""
    data = tomllib.loads((config.root / "pyproject.toml").read_text(encoding="utf-8"))
    system = data.get("build-system", {})
    # PEP 517/518 defaults for a project that names no backend.
    backend = str(system.get("build-backend", "setuptools.build_meta:__legacy__"))
    requires = system.get("requires", ["setuptools>=40.8.0"])
    if not all(_installed(line) for line in requires):
        return False
    if not system.get("backend-path") and importlib.util.find_spec(backend.split(":")[0].split(".")[0]) is None:
        return False

    def runner(cmd: Sequence[str], cwd: str | None = None, extra_environ: Mapping[str, str] | None = None) -> None:
        _run_checked(list(cmd), cwd, {**(extra_environ or {}), **_REPRODUCIBLE},
                     f"building the wheel of {config.app_name}", "fix the build (try: pip wheel --no-deps .), "
                     "then deploy again")

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


def _source_digest(root: Path) -> str:
    """What the app wheel is built from: every file git would ship, by content."""
    digest = hashlib.sha256()
    for path in _source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _source_files(root: Path) -> Iterable[Path]:
    proc = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, capture_output=True, check=False
    )
    if proc.returncode == 0:
        names = sorted(name for name in proc.stdout.decode().split("\0") if name)
        return [root / name for name in names if (root / name).is_file()]
    skip = {".git", ".deploy", ".venv", ".nox", "__pycache__", "build", "dist"}
    return sorted(p for p in root.rglob("*") if p.is_file() and not skip & set(p.relative_to(root).parts))


def _git_revision(root: Path) -> str | None:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=False)
    return proc.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _pip(args: list[str], cwd: Path, extra_env: dict[str, str] | None = None,
         fix: str = "check the lock and the index, then run: nox -s verify") -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    _run_checked(command, cwd, extra_env or {}, f"pip {args[0]}", fix)


def _run_checked(command: list[str], cwd: Path | str | None, extra_env: Mapping[str, str], what: str,
                 fix: str) -> None:
    """Run a build command; on failure, a DeployError with the tail of its output."""
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, **extra_env},
                          check=False)
    if proc.returncode != 0:
        tail = "\n    ".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise DeployError(f"{what} failed:\n    {tail}", fix=fix)


def check_wheel(path: Path) -> None:
    """A wheel in the cache must still be a readable zip with the hash it is filed under."""
    if file_sha256(path) != path.parent.name or not zipfile.is_zipfile(path):
        path.unlink()
        raise DeployError(f"{path} was corrupted in the local cache and has been removed", fix="run the deploy again")
