"""Where a lock's solve looks for packages: each layer's indexes and local find-links folders, in pip's order.

Read before any resolver starts (which index a run reads, whether uv's one-run proof can read it),
so this module imports nothing that only the pylock step or the proof needs: a uv lock starts uv
before those load (lock/joint.py).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path

from deploy.config import Config
from deploy.lock import isolation
from deploy.lock.layers import LayerGraph
from deploy.lock.options import hide_password
from deploy.lock.reqfile import clip

PYPI = "https://pypi.org/simple"


def indexes(config: Config, graph: LayerGraph, layers: Sequence[str], env: Mapping[str, str] | None) -> list[str]:
    """The indexes a solve of `layers` reads, each once, in pip's order."""
    pip_env = isolation.pip_environment(os.environ if env is None else env).env
    found: list[str] = []
    for name in layers:
        found += [index for index in of_layer(config, graph, name, pip_env)[0] if index not in found]
    return found


def proof_sources(config: Config, graph: LayerGraph, layers: Sequence[str],
                  env: Mapping[str, str] | None) -> tuple[str, list[Path]] | None:
    """Where a uv solve of `layers` looks for candidates, when uvreport.py can read them all: one http(s)
    index, the same for every layer, and the layers' local find-links folders; else None."""
    pip_env = isolation.pip_environment(os.environ if env is None else env).env
    found: set[str] = set()
    folders: list[Path] = []
    for name in layers:
        indexes, links = of_layer(config, graph, name, pip_env)
        if len(indexes) != 1 or urllib.parse.urlsplit(indexes[0]).scheme.lower() not in ("http", "https"):
            return None
        found.add(indexes[0])
        folders += [folder for folder in links if folder not in folders]
    return (found.pop(), folders) if len(found) == 1 else None


def of_layer(config: Config, graph: LayerGraph, name: str, env: Mapping[str, str]) -> tuple[list[str], list[Path]]:
    """The indexes and local find-links folders `name`'s solve read, in pip's order.

    compile-options come first, so a layer's own `--index-url` wins over theirs, as in pip-compile; a
    layer's `--find-links` is the folder options.py resolved from the line's own file.
    """
    options = graph.options_of(name)
    words = [*config.compile_options]
    words += [word for option in options if option.name != "--find-links" for word in (option.name, option.value)
              if word]
    indexes, links = from_options(words, env, config.root)
    links += [option.local for option in options if option.local is not None and option.local not in links]
    return indexes, links


def local_source(indexes: Sequence[str], links: Sequence[Path], root: Path) -> str | None:
    """What would put a path of this machine into a pylock file, as its warning names it; None if nothing."""
    for index in indexes:
        if urllib.parse.urlsplit(index).scheme.lower() not in ("http", "https"):
            return f"its index {clip(hide_password(index))} is not an http(s) URL"
    for folder in links:
        if not folder.resolve().is_relative_to(root.resolve()):
            return f"its find-links folder {clip(str(folder))} is outside the project"
    return None


def from_options(options: Sequence[str], env: Mapping[str, str], root: Path) -> tuple[list[str], list[Path]]:
    """The indexes and local find-links folders a solve with these pip options used, in pip's order.

    `options` are pip-compile's (`[tool.deploy] compile-options` and the layers' option lines);
    PIP_INDEX_URL / PIP_EXTRA_INDEX_URL are read as pip reads them; with none, PyPI.
    """
    index: str | None = env.get("PIP_INDEX_URL") or None
    extra = (env.get("PIP_EXTRA_INDEX_URL") or "").split()
    links: list[Path] = []
    no_index = (env.get("PIP_NO_INDEX") or "").lower() in ("1", "true", "yes", "on")
    # `--index-url=URL` is two words; a URL's own `=` (`?token=…`) is not a separator.
    words = [part for option in options for part in (option.split("=", 1) if option.startswith("-") else [option])]
    for at, flag in enumerate(words):
        value = words[at + 1] if at + 1 < len(words) else ""
        if flag in ("-i", "--index-url"):
            index = value
        elif flag == "--extra-index-url":
            extra.append(value)
        elif flag in ("-f", "--find-links"):
            if value.startswith("file:"):
                value = urllib.parse.unquote(urllib.parse.urlsplit(value).path)
            if value and "://" not in value:
                links.append((root / value).resolve())
        elif flag == "--no-index":
            no_index = True
    indexes = [] if no_index else [index or PYPI, *extra]
    return indexes, links
