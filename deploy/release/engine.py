"""Deploy and rollback across hosts: stage everywhere, switch only when enough hosts staged.

Per host the steps are: probe (one round trip), lock (the first host alone as a gate, so two
racing deploys cannot each hold half the hosts; then the rest at once), send missing wheels,
stage (one round trip: store check, venv, offline hash-checked install, health check; the
dependencies were checked once, locally, before any lock), switch (one round trip: rename,
restart or switch back, prune, log, unlock). Results are gathered per host, as Fabric's
GroupResult does, instead of dying at the first failure. The app's wheel is built while the
hosts are probed.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from deploy.config import Config, Environment
from deploy.errors import DeployError, HostError
from deploy.lock.verify import verify
from deploy.release import depcheck
from deploy.release.build import Build, Wheel, check_wheel, is_release_id, prebuild_app
from deploy.release.build import build as build_release
from deploy.release.platforms import Interpreter, agree
from deploy.remote.connect import connect, start_keeper
from deploy.remote.target import AgentFailure, Target, host_output
from deploy.render import inert

Progress = Callable[[str, str], None]


@dataclass
class HostResult:
    host: str
    release: str | None = None
    result: str = "pending"
    error: str | None = None
    seconds: float = 0.0
    bytes_sent: int = 0
    locked: bool = False
    serves: str | None = None  # the release this host's `current` points at, as last seen
    probe: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass
class Summary:
    action: str
    environment: str
    release: str | None
    hosts: list[HostResult]

    @property
    def ok(self) -> bool:
        return not any(h.failed for h in self.hosts)

    def mixed(self) -> dict[str, list[str]]:
        """Which hosts serve which release, when this run left them on different ones (or some
        switched and others' state is unknown); empty when they agree."""
        found: dict[str, list[str]] = {}
        for host in self.hosts:
            found.setdefault(host.serves or "unknown (see its problem)", []).append(host.host)
        switched = any(host.result.startswith("switched") for host in self.hosts)
        known = [release for release in found if is_release_id(release)]
        return found if len(known) > 1 or (switched and len(found) > 1) else {}


class Run:
    """One deploy or rollback of one environment: the targets, their results, Ctrl-C."""

    def __init__(self, config: Config, env: Environment, action: str, progress: Progress,
                 break_lock: bool = False) -> None:
        self.config = config
        self.env = env
        self.action = action
        self.progress = progress
        self.break_lock = break_lock
        self.token = secrets.token_hex(8)
        self.cancelled = threading.Event()
        self.targets = connect(env, config.root, sys.executable)
        self.results = {t.name: HostResult(t.name) for t in self.targets}
        # One pool for every step of the run: starting `parallel` threads per step cost a run with
        # kept connections about a tenth of its time. Idle workers end with the run (or at exit).
        self.pool = ThreadPoolExecutor(max_workers=env.parallel, thread_name_prefix="pinship-step")
        self.owner = {"user": getpass.getuser(), "machine": socket.gethostname(), "pid": os.getpid(),
                      "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "token": self.token,
                      "action": action}

    def each(self, targets: Iterable[Target], step: Callable[[Target], None]) -> None:
        """Run `step` on targets, `parallel` at a time; a failure is recorded on that host only."""

        def guarded(target: Target) -> None:
            result = self.results[target.name]
            if self.cancelled.is_set():
                result.error = result.error or "interrupted before this host was reached"
                return
            try:
                step(target)
            except DeployError as exc:
                result.error = str(exc)
            except Exception as exc:  # one host's surprise must not hide the others' results
                result.error = f"{target.name}: unexpected {type(exc).__name__}: {exc}"
            finally:
                result.bytes_sent = target.sent_bytes

        futures: list[Future[None]] = []
        try:
            futures += [self.pool.submit(guarded, t) for t in targets]
            # Short waits keep the main thread responsive to Ctrl-C.
            while wait(futures, timeout=0.1).not_done:
                pass
        except KeyboardInterrupt:
            self.cancelled.set()
            self.progress("*", "interrupted: finishing the steps under way, then releasing the locks")
            while True:
                try:
                    wait(futures)
                    break
                except KeyboardInterrupt:
                    continue

    def healthy(self) -> list[Target]:
        return [t for t in self.targets if not self.results[t.name].failed]

    def probe(self) -> None:
        def step(target: Target) -> None:
            self.progress(target.name, "connecting")
            result = self.results[target.name]
            result.probe = target.call("probe")
            result.serves = result.probe["current"]

        self.each(self.targets, step)

    def lock(self, targets: list[Target]) -> None:
        # The first host in name order is taken alone, as a gate: every deploy of the environment
        # takes it first, so the second of two racing deploys stops there holding nothing. The
        # other hosts are then locked all at once.
        ordered = sorted(targets, key=lambda t: t.name)
        if ordered:
            # While the gate is taken, the other hosts connect, so they are ready to lock.
            warm = ThreadPoolExecutor(max_workers=self.env.parallel)
            for target in ordered[1:]:
                warm.submit(_connect_quietly, target)
            self._lock_one(ordered[0])
            warm.shutdown(wait=False, cancel_futures=True)
        if ordered and self.results[ordered[0].name].locked:
            self.each(ordered[1:], self._lock_one)
        for target in targets:
            if not self.results[target.name].locked and not self.results[target.name].error:
                self.results[target.name].error = (
                    f"{target.name}: not locked, because {ordered[0].name} (taken first, so that two deploys "
                    "cannot interleave) could not be"
                )

    def _lock_one(self, target: Target) -> None:
        result = self.results[target.name]
        if self.cancelled.is_set():
            result.error = "interrupted before this host was locked"
            return
        try:
            reply = target.call("lock", owner=self.owner, **{"break": self.break_lock})
            result.locked = True
            result.probe = reply["probe"]
            result.serves = result.probe["current"]
            if reply.get("broke"):
                self.progress(target.name, f"took over a stale lock held by {describe_owner(reply['broke'])}")
        except AgentFailure as exc:
            if exc.kind == "locked":
                owner = describe_owner(exc.extra.get("owner"))
                result.error = (f"{target.name}: another {self.action} holds the lock ({owner}); "
                                f"wait for it, or if it is dead, run again with --break-lock")
            else:
                result.error = str(exc)
        except KeyboardInterrupt:
            # The host may have taken the lock before the interrupt: abort releases it by token.
            self.cancelled.set()
            result.locked = True

    def release_locks(self, reason: str, release: str | None) -> None:
        def step(target: Target) -> None:
            result = self.results[target.name]
            try:
                target.call("abort", token=self.token, release=release, reason=reason, log=self.log_entry(release))
            except DeployError as exc:
                if result.error is None:
                    raise
                # Keep the first error, the cause; a host that hung cannot be unlocked either.
                result.error += (f"\n  its lock could not be released ({exc.message.removeprefix(target.name + ': ')}):"
                                 f" once the host answers, deploy again with --break-lock")
                return
            result.locked = False

        locked = [t for t in self.targets if self.results[t.name].locked]
        saved = self.cancelled.is_set()
        self.cancelled.clear()  # the clean-up must reach every host even after Ctrl-C
        self.each(locked, step)
        if saved:
            self.cancelled.set()

    def log_entry(self, release: str | None) -> dict[str, Any]:
        return {"action": self.action, "release": release, "user": self.owner["user"],
                "machine": self.owner["machine"], "time": self.owner["since"], "environment": self.env.name}

    def switch(self, targets: list[Target], release_for: Callable[[Target], str]) -> None:
        def step(target: Target) -> None:
            result = self.results[target.name]
            release = release_for(target)
            try:
                reply = target.call("switch", token=self.token, release=release, restart=self.env.restart,
                                    keep=self.env.keep_releases, log=self.log_entry(release),
                                    timeout=self.env.command_timeout)
            except AgentFailure as exc:
                # A failed switch releases its lock and says what the host serves now ("current"):
                # mostly what it served before; the new release if only a later step failed.
                if "current" in exc.extra:
                    current = exc.extra["current"]
                    result.serves = current if is_release_id(current) else None
                    result.locked = False
                result.result = "switched, then failed" if result.serves == release else "switch failed"
                raise
            except HostError:
                # The connection went, or the reply could not be read: the host may have switched.
                result.serves = None
                result.result = "unknown: no valid reply to the switch"
                raise
            result.locked = False
            result.release = release
            result.serves = reply["previous"] if reply["switched_back"] else release
            if reply["switched_back"]:
                output = host_output(reply.get("restart_output") or "(no output)")
                result.error = (f"{target.name}: restart failed (exit {reply['restart']}), switched back to "
                                f"{reply['previous']}: {output}")
                result.result = "switched back"
            else:
                result.result = "switched" if reply["switched"] else "unchanged"
            self.progress(target.name, result.result)

        self.each(targets, step)

    def interrupted(self) -> None:
        """After Ctrl-C, every host that did not finish says so: the run must not look successful."""
        for result in self.results.values():
            if result.error is None and result.result not in ("switched", "switched back", "unchanged"):
                result.error = f"{result.host}: interrupted before the switch; it still serves what it served before"
                result.result = "not switched: interrupted"

    def summary(self, release: str | None) -> Summary:
        for target in self.targets:
            target.close()
        now = time.monotonic()
        for result in self.results.values():
            result.seconds = now - result.started
            if result.failed and result.result in ("pending", "staged"):
                result.result = "failed"
        return Summary(self.action, self.env.name, release, list(self.results.values()))


def _connect_quietly(target: Target) -> None:
    with contextlib.suppress(DeployError):  # the step that needs the connection reports it
        target.open()


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def describe_owner(owner: object) -> str:
    """Who holds a host's deploy lock, as the host reports it: its text, made inert."""
    if not isinstance(owner, dict) or not owner.get("user"):
        return "owner unknown"
    return inert(f"{owner.get('user')}@{owner.get('machine')} pid {owner.get('pid')} since {owner.get('since')} "
                 f"({owner.get('action')})", 200)


def deploy(config: Config, env: Environment, *, progress: Progress, break_lock: bool = False,
           built: Build | None = None, action: str = "deploy") -> Summary:
    """Ship a release to every host of `env`: a fresh build, or `built` (promote) as it is."""
    app: Future[None] | None = None
    start_keeper(env, config.root)  # before any thread: the keeper is then forked, not started afresh
    with ThreadPoolExecutor(max_workers=1) as background:
        if built is None:
            verify(config)
            app = background.submit(prebuild_app, config, lambda line: progress("build", line))
        try:
            return _deploy(config, env, progress, break_lock, built, action, app)
        finally:
            if app is not None:
                app.cancel()  # and the pool waits for a build under way: no pip left running


def _deploy(config: Config, env: Environment, progress: Progress, break_lock: bool, built: Build | None,
            action: str, app: Future[None] | None) -> Summary:
    run = Run(config, env, action, progress, break_lock)
    run.probe()
    if run.cancelled.is_set():
        run.interrupted()
        return run.summary(None)
    if not run.healthy():
        return run.summary(None)
    interpreter = check_interpreters(run)
    if built is not None and built.manifest.get("python") != interpreter.describe():
        for result in run.results.values():
            result.error = result.error or (
                f"{result.host}: runs {interpreter.describe()}, but release {built.release} was built for "
                f"{built.manifest.get('python')}: it cannot be promoted there"
            )
        return run.summary(built.release)
    if built is None:
        if app is not None:
            app.result()  # the app's wheel, built while the hosts were probed (or its error)
        built = build_release(config, log=lambda line: progress("build", line), target=interpreter)
    progress("build", f"release {built.release}: {len(built.wheels)} wheels")
    check_dependencies(run, built)
    todo = []
    for target in run.healthy():
        result = run.results[target.name]
        result.release = built.release
        if result.probe["current"] == built.release:
            result.result = "unchanged"
            progress(target.name, "already live: nothing to do")
        else:
            todo.append(target)
    if not todo:
        return run.summary(built.release)
    try:
        run.lock(todo)
        staged = [t for t in todo if run.results[t.name].locked]
        run.each(staged, lambda target: _stage(run, target, built))
        failed = [r for r in run.results.values() if r.failed]
        if run.cancelled.is_set() or len(failed) > env.max_failures:
            reason = "interrupted" if run.cancelled.is_set() else f"{len(failed)} host(s) failed staging"
            for result in run.results.values():
                if result.locked and not result.failed:
                    result.result = f"not switched: {reason}"
            run.release_locks(reason, built.release)
            if run.cancelled.is_set():
                run.interrupted()
            return run.summary(built.release)
        run.switch([t for t in staged if not run.results[t.name].failed], lambda _t: built.release)
        run.release_locks("switch failed", None)  # only hosts whose switch failed still hold one
    except KeyboardInterrupt:
        run.cancelled.set()
    if run.cancelled.is_set():
        run.release_locks("interrupted", built.release)
        run.interrupted()
    return run.summary(built.release)


def dependency_problems(run: Run, built: Build) -> list[str]:
    """`pip check` for the release, once, here, for every marker environment the hosts report."""
    environments = {json.dumps(run.results[t.name].probe["markers"], sort_keys=True) for t in run.healthy()}
    files = [built.file(w) for w in built.wheels]
    return sorted({problem for text in environments for problem in depcheck.problems(files, json.loads(text))})


def check_dependencies(run: Run, built: Build) -> None:
    """A dependency the release lacks stops the deploy before any host is locked."""
    found = dependency_problems(run, built)
    if found:
        for target in run.targets:
            target.close()
        raise DeployError(
            f"release {built.release} does not meet its own packages' requirements (as pip check would say):\n  "
            + "\n  ".join(found),
            fix=f"add them to {str(built.manifest['layer']).removesuffix('.txt')}.in (for the app: to its "
                "dependencies, too), then run: nox -s lock",
        )


def check_interpreters(run: Run) -> Interpreter:
    """The interpreter the release is built for: the hosts'. A host unlike the rest fails."""
    groups = agree((t.name, Interpreter.from_probe(run.results[t.name].probe)) for t in run.healthy())
    if not groups:
        return Interpreter.here()
    chosen = max(groups, key=lambda found: len(groups[found]))
    for other, hosts in groups.items():
        for host in hosts if other != chosen else []:
            run.results[host].error = (
                f"{host}: runs {other.describe()}, but the other hosts run {chosen.describe()}: one release "
                "cannot serve both; put them in separate environments"
            )
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
            result.result = "staged"
            return
        except AgentFailure as exc:
            if exc.kind == "corrupt" and attempt == 0:
                bad = set(exc.extra.get("files", []))
                run.progress(target.name, f"store had corrupt or missing wheels ({', '.join(sorted(bad))}): re-sending")
                store -= {w.sha256 for w in wanted if w.filename in bad}
                continue
            if exc.kind == "disk-full":
                raise HostError(target.name, f"disk full while staging ({exc}); current release unchanged",
                                fix="free disk space on the host, then deploy again") from exc
            raise HostError(target.name, f"{exc.args[0].split(': ', 1)[-1]}; current release unchanged") from exc


def _send(run: Run, target: Target, built: Build, wheels: list[Wheel]) -> None:
    for wheel in wheels:
        local = built.file(wheel)
        check_wheel(local)
        target.put(local, f"{run.env.path}/wheels/.incoming/{wheel.sha256}")


def rollback(config: Config, env: Environment, *, to: str | None, progress: Progress,
             break_lock: bool = False) -> Summary:
    if to is not None and not is_release_id(to):
        # Checked before any host is contacted: the id becomes a path on every host.
        raise DeployError(f"--to {inert(to, 40)}: not a release id (12 hex digits, as `invoke releases` shows)",
                          fix=f"run: invoke releases --env {env.name}, then pass one of the ids it lists")
    run = Run(config, env, "rollback", progress, break_lock)
    targets = run.targets
    chosen: dict[str, str] = {}
    try:
        run.lock(targets)  # the lock's reply carries what probe would say: one round trip fewer
        for target in targets:
            result = run.results[target.name]
            if result.failed or run.cancelled.is_set():
                continue
            wanted = to or result.probe["previous"]
            if not wanted:
                result.error = f"{target.name}: no previous release to roll back to"
            elif wanted not in result.probe["releases"]:
                have = ", ".join(result.probe["releases"]) or "none"
                result.error = f"{target.name}: release {wanted} is not on this host (it has: {have})"
            else:
                chosen[target.name] = wanted
        if run.cancelled.is_set():
            pass  # released below
        elif any(r.failed for r in run.results.values()):
            run.release_locks("refused", None)  # a rollback makes no release: abort has nothing to clear
        else:
            run.switch(targets, lambda target: chosen[target.name])
            run.release_locks("switch failed", None)
    except KeyboardInterrupt:
        run.cancelled.set()
    if run.cancelled.is_set():
        run.release_locks("interrupted", None)
        run.interrupted()
    return run.summary(to)


def render_summary(summary: Summary) -> str:
    rows = [("host", "release", "result", "serves", "seconds", "sent")]
    for host in summary.hosts:
        rows.append((host.host, host.release or "-", host.result, host.serves or "-", f"{host.seconds:.1f}",
                     _size(host.bytes_sent)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    errors = [f"  {host.error}" for host in summary.hosts if host.error]
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


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count / 1e3:.1f} kB" if count else "0"

