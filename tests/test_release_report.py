"""What the status, releases and dry-run tables tell a user: a dirty build is marked, two
releases of one version and commit are told apart, and a plan claims no change it did not see."""

from __future__ import annotations

import re

from deploy.release.cache import Wheel
from deploy.release.inspect import HostStatus
from deploy.release.plan import HostPlan, Plan, Wave
from deploy.release.report import render_plan, render_releases, render_status

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def wheel(name: str, version: str, sha: str) -> Wheel:
    return Wheel(f"{name}-{version}-py3-none-any.whl", name, version, sha * 64, 1000)


def manifest(version: str, git: str, built_at: str) -> dict[str, object]:
    return {"app": {"name": "demoapp", "version": version}, "git": git, "built_at": built_at}


def test_the_status_table_marks_a_release_built_from_uncommitted_changes() -> None:
    statuses = [HostStatus("app1", release="aaaaaaaaaaaa", git=f"{COMMIT}+dirty"),
                HostStatus("app2", release="aaaaaaaaaaaa", git=COMMIT)]

    rows = {line.split()[0]: line for line in render_status(statuses, as_json=False).splitlines()}

    assert f"{COMMIT[:12]}+dirty" in rows["app1"].split()
    assert COMMIT[:12] in rows["app2"].split() and "+dirty" not in rows["app2"]


def test_releases_of_one_version_and_commit_are_told_apart_by_their_labelled_release_id() -> None:
    host = HostStatus("app1", release="bbbbbbbbbbbb", previous="aaaaaaaaaaaa", releases=[
        {"release": "aaaaaaaaaaaa", "manifest": manifest("1.0", f"{COMMIT}+dirty", "2026-01-01T10:00:00Z")},
        {"release": "bbbbbbbbbbbb", "manifest": manifest("1.0", f"{COMMIT}+dirty", "2026-01-01T11:00:00Z")},
    ])

    lines = render_releases([host]).splitlines()

    assert lines[0].split()[0] == "release"  # the column `rollback --to` takes is named
    rows = [line.split() for line in lines if re.match(r"^  [0-9a-f]{12}  ", line)]
    assert [row[0] for row in rows] == ["bbbbbbbbbbbb", "aaaaaaaaaaaa"]
    assert [row[3] for row in rows] == [f"{COMMIT[:12]}+dirty"] * 2
    assert [row[-1] for row in rows] == ["live", "previous"]


def test_a_plan_names_a_rebuilt_wheel_and_never_claims_a_change_it_did_not_see() -> None:
    alpha, app, rebuilt = wheel("alpha", "1.0", "a"), wheel("demoapp", "1.0", "b"), wheel("demoapp", "1.0", "c")
    hosts = [
        HostPlan("app1", current="aaaaaaaaaaaa", before={"alpha": alpha, "demoapp": app}, send=[rebuilt]),
        HostPlan("app2", current="aaaaaaaaaaaa", before={"alpha": alpha, "demoapp": rebuilt}, send=[]),
    ]
    plan = Plan("staging", "cccccccccccc", [alpha, rebuilt], [], hosts)

    text = render_plan(plan)

    assert ("app1: aaaaaaaaaaaa → cccccccccccc; send 1 wheel (0.0 MB)\n"
            "  ~ demoapp 1.0: another build of the same version") in text
    assert "app2: aaaaaaaaaaaa → cccccccccccc; send 0 wheels (0.0 MB)\n  (the same wheels as live)" in text
    assert "changed" not in text


def test_a_plan_in_waves_names_each_waves_hosts_the_failure_budget_and_the_run_once_host() -> None:
    hosts = [HostPlan(name, current="aaaaaaaaaaaa") for name in ("app1", "app2", "app3")]
    waves = [Wave(1, ["app1"]), Wave("50%", []), Wave("rest", ["app2", "app3"])]
    plan = Plan("staging", "cccccccccccc", [], [], hosts, waves, "app1", 1)

    lines = render_plan(plan).splitlines()

    assert lines[-5:] == ["waves (each checked before the next; 1 host may fail):",
                          "  wave 1 (1): app1",
                          '  wave 2 ("50%"): no host to switch',
                          '  wave 3 ("rest"): app2, app3',
                          "run-once runs on app1, after every host staged and before any switches"]


def test_a_plan_without_waves_or_hooks_says_nothing_of_them() -> None:
    plan = Plan("staging", "cccccccccccc", [], [], [HostPlan("app1", current="aaaaaaaaaaaa")])
    assert "wave" not in render_plan(plan) and "run-once" not in render_plan(plan)
