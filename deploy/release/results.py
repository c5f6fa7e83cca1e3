"""What a run found on each host, kept as objects until the summary prints them: each host's
state as a `HostState` (whose values are the words printed), its error as the exception itself,
the release hooks it ran (`Hook`), and the wave it switched in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from deploy.errors import DeployError, HostError
from deploy.release.build import is_release_id


@dataclass(frozen=True)
class Hook:
    """A release hook's run on one host: its exit code and its last lines, as the host sent them
    (untrusted: shown only through render.inert)."""

    name: str  # "run-once" or "post-switch"
    exit: int
    output: str

    @property
    def ok(self) -> bool:
        return self.exit == 0


class HostState(Enum):
    """Where a host got to in a run; the value is what the summary prints."""

    PENDING = "pending"
    STAGED = "staged"
    SWITCHED = "switched"
    SWITCHED_BACK = "switched back"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    NOT_SWITCHED = "not switched"
    SWITCHED_THEN_FAILED = "switched, then failed"
    SWITCH_FAILED = "switch failed"
    UNKNOWN = "unknown: no valid reply to the switch"


DONE = (HostState.SWITCHED, HostState.SWITCHED_BACK, HostState.UNCHANGED)


@dataclass
class HostResult:
    host: str
    release: str | None = None
    state: HostState = HostState.PENDING
    reason: str | None = None  # why a host was NOT_SWITCHED
    error: Exception | None = None  # kept as raised; rendered where the host is already shown
    unreleased: DeployError | None = None  # after `error`: the claim could not be released either
    seconds: float = 0.0
    bytes_sent: int = 0
    claimed: bool = False
    serves: str | None = None  # the release this host's `current` points at, as last seen
    probe: dict[str, Any] = field(default_factory=dict)
    wave: int | None = None  # the wave it switched in (1 first), when it was given one
    hooks: list[Hook] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def result(self) -> str:
        """The state as the summary's column shows it."""
        return f"{self.state.value}: {self.reason}" if self.reason else self.state.value

    def fail(self, detail: str, fix: str | None = None) -> None:
        """Record a failure of this host's, unless an earlier one (the cause) is recorded already."""
        if self.error is None:
            self.error = HostError(self.host, detail, fix=fix)


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
        switched = any(host.state in (HostState.SWITCHED, HostState.SWITCHED_BACK, HostState.SWITCHED_THEN_FAILED)
                       for host in self.hosts)
        known = [release for release in found if is_release_id(release)]
        return found if len(known) > 1 or (switched and len(found) > 1) else {}

