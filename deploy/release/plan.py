"""`invoke deploy --dry-run`: what a deploy would change on each host, and whether it would go ahead.

Nothing is written, here or there: wheels the local cache lacks are built into a scratch folder
that is thrown away. The plan is data (`Plan`); deploy/release/report.py prints it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from deploy.config import Config, Environment
from deploy.errors import HostError
from deploy.lock.verify import verify
from deploy.portions import Portion, allowed_failures, wave_sizes
from deploy.release.app import check_app
from deploy.release.build import build as build_release
from deploy.release.cache import Wheel
from deploy.release.engine import check_interpreters, dependency_problems
from deploy.release.inspect import source_wheels
from deploy.release.run import Progress, Run
from deploy.release.waves import waves_of


@dataclass
class HostPlan:
    host: str
    error: Exception | None = None  # the host could not be planned for
    current: str | None = None
    live: bool = False  # it serves the release already
    unreadable: HostError | None = None  # its live manifest could not be read: compared as empty
    before: dict[str, Wheel] = field(default_factory=dict)  # package -> its wheel live now
    send: list[Wheel] = field(default_factory=list)


@dataclass
class Wave:
    setting: Portion  # its value in `waves`, or "rest" for the hosts past the last one
    hosts: list[str]  # the hosts it would switch (those already live, or failing, left out)


@dataclass
class Plan:
    environment: str
    release: str | None  # None: no host could be probed, so nothing was built
    wheels: list[Wheel]
    problems: list[str]  # the release's own unmet requirements: the deploy would stop
    hosts: list[HostPlan]
    waves: list[Wave] = field(default_factory=list)  # empty: every host switches at once
    run_once: str | None = None  # the host that would run run-once
    budget: int = 0  # hosts that may fail (max-failures, as a count of these hosts)

    @property
    def goes_ahead(self) -> bool:
        return self.release is not None and not self.problems and not any(h.error for h in self.hosts)


def plan(config: Config, env: Environment, progress: Progress) -> Plan:
    """The dry run's findings, host by host, after the same gate a deploy has (verify)."""
    verify(config)
    check_app(config)
    with Run.over(config, env, "plan", progress) as run:
        run.probe()
        interpreter = check_interpreters(run)
        if not run.healthy():
            return Plan(env.name, None, [], [], [HostPlan(r.host, error=r.error) for r in run.results.values()
                                                 if r.error])
        with tempfile.TemporaryDirectory(prefix="pinship-plan-") as scratch:
            built = build_release(config, log=lambda line: progress("build", line), scratch=Path(scratch),
                                  target=interpreter)
            problems = dependency_problems(run, built)
        hosts = []
        for target in run.targets:
            result = run.results[target.name]
            host = HostPlan(target.name, error=result.error)
            hosts.append(host)
            if result.error:
                continue
            host.current = result.probe["current"]
            host.live = host.current == built.release
            if host.live:
                continue
            if host.current:
                try:
                    host.before = {w.name: w for w in source_wheels(target, host.current)}
                except HostError as exc:
                    host.unreadable = exc
            store = set(result.probe["store"])
            host.send = [w for w in dict.fromkeys(built.wheels) if w.sha256 not in store]
    going = {host.host for host in hosts if host.error is None and not host.live}
    ordered = [[t.name for t in wave if t.name in going] for wave in waves_of(env, run.targets)]
    waves = [Wave(value, names) for (value, _size), names in zip(wave_sizes(env.waves, len(run.targets)), ordered,
                                                                 strict=True)] if env.waves else []
    once = next((name for wave in ordered for name in wave), None) if env.run_once else None
    return Plan(env.name, built.release, built.wheels, problems, hosts, waves, once,
                allowed_failures(env.max_failures, len(run.targets)))
