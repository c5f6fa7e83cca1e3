"""Which layer a project's group or extra goes to: init puts its requirements there, and verify
(lock/groupdrift.py) checks that they still are. Stdlib only: verify imports it.
"""

from __future__ import annotations

import re

from deploy.errors import ConfigError
from deploy.lock.reqfile import canonical
from deploy.render import inert

# The layers init always writes, bottom up; a group of another name becomes a layer of its own.
LAYERS = ("base", "prod", "test", "dev")
_TEST = {"test", "tests", "testing", "ci", "check", "checks"}
_DEV = {"dev", "develop", "development", "lint", "linting", "linters", "typing", "types", "typecheck", "mypy",
        "docs", "doc", "style", "format", "fmt", "tools", "quality", "pre-commit"}
_LAYER_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


def layer_for(group: str, where: str) -> str:
    """The layer a group or extra of this name goes to: test and dev tools by their usual names,
    anything else a layer of its own name (which includes base.in)."""
    name = canonical(group)
    if name in LAYERS:
        return name
    if name in _TEST:
        return "test"
    if name in _DEV:
        return "dev"
    if not _LAYER_NAME.fullmatch(name):
        raise ConfigError(f"{where}: the group name \"{inert(group, 80)}\" cannot name a layer file",
                          fix="rename the group to letters, digits and '-'")
    return name
