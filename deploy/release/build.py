"""Build once, locally: the deploy layer's wheels (hash-checked) and the app's own wheel.

Everything lands in a content-addressed cache under `.deploy/cache`, so a second deploy of the
same lock builds and downloads nothing, and the release id is a function of content alone.
"""

from __future__ import annotations

import getpass
import hashlib
import re
import shlex
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from deploy.config import Config
from deploy.errors import DeployError
from deploy.lock.layers import load as load_layers
from deploy.lock.lockfile import Pin, parse
from deploy.lock.reqfile import canonical, display
from deploy.lock.verify import deploy_layer
from deploy.release.app import app_wheel
from deploy.release.cache import Cache, Wheel, sdist_key
from deploy.release.platforms import Interpreter
from deploy.release.process import pip
from deploy.render import plural

Log = Callable[[str], None]
_FETCH_FIX = "check the lock and the index, then run: nox -s verify"

# A release id is the first 12 hex digits of the sha256 of the release's requirements.lock: it
# names a folder on every host, so nothing of any other form may ever be used as one.
RELEASE_ID = re.compile(r"[0-9a-f]{12}")


def release_id(lock_text: str) -> str:
    return hashlib.sha256(lock_text.encode()).hexdigest()[:12]


def is_release_id(value: object) -> bool:
    return isinstance(value, str) and RELEASE_ID.fullmatch(value) is not None


@dataclass
class Build:
    release: str
    wheels: list[Wheel]
    lock_text: str
    manifest: dict[str, object]
    files: dict[str, Path]  # sha256 -> the wheel's file in the local cache

    def file(self, wheel: Wheel) -> Path:
        return self.files[wheel.sha256]


def build(config: Config, log: Log = print, scratch: Path | None = None, target: Interpreter | None = None,
          stop: threading.Event | None = None) -> Build:
    """Build (or find cached) every wheel of a release for `target` (default: this interpreter);
    with `scratch`, write only there; `stop` ends a build under way when the deploy stops."""
    target = target or Interpreter.here()
    graph = load_layers(config.root, config.requirements, config.inputs_outside)
    layer = deploy_layer(config, graph)
    if layer is None or not graph.layers[layer].lock.is_file():
        raise DeployError("there is no deploy layer lock to ship", fix="create requirements/prod.in, run: nox -s lock")
    lock = parse(graph.layers[layer].lock, graph.root)
    pins = list(lock.pins.values())
    cache = Cache(config.root / ".deploy" / "cache", scratch)
    wheels = _dependency_wheels(config, pins, cache, log, target, stop, lock.find_links())
    app = app_wheel(config, cache, log, stop)
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


def _dependency_wheels(config: Config, pins: list[Pin], cache: Cache, log: Log, target: Interpreter,
                       stop: threading.Event | None, find_links: Sequence[Path] = ()) -> list[Wheel]:
    wheels = {canonical(pin.name): cache.find(pin, target) for pin in pins}
    missing = [pin for pin in pins if wheels[canonical(pin.name)] is None]
    if missing:
        log(f"fetching {plural(len(missing), 'wheel')} for the deploy layer (hash-checked)")
        with tempfile.TemporaryDirectory(prefix="pinship-wheels-") as tmp:
            requirements = Path(tmp) / "requirements.txt"
            # The lock's own --find-links folders (a vendored wheel), as pip would read them from the lock.
            requirements.write_text(
                "".join(f"--find-links {shlex.quote(str(folder))}\n" for folder in find_links)
                + "".join(" ".join([pin.requirement(), *(f"--hash={h}" for h in pin.hashes)]) + "\n" for pin in missing)
            )
            out = Path(tmp) / "out"
            if target.same_as(Interpreter.here()):
                pip(["wheel", "--no-deps", "--require-hashes", "-r", str(requirements), "-w", str(out)], config.root,
                    fix=_FETCH_FIX, stop=stop)
            else:
                log(f"fetching wheels for the hosts' {target.describe()}")
                pip(["download", "--no-deps", "--require-hashes", "-r", str(requirements), "-d", str(out),
                     *target.download_options()], config.root, stop=stop,
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


def prebuild_app(config: Config, log: Log = print, stop: threading.Event | None = None) -> None:
    """Build the app's wheel into the cache (if it is not there yet), for `build` to find: the
    engine runs this while it probes the hosts, as the app's wheel does not depend on them; `stop`
    ends the build when the deploy stops first."""
    app_wheel(config, Cache(config.root / ".deploy" / "cache"), log, stop)


def _git_revision(root: Path) -> str | None:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=False)
    return proc.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
