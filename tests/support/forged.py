"""Forged hosts: real sshd test hosts whose agent answers some steps the way a test chooses.

A broken or compromised host can answer anything. To test what the deploying side does with
that, `forge()` writes an executable script into each host's deploy path and returns its path,
to be given as the environment's `python` setting. The deploying side runs it exactly as it runs
an interpreter (`<python> -I -S -c LOADER`, the agent's loader and parts in the first request line, see
deploy/remote/target.py), over a plain SSH session or through a keeper (keep-alive > 0) alike. The
script loads the real agent from that first request and serves every request with it, except
the steps it was told to forge on that host:

    reply(result)            answer {"ok": true, "result": result} without running the step
    fail(kind, error, extra) answer {"ok": false, ...} without running the step
    patch(set=..., drop=...) run the step, then change keys of its result
    raw(text)                print `text` after the agent's marker, as it is (not even JSON)

Each forge() call writes scripts under a new name, so a keeper (whose connections are keyed by
the python setting) never keeps serving an earlier forgery. Run `invoke disconnect` after a test
with keep-alive > 0, as after any. `unforge()` removes the scripts.
"""

from __future__ import annotations

import json
import secrets
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.support.sshd import SshCluster

Rule = dict[str, Any]
FOLDER = ".forged"

# Runs on the host (stdlib only). RULES maps a step to what to do instead of the agent's answer.
_SCRIPT = '''#!{python} -I
"""A forged pinship host (tests/support/forged.py): the real agent, but some steps answer as told."""
import io
import json
import sys

RULES = json.loads({rules!r})
first = json.loads(sys.stdin.readline())
boot = {{"__name__": "pinship-forged"}}  # anything but "__agent__": the agent must not serve by itself
exec(compile(first.pop("agent"), "pinship-agent", "exec"), boot)
served = boot["install"](boot["compile_parts"](first.pop("parts")))  # the real parts, as boot.py loads them
first.pop("digest", None)
agent = {{"main": served.main, "MARK": served.MARK}}


def answer(request):
    rule = RULES.get(request["op"])
    if rule is None:
        agent["main"](request)
        return
    if "raw" in rule:
        text = rule["raw"]
    elif "reply" in rule:
        text = json.dumps(rule["reply"])
    else:
        real, sys.stdout = sys.stdout, io.StringIO()
        try:
            agent["main"](request)
        finally:
            captured, sys.stdout = sys.stdout.getvalue(), real
        reply = json.loads(captured.split(agent["MARK"])[-1])
        if reply["ok"]:
            reply["result"].update(rule.get("set", {{}}))
            for key in rule.get("drop", []):
                reply["result"].pop(key, None)
        text = json.dumps(reply)
    sys.stdout.write("\\n" + agent["MARK"] + text + "\\n")
    sys.stdout.flush()


request = first
while request is not None:
    answer(request)
    line = sys.stdin.readline()
    request = json.loads(line) if line.strip() else None
'''


def reply(result: object) -> Rule:
    """Answer the step with this result (any JSON value), without running it."""
    return {"reply": {"ok": True, "result": result, "host": "forged"}}


def fail(kind: object, error: object, extra: object = None) -> Rule:
    """Answer the step with a failure (any JSON values), without running it."""
    envelope: dict[str, object] = {"ok": False, "kind": kind, "error": error, "host": "forged"}
    if extra is not None:
        envelope["extra"] = extra
    return {"reply": envelope}


def patch(set: dict[str, object] | None = None, drop: tuple[str, ...] = ()) -> Rule:
    """Run the step for real, then replace (`set`) or remove (`drop`) keys of its result."""
    return {"set": set or {}, "drop": list(drop)}


def raw(text: str) -> Rule:
    """Answer the step with this text after the agent's marker: JSON or not."""
    return {"raw": text}


def base_python() -> str:
    """The interpreter the hosts' python3 is (see sshd.session_path): it runs the script."""
    return str(Path(sys.base_prefix) / "bin" / "python3")


def forge(cluster: SshCluster, rules: dict[str, dict[str, Rule]]) -> str:
    """Put a forging script on every host of the cluster and return the path to give as the
    environment's `python` setting. `rules` maps a host's address (SshHost.address) to the steps
    it forges; other hosts answer every step with the real agent."""
    name = f"{cluster.deploy_path}/{FOLDER}/python-{secrets.token_hex(4)}"
    for host in cluster.hosts:
        script = _SCRIPT.format(python=base_python(), rules=json.dumps(rules.get(host.address, {})))
        # Written here and copied in by the host: only the deploy path is the host's own, and a
        # script holding a megabyte of forged text is too long to pass as an argument.
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", prefix="pinship-forged-") as handle:
            handle.write(script)
            handle.flush()
            command = (f"mkdir -p {shlex.quote(str(Path(name).parent))} && cp {shlex.quote(handle.name)} "
                       f"{shlex.quote(name)} && chmod 755 {shlex.quote(name)}")
            done = host.run(command)
        assert done.returncode == 0, f"{host.address}: {done.stdout}{done.stderr}"
    return name


def unforge(cluster: SshCluster) -> None:
    """Remove every forging script from the hosts that are running."""
    for host in cluster.hosts:
        if host.pid is not None:
            host.run(f"rm -rf {shlex.quote(cluster.deploy_path + '/' + FOLDER)}")
