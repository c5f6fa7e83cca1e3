"""The agent payload: the host-side parts in deploy/agent/, the loader that runs them from stdin,
and the digest that names one version of them (a host caches the compiled agent under it).

Nothing has to be installed on a host first: `python3 -I -S -c LOADER` reads the first request
line, which carries boot.py (run by the loader) and the parts (name -> source), which boot.py
makes importable as the package pinship_agent; the agent then serves further lines.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from deploy.agent import PARTS as NAMES

LOADER = (
    "import sys,json;d=json.loads(sys.stdin.readline());"
    "exec(compile(d.pop('agent'),'pinship-agent','exec'),{'__name__':'__agent__','REQUEST':d})"
)


def _source(name: str) -> str:
    return resources.files("deploy.agent").joinpath(name + ".py").read_text(encoding="utf-8")


# What the loader runs: it installs the importer, compiling PARTS or loading the code an earlier
# run compiled on that host.
BOOT = _source("boot")
PARTS = {name: _source(name) for name in ("__init__", *NAMES)}


def digest(boot: str, parts: dict[str, str]) -> str:
    """sha256 of the loader's script and every part's name and source: one version of the agent."""
    text = "\0".join([boot, *(f"{name}\0{source}" for name, source in sorted(parts.items()))])
    return hashlib.sha256(text.encode()).hexdigest()


AGENT_DIGEST = digest(BOOT, PARTS)
# The agent as one script, to run it without the loader (tests, a forged host): boot.py with the
# parts inline. Run, it defines the serve loop's names (OPS, main, serve, MARK) and serves nothing.
AGENT = (f"{BOOT}\n_serve = install(compile_parts({PARTS!r}))\n"
         "OPS, main, serve, MARK = _serve.OPS, _serve.main, _serve.serve, _serve.MARK\n")


def first_request() -> dict[str, Any]:
    """What a session's first request carries besides the request: the agent and its loader."""
    return {"agent": BOOT, "parts": PARTS, "digest": AGENT_DIGEST}
