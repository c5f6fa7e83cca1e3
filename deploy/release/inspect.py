"""What is live, read and never written: `invoke status` (drift) and `invoke releases`.

Hosts are read through the same agent as deploy. What they say is untrusted: a manifest's wheel
entries are checked for form before they become names, paths or cache keys (plan and promote
read them with the same checks).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from deploy.config import Config, Environment
from deploy.errors import HostError
from deploy.lock.layers import load as load_layers
from deploy.lock.lockfile import Pin, parse
from deploy.lock.reqfile import canonical
from deploy.lock.verify import deploy_layer
from deploy.release.app import app_name
from deploy.release.cache import Wheel, wheel_identity
from deploy.release.run import Progress, Run, describe_owner, detail
from deploy.remote.target import Target
from deploy.render import age, inert


@dataclass
class HostStatus:
    host: str
    release: str | None = None
    previous: str | None = None
    deployed_at: str | None = None
    deployed_by: str | None = None
    git: str | None = None
    error: Exception | None = None  # the host could not be read
    problems: list[str] = field(default_factory=list)  # each shown after the host's name
    releases: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "release": self.release,
            "deployed_at": self.deployed_at,
            "deployed_by": self.deployed_by,
            "git": self.git,
            "problems": self.problems,
        }


def status(config: Config, env: Environment, progress: Progress) -> list[HostStatus]:
    """Per host: the live release and every way it drifted from its manifest or the local lock."""
    replies: dict[str, dict[str, Any]] = {}
    with Run.over(config, env, "status", progress) as run:
        run.each(run.targets, lambda t: replies.__setitem__(t.name, t.call("status", timeout=env.command_timeout)))
    pins = deploy_pins(config)
    local = {name: pin.version for name, pin in pins.items()} if pins is not None else None
    name = app_name(config)
    app = canonical(name) if name else None
    statuses = []
    for target in run.targets:
        host = HostStatus(target.name)
        statuses.append(host)
        error = run.results[target.name].error
        if error is not None:
            host.error = error
            host.problems.append(detail(error))
            continue
        _read_status(host, replies[target.name], env.name)
        if host.release is None:
            continue
        manifest = next((r["manifest"] for r in host.releases if r["release"] == host.release), None) or {}
        git = manifest.get("git")
        host.git = git if isinstance(git, str) else None
        entry = _last_switch(replies[target.name]["log"], host.release)
        if entry:
            stamp = entry.get("time")
            host.deployed_at = stamp if isinstance(stamp, str) else None
            host.deployed_by = f"{entry.get('user')}@{entry.get('machine')}"
        listed = manifest.get("wheels")
        wheels = [checked_wheel(entry) for entry in listed] if isinstance(listed, list) else [None]
        if None in wheels:
            host.problems.append(f"release {host.release}'s manifest on the host is malformed: its wheels "
                                 "cannot be compared (redeploy to replace it)")
        shipped = {w.name: w.version for w in wheels if w is not None}
        host.problems += _venv_drift(shipped, replies[target.name].get("venv", {}))
        if local is not None:
            host.problems += _lock_drift({k: v for k, v in shipped.items() if k != app}, local)
    live = {s.release for s in statuses if s.release}
    if len(live) > 1:
        for host in statuses:
            if host.release:
                others = ", ".join(sorted(live - {host.release}))
                host.problems.append(f"on release {host.release} while other hosts run {others}")
    return statuses


def _read_status(host: HostStatus, reply: dict[str, Any], env: str) -> None:
    if reply.get("lock") is not None:
        host.problems.append(_held_claim(reply["lock"], env))
    # Paths the host's agent will not write or delete through (a link, another user's): every
    # deploy there is refused until someone puts them right.
    host.problems += [f"unsafe: {inert(problem, 300)}" for problem in reply.get("unsafe", [])]
    host.release = reply["current"]
    host.previous = reply["previous"]
    host.releases = reply["releases"]
    if host.release is None:
        host.problems.append("nothing deployed yet")


def deploy_pins(config: Config) -> dict[str, Pin] | None:
    """The local deploy layer's pins by canonical name (None: there is no deploy lock)."""
    graph = load_layers(config.root, config.requirements, config.inputs_outside)
    layer = deploy_layer(config, graph)
    if layer is None or not graph.layers[layer].lock.is_file():
        return None
    return {canonical(name): pin for name, pin in parse(graph.layers[layer].lock, graph.root).pins.items()}


def _last_switch(log: list[dict[str, Any]], release: str) -> dict[str, Any] | None:
    for entry in reversed(log):
        if entry.get("release") == release and entry.get("result") == "ok":
            return dict(entry)
    return None


def _held_claim(owner: dict[str, Any], env: str) -> str:
    """A deploy's claim on a host: one under way, or one left by a deploy that died."""
    since = owner.get("since")
    held = inert(age(since), 40) if isinstance(since, str) else "an unknown time"
    return (f"locked since {held} by {describe_owner(owner)}: a deploy is under way, or one died there "
            f"(if it died: invoke deploy --env {env} --break-lock)")


def _venv_drift(shipped: dict[str, str], venv: dict[str, Any]) -> list[str]:
    if "error" in venv:
        last = (venv["error"].strip().splitlines() or ["(no output)"])[-1]
        return [f"cannot inspect the live venv: {inert(last, 200)}"]
    # Names and versions as the host's venv reports them: shown inert.
    installed = {inert(canonical(name), 100): inert(version, 40) for name, version in venv.get("installed", {}).items()}
    problems = [f"missing from the live venv: {n} {v}" for n, v in sorted(shipped.items()) if n not in installed]
    problems += [f"extra in the live venv: {n} {v}" for n, v in sorted(installed.items()) if n not in shipped]
    problems += [
        f"other version in the live venv: {n} {installed[n]} (release has {v})"
        for n, v in sorted(shipped.items())
        if n in installed and installed[n] != v
    ]
    problems += [f"file changed after install: {inert(path, 200)} ({inert(dist, 100)}, {inert(how, 20)})"
                 for dist, path, how in venv.get("modified", [])]
    return problems


def _lock_drift(shipped: dict[str, str], local: dict[str, str]) -> list[str]:
    changes = [
        f"~ {n} {shipped[n]} → {local[n]}" for n in sorted(shipped.keys() & local.keys()) if shipped[n] != local[n]
    ]
    changes += [f"+ {n} {local[n]}" for n in sorted(local.keys() - shipped.keys())]
    changes += [f"- {n} {shipped[n]}" for n in sorted(shipped.keys() - local.keys())]
    if not changes:
        return []
    return [f"live release differs from the local lock: {', '.join(changes)} (deploy to bring it in line)"]


def source_wheels(origin: Target, release: str) -> list[Wheel]:
    """The wheels release `release`'s manifest on a host lists, each checked for form (names and
    hashes become local paths and cache keys); a manifest that is not so is a HostError."""
    text = origin.call("read", file=f"releases/{release}/manifest.json")["text"]
    try:
        manifest = json.loads(text) if text is not None else None
    except (ValueError, RecursionError):
        manifest = None
    entries = manifest.get("wheels") if isinstance(manifest, dict) else None
    if not isinstance(entries, list):
        raise HostError(origin.name, f"release {release} has no readable manifest (a JSON object listing its wheels)")
    wheels = []
    for entry in entries:
        wheel = checked_wheel(entry)
        if wheel is None:
            raise HostError(origin.name, f"release {release}'s manifest lists a malformed wheel entry "
                            f"({inert(json.dumps(entry), 120)})")
        wheels.append(wheel)
    return wheels


_WHEEL_FILE = re.compile(r"[A-Za-z0-9_.+!]+-[A-Za-z0-9_.+!]+(-[A-Za-z0-9_.+!]+){3,4}\.whl")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def checked_wheel(entry: object) -> Wheel | None:
    """A manifest's wheel entry as a Wheel, or None when it is not exactly of that form."""
    if not isinstance(entry, dict) or set(entry) != {"filename", "name", "version", "sha256", "size"}:
        return None
    filename, sha, size = entry["filename"], entry["sha256"], entry["size"]
    if not (isinstance(filename, str) and _WHEEL_FILE.fullmatch(filename) and isinstance(sha, str)
            and _SHA256.fullmatch(sha) and isinstance(size, int) and not isinstance(size, bool) and size >= 0):
        return None
    if wheel_identity(filename) != (entry["name"], entry["version"]):
        return None
    return Wheel(filename, entry["name"], entry["version"], sha, size)
