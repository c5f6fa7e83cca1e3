"""Day-to-day operations on what is live: status (drift), releases, the dry-run plan, promote.

All of them read hosts through the same agent as deploy; only promote writes, and it writes by
calling the deploy engine with the source's release as it is: the same wheels, checked by hash.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.config import Config, Environment
from deploy.errors import DeployError, HostError
from deploy.lock.layers import load as load_layers
from deploy.lock.lockfile import Pin, parse
from deploy.lock.reqfile import canonical
from deploy.lock.verify import deploy_layer
from deploy.release.build import Build, Cache, Wheel, file_sha256, wheel_identity
from deploy.release.build import build as build_release
from deploy.release.engine import (
    Progress,
    Run,
    Summary,
    check_interpreters,
    dependency_problems,
    describe_owner,
    plural,
)
from deploy.release.engine import deploy as deploy_release
from deploy.remote.target import Target
from deploy.render import inert


@dataclass
class HostStatus:
    host: str
    release: str | None = None
    previous: str | None = None
    deployed_at: str | None = None
    deployed_by: str | None = None
    git: str | None = None
    error: str | None = None  # the host could not be read
    problems: list[str] = field(default_factory=list)
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


def _deploy_pins(config: Config) -> dict[str, Pin] | None:
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


def status(config: Config, env: Environment, progress: Progress) -> list[HostStatus]:
    """Per host: the live release and every way it drifted from its manifest or the local lock."""
    run = Run(config, env, "status", progress)
    replies: dict[str, dict[str, Any]] = {}
    run.each(run.targets, lambda t: replies.__setitem__(t.name, t.call("status", timeout=env.command_timeout)))
    pins = _deploy_pins(config)
    local = {name: pin.version for name, pin in pins.items()} if pins is not None else None
    app = canonical(config.app_name) if config.app_name else None
    statuses = []
    for target in run.targets:
        host = HostStatus(target.name)
        statuses.append(host)
        error = run.results[target.name].error
        if error:
            host.error = error.removeprefix(f"{target.name}: ")  # rendered after the host's name
            host.problems.append(host.error)
            continue
        reply = replies[target.name]
        if reply.get("lock") is not None:
            host.problems.append(_held_lock(reply["lock"], env.name))
        # Paths the host's agent will not write or delete through (a link, another user's): every
        # deploy there is refused until someone puts them right.
        host.problems += [f"unsafe: {inert(problem, 300)}" for problem in reply.get("unsafe", [])]
        host.release = reply["current"]
        host.previous = reply["previous"]
        host.releases = reply["releases"]
        if host.release is None:
            host.problems.append("nothing deployed yet")
            continue
        manifest = next((r["manifest"] for r in reply["releases"] if r["release"] == host.release), None) or {}
        git = manifest.get("git")
        host.git = git if isinstance(git, str) else None
        entry = _last_switch(reply["log"], host.release)
        if entry:
            stamp = entry.get("time")
            host.deployed_at = stamp if isinstance(stamp, str) else None
            host.deployed_by = f"{entry.get('user')}@{entry.get('machine')}"
        listed = manifest.get("wheels")
        wheels = [_checked_wheel(entry) for entry in listed] if isinstance(listed, list) else [None]
        if None in wheels:
            host.problems.append(f"release {host.release}'s manifest on the host is malformed: its wheels "
                                 "cannot be compared (redeploy to replace it)")
        shipped = {w.name: w.version for w in wheels if w is not None}
        host.problems += _venv_drift(shipped, reply.get("venv", {}))
        if local is not None:
            host.problems += _lock_drift({k: v for k, v in shipped.items() if k != app}, local)
    live = {s.release for s in statuses if s.release}
    if len(live) > 1:
        for host in statuses:
            if host.release:
                others = ", ".join(sorted(live - {host.release}))
                host.problems.append(f"on release {host.release} while other hosts run {others}")
    for target in run.targets:
        target.close()
    return statuses


def _held_lock(owner: dict[str, Any], env: str) -> str:
    """A deploy lock on a host: one under way, or one left by a deploy that died."""
    since = owner.get("since")
    age = inert(_age(since), 40) if isinstance(since, str) else "an unknown time"
    return (f"locked since {age} by {describe_owner(owner)}: a deploy is under way, or one died there "
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


def render_status(statuses: list[HostStatus], as_json: bool) -> str:
    if as_json:
        return json.dumps([s.as_json() for s in statuses], indent=2)
    rows: list[tuple[str, ...]] = [("host", "release", "deployed", "by", "git", "state")]
    for s in statuses:
        rows.append(
            (
                s.host,
                s.release or "-",
                _age(s.deployed_at),
                s.deployed_by or "-",
                (s.git or "-")[:12],
                "clean" if not s.problems else f"{len(s.problems)} problem(s)",
            )
        )
    rows = [(*(inert(cell, 60) for cell in row),) for row in rows]  # host text: deployed by, git, time
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    for s in statuses:
        lines += [f"{s.host}: {problem}" for problem in s.problems]  # made of inert host text
    return "\n".join(lines)


def _age(stamp: str | None) -> str:
    if not stamp:
        return "-"
    try:
        seconds = time.time() - time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) + time.timezone
    except ValueError:
        return stamp
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def render_releases(statuses: list[HostStatus]) -> str:
    lines: list[str] = []
    for s in statuses:
        if s.error:
            lines.append(f"{s.host}: {s.error}")
            continue
        lines.append(f"{s.host}:")
        for item in reversed(s.releases):  # newest first
            manifest = item["manifest"] or {}
            mark = {s.release: "live", s.previous: "previous"}.get(item["release"], "")
            app = manifest.get("app")
            version = app.get("version", "-") if isinstance(app, dict) else "-"
            built_at, version, git = (inert(str(value), limit) for value, limit in (
                (manifest.get("built_at", "-"), 20), (version, 20), (str(manifest.get("git") or "-")[:12], 12)))
            lines.append(f"  {item['release']}  {built_at:20}  {version:10}  {git:12}  {mark}".rstrip())
    return "\n".join(lines)


def plan(config: Config, env: Environment, progress: Progress) -> tuple[str, bool]:
    """The dry run: what a deploy would change on each host, and whether it would go ahead.
    Nothing is written, here or there: wheels the local cache lacks are built into a scratch
    folder that is thrown away."""
    from deploy.lock.verify import verify  # the same gate a deploy has

    verify(config)
    run = Run(config, env, "plan", progress)
    run.probe()
    interpreter = check_interpreters(run)
    if not run.healthy():
        return "\n".join(r.error or "" for r in run.results.values() if r.error), False
    with tempfile.TemporaryDirectory(prefix="pinship-plan-") as scratch:
        built = build_release(config, log=lambda line: progress("build", line), scratch=Path(scratch),
                              target=interpreter)
        problems = dependency_problems(run, built)
    lines = [f"release {built.release} ({len(built.wheels)} wheels) to '{env.name}':"]
    if problems:
        lines += ["the deploy would stop here: the release does not meet its own packages' requirements",
                  *(f"  {problem}" for problem in problems)]
    for target in run.targets:
        result = run.results[target.name]
        if result.error:
            lines.append(f"{target.name}: cannot plan: {result.error}")
            continue
        current = result.probe["current"]
        if current == built.release:
            lines.append(f"{target.name}: already live, nothing to do")
            continue
        before: dict[str, str] = {}
        if current:
            try:
                before = {w.name: w.version for w in _source_wheels(target, current)}
            except HostError as exc:
                lines.append(f"{target.name}: {exc.message.removeprefix(target.name + ': ')} (compared as empty)")
        after = {w.name: w.version for w in built.wheels}
        store = set(result.probe["store"])
        send = [w for w in dict.fromkeys(built.wheels) if w.sha256 not in store]
        lines.append(
            f"{target.name}: {current or 'nothing'} → {built.release}; send {plural(len(send), 'wheel')} "
            f"({sum(w.size for w in send) / 1e6:.1f} MB)"
        )
        lines += [f"  {change}" for change in _changes(before, after)]
    for target in run.targets:
        target.close()
    return "\n".join(lines), not problems and not any(r.error for r in run.results.values())


def _changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    out = [f"+ {n} {after[n]}" for n in sorted(after.keys() - before.keys())]
    out += [f"- {n} {before[n]}" for n in sorted(before.keys() - after.keys())]
    out += [f"~ {n} {before[n]} → {after[n]}" for n in sorted(before.keys() & after.keys()) if before[n] != after[n]]
    return out or ["(same packages; the app's wheel changed)"]


def promote(
    config: Config, source: Environment, target: Environment, *, progress: Progress, break_lock: bool = False
) -> Summary:
    """Deploy to `target` the exact release live on every host of `source`, as this checkout
    vouches for it: the same release id, made of wheels the local lock and source account for."""
    built = fetch_release(config, source, progress)
    return deploy_release(config, target, progress=progress, break_lock=break_lock, built=built, action="promote")


def fetch_release(config: Config, source: Environment, progress: Progress) -> Build:
    """The release live on `source`, rebuilt here from the local lock and source, never taken
    on the source hosts' word: a compromised staging host must not be able to put a wheel on
    production. Staging only says which release is live and, to save downloads, supplies
    dependency wheels whose sha256 the local deploy lock names. The result must have the same
    release id (a digest of every wheel's hash), or promote refuses and says which wheels differ."""
    run = Run(config, source, "promote", progress)
    try:
        run.probe()
        failed = [r.error for r in run.results.values() if r.error]
        if failed:
            raise DeployError(f"cannot read the source environment '{source.name}':\n  " + "\n  ".join(failed))
        release = _agreed_release(run, source)
        interpreter = check_interpreters(run)
        origin = run.targets[0]
        shipped = _source_wheels(origin, release)
        _seed_cache(config, origin, release, shipped, progress)
    finally:
        for target_ in run.targets:
            target_.close()
    built = build_release(config, log=lambda line: progress("build", line), target=interpreter)
    ours = {w.name: w for w in built.wheels}
    theirs = {w.name: w for w in shipped}
    # Every wheel, not just the id: a manifest edited on the host (the id is a digest of the
    # release's lock) is a sign of tampering too.
    differ = [
        f"{name}: {origin.name} has {_describe(theirs.get(name))}, this checkout builds {_describe(ours.get(name))}"
        for name in sorted(ours.keys() | theirs.keys())
        if (ours.get(name) and ours[name].sha256) != (theirs.get(name) and theirs[name].sha256)
    ]
    if built.release != release or differ:
        raise DeployError(
            f"release {release} live on '{source.name}' is not what this checkout builds ({built.release}): "
            + "; ".join(differ or ["its manifest and this build agree, its lock does not"]),
            fix="check out the commit it was deployed from and run promote again, or deploy this checkout "
            f"to '{source.name}' first",
        )
    return built


def _agreed_release(run: Run, source: Environment) -> str:
    live = {t.name: run.results[t.name].probe["current"] for t in run.targets}
    if None in live.values() or len(set(live.values())) != 1:
        detail = ", ".join(f"{host} runs {release or 'nothing'}" for host, release in live.items())
        raise DeployError(
            f"the hosts of '{source.name}' do not agree on one live release: {detail}",
            fix=f"deploy or roll back '{source.name}' until every host runs the same release",
        )
    release: str = next(iter(live.values()))
    return release


def _source_wheels(origin: Target, release: str) -> list[Wheel]:
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
        wheel = _checked_wheel(entry)
        if wheel is None:
            raise HostError(origin.name, f"release {release}'s manifest lists a malformed wheel entry "
                            f"({inert(json.dumps(entry), 120)})")
        wheels.append(wheel)
    return wheels


_WHEEL_FILE = re.compile(r"[A-Za-z0-9_.+!]+-[A-Za-z0-9_.+!]+(-[A-Za-z0-9_.+!]+){3,4}\.whl")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _checked_wheel(entry: object) -> Wheel | None:
    if not isinstance(entry, dict) or set(entry) != {"filename", "name", "version", "sha256", "size"}:
        return None
    filename, sha, size = entry["filename"], entry["sha256"], entry["size"]
    if not (isinstance(filename, str) and _WHEEL_FILE.fullmatch(filename) and isinstance(sha, str)
            and _SHA256.fullmatch(sha) and isinstance(size, int) and not isinstance(size, bool) and size >= 0):
        return None
    if wheel_identity(filename) != (entry["name"], entry["version"]):
        return None
    return Wheel(filename, entry["name"], entry["version"], sha, size)


def _seed_cache(config: Config, origin: Target, release: str, shipped: list[Wheel], progress: Progress) -> None:
    """Fetch from the source host the dependency wheels the local cache lacks, but only those
    whose sha256 the local deploy lock names for that very pin; anything else is refused."""
    pins = _deploy_pins(config)
    if pins is None:
        raise DeployError("there is no deploy layer lock to promote against", fix="run: nox -s lock")
    app = canonical(config.app_name) if config.app_name else None
    cache = Cache(config.root / ".deploy" / "cache")
    vouched = []
    for wheel in shipped:
        if wheel.name == app:
            continue  # built here from the source and compared by hash: see fetch_release
        pin = pins.get(wheel.name)
        if pin is not None and pin.version == wheel.version and f"sha256:{wheel.sha256}" in pin.hashes:
            vouched.append(wheel)
        elif pin is None or pin.version != wheel.version:
            raise HostError(origin.name, f"release {release} ships {wheel.filename} (sha256 {wheel.sha256[:16]}…), "
                            "which the local deploy lock does not vouch for: refusing to promote it",
                            fix="if the lock changed since that release was deployed, deploy it again from this "
                            "checkout; otherwise inspect the host")
        # Else a wheel built from the pin's sdist (the lock hashes the sdist): never taken from the
        # host; the local build makes it (or has it cached) and the release id comparison decides.
    for wheel in dict.fromkeys(vouched):
        if wheel.sha256 in cache.by_hash:
            continue
        progress(origin.name, f"fetching {wheel.filename} from the source release")
        with tempfile.TemporaryDirectory(prefix="pinship-promote-") as tmp:
            local = Path(tmp) / wheel.filename  # a checked plain file name: it stays in tmp
            origin.get(f"{origin.env.path}/wheels/{wheel.sha256}/{wheel.filename}", local)
            if file_sha256(local) != wheel.sha256:
                raise HostError(origin.name, f"{wheel.filename} does not have the sha256 the local lock gives: "
                                "refusing to promote it", fix="inspect the host's wheel store")
            cache.add(local)


def _describe(wheel: Wheel | None) -> str:
    return f"{wheel.filename} (sha256 {wheel.sha256[:16]}…)" if wheel else "nothing"
