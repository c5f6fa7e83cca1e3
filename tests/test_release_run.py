"""A run's per-host results, without sshd: hosts are fakes that answer (or fail) as told.

What a maintainer checks here: each host's state is the word the summary prints, errors stay
the exceptions raised until printed (the host named once per line), claims are released after a
failure, and the run closes its targets however it ends.
"""

from __future__ import annotations

from typing import Any

import pytest

from deploy.config import Environment, Host
from deploy.errors import DeployError, HostError
from deploy.release.inspect import HostStatus
from deploy.release.plan import HostPlan, Plan
from deploy.release.report import render_plan, render_releases, render_status, render_summary
from deploy.release.run import HostState, Run
from deploy.remote.target import AgentFailure, Target

RELEASE, OLD = "a1b2c3d4e5f6", "0123456789ab"
ENV = Environment("staging", hosts=(Host("deploy", "app1", 22), Host("deploy", "app2", 22)), path="/srv/app")


class FakeTarget(Target):
    """A host whose agent replies from `replies` (op -> reply, or an exception to raise)."""

    def __init__(self, name: str, **replies: Any) -> None:
        super().__init__(ENV)
        self.name = name
        self.replies = replies
        self.calls: list[str] = []
        self.closed = False

    def call(self, op: str, **request: Any) -> dict[str, Any]:
        self.calls.append(op)
        reply = self.replies.get(op, {})
        if isinstance(reply, Exception):
            raise reply
        return dict(reply)

    def close(self) -> None:
        self.closed = True


def probe(current: str | None = OLD) -> dict[str, Any]:
    return {"current": current, "previous": None, "releases": [], "store": [], "markers": {}}


def claimed(**more: Any) -> dict[str, Any]:
    return {"lock": {"probe": probe()}, **more}


def new_run(*targets: Target) -> Run:
    return Run(ENV, "deploy", lambda host, message: None, list(targets))


def test_a_host_that_fails_keeps_its_exception_and_the_others_go_on() -> None:
    error = HostError("app1", "unreachable: Connection refused", fix="check that sshd runs there")
    with new_run(FakeTarget("app1", probe=error), FakeTarget("app2", probe=probe())) as run:
        run.probe()
        summary = run.summary(None)

    assert run.results["app1"].error is error
    assert run.results["app2"].serves == OLD and not run.results["app2"].failed
    assert [h.state for h in summary.hosts] == [HostState.FAILED, HostState.PENDING]
    shown = render_summary(summary)
    assert "  app1: unreachable: Connection refused\n  fix: check that sshd runs there" in shown
    assert "app1: app1" not in shown


def test_a_surprise_in_one_host_is_kept_and_shown_by_its_type() -> None:
    with new_run(FakeTarget("app1", probe=KeyError("current")), FakeTarget("app2", probe=probe())) as run:
        run.probe()
    assert isinstance(run.results["app1"].error, KeyError)
    assert "  app1: unexpected KeyError: 'current'" in render_summary(run.summary(None))


def test_each_state_prints_as_the_summary_word() -> None:
    switched = {"switched": True, "switched_back": False, "previous": OLD}
    back = {"switched": True, "switched_back": True, "previous": OLD, "restart": 3, "restart_output": "boom"}
    one, two = FakeTarget("app1", switch=switched), FakeTarget("app2", switch=back)
    with new_run(one, two) as run:
        run.switch([one, two], lambda target: RELEASE)
    assert run.results["app1"].state is HostState.SWITCHED and run.results["app1"].result == "switched"
    assert run.results["app2"].state is HostState.SWITCHED_BACK and run.results["app2"].result == "switched back"
    assert run.results["app2"].serves == OLD
    shown = render_summary(run.summary(RELEASE))
    assert "app2: restart failed (exit 3), switched back to 0123456789ab: boom" in shown
    assert "MIXED" in shown  # app1 serves the new release, app2 the old one


def test_a_switch_that_fails_says_what_the_host_serves_now() -> None:
    failure = AgentFailure("app1", "switch", "restart timed out", {"current": RELEASE})
    target = FakeTarget("app1", switch=failure)
    with new_run(target) as run:
        run.switch([target], lambda _target: RELEASE)
    result = run.results["app1"]
    assert result.state is HostState.SWITCHED_THEN_FAILED and result.error is failure and result.serves == RELEASE


def test_an_interrupted_run_leaves_every_unfinished_host_not_switched_with_the_reason() -> None:
    with new_run(FakeTarget("app1"), FakeTarget("app2")) as run:
        run.results["app2"].state = HostState.SWITCHED
        run.interrupted()
    first = run.results["app1"]
    assert first.state is HostState.NOT_SWITCHED and first.reason == "interrupted"
    assert first.result == "not switched: interrupted" and first.failed
    assert run.results["app2"].state is HostState.SWITCHED and not run.results["app2"].failed


def test_a_refused_first_claim_claims_no_other_host_and_says_why() -> None:
    owner = {"user": "carol", "machine": "ci-7", "pid": 42, "since": "2026-01-02T03:04:05Z", "action": "deploy"}
    busy = AgentFailure("app1", "locked", "locked", {"owner": owner})
    first, second = FakeTarget("app1", lock=busy), FakeTarget("app2", **claimed())
    with new_run(first, second) as run:
        run.claim([second, first])
    assert "lock" not in second.calls
    shown = render_summary(run.summary(None))
    assert "app1: another deploy holds the lock (carol@ci-7 pid 42 since 2026-01-02T03:04:05Z (deploy))" in shown
    assert "app2: not locked, because app1 (taken first" in shown


def test_after_a_failure_every_claim_is_released_and_one_that_cannot_be_is_reported() -> None:
    hung = HostError("app2", "'abort' did not finish within 600 s: the host hangs", fix="check the host")
    first, second = FakeTarget("app1", **claimed()), FakeTarget("app2", **claimed(), abort=hung)
    with new_run(first, second) as run:
        run.claim([first, second])
        run.results["app2"].fail("health check failed")
        run.release_claims("1 host(s) failed staging", RELEASE)
    assert "abort" in first.calls and not run.results["app1"].claimed
    second_result = run.results["app2"]
    assert second_result.claimed and second_result.unreleased is hung
    shown = render_summary(run.summary(RELEASE))
    assert ("  app2: health check failed\n  its lock could not be released ('abort' did not finish within 600 s: "
            "the host hangs): once the host answers, deploy again with --break-lock") in shown


def test_a_release_that_fails_on_a_host_that_had_not_failed_is_that_hosts_error() -> None:
    refused = HostError("app1", "connection lost during 'abort'")
    target = FakeTarget("app1", **claimed(), abort=refused)
    with new_run(target) as run:
        run.claim([target])
        run.release_claims("interrupted", None)
    assert run.results["app1"].error is refused and run.results["app1"].claimed


def test_the_run_closes_every_target_even_when_a_step_raises() -> None:
    targets = [FakeTarget("app1"), FakeTarget("app2")]
    with pytest.raises(DeployError), new_run(*targets):
        raise DeployError("the release does not meet its own requirements")
    assert all(target.closed for target in targets)


def test_status_and_releases_name_a_host_that_could_not_be_read_once() -> None:
    error = HostError("app1", "unreachable: Connection refused")
    down = HostStatus("app1", error=error, problems=["unreachable: Connection refused"])
    shown = render_status([down, HostStatus("app2", release=RELEASE)], as_json=False)
    assert "app1: unreachable: Connection refused" in shown.splitlines()
    assert render_releases([down]) == "app1: unreachable: Connection refused"


def test_the_plan_names_a_host_it_cannot_plan_for_once() -> None:
    error = HostError("app1", "unreachable: Connection refused")
    plan = Plan("staging", RELEASE, [], [], [HostPlan("app1", error=error), HostPlan("app2", current=OLD)])
    shown = render_plan(plan)
    assert "app1: cannot plan: unreachable: Connection refused" in shown.splitlines()
    assert f"app2: {OLD} → {RELEASE}; send 0 wheels (0.0 MB)" in shown
    assert not plan.goes_ahead
    nobody = Plan("staging", None, [], [], [HostPlan("app1", error=error)])
    assert render_plan(nobody) == "app1: unreachable: Connection refused"
