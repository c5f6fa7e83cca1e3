"""`python -m deploy init`: adopt the tool in an existing Python project.

It writes small files and says what it wrote; an existing file is left alone unless --force.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from deploy.errors import ConfigError
from deploy.reqfile import clip, read_text

NOXFILE = '''"""Nox sessions: lock, verify, upgrade and audit this project's layered requirements."""

# Importing the sessions registers them with nox; `nox -l` lists them.
from deploy.sessions import audit, lock, upgrade, verify

__all__ = ["audit", "lock", "upgrade", "verify"]
'''

TASKS = '''"""Invoke tasks: deploy, rollback, status, promote, releases and trust."""

from deploy.tasks import namespace

ns = namespace
'''

LAYERS = {
    "base.in": "# What the application needs to run, everywhere. Compiled by `nox -s lock`.\n",
    "prod.in": "# The deploy layer: what ships to servers (base plus server-only packages).\n-r base.in\n",
    "test.in": "# What CI installs: exactly what ships, plus the test tools.\n-r prod.in\npytest\n",
    "dev.in": "# A developer's machine: everything CI has, plus the tools that lock and deploy.\n"
    "-r test.in\npinship\n",
}

TOOL_TABLE = '''
[tool.deploy]
requirements = "requirements"   # folder of layers: NAME.in compiled to NAME.txt by `nox -s lock`
deploy-layer = "prod"           # the layer installed on servers

# An environment per target; `local` exists without config and deploys to .deploy/local.
# [tool.deploy.environments.staging]
# hosts = ["deploy@app1.example.com", "deploy@10.0.0.7:2222"]   # user@host[:port]
# path = "/srv/myapp"                  # where releases live on each host
# known-hosts = "deploy/known_hosts"   # pinned host keys: fill it with `invoke trust --env staging`
# healthcheck = "python -c 'import myapp'"   # run in the new release before the switch
# restart = "sudo systemctl restart myapp"   # after the switch; a failure switches back
# confirm = false                      # ask before deploying; --yes skips
# keep-alive = 60                      # seconds connections stay open for the next run (0: off)
'''


def init(root: Path, *, force: bool = False, say: object = print) -> list[Path]:
    """Write the adoption files into `root`; return the ones written."""
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        raise ConfigError(
            f"{pyproject} does not exist: init adopts an existing Python project",
            fix="create a pyproject.toml with a [project] table first (name, version, dependencies)",
        )
    try:
        data = tomllib.loads(read_text(pyproject, root))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"pyproject.toml: {clip(str(exc))}", fix="correct that line of pyproject.toml") from None
    dependencies = data.get("project", {}).get("dependencies", [])
    base = LAYERS["base.in"] + "".join(f"{dep}\n" for dep in dependencies)
    files = {
        root / "noxfile.py": NOXFILE,
        root / "tasks.py": TASKS,
        root / "requirements" / "base.in": base,
        **{root / "requirements" / name: text for name, text in LAYERS.items() if name != "base.in"},
    }
    written: list[Path] = []
    report = say if callable(say) else print
    for path, text in files.items():
        relative = path.relative_to(root)
        if path.exists() and not force:
            report(f"kept {relative} (exists; --force overwrites it)")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
        report(f"wrote {relative}")
    if "deploy" in data.get("tool", {}):
        report("kept pyproject.toml [tool.deploy] (already there)")
    else:
        with pyproject.open("a", encoding="utf-8") as handle:
            handle.write(TOOL_TABLE)
        written.append(pyproject)
        report("added [tool.deploy] to pyproject.toml")
    report("next: nox -s lock, then commit requirements/*.in and *.txt")
    return written
