"""A minimal pyproject.toml for a project that has none, so its code ships as a wheel.

The package list is explicit: setuptools' automatic discovery refuses a flat layout with more than
one top-level folder ("Multiple top-level packages discovered"), and a `deploy/` or `docs/` folder
must never break the app's build.
"""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

from deploy.lock.reqfile import canonical

# Folders and modules at the root that are the project's tooling, not its code.
_NOT_CODE = {"tests", "test", "docs", "doc", "requirements", "scripts", "build", "dist", "deploy", "venv", "env",
             "node_modules", "migrations"}
_NOT_MODULES = {"setup", "noxfile", "tasks", "conftest", "fabfile", "manage"}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")  # PEP 508's project name
_VERSION = re.compile(r"[0-9][0-9A-Za-z.+!-]*")  # literal enough for a version; packaging decides at build


def code(root: Path) -> tuple[list[str], list[str]]:
    """The importable packages (folders with __init__.py) and single modules at the root."""
    packages = sorted(entry.name for entry in root.iterdir()
                      if entry.is_dir() and not entry.is_symlink() and entry.name not in _NOT_CODE
                      and _IDENTIFIER.fullmatch(entry.name) and (entry / "__init__.py").is_file())
    modules = sorted(entry.stem for entry in root.glob("*.py")
                     if entry.stem not in _NOT_MODULES and not entry.stem.startswith("test")
                     and _IDENTIFIER.fullmatch(entry.stem))
    found: list[str] = []
    for package in packages:  # subpackages too: setuptools' `packages` lists each one
        found += sorted({".".join(init.parent.relative_to(root).parts) for init in (root / package).rglob("__init__.py")
                         if all(_IDENTIFIER.fullmatch(part) for part in init.parent.relative_to(root).parts)})
    return found, modules


def name_of(root: Path) -> str:
    name = canonical(re.sub(r"[^A-Za-z0-9._-]+", "-", root.name)).strip("-.")
    return name or "app"


def declared(root: Path) -> tuple[str, str, str | None]:
    """The app's name and version: those a setup.py (as literal `name="…"` / `version="…"` arguments)
    or a setup.cfg's [metadata] gives, so the app keeps the names it was built under, else the
    folder's name and 0.1.0; and which file gave them (None: neither). setup.py is never run."""
    found: dict[str, str] = {}
    source = None
    setup_cfg = root / "setup.cfg"
    if setup_cfg.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(setup_cfg.read_text(encoding="utf-8", errors="replace"))
        except configparser.Error:
            parser.clear()
        if parser.has_section("metadata"):
            found = {key: parser["metadata"][key].strip() for key in ("name", "version") if parser["metadata"].get(key)}
            source = "setup.cfg" if found else None
    setup_py = root / "setup.py"
    if setup_py.is_file():
        text = setup_py.read_text(encoding="utf-8", errors="replace")
        for key in ("name", "version"):
            if key not in found and (match := re.search(rf"\b{key}\s*=\s*[\"']([^\"'\n]+)[\"']", text)):
                found[key] = match.group(1).strip()
                source = source or "setup.py"
    if not _NAME.fullmatch(found.get("name", "x")):
        found.pop("name")
    if not _VERSION.fullmatch(found.get("version", "0")):
        found.pop("version")
    return found.get("name", name_of(root)), found.get("version", "0.1.0"), (source if found else None)


def text(root: Path, dependencies: list[str], name: str, version: str) -> str:
    """pyproject.toml for the app `name` `version` (declared() gives them)."""
    packages, modules = code(root)
    listed = "".join(f"    {json.dumps(dep)},\n" for dep in dependencies)
    return (
        "# Written by `python -m deploy init`: the app's metadata, so pinship can build and ship it as a wheel.\n"
        "[build-system]\n"
        'requires = ["setuptools>=61"]\n'
        'build-backend = "setuptools.build_meta"\n'
        "\n"
        "[project]\n"
        f'name = "{name}"\n'
        f'version = "{version}"\n'
        "# The one list of what the app needs to run; requirements/base.in must say the same (verify checks).\n"
        f"dependencies = [\n{listed}]\n"
        "\n"
        "[tool.setuptools]\n"
        "# Listed, not discovered: a folder such as deploy/ or docs/ never breaks the build.\n"
        f"packages = {json.dumps(packages)}\n"
        f"py-modules = {json.dumps(modules)}\n"
    )
