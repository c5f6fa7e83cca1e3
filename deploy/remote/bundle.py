"""The agent payload: the host-side parts in deploy/agent/, the loader that runs them from stdin,
and the digest that names one version of them (a host caches the compiled agent under it).

Nothing has to be installed on a host first: `python3 -I -S -c LOADER` reads the first request
line, which carries the agent's source; the agent then serves further lines.
"""

from __future__ import annotations

import hashlib
from importlib import resources

LOADER = (
    "import sys,json;d=json.loads(sys.stdin.readline());"
    "exec(compile(d.pop('agent'),'pinship-agent','exec'),{'__name__':'__agent__','REQUEST':d})"
)
# Sent as one script: the venv helpers first, then the agent whose last lines run the request.
AGENT_PARTS = ("reuse.py", "install.py", "status.py", "serve.py")
AGENT = "\n".join(resources.files("deploy.agent").joinpath(name).read_text(encoding="utf-8") for name in AGENT_PARTS)
AGENT_DIGEST = hashlib.sha256(AGENT.encode()).hexdigest()
# What the loader runs: it compiles AGENT, or loads the code an earlier run compiled on that host.
BOOT = resources.files("deploy.agent").joinpath("boot.py").read_text(encoding="utf-8")


def first_request() -> dict[str, str]:
    """What a session's first request carries besides the request: the agent and its loader."""
    return {"agent": BOOT, "source": AGENT, "digest": AGENT_DIGEST}
