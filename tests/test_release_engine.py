"""The deploy and rollback steps over fake hosts (no sshd, no build): what the gate lets through,
which claims are released, and what Ctrl-C leaves behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.config import Config, Environment, Host
from deploy.errors import HostError
from deploy.release import engine
from deploy.release.build import Build
from deploy.release.engine import Job
from deploy.release.run import HostState, Run, Summary
from tests.test_release_run import OLD, RELEASE, FakeTarget, claimed

HOSTS = (Host("deploy", "app1", 22), Host("deploy", "app2", 22))
SWITCHED = {"switched": True, "switched_back": False, "previous": OLD}
# Deploy's steps from skip_live on, as engine.DEPLOY has them.
STAGED_TO_SWITCHED = engine.DEPLOY[engine.DEPLOY.index(engine.skip_live):]


def job_over(tmp_path: Path, targets: list[FakeTarget], action: str = "deploy", **settings: Any) -> Job:
    # keep-alive 0: no keeper is started for these made-up hosts.
    env = Environment("staging", hosts=HOSTS, path="/srv/app", keep_alive=0.0, **settings)
    config = Config(root=tmp_path, requirements=tmp_path / "requirements")
    run = Run(env, action, lambda host, message: None, list(targets))
    for target in run.targets:
        run.results[target.name].probe = {"current": OLD, "store": [], "markers": {}}
    job = Job(config, env, action, run.progress, run=run, release=RELEASE)
    job.built = Build(RELEASE, [], "", {"layer": "prod.txt"}, {})
    return job


def states(summary: Summary) -> dict[str, str]:
    return {host.host: host.result for host in summary.hosts}


def test_a_host_that_fails_staging_switches_nobody_and_every_claim_is_released(tmp_path: Path) -> None:
    broken = FakeTarget("app1", **claimed(), stage=HostError("app1", "health check failed"))
    fine = FakeTarget("app2", **claimed(), switch=SWITCHED)
    summary = engine.execute(job_over(tmp_path, [broken, fine]), STAGED_TO_SWITCHED)

    assert states(summary) == {"app1": "failed", "app2": "not switched: 1 host(s) failed staging"}
    assert "switch" not in fine.calls and "abort" in fine.calls and "abort" in broken.calls
    assert not any(host.claimed for host in summary.hosts)


def test_with_max_failures_1_the_other_host_switches(tmp_path: Path) -> None:
    broken = FakeTarget("app1", **claimed(), stage=HostError("app1", "health check failed"))
    fine = FakeTarget("app2", **claimed(), switch=SWITCHED)
    summary = engine.execute(job_over(tmp_path, [broken, fine], max_failures=1), STAGED_TO_SWITCHED)

    assert states(summary) == {"app1": "failed", "app2": "switched"}
    assert "switch" not in broken.calls and not summary.ok


def test_a_host_that_serves_the_release_already_is_left_alone(tmp_path: Path) -> None:
    first, second = FakeTarget("app1", **claimed()), FakeTarget("app2", **claimed())
    job = job_over(tmp_path, [first, second])
    for result in job.run.results.values():
        result.probe["current"] = RELEASE
    summary = engine.execute(job, STAGED_TO_SWITCHED)

    assert states(summary) == {"app1": "unchanged", "app2": "unchanged"} and summary.ok
    assert first.calls == [] and second.calls == []


def test_ctrl_c_while_the_claims_are_held_releases_them_and_switches_nobody(tmp_path: Path) -> None:
    first, second = FakeTarget("app1", **claimed()), FakeTarget("app2", **claimed())

    def interrupt(job: Job) -> None:
        raise KeyboardInterrupt

    summary = engine.execute(job_over(tmp_path, [first, second]), (engine.skip_live, engine.claim, interrupt))

    assert states(summary) == {"app1": "not switched: interrupted", "app2": "not switched: interrupted"}
    assert first.calls == ["lock", "abort"] and second.calls == ["lock", "abort"]


def test_ctrl_c_before_any_claim_is_the_callers_to_handle(tmp_path: Path) -> None:
    def interrupt(job: Job) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        engine.execute(job_over(tmp_path, [FakeTarget("app1"), FakeTarget("app2")]), (interrupt,))


def test_a_rollback_to_a_release_one_host_lacks_switches_nobody_and_releases_every_claim(tmp_path: Path) -> None:
    has = {"lock": {"probe": {"current": OLD, "previous": None, "releases": [OLD, RELEASE]}}}
    lacks = {"lock": {"probe": {"current": OLD, "previous": None, "releases": [OLD]}}}
    first, second = FakeTarget("app1", **has, switch=SWITCHED), FakeTarget("app2", **lacks)
    summary = engine.execute(job_over(tmp_path, [first, second], action="rollback"), engine.ROLLBACK)

    assert "switch" not in first.calls and first.calls[-1] == "abort" and second.calls[-1] == "abort"
    problems = {host.host: str(host.error) for host in summary.hosts if host.error}
    assert problems == {"app2": f"app2: release {RELEASE} is not on this host (it has: {OLD})"}
    assert summary.hosts[0].state is HostState.PENDING and not summary.hosts[0].claimed
