"""Deploy and rollback across hosts, as lists of steps: stage everywhere, switch only when enough
hosts staged.

Each step gets the `Job` and returns None to go on or a `Summary` to stop, as nox's workflow
does. Deploy is: verify → probe (one round trip) → pick the hosts' interpreter → build (the
app's wheel was built while the hosts were probed) → check dependencies (`pip check`, once,
locally) → skip hosts that serve the release already → claim (the first host alone, as a gate,
so two racing deploys cannot each hold half the hosts; then the rest at once) → stage (send the
missing wheels, then one round trip: store check, venv, offline hash-checked install, health
check) → gate (enough hosts staged?) → run-once (one host) → switch in waves (one round trip
per host: rename, restart, post-switch check or switch back, prune, log; release/waves.py).
Promote (promote.py) is the same list with the fetch of a live release in place of verify and
build. Rollback is: check the id → claim → choose → switch.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from deploy.config import Config, Environment
from deploy.errors import DeployError, HostError
from deploy.lock.verify import verify as verify_locks
from deploy.portions import allowed_failures
from deploy.release import depcheck, waves
from deploy.release.app import check_app
from deploy.release.build import Build, is_release_id, prebuild_app
from deploy.release.build import build as build_release
from deploy.release.cache import Wheel, check_wheel
from deploy.release.platforms import Interpreter, agree
from deploy.release.run import HostState, Progress, Run, Summary
from deploy.remote.connect import start_keeper
from deploy.remote.target import AgentFailure, Target
from deploy.render import inert, plural


class Job:
    """What the steps of one deploy, promote or rollback share. The run over the hosts is opened
    when a step first needs it, so a refused verify contacts no host (`run`: one opened already)."""

    def __init__(self, config: Config, env: Environment, action: str, progress: Progress, *,
                 break_claim: bool = False, release: str | None = None, run: Run | None = None) -> None:
        self.config = config
        self.env = env
        self.action = action
        self.progress = progress
        self.break_claim = break_claim
        self.release = release  # what the summary names
        self.built: Build | None = None
        self.interpreter = Interpreter.here()
        self.app: Future[None] | None = None  # the app's wheel, built while the hosts are probed
        self.end_build = threading.Event()  # set when the run stops: a build under way is ended
        self.staged: list[Target] = []
        self.switch_to: dict[str, str] = {}  # host -> the release it switches to
        self.holding = False  # from the claim on: Ctrl-C releases the claims before stopping
        self.kept: Path | None = None
        self.stack = contextlib.ExitStack()
        self.background = ThreadPoolExecutor(max_workers=1)
        self._run = run

    @property
    def run(self) -> Run:
        if self._run is None:
            self._run = self.stack.enter_context(Run.over(self.config, self.env, self.action, self.progress,
                                                          break_claim=self.break_claim, kept=self.kept))
        return self._run

    def ready(self) -> Build:
        """The release to ship, once a step has built or fetched it."""
        if self.built is None:
            raise RuntimeError("a step needs the release before any step made it")
        return self.built

    def stop(self) -> Summary:
        return self.run.summary(self.release)

    def interrupted(self) -> Summary:
        """Ctrl-C: release every claim, say which hosts did not finish, stop."""
        self.run.release_claims("interrupted", self.built.release if self.built else None)
        self.run.interrupted()
        return self.stop()


Step = Callable[[Job], "Summary | None"]


def execute(job: Job, steps: Sequence[Step]) -> Summary:
    """Run `steps` in order until one returns a Summary."""
    job.kept = start_keeper(job.env, job.config.root)  # before any thread: the keeper is forked, not started afresh
    with job.stack, job.background:
        try:
            for step in steps:
                try:
                    done = step(job)
                except KeyboardInterrupt:
                    if not job.holding:
                        raise
                    job.run.cancelled.set()
                    done = job.interrupted()
                if done is not None:
                    return done
            return job.stop()
        finally:
            # A host refused (a wrong key, no identity) or Ctrl-C: end the build under way instead of
            # waiting for it; the pool then waits only for its process to be gone.
            job.end_build.set()
            if job.app is not None:
                job.app.cancel()


def verify(job: Job) -> Summary | None:
    verify_locks(job.config)
    check_app(job.config)  # a release without the app is refused before any host is contacted
    job.app = job.background.submit(prebuild_app, job.config, lambda line: job.progress("build", line),
                                    job.end_build)
    return None


def probe(job: Job) -> Summary | None:
    """One round trip to every host. When more hosts failed it (a wrong key, no answer) than
    max-failures allows, nobody could switch: stop now, and the app's build under way with it."""
    run = job.run
    run.probe()
    if run.cancelled.is_set():
        return job.interrupted()
    failed = [r for r in run.results.values() if r.failed]
    if not run.healthy() or len(failed) > allowed_failures(job.env.max_failures, len(run.targets)):
        for result in run.results.values():
            if not result.failed:
                result.state, result.reason = HostState.NOT_SWITCHED, f"{len(failed)} host(s) could not be probed"
        return job.stop()
    return None


def pick_interpreter(job: Job) -> Summary | None:
    job.interpreter = check_interpreters(job.run)
    return None


def build(job: Job) -> Summary | None:
    if job.app is not None:
        job.app.result()  # the app's wheel, built while the hosts were probed (or its error)
    job.built = build_release(job.config, log=lambda line: job.progress("build", line), target=job.interpreter,
                              stop=job.end_build)
    job.release = job.built.release
    return None


def check_dependencies(job: Job) -> Summary | None:
    """A dependency the release lacks stops the deploy before any host is claimed."""
    built = job.ready()
    job.progress("build", f"release {built.release}: {len(built.wheels)} wheels")
    found = dependency_problems(job.run, built)
    if found:
        raise DeployError(
            f"release {built.release} does not meet its own packages' requirements (as pip check would say):\n  "
            + "\n  ".join(found),
            fix=f"add them to {str(built.manifest['layer']).removesuffix('.txt')}.in (for the app: to its "
                "dependencies, too), then run: nox -s lock",
        )
    return None


def skip_live(job: Job) -> Summary | None:
    built, run = job.ready(), job.run
    for target in run.healthy():
        result = run.results[target.name]
        result.release = built.release
        if result.probe["current"] == built.release:
            result.state = HostState.UNCHANGED
            job.progress(target.name, "already live: nothing to do")
        else:
            job.staged.append(target)
    return None if job.staged else job.stop()


def claim(job: Job) -> Summary | None:
    job.holding = True
    job.run.claim(job.staged)
    job.staged = [t for t in job.staged if job.run.results[t.name].claimed]
    return None


def stage(job: Job) -> Summary | None:
    built = job.ready()
    job.run.each(job.staged, lambda target: _stage(job.run, target, built))
    return None


def gate(job: Job) -> Summary | None:
    """Switch only when no more hosts failed than max-failures allows, and no Ctrl-C came."""
    run, built = job.run, job.ready()
    failed = [r for r in run.results.values() if r.failed]
    if run.cancelled.is_set() or waves.over_budget(run):
        reason = "interrupted" if run.cancelled.is_set() else f"{len(failed)} host(s) failed staging"
        run.not_switched(reason)
        run.release_claims(reason, built.release)
        if run.cancelled.is_set():
            run.interrupted()
        return job.stop()
    job.switch_to = {t.name: built.release for t in job.staged if not run.results[t.name].failed}
    return None


def switch(job: Job) -> Summary | None:
    run = job.run
    run.switch([t for t in run.targets if t.name in job.switch_to], lambda target: job.switch_to[target.name])
    run.release_claims("switch failed", None)  # only hosts whose switch failed still hold one
    return job.interrupted() if run.cancelled.is_set() else job.stop()


def run_once(job: Job) -> Summary | None:
    """The release's run-once command, on one host, before any host switches (release/waves.py)."""
    return None if waves.run_once(job.run, job.switch_to) else job.stop()


def switch_in_waves(job: Job) -> Summary | None:
    """Switch wave after wave, each gated by its post-switch checks (release/waves.py)."""
    waves.switch_in_waves(job.run, job.switch_to)
    if job.run.cancelled.is_set():
        return job.interrupted()
    job.run.release_claims("switch failed", None)  # only hosts whose switch failed still hold one
    return job.stop()


DEPLOY: tuple[Step, ...] = (verify, probe, pick_interpreter, build, check_dependencies, skip_live, claim, stage,
                            gate, run_once, switch_in_waves)


def deploy(config: Config, env: Environment, *, progress: Progress, break_claim: bool = False) -> Summary:
    """Build a release once and ship it to every host of `env`."""
    return execute(Job(config, env, "deploy", progress, break_claim=break_claim), DEPLOY)


def dependency_problems(run: Run, built: Build) -> list[str]:
    """`pip check` for the release, once, here, for every marker environment the hosts report."""
    environments = {json.dumps(run.results[t.name].probe["markers"], sort_keys=True) for t in run.healthy()}
    files = [built.file(w) for w in built.wheels]
    return sorted({problem for text in environments for problem in depcheck.problems(files, json.loads(text))})


def check_interpreters(run: Run) -> Interpreter:
    """The interpreter the release is built for: the hosts'. A host unlike the rest fails."""
    groups = agree((t.name, Interpreter.from_probe(run.results[t.name].probe)) for t in run.healthy())
    if not groups:
        return Interpreter.here()
    chosen = max(groups, key=lambda found: len(groups[found]))
    for other, hosts in groups.items():
        for host in hosts if other != chosen else []:
            run.results[host].fail(f"runs {other.describe()}, but the other hosts run {chosen.describe()}: one "
                                   "release cannot serve both; put them in separate environments")
    return chosen


def _stage(run: Run, target: Target, built: Build) -> None:
    result = run.results[target.name]
    store = set(result.probe["store"])
    wanted = built.wheels
    for attempt in range(2):
        missing = [w for w in dict.fromkeys(wanted) if w.sha256 not in store]
        if missing:
            size = sum(w.size for w in missing)
            run.progress(target.name, f"sending {plural(len(missing), 'wheel')} ({size / 1e6:.1f} MB)")
            _send(run, target, built, missing)
        run.progress(target.name, "installing")
        try:
            target.call("stage", token=run.token, release=built.release, manifest=built.manifest,
                        lock=built.lock_text, healthcheck=run.env.healthcheck, timeout=run.env.command_timeout)
            result.state = HostState.STAGED
            return
        except AgentFailure as exc:
            if exc.kind == "corrupt" and attempt == 0:
                bad = set(exc.extra.get("files", []))
                run.progress(target.name, f"store had corrupt or missing wheels ({', '.join(sorted(bad))}): re-sending")
                store -= {w.sha256 for w in wanted if w.filename in bad}
                continue
            if exc.kind == "disk-full":
                raise HostError(target.name, f"disk full while staging ({exc.detail}); current release unchanged",
                                fix="free disk space on the host, then deploy again") from exc
            raise HostError(target.name, f"{exc.detail}; current release unchanged", fix=exc.fix) from exc


def _send(run: Run, target: Target, built: Build, wheels: list[Wheel]) -> None:
    for wheel in wheels:
        local = built.file(wheel)
        check_wheel(local)
        target.put(local, f"{run.env.path}/wheels/.incoming/{wheel.sha256}")


def check_release_id(job: Job) -> Summary | None:
    """Checked before any host is contacted: the id becomes a path on every host."""
    to = job.release
    if to is not None and not is_release_id(to):
        raise DeployError(f"--to {inert(to, 40)}: not a release id (12 hex digits, as `invoke releases` shows)",
                          fix=f"run: invoke releases --env {job.env.name}, then pass one of the ids it lists")
    return None


def claim_everywhere(job: Job) -> Summary | None:
    job.holding = True
    job.run.claim(job.run.targets)  # the claim's reply carries what probe would say: one round trip fewer
    return None


def choose(job: Job) -> Summary | None:
    """Each host's release to roll back to: --to, or its previous one; it must be on the host."""
    run = job.run
    for target in run.targets:
        result = run.results[target.name]
        if result.failed or run.cancelled.is_set():
            continue
        wanted = job.release or result.probe["previous"]
        if not wanted:
            result.fail("no previous release to roll back to")
        elif wanted not in result.probe["releases"]:
            have = ", ".join(result.probe["releases"]) or "none"
            result.fail(f"release {wanted} is not on this host (it has: {have})")
        else:
            job.switch_to[target.name] = wanted
    if run.cancelled.is_set():
        return job.interrupted()
    if any(r.failed for r in run.results.values()):
        run.release_claims("refused", None)  # a rollback makes no release: abort has nothing to clear
        return job.stop()
    return None


ROLLBACK: tuple[Step, ...] = (check_release_id, claim_everywhere, choose, switch)


def rollback(config: Config, env: Environment, *, to: str | None, progress: Progress,
             break_claim: bool = False) -> Summary:
    """Switch every host of `env` back to its previous release, or to `to`."""
    return execute(Job(config, env, "rollback", progress, break_claim=break_claim, release=to), ROLLBACK)
