"""How pinship itself reaches an adopting project: installed beside the layers, never in them.

In dev.in, pinship's own dependencies (pip-tools, nox, invoke, fabric, paramiko, cryptography …)
would be solved together with the app's, so an upgrade of the deploy tool could move what ships,
and an app pinned to an old `packaging` could make the lock fail. A tool is installed beside the
locks instead, the way pipx installs black: init prints (and writes into dev.in as a comment)
the one command that installs this very pinship, read from how it was installed here (PEP 610).
"""

from __future__ import annotations

import importlib.metadata
import json
import shlex
from urllib.parse import unquote, urlsplit


def install_command() -> str:
    """`pip install …` for the pinship running now: its index version, or the URL it came from."""
    try:
        dist = importlib.metadata.distribution("pinship")
    except importlib.metadata.PackageNotFoundError:
        return "pip install pinship"
    try:
        origin = json.loads(dist.read_text("direct_url.json") or "null")
    except json.JSONDecodeError:
        origin = None
    if not isinstance(origin, dict) or not isinstance(origin.get("url"), str):
        return f"pip install pinship=={dist.version}"
    url = origin["url"]
    vcs = origin.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("vcs") and vcs.get("commit_id"):
        return "pip install " + shlex.quote(f"pinship @ {vcs['vcs']}+{url}@{vcs['commit_id']}")
    if "dir_info" in origin and url.startswith("file:"):
        # A checkout on this machine: a fresh clone elsewhere needs a wheel or a repository URL instead.
        return "pip install " + shlex.quote(unquote(urlsplit(url).path))
    return "pip install " + shlex.quote(f"pinship @ {url}")
