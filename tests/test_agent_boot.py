"""The agent's loader and bootstrap (deploy/agent/boot.py): the agent is compiled once per deploy
path and interpreter, and a cached copy that is unreadable, or from another agent, is not used."""

from __future__ import annotations

import json
import marshal
import subprocess
import sys
from pathlib import Path

from deploy.remote.bundle import AGENT_DIGEST, LOADER, PARTS, first_request
from deploy.remote.target import MARK


def probe(path: Path) -> dict[str, object]:
    """One session as a host runs it: the loader, then the first request (a probe) on stdin."""
    request = json.dumps({**first_request(), "op": "probe", "path": str(path)}) + "\n"
    done = subprocess.run([sys.executable, "-I", "-S", "-c", LOADER], input=request, capture_output=True,
                          text=True, check=True)
    [line] = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    reply: dict[str, object] = json.loads(line[len(MARK):])
    return reply


def cached_parts(cached: Path) -> set[str]:
    """The parts whose code a cache file holds, each compiled from the agent's own source."""
    codes = marshal.loads(cached.read_bytes())
    assert all(code.co_filename == f"pinship-agent/{name}.py" for name, code in codes.items())
    return set(codes)


def test_the_agent_is_compiled_once_and_then_loaded_from_the_deploy_path(tmp_path: Path) -> None:
    cache = tmp_path / ".agent"
    cache.mkdir()
    (cache / "code-0123-old.bin").write_bytes(b"an older agent's code")

    assert probe(tmp_path)["ok"] is True
    [cached] = cache.glob("code-*.bin")  # the older one is gone
    assert cached.name.startswith(f"code-{AGENT_DIGEST[:32]}-")
    assert cached_parts(cached) == set(PARTS)

    # What is cached is what runs: an agent compiled with a different probe answers from the cache.
    changed = PARTS["status"].replace('"free_bytes": usage.free,', '"free_bytes": usage.free, "from_cache": True,')
    assert changed != PARTS["status"]
    codes = {name: compile(source, name, "exec") for name, source in {**PARTS, "status": changed}.items()}
    cached.write_bytes(marshal.dumps(codes))
    reply = probe(tmp_path)
    assert reply["result"]["from_cache"] is True  # type: ignore[index]


def test_an_unreadable_cache_is_compiled_again_and_a_missing_path_is_not_created(tmp_path: Path) -> None:
    assert probe(tmp_path)["ok"] is True
    [cached] = (tmp_path / ".agent").glob("code-*.bin")
    cached.write_bytes(b"\x00 not marshal data")
    assert probe(tmp_path)["ok"] is True
    assert cached_parts(cached) == set(PARTS)
    # Code of another shape (one script, as agents before the parts wrote; or parts missing) too.
    for other in (compile("raise SystemExit(3)", "pinship-agent", "exec"), {"serve": compile("", "serve", "exec")}):
        cached.write_bytes(marshal.dumps(other))
        assert probe(tmp_path)["ok"] is True
        assert cached_parts(cached) == set(PARTS)

    missing = tmp_path / "not-yet"
    assert probe(missing)["ok"] is True
    assert not missing.exists()
