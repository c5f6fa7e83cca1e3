"""An environment for pip and pip-compile subprocesses that ignores the machine they run on."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["isolated_pip_env"]

# Variables that make a subprocess see a different interpreter or different packages, or
# send its HTTP through a proxy (requests does not exempt 127.0.0.1 from one by itself).
_HIDDEN = {"VIRTUAL_ENV", "PYTHONPATH", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}


def isolated_pip_env(
    index_url: str | None, cache_dir: Path, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Return a copy of base (default os.environ) in which pip sees only index_url.

    Developer machines and CI runners routinely configure pip: this one has /etc/pip.conf and
    ~/.config/pip/pip.conf adding find-links and extra-index-url mirrors, plus PIP_FIND_LINKS
    and friends in the environment. A test that let any of that through would resolve against
    whatever those mirrors hold, pass here and fail elsewhere (or the reverse). So:

    - every PIP_* variable is dropped (which also covers pip-tools' PIP_TOOLS_* settings);
    - PIP_CONFIG_FILE=os.devnull, the one value that makes pip skip *all* config files (global,
      user and site), not just replace the user one as any other path would;
    - the index is index_url only, or none at all (PIP_NO_INDEX) when it is None;
    - pip's cache and pip-tools' dependency cache (under XDG_CACHE_HOME) live in cache_dir,
      so one test's cached metadata never answers for another's index of the same names;
    - no bytecode is written into source trees the tests build, no virtualenv or PYTHONPATH of
      the caller leaks into the subprocess, and no proxy sits between pip and 127.0.0.1.
    """
    env = {
        key: value
        for key, value in (os.environ if base is None else base).items()
        if not key.startswith("PIP_") and key.upper() not in _HIDDEN
    }
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        PIP_CACHE_DIR=str(cache_dir / "pip"),
        XDG_CACHE_HOME=str(cache_dir / "xdg"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    if index_url is None:
        env["PIP_NO_INDEX"] = "1"
    else:
        env["PIP_INDEX_URL"] = index_url
    return env
