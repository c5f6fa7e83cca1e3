"""Waves, failure budgets and release hooks over fake hosts that keep state as the agent does
(what `current` points at, the claim, deploy.log): which hosts switch in which wave, which go
back when a wave fails, and that run-once runs once, on the canary, before any switch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy import config
from deploy.config import Config, Environment, Host
from deploy.errors import ConfigError, HostError
from deploy.portions import allowed_failures, wave_sizes
from deploy.release import engine
from deploy.release.build import Build
from deploy.release.engine import Job
from deploy.release.report import render_summary
from deploy.release.run import HostState, Run, Summary
from deploy.release.waves import waves_of
from deploy.remote.target import Target
from deploy.settings import SETTINGS, flag_value

NEW, OLD = "a1b2c3d4e5f6", "0123456789ab"
NAMES = ("app1", "app2", "app3", "app4", "app5")
ENV = Environment("staging", hosts=tuple(Host("deploy", name, 22) for name in NAMES), path="/srv/app")
STEPS = (engine.skip_live, engine.claim, engine.stage, engine.gate, engine.run_once, engine.switch_in_waves)


class AgentLike(Target):
    """A host that answers as the agent would: it switches `current`, runs the hooks (exit codes as
    told), keeps or gives back its claim, and logs a line per switch or abort."""

    def __init__(self, name: str, post_switch_exit: int = 0, run_once_exit: int = 0) -> None:
        super().__init__(ENV)
        self.name = name
        self.current: str | None = OLD
        self.held = False
        self.post_switch_exit = post_switch_exit
        self.run_once_exit = run_once_exit
        self.calls: list[str] = []
        self.log: list[dict[str, Any]] = []
        self.switch_error: Exception | None = None

    def call(self, op: str, **request: Any) -> dict[str, Any]:
        self.calls.append(op)
        if op == "lock":
            self.held = True
            return {"probe": {"current": self.current, "previous": None, "releases": [OLD], "store": [],
                              "markers": {}}}
        if op == "hook":
            return {"exit": self.run_once_exit, "output": f"ran {request['command']} in {request['release']}"}
        if op == "switch" and self.switch_error is not None:
            raise self.switch_error
        if op == "switch":
            return self._switch(request)
        if op in ("abort", "unlock"):
            self.held = False
            if op == "abort":
                self.log.append(request["log"])
        return {}

    def _switch(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.held, f"{self.name}: switched without the claim"
        before, self.current = self.current, request["release"]
        reply: dict[str, Any] = {"previous": before, "switched": before != self.current, "restart": None,
                                 "switched_back": False, "pruned": []}
        entry = dict(request["log"])
        if request.get("post_switch"):
            reply["post_switch"] = entry["post_switch"] = {"exit": self.post_switch_exit, "output": "probe said no"
                                                           if self.post_switch_exit else "200 OK"}
            if self.post_switch_exit:
                self.current, reply["switched_back"] = before, True
        self.log.append(entry)
        self.held = request.get("hold") is True
        return reply

    def close(self) -> None:
        pass


def deploy(tmp_path: Path, hosts: list[AgentLike], **settings: Any) -> Summary:
    env = Environment("staging", hosts=ENV.hosts[: len(hosts)], path="/srv/app", keep_alive=0.0, **settings)
    run = Run(env, "deploy", lambda host, message: None, list(hosts))
    for target in run.targets:
        run.results[target.name].probe = {"current": OLD, "store": [], "markers": {}}
    job = Job(Config(root=tmp_path, requirements=tmp_path / "requirements"), env, "deploy", run.progress, run=run,
              release=NEW)
    job.built = Build(NEW, [], "", {"layer": "prod.txt"}, {})
    return engine.execute(job, STEPS)


def fleet(*failing: str, count: int = 5) -> list[AgentLike]:
    return [AgentLike(name, post_switch_exit=7 if name in failing else 0) for name in NAMES[:count]]


def serving(hosts: list[AgentLike]) -> dict[str, str | None]:
    return {host.name: host.current for host in hosts}


def test_percentages_round_up_for_waves_and_down_for_the_failure_budget() -> None:
    # "25%" of 5 hosts is 2 hosts switched by the end of that wave; "10%" of 5 allows no failure.
    assert wave_sizes([1, "25%", "100%"], 5) == [(1, 1), ("25%", 1), ("100%", 3)]
    assert wave_sizes(["25%"], 5) == [("25%", 2), ("rest", 3)]
    assert wave_sizes([2, 2 + 1, "40%"], 5) == [(2, 2), (3, 1), ("40%", 0), ("rest", 2)]
    assert wave_sizes([], 5) == [("rest", 5)]
    assert [allowed_failures(value, 5) for value in ("10%", "20%", "39%", "40%", 3)] == [0, 1, 1, 2, 3]
    assert allowed_failures("10%", 10) == 1


def test_waves_split_the_hosts_in_the_environments_order() -> None:
    env = Environment("staging", hosts=ENV.hosts, path="/srv/app", waves=(1, "50%"))
    hosts: list[Target] = list(fleet())
    assert [[t.name for t in wave] for wave in waves_of(env, hosts)] == [["app1"], ["app2", "app3"],
                                                                           ["app4", "app5"]]


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("waves", [0, "50%"], 'a list of counts (1 or more) and percentages such as "25%" (0 is neither)'),
    ("waves", ["150%"], "a list of counts (1 or more) and percentages such as \"25%\" ('150%' is neither)"),
    ("waves", ["50%", "25%"], 'a list of counts (1 or more) and percentages such as "25%"; each wave reaches '
                              "further than the one before (they count the hosts switched so far)"),
    ("max_failures", "ten", 'a whole number, 0 or more, or a percentage of the hosts such as "10%"'),
    ("max_failures", "-2", "a whole number, 0 or more"),
    ("on_wave_failure", "sometimes", '"rollback" or "keep"'),
])
def test_a_bad_fleet_setting_is_one_line_naming_the_flag_and_what_it_takes(key: str, value: object,
                                                                           expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        flag_value(key, value)
    assert str(caught.value).startswith(f"--{SETTINGS[key].key} ")
    assert str(caught.value).endswith(f": expected {expected}") and "\n" not in str(caught.value)


def test_a_bad_waves_value_in_pyproject_names_the_table_key_and_value(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.deploy.environments.review]\nwaves = [1, "25%", 0]\n')
    with pytest.raises(ConfigError) as caught:
        config.load(tmp_path)
    assert str(caught.value) == ('pyproject.toml [tool.deploy.environments.review]: waves = [1, "25%", 0]: expected '
                                 'a list of counts (1 or more) and percentages such as "25%" (0 is neither)')


def test_flags_take_waves_comma_separated_and_a_percentage_budget() -> None:
    assert flag_value("waves", "1,25%,100%") == (1, "25%", "100%")
    assert flag_value("max_failures", "10%") == "10%" and flag_value("max_failures", "2") == 2
    assert flag_value("on_wave_failure", "keep") == "keep"


def test_a_post_switch_failure_in_the_second_wave_puts_every_switched_host_back(tmp_path: Path) -> None:
    hosts = fleet("app3")
    summary = deploy(tmp_path, hosts, waves=(1, "60%"), post_switch="curl -fsS http://127.0.0.1:8000/health")

    assert serving(hosts) == dict.fromkeys(NAMES, OLD)
    results = {h.host: h for h in summary.hosts}
    assert results["app1"].state is HostState.SWITCHED_BACK and results["app2"].state is HostState.SWITCHED_BACK
    assert results["app1"].result.startswith("switched back: wave 2 failed (app3; max-failures 0)")
    assert results["app3"].failed and "post-switch check failed (exit 7)" in render_summary(summary)
    assert {results[n].state for n in ("app4", "app5")} == {HostState.NOT_SWITCHED}
    assert all("switch" not in hosts[i].calls for i in (3, 4))  # the third wave never started
    assert not any(host.held for host in hosts) and not summary.ok
    shown = render_summary(summary)
    assert "waves: 1: app1; 2: app2, app3" in shown and "app3: post-switch exit 7: probe said no" in shown


def test_with_keep_the_waves_that_passed_stay_and_the_summary_says_mixed(tmp_path: Path) -> None:
    hosts = fleet("app3")
    summary = deploy(tmp_path, hosts, waves=(1, "60%"), post_switch="probe", on_wave_failure="keep")

    assert serving(hosts) == {"app1": NEW, "app2": OLD, "app3": OLD, "app4": OLD, "app5": OLD}
    assert {h.host: h.state for h in summary.hosts}["app2"] is HostState.SWITCHED_BACK
    assert "MIXED" in render_summary(summary) and not any(host.held for host in hosts)


def test_a_post_switch_failure_within_max_failures_puts_only_that_host_back(tmp_path: Path) -> None:
    hosts = fleet("app2")
    summary = deploy(tmp_path, hosts, waves=(1, "60%"), post_switch="probe", max_failures="20%")

    assert serving(hosts) == {"app1": NEW, "app2": OLD, "app3": NEW, "app4": NEW, "app5": NEW}
    assert [h.host for h in summary.hosts if h.failed] == ["app2"] and not any(host.held for host in hosts)
    # Each host's deploy.log line carries the check's outcome.
    assert hosts[1].log[-1]["post_switch"] == {"exit": 7, "output": "probe said no"}
    assert hosts[0].log[-1]["post_switch"]["exit"] == 0


def test_ten_percent_of_five_hosts_allows_no_failure(tmp_path: Path) -> None:
    hosts = fleet("app2")
    deploy(tmp_path, hosts, waves=(1, "60%"), post_switch="probe", max_failures="10%")
    assert serving(hosts) == dict.fromkeys(NAMES, OLD)


def test_run_once_runs_once_on_the_canary_before_any_host_switches(tmp_path: Path) -> None:
    hosts = fleet()
    summary = deploy(tmp_path, hosts, waves=(2,), run_once="python manage.py migrate")

    assert [host.calls.count("hook") for host in hosts] == [1, 0, 0, 0, 0]
    assert hosts[0].calls.index("hook") < hosts[0].calls.index("switch")
    assert summary.ok and serving(hosts) == dict.fromkeys(NAMES, NEW)
    assert hosts[0].log[-1]["run_once"] == {"exit": 0, "output": f"ran python manage.py migrate in {NEW}"}
    assert f"app1: run-once exit 0: ran python manage.py migrate in {NEW}" in render_summary(summary)


def test_a_failed_run_once_switches_nobody_and_releases_every_claim(tmp_path: Path) -> None:
    hosts = fleet(count=3)
    hosts[0].run_once_exit = 3
    summary = deploy(tmp_path, hosts, run_once="migrate")

    assert serving(hosts) == dict.fromkeys(NAMES[:3], OLD) and not any("switch" in h.calls for h in hosts)
    assert {h.host: h.result for h in summary.hosts} == {
        "app1": "failed", **dict.fromkeys(("app2", "app3"), "not switched: run-once failed on app1")}
    assert "run-once failed (exit 3)" in render_summary(summary) and not any(host.held for host in hosts)
    assert hosts[0].log[-1]["run_once"]["exit"] == 3


def test_one_wave_without_hooks_keeps_no_claim_after_the_switch(tmp_path: Path) -> None:
    hosts = fleet(count=2)
    summary = deploy(tmp_path, hosts)
    assert summary.ok and serving(hosts) == dict.fromkeys(NAMES[:2], NEW)
    assert all("unlock" not in host.calls for host in hosts)  # no extra round trip when nothing can go back


def test_a_failed_switch_in_a_single_wave_without_checks_leaves_the_switched_hosts_as_before(tmp_path: Path) -> None:
    # Their claims were given back with the switch (nothing could put them back): the fleet is
    # MIXED, as it always was after such a failure, and the summary says so.
    hosts = fleet(count=3)
    hosts[2].switch_error = HostError("app3", "the connection went during the switch")
    summary = deploy(tmp_path, hosts)

    assert serving(hosts) == {"app1": NEW, "app2": NEW, "app3": OLD}
    assert [h.state for h in summary.hosts][:2] == [HostState.SWITCHED, HostState.SWITCHED]
    assert "MIXED" in render_summary(summary) and hosts[0].calls.count("switch") == 1
