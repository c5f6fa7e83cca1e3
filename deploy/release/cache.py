"""`.deploy/cache`: wheels filed by their sha256, and which sdist or source built which wheel.

Content-addressed, so a second deploy of the same lock builds and downloads nothing, and two
deploys from one checkout at the same time never read a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from deploy.errors import DeployError
from deploy.lock.lockfile import Pin
from deploy.lock.reqfile import canonical
from deploy.release.platforms import Interpreter


@dataclass(frozen=True)
class Wheel:
    filename: str
    name: str
    version: str
    sha256: str
    size: int


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

    def app_wheel(self, digest: str) -> Wheel | None:
        """The app's wheel built from the source whose digest is `digest`, if the cache has it."""
        sha = self.built.get(_app_key(digest))
        return self.wheel(sha) if sha in self.by_hash else None

    def remember_app(self, digest: str, sha: str) -> None:
        self.remember(_app_key(digest), sha)

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


def _app_key(digest: str) -> str:
    return f"app {digest}"  # beside the sdists' keys in built.json: a digest is no requirement


def sdist_key(pin: Pin) -> str:
    return f"{canonical(pin.name)}=={pin.version} " + ",".join(sorted(pin.hashes))


def check_wheel(path: Path) -> None:
    """A wheel in the cache must still be a readable zip with the hash it is filed under."""
    if file_sha256(path) != path.parent.name or not zipfile.is_zipfile(path):
        path.unlink()
        raise DeployError(f"{path} was corrupted in the local cache and has been removed", fix="run the deploy again")
