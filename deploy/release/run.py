"""One run over the hosts of an environment: its targets, a result per host, Ctrl-C, the claims.

Results are gathered per host, as Fabric's GroupResult does, instead of dying at the first
failure: each keeps its state as a `HostState` (whose values are the words the summary prints)
and its error as the exception itself, turned into text only when it is printed. A `Run` is a
context manager that closes its targets, as Fabric's Group is.

A *claim* is a deploy's hold on one host (the agent's `lock` and `abort` ops, and `--break-lock`
for the user): while one run holds it, no other deploy or rollback can stage or switch there.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from types import TracebackType
from typing import Any

from deploy.config import Config, Environment
from deploy.errors import DeployError, HostError
from deploy.release.build import is_release_id
from deploy.release.results import DONE as DONE
from deploy.release.results import Hook as Hook
from deploy.release.results import HostResult as HostResult
from deploy.release.results import HostState as HostState
from deploy.release.results import Summary as Summary
from deploy.remote.connect import connect
from deploy.remote.target import AgentFailure, Target, host_output
from deploy.render import inert

Progress = Callable[[str, str], None]


class Run:
    """One deploy, rollback or read of one environment: the targets, their results, Ctrl-C."""

    def __init__(self, env: Environment, action: str, progress: Progress, targets: list[Target], *,
                 break_claim: bool = False) -> None:
        self.env = env
        self.action = action
        self.progress = progress
        self.break_claim = break_claim
        self.token = secrets.token_hex(8)
        self.cancelled = threading.Event()
        self.targets = targets
        self.results = {t.name: HostResult(t.name) for t in self.targets}
        # One pool for every step of the run: starting `parallel` threads per step cost a run with
        # kept connections about a tenth of its time.
        self.pool = ThreadPoolExecutor(max_workers=env.parallel, thread_name_prefix="pinship-step")
        self.owner = {"user": getpass.getuser(), "machine": socket.gethostname(), "pid": os.getpid(),
                      "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "token": self.token,
                      "action": action}

    @classmethod
    def over(cls, config: Config, env: Environment, action: str, progress: Progress, *, break_claim: bool = False,
             kept: Path | None = None) -> Run:
        """A run over every host of `env`; `kept` is the socket of a keeper started already."""
        return cls(env, action, progress, connect(env, config.root, sys.executable, kept), break_claim=break_claim)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close every target, even when one of them fails to close; then report the first failure."""
        problems: list[Exception] = []
        for target in self.targets:
            try:
                target.close()
            except Exception as exc:  # the others must still be closed
                problems.append(exc)
        self.pool.shutdown(wait=False)
        if problems:
            raise problems[0]

    def each(self, targets: Iterable[Target], step: Callable[[Target], None]) -> None:
        """Run `step` on targets, `parallel` at a time; a failure is recorded on that host only."""

        def guarded(target: Target) -> None:
            result = self.results[target.name]
            if self.cancelled.is_set():
                result.fail("interrupted before this host was reached")
                return
            try:
                step(target)
            except Exception as exc:  # one host's surprise must not hide the others' results
                result.error = exc
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

    def claim(self, targets: list[Target]) -> None:
        # The first host in name order is claimed alone, as a gate: every deploy of the environment
        # claims it first, so the second of two racing deploys stops there holding nothing. The
        # other hosts are then claimed all at once.
        ordered = sorted(targets, key=lambda t: t.name)
        if ordered:
            # While the gate is claimed, the other hosts connect, so they are ready.
            warm = ThreadPoolExecutor(max_workers=self.env.parallel)
            for target in ordered[1:]:
                warm.submit(_connect_quietly, target)
            self._claim_one(ordered[0])
            warm.shutdown(wait=False, cancel_futures=True)
        if ordered and self.results[ordered[0].name].claimed:
            self.each(ordered[1:], self._claim_one)
        for target in targets:
            result = self.results[target.name]
            if not result.claimed:
                result.fail(f"not locked, because {ordered[0].name} (taken first, so that two deploys cannot "
                            "interleave) could not be")

    def _claim_one(self, target: Target) -> None:
        result = self.results[target.name]
        if self.cancelled.is_set():
            result.fail("interrupted before this host was locked")
            return
        try:
            reply = target.call("lock", owner=self.owner, **{"break": self.break_claim})
            result.claimed = True
            result.probe = reply["probe"]
            result.serves = result.probe["current"]
            if reply.get("broke"):
                self.progress(target.name, f"took over a stale lock held by {describe_owner(reply['broke'])}")
        except AgentFailure as exc:
            if exc.kind == "locked":
                owner = describe_owner(exc.extra.get("owner"))
                result.fail(f"another {self.action} holds the lock ({owner}); wait for it, or if it is dead, "
                            "run again with --break-lock")
            else:
                result.error = exc
        except KeyboardInterrupt:
            # The host may have taken the claim before the interrupt: abort releases it by token.
            self.cancelled.set()
            result.claimed = True

    def release_claims(self, reason: str, release: str | None) -> None:
        def step(target: Target) -> None:
            result = self.results[target.name]
            try:
                target.call("abort", token=self.token, release=release, reason=reason, log=self.log_entry(release))
            except DeployError as exc:
                if result.error is None:
                    raise
                # Keep the first error, the cause; a host that hung cannot be released either.
                result.unreleased = exc
                return
            result.claimed = False

        claimed = [t for t in self.targets if self.results[t.name].claimed]
        saved = self.cancelled.is_set()
        self.cancelled.clear()  # the clean-up must reach every host even after Ctrl-C
        self.each(claimed, step)
        if saved:
            self.cancelled.set()

    def log_entry(self, release: str | None) -> dict[str, Any]:
        return {"action": self.action, "release": release, "user": self.owner["user"],
                "machine": self.owner["machine"], "time": self.owner["since"], "environment": self.env.name}

    def switch(self, targets: list[Target], release_for: Callable[[Target], str], *, hold: bool = False,
               post_switch: str | None = None, log: Callable[[Target], dict[str, Any]] | None = None) -> None:
        """Switch each target to its release (restart; then `post_switch`, whose failure switches
        it back). `hold` keeps each claim: a deploy in waves may yet switch the host back."""

        def step(target: Target) -> None:
            result = self.results[target.name]
            release = release_for(target)
            hooks = {"post_switch": post_switch, "hook_timeout": self.env.hook_timeout} if post_switch else {}
            try:
                reply = target.call("switch", token=self.token, release=release, restart=self.env.restart,
                                    keep=self.env.keep_releases, timeout=self.env.command_timeout, hold=hold,
                                    log=log(target) if log else self.log_entry(release), **hooks)
            except AgentFailure as exc:
                # A failed switch releases its claim and says what the host serves now ("current"):
                # mostly what it served before; the new release if only a later step failed.
                if "current" in exc.extra:
                    current = exc.extra["current"]
                    result.serves = current if is_release_id(current) else None
                    result.claimed = False
                result.state = HostState.SWITCHED_THEN_FAILED if result.serves == release else HostState.SWITCH_FAILED
                raise
            except HostError:
                # The connection went, or the reply could not be read: the host may have switched.
                result.serves = None
                result.state = HostState.UNKNOWN
                raise
            result.claimed = hold
            result.release = release
            result.serves = reply["previous"] if reply["switched_back"] else release
            checked = reply.get("post_switch")
            if checked is not None:
                result.hooks.append(Hook("post-switch", checked["exit"], checked["output"]))
            if reply["switched_back"] and checked is not None and checked["exit"] != 0:
                output = host_output(checked["output"] or "(no output)")
                result.fail(f"post-switch check failed (exit {checked['exit']}), switched back to "
                            f"{reply['previous'] or 'nothing'}: {output}",
                            fix=f"see what the check ({inert(post_switch or '', 80)}) needs on the host, then deploy "
                                "again")
                result.state, result.reason = HostState.SWITCHED_BACK, "post-switch check failed"
            elif reply["switched_back"]:
                output = host_output(reply.get("restart_output") or "(no output)")
                result.fail(f"restart failed (exit {reply['restart']}), switched back to {reply['previous']}: "
                            f"{output}")
                result.state = HostState.SWITCHED_BACK
            else:
                result.state = HostState.SWITCHED if reply["switched"] else HostState.UNCHANGED
            self.progress(target.name, result.result)

        self.each(targets, step)

    def not_switched(self, reason: str) -> None:
        """Every claimed host that did not fail is left as it was, for `reason`."""
        for result in self.results.values():
            if result.claimed and not result.failed:
                result.state, result.reason = HostState.NOT_SWITCHED, reason

    def interrupted(self) -> None:
        """After Ctrl-C, every host that did not finish says so: the run must not look successful."""
        for result in self.results.values():
            if result.error is None and result.state not in DONE:
                result.fail("interrupted before the switch; it still serves what it served before")
                result.state, result.reason = HostState.NOT_SWITCHED, "interrupted"

    def summary(self, release: str | None) -> Summary:
        now = time.monotonic()
        for result in self.results.values():
            result.seconds = now - result.started
            if result.failed and result.state in (HostState.PENDING, HostState.STAGED):
                result.state = HostState.FAILED
        return Summary(self.action, self.env.name, release, list(self.results.values()))


def _connect_quietly(target: Target) -> None:
    with contextlib.suppress(DeployError):  # the step that needs the connection reports it
        target.open()


def detail(error: Exception) -> str:
    """An error as a line that already names its host shows it: without the host, with its fix.
    A surprise (not a DeployError) is named by its type: it is a bug, and says which."""
    if isinstance(error, HostError):
        text = error.detail
    elif isinstance(error, DeployError):
        text = error.message
    else:
        return f"unexpected {type(error).__name__}: {error}"
    return f"{text}\n  fix: {error.fix}" if error.fix else text


def describe_owner(owner: object) -> str:
    """Who holds a host's claim, as the host reports it: its text, made inert."""
    if not isinstance(owner, dict) or not owner.get("user"):
        return "owner unknown"
    return inert(f"{owner.get('user')}@{owner.get('machine')} pid {owner.get('pid')} since {owner.get('since')} "
                 f"({owner.get('action')})", 200)
