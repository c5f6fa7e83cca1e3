"""Every table the release side prints: a run's summary, status, releases and the dry-run plan.

The steps gather results as objects (states, exceptions, plans); only here do they become text.
A host's name starts each of its lines once: errors are shown by their detail (`run.detail`),
never as str(exc) with the host in it a second time. What a host said is shown inert.
"""

from __future__ import annotations

import json

from deploy.errors import HostError, host_output
from deploy.release.cache import Wheel
from deploy.release.inspect import HostStatus
from deploy.release.plan import HostPlan, Plan
from deploy.release.run import HostResult, Summary, detail
from deploy.render import age, inert, plural, size, table


def problem(result: HostResult) -> str:
    """A failed host's error, after its name; and the claim it could not release, if so."""
    assert result.error is not None
    text = f"{result.host}: {detail(result.error)}"
    if result.unreleased is not None:
        # A host that hung cannot be released either: say so, and what to do once it answers.
        why = result.unreleased.detail if isinstance(result.unreleased, HostError) else result.unreleased.message
        text += f"\n  its lock could not be released ({why}): once the host answers, deploy again with --break-lock"
    return text


def render_summary(summary: Summary) -> str:
    rows = [("host", "release", "result", "serves", "seconds", "sent")]
    for host in summary.hosts:
        rows.append((host.host, host.release or "-", host.result, host.serves or "-", f"{host.seconds:.1f}",
                     size(host.bytes_sent)))
    lines = table(rows)
    waves: dict[int, list[str]] = {}
    for host in summary.hosts:
        if host.wave is not None:
            waves.setdefault(host.wave, []).append(host.host)
    if len(waves) > 1:
        lines += ["", "waves: " + "; ".join(f"{number}: {', '.join(hosts)}" for number, hosts in sorted(waves.items()))]
    hooks = [f"  {host.host}: {hook.name} exit {hook.exit}: {host_output(hook.output or '(no output)')}"
             for host in summary.hosts for hook in host.hooks]
    if hooks:
        lines += ["", "hooks:", *hooks]
    errors = [f"  {problem(host)}" for host in summary.hosts if host.error]
    if errors:
        lines += ["", "problems:", *errors]
    serving = summary.mixed()
    if serving:
        # A switch that failed on some hosts after others switched: say so, loudly, with the way out.
        lines += ["", f"MIXED: the hosts of '{summary.environment}' now serve different releases:",
                  *(f"  {release}: {', '.join(hosts)}" for release, hosts in sorted(serving.items())),
                  f"  fix: repair the failed hosts and run the {summary.action} again, or put the switched "
                  f"hosts back with: invoke rollback --env {summary.environment} --hosts HOST,…"]
    return "\n".join(lines)


def render_status(statuses: list[HostStatus], as_json: bool) -> str:
    if as_json:
        return json.dumps([s.as_json() for s in statuses], indent=2)
    rows: list[tuple[str, ...]] = [("host", "release", "deployed", "by", "git", "state")]
    for s in statuses:
        rows.append((s.host, s.release or "-", age(s.deployed_at), s.deployed_by or "-", short_git(s.git),
                     "clean" if not s.problems else f"{len(s.problems)} problem(s)"))
    lines = table([tuple(inert(cell, 60) for cell in row) for row in rows])  # host text: deployed by, git, time
    for s in statuses:
        lines += [f"{s.host}: {found}" for found in s.problems]  # made of inert host text
    return "\n".join(lines)


def short_git(revision: object) -> str:
    """A release's commit as the tables show it: 12 digits, and `+dirty` when it was built from
    uncommitted changes (two releases of one commit differ by those)."""
    if not isinstance(revision, str) or not revision:
        return "-"
    commit, dirty, _ = revision.partition("+dirty")
    return commit[:12] + dirty


def render_releases(statuses: list[HostStatus]) -> str:
    # The first column is what `rollback --to` takes: two releases of one version and commit
    # (built from different changes) are told apart by it.
    listed = any(s.error is None and s.releases for s in statuses)  # no heading above errors alone
    lines = [f"  {'release':12}  {'built at':20}  {'app':10}  {'git':18}  on the host"] if listed else []
    for s in statuses:
        if s.error is not None:
            lines.append(f"{s.host}: {detail(s.error)}")
            continue
        lines.append(f"{s.host}:")
        for item in reversed(s.releases):  # newest first
            manifest = item["manifest"] or {}
            mark = {s.release: "live", s.previous: "previous"}.get(item["release"], "")
            app = manifest.get("app")
            version = app.get("version", "-") if isinstance(app, dict) else "-"
            built_at, version, git = (inert(str(value), limit) for value, limit in (
                (manifest.get("built_at", "-"), 20), (version, 20), (short_git(manifest.get("git")), 18)))
            lines.append(f"  {item['release']}  {built_at:20}  {version:10}  {git:18}  {mark}".rstrip())
    return "\n".join(lines)


def render_plan(plan: Plan) -> str:
    if plan.release is None:  # no host answered: there is nothing to plan against
        return "\n".join(f"{host.host}: {detail(host.error)}" for host in plan.hosts if host.error)
    lines = [f"release {plan.release} ({len(plan.wheels)} wheels) to '{plan.environment}':"]
    if plan.problems:
        lines += ["the deploy would stop here: the release does not meet its own packages' requirements",
                  *(f"  {found}" for found in plan.problems)]
    for host in plan.hosts:
        lines += _host_plan(host, plan)
    return "\n".join(lines + _waves_plan(plan))


def _waves_plan(plan: Plan) -> list[str]:
    """Which hosts switch in which wave, and which host runs run-once."""
    lines = []
    if plan.waves:
        lines.append(f"waves (each checked before the next; {plural(plan.budget, 'host')} may fail):")
        for number, wave in enumerate(plan.waves, 1):
            hosts = ", ".join(wave.hosts) or "no host to switch"
            lines.append(f"  wave {number} ({json.dumps(wave.setting)}): {hosts}")
    if plan.run_once:
        lines.append(f"run-once runs on {plan.run_once}, after every host staged and before any switches")
    return lines


def _host_plan(host: HostPlan, plan: Plan) -> list[str]:
    if host.error is not None:
        return [f"{host.host}: cannot plan: {detail(host.error)}"]
    if host.live:
        return [f"{host.host}: already live, nothing to do"]
    lines = [f"{host.host}: {host.unreadable.detail} (compared as empty)"] if host.unreadable else []
    lines.append(f"{host.host}: {host.current or 'nothing'} → {plan.release}; send {plural(len(host.send), 'wheel')} "
                 f"({sum(w.size for w in host.send) / 1e6:.1f} MB)")
    after = {w.name: w for w in plan.wheels}
    return lines + [f"  {change}" for change in _changes(host.before, after)]


def _changes(before: dict[str, Wheel], after: dict[str, Wheel]) -> list[str]:
    """Package by package: added, removed, another version, or another wheel of the same version
    (a rebuild, e.g. the app's after an edit); nothing else is claimed."""
    out = [f"+ {n} {after[n].version}" for n in sorted(after.keys() - before.keys())]
    out += [f"- {n} {before[n].version}" for n in sorted(before.keys() - after.keys())]
    for n in sorted(before.keys() & after.keys()):
        old, new = before[n], after[n]
        if old.version != new.version:
            out.append(f"~ {n} {old.version} → {new.version}")
        elif old.sha256 != new.sha256:
            out.append(f"~ {n} {new.version}: another build of the same version")
    return out or ["(the same wheels as live)"]
