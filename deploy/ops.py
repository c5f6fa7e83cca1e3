"""Day-to-day operations on what is live: status (drift), releases, the dry-run plan, promote.

All of them read hosts through the same agent as deploy; only promote writes, and it writes by
calling the deploy engine with the source's release as it is: the same wheels, checked by hash.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.build import Build, Cache, Wheel, file_sha256
from deploy.build import build as build_release
from deploy.config import Config, Environment
from deploy.engine import Progress, Run, Summary, check_interpreters, dependency_problems, plural
from deploy.engine import deploy as deploy_release
from deploy.errors import DeployError
from deploy.layers import load as load_layers
from deploy.lockfile import parse
from deploy.reqfile import canonical
from deploy.verify import deploy_layer


@dataclass
class HostStatus:
    host: str
    release: str | None = None
    previous: str | None = None
    deployed_at: str | None = None
    deployed_by: str | None = None
    git: str | None = None
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


def _local_pins(config: Config) -> dict[str, str] | None:
    graph = load_layers(config.root, config.requirements)
    layer = deploy_layer(config, graph)
    if layer is None or not graph.layers[layer].lock.is_file():
        return None
    return {name: pin.version for name, pin in parse(graph.layers[layer].lock).pins.items()}


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
    local = _local_pins(config)
    app = canonical(config.app_name) if config.app_name else None
    statuses = []
    for target in run.targets:
        host = HostStatus(target.name)
        statuses.append(host)
        error = run.results[target.name].error
        if error:
            host.problems.append(error)
            continue
        reply = replies[target.name]
        host.release = reply["current"]
        host.previous = reply["previous"]
        host.releases = reply["releases"]
        if host.release is None:
            host.problems.append("nothing deployed yet")
            continue
        manifest = next((r["manifest"] for r in reply["releases"] if r["release"] == host.release), None) or {}
        host.git = manifest.get("git")
        entry = _last_switch(reply["log"], host.release)
        if entry:
            host.deployed_at, host.deployed_by = entry.get("time"), f"{entry.get('user')}@{entry.get('machine')}"
        shipped = {canonical(w["name"]): w["version"] for w in manifest.get("wheels", [])}
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


def _venv_drift(shipped: dict[str, str], venv: dict[str, Any]) -> list[str]:
    if "error" in venv:
        return [f"cannot inspect the live venv: {venv['error'].strip().splitlines()[-1:]}"]
    installed = {canonical(name): version for name, version in venv.get("installed", {}).items()}
    problems = [f"missing from the live venv: {n} {v}" for n, v in sorted(shipped.items()) if n not in installed]
    problems += [f"extra in the live venv: {n} {v}" for n, v in sorted(installed.items()) if n not in shipped]
    problems += [
        f"other version in the live venv: {n} {installed[n]} (release has {v})"
        for n, v in sorted(shipped.items())
        if n in installed and installed[n] != v
    ]
    problems += [f"file changed after install: {path} ({dist}, {how})" for dist, path, how in venv.get("modified", [])]
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
    rows = [("host", "release", "deployed", "by", "git", "state")]
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
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    for s in statuses:
        lines += [f"{s.host}: {problem}" for problem in s.problems]
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
        lines.append(f"{s.host}:")
        if not s.releases and s.problems:
            lines += [f"  {p}" for p in s.problems]
        for item in reversed(s.releases):  # newest first
            manifest = item["manifest"] or {}
            mark = {s.release: "live", s.previous: "previous"}.get(item["release"], "")
            app = manifest.get("app") or {}
            lines.append(
                f"  {item['release']}  {manifest.get('built_at', '-'):20}  "
                f"{app.get('version', '-'):10}  {(manifest.get('git') or '-')[:12]:12}  {mark}".rstrip()
            )
    return "\n".join(lines)


def plan(config: Config, env: Environment, progress: Progress) -> tuple[str, bool]:
    """The dry run: what a deploy would change on each host, and whether it would go ahead.
    Nothing is written, here or there: wheels the local cache lacks are built into a scratch
    folder that is thrown away."""
    from deploy.verify import verify  # the same gate a deploy has

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
        live_manifest = (
            json.loads(target.call("read", file=f"releases/{current}/manifest.json")["text"] or "{}") if current else {}
        )
        before = {canonical(w["name"]): w["version"] for w in live_manifest.get("wheels", [])}
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
    """Deploy to `target` the exact release live on every host of `source`: no rebuild."""
    built = fetch_release(config, source, progress)
    return deploy_release(config, target, progress=progress, break_lock=break_lock, built=built, action="promote")


def fetch_release(config: Config, source: Environment, progress: Progress) -> Build:
    run = Run(config, source, "promote", progress)
    run.probe()
    failed = [r.error for r in run.results.values() if r.error]
    if failed:
        raise DeployError(f"cannot read the source environment '{source.name}':\n  " + "\n  ".join(failed))
    live = {t.name: run.results[t.name].probe["current"] for t in run.targets}
    if None in live.values() or len(set(live.values())) != 1:
        detail = ", ".join(f"{host} runs {release or 'nothing'}" for host, release in live.items())
        raise DeployError(
            f"the hosts of '{source.name}' do not agree on one live release: {detail}",
            fix=f"deploy or roll back '{source.name}' until every host runs the same release",
        )
    release = next(iter(live.values()))
    origin = run.targets[0]
    assert release is not None
    manifest = json.loads(origin.call("read", file=f"releases/{release}/manifest.json")["text"] or "null")
    lock_text = origin.call("read", file=f"releases/{release}/requirements.lock")["text"]
    if not manifest or lock_text is None or "wheels" not in manifest:
        raise DeployError(f"{origin.name}: release {release} has no complete manifest to promote from")
    if hashlib.sha256(lock_text.encode()).hexdigest()[:12] != release:
        raise DeployError(f"{origin.name}: release {release}'s requirements.lock does not match its id: refusing")
    cache = Cache(config.root / ".deploy" / "cache")
    wheels = [Wheel(**w) for w in manifest["wheels"]]
    for wheel in dict.fromkeys(wheels):
        if wheel.sha256 in cache.by_hash:
            continue
        progress(origin.name, f"fetching {wheel.filename} from the source release")
        with tempfile.TemporaryDirectory(prefix="pinship-promote-") as tmp:
            local = Path(tmp) / wheel.filename
            origin.get(f"{source.path}/wheels/{wheel.sha256}/{wheel.filename}", local)
            if file_sha256(local) != wheel.sha256:
                raise DeployError(
                    f"{origin.name}: {wheel.filename} does not match the hash in release "
                    f"{release}'s manifest: refusing to promote it"
                )
            cache.add(local)
    for target_ in run.targets:
        target_.close()
    return Build(release, wheels, lock_text, manifest, dict(cache.by_hash))
