"""The host side of the Ansible export: one step of a release (probe, stage, run-once, switch), run on a host
by the playbook's `script` tasks through the very agent ops `invoke deploy` calls over SSH.

Stdlib only, any Python 3.8+. `invoke export` writes this file as DIR/pinship-host.py with BUNDLE
appended: the agent (boot.py and its parts, as deploy/remote/bundle.py sends them) and the
release (manifest, lock, path and the environment's commands). The parts become importable as
boot.py makes them on any host, so a host ends with exactly the files a deploy leaves. For a
host that lacks wheels, the playbook runs the stage step from a zipapp of this file and those
wheels, packed on the control machine (see unpack): the wheels travel with the step's script.

Each run takes the host's claim and gives it back before it exits: ansible-playbook may stop
between two tasks (a failed gate or wave, Ctrl-C), and a claim left held would block every later
deploy. Output: one JSON line on stdout, the last; a failure is one line on stderr and exit 1.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a host an import; the annotations need none
    from collections.abc import Callable
    from typing import Any

STEPS = ("probe", "stage", "run-once", "switch", "rollback")
USAGE = "usage: pinship-host.py probe|stage|run-once|switch USER MACHINE, or rollback USER MACHINE RELEASE"
RELEASE = re.compile(r"[0-9a-f]{12}")
# Who runs the playbook, as the deploy log and a held claim name them: shown, never trusted.
_WHO = re.compile(r"[A-Za-z0-9_.:@+-]{1,64}")
# A wheel in the zipapp the playbook packs: wheels/<sha256>/<file name>, as in the export's folder.
_MEMBER = re.compile(r"wheels/([0-9a-f]{64})/([^/]+\.whl)")


class Stop(Exception):
    """A step that cannot go on: its one line for the operator."""


def load_agent(bundle: dict[str, Any]) -> Any:
    """The agent's package, loaded as boot.py loads it for `invoke deploy` (its compiled parts
    cached under the deploy path by the same digest)."""
    namespace: dict[str, Any] = {"__name__": "pinship_boot"}
    exec(compile(bundle["boot"], "pinship-agent/boot.py", "exec"), namespace)  # noqa: S102 (the agent, from the export)
    request = {"path": bundle["path"], "parts": bundle["parts"], "digest": bundle["digest"]}
    namespace["install"](namespace["agent_codes"](request))
    return sys.modules[namespace["PACKAGE"]]


def who(value: str) -> str:
    return value if _WHO.fullmatch(value) else "unknown"


class Host:
    """One step's requests, as the deploying side builds them, under a claim of its own."""

    def __init__(self, bundle: dict[str, Any], user: str, machine: str, origin: str = "") -> None:
        self.bundle = bundle
        self.origin = origin  # the file this script runs from: a zipapp carries the wheels to stage
        self.agent = load_agent(bundle)
        self.ops: dict[str, Callable[[dict[str, Any]], Any]] = self.agent.serve.OPS
        self.failure: type[Exception] = self.agent.protocol.Failure
        self.token = secrets.token_hex(16)
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.owner = {"user": who(user), "machine": who(machine), "pid": os.getpid(), "since": since,
                      "token": self.token, "action": "ansible-playbook"}
        self.log = {"action": "deploy", "release": bundle["release"], "user": self.owner["user"],
                    "machine": self.owner["machine"], "time": since, "environment": bundle["environment"],
                    "via": "ansible-playbook"}

    def call(self, op: str, **fields: Any) -> Any:
        request = dict(fields, op=op, path=self.bundle["path"], token=self.token)
        try:
            return self.ops[op](request)
        except self.failure as exc:
            raise Stop(f"{op} failed: {exc}") from None

    def claim(self) -> None:
        try:
            self.ops["lock"]({"op": "lock", "path": self.bundle["path"], "owner": self.owner})
        except self.failure as exc:
            holder = getattr(exc, "extra", {}).get("owner") or {}
            if getattr(exc, "kind", None) == "locked":
                user, machine, action, since = (who(str(holder.get(key))) for key in ("user", "machine", "action",
                                                                                      "since"))
                raise Stop(f"another deploy holds the lock ({user}@{machine}, {action}, since {since}): wait for it, "
                           "or if it died, run: invoke deploy --break-lock") from None
            raise Stop(f"the lock could not be taken: {exc}") from None

    def give_back(self) -> None:
        self.ops["unlock"]({"op": "unlock", "path": self.bundle["path"], "token": self.token})


def probe(host: Host) -> dict[str, Any]:
    """What the host's store lacks of the release (an entry that fails its sha256 is removed, as a
    deploy's stage would), and whether the release is live already."""
    bundle, store = host.bundle, host.agent.store
    status = host.call("probe")
    try:
        store.check_layout(bundle["path"])
        bad = set(store.accept_incoming(bundle["path"], bundle["manifest"]["wheels"]))
    except host.failure as exc:
        raise Stop(str(exc)) from None
    missing = [w["sha256"] for w in bundle["manifest"]["wheels"] if w["filename"] in bad]
    return {"live": status["current"] == bundle["release"], "current": status["current"], "missing": missing}


def unpack(host: Host) -> None:
    """When this script runs as the zipapp the playbook packed (this file and the wheels the hosts
    lack), each wheel of the release in it goes to the store's incoming folder, where a deploy's
    uploads land and the agent's stage checks them against their sha256; anything else is ignored."""
    import shutil
    import zipfile

    if not host.origin or not zipfile.is_zipfile(host.origin):
        return  # run as pinship-host.py: the host lacked no wheel
    bundle, files = host.bundle, host.agent.files
    incoming = os.path.join(bundle["path"], "wheels", ".incoming")
    wanted = {w["sha256"]: w["filename"] for w in bundle["manifest"]["wheels"]}
    try:
        host.agent.store.check_layout(bundle["path"])
        with zipfile.ZipFile(host.origin) as pack:
            for info in pack.infolist():
                found = _MEMBER.fullmatch(info.filename)
                if info.is_dir() or not found or wanted.get(found.group(1)) != found.group(2):
                    continue
                part = os.path.join(incoming, f"{found.group(1)}.part-{host.token}")
                try:
                    with pack.open(info) as source, open(part, "wb") as out:
                        shutil.copyfileobj(source, out)
                    os.replace(part, os.path.join(incoming, found.group(1)))
                finally:
                    files.remove_entry(part)
    except zipfile.BadZipFile as exc:
        raise Stop(f"the wheels sent with this step cannot be read ({exc}): run ansible-playbook again") from None
    except host.failure as exc:
        raise Stop(str(exc)) from None


def stage(host: Host) -> dict[str, Any]:
    bundle = host.bundle
    try:
        unpack(host)
        reply: dict[str, Any] = host.call("stage", release=bundle["release"], manifest=bundle["manifest"],
                                          lock=bundle["lock"], healthcheck=bundle["healthcheck"],
                                          timeout=bundle["timeout"])
        return reply
    except Stop as exc:
        # As a deploy's gate does: the claim is given back and the attempt logged.
        try:
            host.call("abort", release=bundle["release"], reason="staging failed", log=host.log)
        except Stop as also:
            exc = Stop(f"{exc} (and {also})")
        if "missing or corrupt in the store" in str(exc):
            raise Stop(f"{exc}: a wheel sent from the export does not match its sha256; nothing switched (run "
                       "invoke export again, then ansible-playbook)") from None
        raise Stop(f"{exc}; current release unchanged") from None


def run_once(host: Host) -> dict[str, Any]:
    """The run-once hook (migrations), in the staged release, before any host switches."""
    bundle = host.bundle
    reply: dict[str, Any] = host.call("hook", release=bundle["release"], command=bundle["run_once"],
                                      timeout=bundle["hook_timeout"])
    if reply["exit"] != 0:
        raise Stop(f"run-once failed (exit {reply['exit']}): {reply['output'] or '(no output)'}; no host switches")
    return reply


def switch(host: Host) -> dict[str, Any]:
    bundle = host.bundle
    hooks = {"post_switch": bundle["post_switch"], "hook_timeout": bundle["hook_timeout"]} \
        if bundle.get("post_switch") else {}
    reply: dict[str, Any] = host.call("switch", release=bundle["release"], restart=bundle["restart"],
                                      keep=bundle["keep"], log=host.log, timeout=bundle["timeout"], **hooks)
    if reply["switched_back"]:
        check = reply.get("post_switch") or {}
        if check.get("exit"):
            raise Stop(f"post-switch check failed (exit {check['exit']}), switched back to {reply['previous']}: "
                       f"{check.get('output') or '(no output)'}")
        output = (reply.get("restart_output") or "(no output)")[-400:]
        raise Stop(f"restart failed (exit {reply['restart']}), switched back to {reply['previous']}: {output}")
    return reply


def rollback(host: Host, release: str) -> dict[str, Any]:
    """on-wave-failure = rollback: back to `release`, the one this host served before the run."""
    if not RELEASE.fullmatch(release):
        raise Stop(f"no release to go back to (it served none before this run): it keeps {host.bundle['release']}")
    bundle = host.bundle
    reply: dict[str, Any] = host.call("switch", release=release, restart=bundle["restart"], keep=bundle["keep"],
                                      log=dict(host.log, action="rollback", release=release),
                                      timeout=bundle["timeout"])
    if reply["switched_back"]:
        raise Stop(f"going back to {release}, the restart failed (exit {reply['restart']}): it serves "
                   f"{reply['previous']} again; run: invoke rollback --env {bundle['environment']} --to {release}")
    return reply


def main(argv: list[str], bundle: dict[str, Any], origin: str = "") -> int:
    if len(argv) != (4 if argv[:1] == ["rollback"] else 3) or argv[0] not in STEPS:
        sys.stderr.write(USAGE + "\n")
        return 2
    step, user, machine = argv[:3]
    steps: dict[str, Callable[[Host], dict[str, Any]]] = {
        "probe": probe, "stage": stage, "run-once": run_once, "switch": switch,
        "rollback": lambda host: rollback(host, argv[3])}
    try:
        host = Host(bundle, user, machine, origin)
        host.claim()
        try:
            result = steps[step](host)
        finally:
            host.give_back()  # the claim's holder only: after a switch it is free already
    except Stop as exc:
        sys.stderr.write(f"pinship: {step} on {bundle['path']}: {exc}\n")
        return 1
    except OSError as exc:  # as the agent answers it to a deploy: one line, never a traceback
        what = "the disk is full" if exc.errno == 28 else f"{exc.strerror or type(exc).__name__}: {exc.filename or ''}"
        sys.stderr.write(f"pinship: {step} on {bundle['path']}: {what}; current release unchanged\n")
        return 1
    sys.stdout.write("\n" + json.dumps(dict(result, step=step, release=bundle["release"])) + "\n")
    return 0
