"""What pip-compile may take from this machine: how to reach the index, never what to choose.

A lock must come out the same on every machine that locks the same inputs. pip reads much more than
the project says: pip.conf files (global, user, the venv's own) and a PIP_* variable for each of
its options can add an extra index, a find-links folder, a global constraint file, `--pre`,
`--no-binary` ... and each of those can change the versions or files chosen, with nothing in the
lock to show it. So pip-compile runs with PIP_CONFIG_FILE=os.devnull (pip then reads no config
file at all) and with only these of the caller's pip settings:

- the index: PIP_INDEX_URL or PIP_NO_INDEX, from the environment only (the one supported way to
  point a run at a mirror or a test index; `--index-url` in an `.in` file or in `[tool.deploy]
  compile-options` wins over it, as in pip). The lock run names the index it used;
- transport, which can make a run fail but never changes what it picks: certificates, proxy,
  timeout, retries, trusted hosts, keyring, cache, no-input. These come from the environment, or
  else from the pip.conf files pip would have read (so a company CA or proxy set there still works).

Everything else is left out and named in one line, so nothing is dropped silently. An allowlist,
not a denylist: an option a future pip adds is left out until someone decides it is transport.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# pip's own option names (as in pip.conf; PIP_ + upper case with '_' for the environment).
INDEX = ("index-url", "no-index")
TRANSPORT = (
    "cert", "client-cert", "proxy", "timeout", "default-timeout", "retries", "trusted-host",
    "keyring-provider", "cache-dir", "no-cache-dir", "no-input", "disable-pip-version-check",
)
# pip-tools' own variable that only moves its cache (it has one more, PIP_TOOLS_RESOLVER, which
# the command line overrides anyway).
_KEPT_OTHER = ("PIP_TOOLS_CACHE_DIR",)
# pip-compile runs `pip install`'s option parser: it reads [global], then [install].
_SECTIONS = ("global", "install")


def variable(option: str) -> str:
    return "PIP_" + option.upper().replace("-", "_")


_KEPT = {variable(option) for option in (*INDEX, *TRANSPORT)} | set(_KEPT_OTHER)


@dataclass
class PipEnvironment:
    env: dict[str, str]
    left_out: list[str] = field(default_factory=list)

    def note(self) -> str | None:
        """One line naming what of this machine's pip settings the lock did not use, if anything."""
        if not self.left_out:
            return None
        return ("this machine's pip settings are not used for a lock (only the index and how to reach it are): "
                + ", ".join(self.left_out))


def pip_environment(env: Mapping[str, str]) -> PipEnvironment:
    """The environment pip-compile runs in: `env` less what would make the lock depend on this machine."""
    kept = {key: value for key, value in env.items() if not key.startswith("PIP_") or key in _KEPT}
    left_out = sorted(key for key in env if key.startswith("PIP_") and key not in _KEPT and key != "PIP_CONFIG_FILE")
    for path, section, option, value in _config_settings(env):
        if option in TRANSPORT:
            # The environment wins over a file, as in pip; of the files, the one read last wins.
            if variable(option) not in env:
                kept[variable(option)] = " ".join(value.split())
        else:
            entry = f"{path} (unreadable)" if section == "" else f"{option} in {path} [{section}]"
            if entry not in left_out:
                left_out.append(entry)
    kept["PIP_CONFIG_FILE"] = os.devnull
    return PipEnvironment(kept, left_out)


def config_files(env: Mapping[str, str]) -> list[Path]:
    """The pip.conf files pip would read, in the order it reads them (a later one overrides)."""
    chosen = env.get("PIP_CONFIG_FILE")
    if chosen == os.devnull:
        return []
    home = Path(env.get("HOME") or Path.home())
    xdg_dirs = (env.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(os.pathsep)
    user_dir = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    candidates = [Path(folder) / "pip" / "pip.conf" for folder in xdg_dirs if folder]
    candidates += [Path("/etc/pip.conf"), home / ".pip" / "pip.conf", user_dir / "pip" / "pip.conf"]
    if sys.platform == "darwin":
        candidates.append(home / "Library" / "Application Support" / "pip" / "pip.conf")
    candidates.append(Path(sys.prefix) / "pip.conf")
    if chosen:
        candidates.append(Path(chosen))
    return [path for path in dict.fromkeys(candidates) if path.is_file()]


def _config_settings(env: Mapping[str, str]) -> list[tuple[Path, str, str, str]]:
    """(file, section, option, value) for every setting pip-compile's pip would read from a file."""
    found: list[tuple[Path, str, str, str]] = []
    for path in config_files(env):
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (OSError, UnicodeDecodeError, configparser.Error):
            # pip would stop on it too; the lock reads none of it, and says so.
            found.append((path, "", "", ""))
            continue
        for section in _SECTIONS:
            if parser.has_section(section):
                found += [(path, section, _option(key), value) for key, value in parser.items(section)]
    return found


def _option(key: str) -> str:
    # pip accepts `index_url` and `--index-url` spellings in a file as well.
    return key.strip().lower().replace("_", "-").lstrip("-")
