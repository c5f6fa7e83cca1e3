"""Deploy's last steps: run-once, then the switch in waves, each gated by its hosts' post-switch
check before the next starts.

Every host was staged already (engine.stage) and the run holds every claim. The waves
(`waves`, deploy/portions.py) split the run's hosts in the environment's order; the first host of
the first wave is the canary, and runs `run-once`. While a later wave may still fail, each
switched host keeps its claim, so that the run can put it back. A wave fails when more hosts
failed in the run than `max-failures` allows; then by default (`on-wave-failure = "rollback"`)
every host this run switched goes back to the release it served, or with "keep" only the failed
wave's hosts do. The hosts of later waves are never switched and keep the new release staged.
"""

from __future__ import annotations

from typing import Any

from deploy.config import Environment
from deploy.errors import DeployError, HostError
from deploy.portions import allowed_failures, wave_sizes
from deploy.release.results import Hook, HostState
from deploy.release.run import Run
from deploy.remote.target import Target, host_output
from deploy.render import inert


def waves_of(env: Environment, targets: list[Target]) -> list[list[Target]]:
    """The hosts in waves, in the environment's order (a wave may be empty: see wave_sizes)."""
    waves, at = [], 0
    for _value, size in wave_sizes(env.waves, len(targets)):
        waves.append(targets[at : at + size])
        at += size
    return waves


def budget(run: Run) -> int:
    """How many of the run's hosts may fail while the others still switch (max-failures)."""
    return allowed_failures(run.env.max_failures, len(run.targets))


def over_budget(run: Run) -> bool:
    return sum(r.failed for r in run.results.values()) > budget(run)


def canary(run: Run, switch_to: dict[str, str]) -> Target | None:
    """The host that runs run-once: the first of the first wave among those about to switch."""
    going = [t for wave in waves_of(run.env, run.targets) for t in wave if t.name in switch_to]
    return going[0] if going else None


def run_once(run: Run, switch_to: dict[str, str]) -> bool:
    """The release's one-off command (migrations), on the canary, in the staged release, before any
    host switches. False when it failed: then nobody switches, and every claim is given back."""
    command = run.env.run_once
    host = canary(run, switch_to) if command else None
    if host is None or command is None:
        return True
    release = switch_to[host.name]
    result = run.results[host.name]
    run.progress(host.name, "run-once")
    try:
        reply = host.call("hook", token=run.token, release=release, command=command, timeout=run.env.hook_timeout)
        hook = Hook("run-once", reply["exit"], reply["output"])
        result.hooks.append(hook)
        if not hook.ok:
            result.fail(f"run-once failed (exit {hook.exit}) in release {release}: "
                        f"{host_output(hook.output or '(no output)')}",
                        fix=f"fix what {inert(command, 80)} needs, then deploy again (every host keeps the "
                            "release staged)")
    except DeployError as exc:
        result.error = exc
    if not result.failed:
        return True
    reason = f"run-once failed on {host.name}"
    run.not_switched(reason)
    _release(run, [host], reason, release, extra=_hooks(result.hooks))
    run.release_claims(reason, release)
    return False


def switch_in_waves(run: Run, switch_to: dict[str, str]) -> bool:
    """Switch wave after wave; at the first wave over the budget (or Ctrl-C), put hosts back and
    return False. Every claim is given back either way."""
    env = run.env
    waves = [[t for t in wave if t.name in switch_to] for wave in waves_of(env, run.targets)]
    # A claim is kept only while a later step may still put the host back.
    hold = sum(1 for wave in waves if wave) > 1 or env.post_switch is not None
    reached: list[Target] = []
    for number, wave in enumerate(waves, 1):
        if not wave:
            continue
        for target in wave:
            run.results[target.name].wave = number
        if len(waves) > 1:
            run.progress("*", f"wave {number} of {len(waves)}: {', '.join(t.name for t in wave)}")
        run.switch(wave, lambda target: switch_to[target.name], hold=hold, post_switch=env.post_switch,
                   log=lambda target: dict(run.log_entry(switch_to[target.name]),
                                           **_hooks(run.results[target.name].hooks)))
        reached += wave
        if run.cancelled.is_set() or over_budget(run):
            _wave_failed(run, number, wave, reached, waves[number:], next(iter(switch_to.values())))
            return False
    _unlock(run, [t for t in reached if run.results[t.name].claimed])
    return True


def _wave_failed(run: Run, number: int, wave: list[Target], reached: list[Target], later: list[list[Target]],
                 release: str) -> None:
    """Put hosts back (those that kept their claim: with one wave and no post-switch check, none
    did, and a failed switch leaves the fleet MIXED, as the summary says); never start the rest."""
    env = run.env
    interrupted = run.cancelled.is_set()
    failed = ", ".join(r.host for r in run.results.values() if r.failed)
    reason = "interrupted" if interrupted else f"wave {number} failed ({failed}; max-failures {env.max_failures})"
    switched = [t for t in reached if run.results[t.name].state is HostState.SWITCHED and run.results[t.name].claimed]
    back = switched if env.on_wave_failure == "rollback" else [t for t in switched if t in wave]
    run.progress("*", f"{reason}: switching {len(back)} host(s) back")
    run.cancelled.clear()  # putting hosts back must reach every one of them, even after Ctrl-C
    run.each(back, lambda target: _switch_back(run, target, reason))
    _unlock(run, [t for t in reached if run.results[t.name].claimed])
    for target in (t for rest in later for t in rest):
        result = run.results[target.name]
        if not result.failed:
            result.state, result.reason = HostState.NOT_SWITCHED, reason
    run.release_claims(reason, release)
    if interrupted:
        run.cancelled.set()


def _switch_back(run: Run, target: Target, reason: str) -> None:
    """Back to the release this host served before the run (it keeps the new one staged)."""
    result = run.results[target.name]
    before = result.probe.get("current")
    if before is None:
        result.reason = f"{reason}; it served no release before, so it stays on this one"
        _release(run, [target], reason, result.release, extra={})
        return
    fix = f"check the host, then: invoke rollback --env {run.env.name} --hosts {target.name}"
    try:
        reply = target.call("switch", token=run.token, release=before, restart=run.env.restart,
                            keep=run.env.keep_releases, timeout=run.env.command_timeout,
                            log=dict(run.log_entry(before), reason=reason))
    except DeployError as exc:
        result.serves, result.state, result.claimed = None, HostState.UNKNOWN, False
        result.fail(f"switching back to {before} after {reason} failed: {_text(exc)}", fix=fix)
        return
    result.claimed = False
    result.state, result.reason = HostState.SWITCHED_BACK, reason
    result.serves = before
    if reply["switched_back"]:  # the old release's restart failed, so the agent kept the new one
        result.serves = reply["previous"]
        result.fail(f"switching back to {before} after {reason}: its restart failed (exit {reply['restart']}), "
                    f"so it serves {reply['previous']}", fix=fix)


def _unlock(run: Run, targets: list[Target]) -> None:
    """Give back the claims switched hosts kept (their deploy.log line is written already)."""

    def step(target: Target) -> None:
        target.call("unlock", token=run.token)
        run.results[target.name].claimed = False

    run.each(targets, step)


def _release(run: Run, targets: list[Target], reason: str, release: str | None, extra: dict[str, Any]) -> None:
    """Give back a claim with its own deploy.log line (`extra`: e.g. the run-once hook's outcome)."""

    def step(target: Target) -> None:
        target.call("abort", token=run.token, release=release, reason=reason,
                    log=dict(run.log_entry(release), **extra))
        run.results[target.name].claimed = False

    run.each(targets, step)


def _hooks(hooks: list[Hook]) -> dict[str, Any]:
    """The hooks a host ran, as its deploy.log line records them (the agent adds post-switch's)."""
    return {hook.name.replace("-", "_"): {"exit": hook.exit, "output": hook.output} for hook in hooks}


def _text(exc: DeployError) -> str:
    return exc.detail if isinstance(exc, HostError) else exc.message
