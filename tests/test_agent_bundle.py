"""The agent as it is sent (deploy/remote/bundle.py): every part of deploy/agent/ is declared, runs
on the oldest Python a host may have, imports only the stdlib and its sibling parts, and the
bundle serves a probe through the very loader hosts run."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy.agent import PARTS as DECLARED
from deploy.agent import protocol
from deploy.agent.protocol import KINDS, MARK
from deploy.agent.serve import OPS
from deploy.remote.bundle import AGENT_DIGEST, BOOT, LOADER, PARTS, digest, first_request
from tests.test_install import SOURCE, TOOL_FILES, make_wheel
from tests.test_install_edges import STAGE, wheel_request

FOLDER = Path(__file__).parent.parent / "deploy" / "agent"
OLDEST = (3, 8)  # the oldest Python a host may run the agent on (README)
SOURCES = {"boot": BOOT, **PARTS}


def trees() -> dict[str, ast.Module]:
    return {name: ast.parse(source, f"{name}.py", feature_version=OLDEST) for name, source in SOURCES.items()}


def test_every_file_of_the_agent_is_sent_and_nothing_else() -> None:
    sent = {"boot", "__init__", *DECLARED}
    assert sent == {path.stem for path in FOLDER.glob("*.py")}
    assert set(PARTS) == {"__init__", *DECLARED}
    assert all(PARTS[name] == (FOLDER / f"{name}.py").read_text(encoding="utf-8") for name in PARTS)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_each_part_parses_as_the_oldest_host_python(name: str) -> None:
    tree = ast.parse(SOURCES[name], f"{name}.py", feature_version=OLDEST)
    annotated = any((isinstance(node, (ast.AnnAssign, ast.arg)) and node.annotation is not None)
                    or (isinstance(node, ast.FunctionDef) and node.returns is not None) for node in ast.walk(tree))
    future = any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
                 and any(alias.name == "annotations" for alias in node.names) for node in tree.body)
    # Python 3.8 evaluates annotations (dict[str, Any] among them) unless told not to.
    assert future or not annotated, f"{name}.py is annotated without `from __future__ import annotations`"


def test_the_parts_import_only_the_stdlib_and_each_other() -> None:
    wrong = []
    for name, tree in trees().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.module is None or node.module not in DECLARED:
                    wrong.append(f"{name}.py: from {'.' * node.level}{node.module} (not a part)")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
                for module in modules:
                    root = (module or "").split(".")[0]
                    if root not in sys.stdlib_module_names and root != "__future__":
                        wrong.append(f"{name}.py: import {module} (a host has only the stdlib; deploy is ours)")
    assert wrong == []


def test_the_parts_import_typing_only_for_the_type_checker() -> None:
    """A host pays for every import at every session; typing alone costs more than a ping."""
    found = []
    for name, tree in trees().items():
        checked_only = {id(node) for branch in ast.walk(tree) if isinstance(branch, ast.If)
                        and getattr(branch.test, "id", None) == "TYPE_CHECKING" for node in ast.walk(branch)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in checked_only:
                continue
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(module.split(".")[0] == "typing" for module in modules):
                found.append(f"{name}.py:{node.lineno}")
    assert found == []


def test_the_agent_answers_exactly_the_steps_its_protocol_names() -> None:
    assert set(OPS) == set(protocol.OPS)


def test_every_failure_the_agent_raises_is_a_kind_the_protocol_names() -> None:
    kinds = {node.args[0].value for tree in trees().values() for node in ast.walk(tree)
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Failure"
             and node.args and isinstance(node.args[0], ast.Constant)}
    assert kinds
    assert kinds <= set(KINDS), kinds - set(KINDS)


def test_the_digest_names_every_parts_name_and_source() -> None:
    assert digest(BOOT, PARTS) == AGENT_DIGEST
    renamed = {("stored" if name == "store" else name): source for name, source in PARTS.items()}
    edited = {**PARTS, "claim": PARTS["claim"] + "\n"}
    moved = {**PARTS, "claim": PARTS["claim"] + PARTS["store"], "store": ""}
    assert len({AGENT_DIGEST, digest(BOOT, renamed), digest(BOOT, edited), digest(BOOT, moved),
                digest(BOOT + "\n", PARTS)}) == 5


def probe(python: str, path: Path, op: str = "probe", **fields: object) -> dict[str, Any]:
    """A probe (or another step) through the loader, as a host runs it: `python -I -S -c LOADER`,
    nothing installed."""
    request = json.dumps({**first_request(), "op": op, "path": str(path), **fields}) + "\n"
    done = subprocess.run([python, "-I", "-S", "-c", LOADER], input=request, capture_output=True, text=True,
                          check=False, cwd=path.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    reply: dict[str, Any] = json.loads(line[len(MARK):])
    return reply


def test_the_bundle_serves_a_probe_through_the_hosts_loader(tmp_path: Path) -> None:
    reply = probe(sys.executable, tmp_path / "srv")
    assert reply["ok"] is True, reply
    result = reply["result"]
    assert result["python"]["version"] == "{}.{}".format(*sys.version_info[:2])
    assert result["current"] is None


def interpreter(version: str) -> str | None:
    """A real python<version> on this machine (pyenv's shims only say where one would be)."""
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)  # not $HOME, which the tests' fixtures move
    found = [*home.glob(f".pyenv/versions/{version}.*/bin/python{version}"), Path(f"/usr/bin/python{version}")]
    return next((str(path) for path in found if path.is_file()), None)


@pytest.mark.parametrize("version", ["3.8", "3.9", "3.10", "3.12", "3.13"])
def test_the_bundle_serves_a_probe_on_every_host_python_this_machine_has(version: str, tmp_path: Path) -> None:
    python = interpreter(version)
    if python is None:
        pytest.skip(f"no python{version} on this machine")
    reply = probe(python, tmp_path / "srv")
    assert reply["ok"] is True, reply
    assert reply["result"]["python"]["version"] == version


LOCK = "alpha==1.0 --hash=sha256:" + "0" * 64 + "\n"
RELEASE = hashlib.sha256(LOCK.encode()).hexdigest()[:12]
TOKEN = "0123456789abcdef"


@pytest.mark.parametrize(
    ("op", "fields", "missing"),
    [
        ("stage", {"release": RELEASE, "lock": LOCK, "manifest": {"wheels": []}, "token": TOKEN}, "timeout"),
        ("switch", {"release": RELEASE, "keep": 5, "log": {}, "token": TOKEN}, "timeout"),
        ("switch", {"release": RELEASE, "timeout": 600, "log": {}, "token": TOKEN}, "keep"),
        ("switch", {"release": RELEASE, "timeout": 0, "keep": 5, "log": {}, "token": TOKEN}, "timeout"),
    ],
)
def test_a_step_without_its_timeout_or_keep_is_refused_and_touches_nothing(
    op: str, fields: dict[str, object], missing: str, tmp_path: Path
) -> None:
    """The deploying side sends both (--command-timeout, keep-releases); the agent keeps no default."""
    root = tmp_path / "srv"
    root.mkdir()
    reply = probe(sys.executable, root, op, **fields)
    assert reply["ok"] is False
    assert reply["kind"] == "bad-request"
    assert reply["error"].startswith(f"{missing} ") and reply["error"].endswith(": refused")
    assert sorted(path.name for path in root.iterdir()) == [".agent"]  # the compiled agent, nothing else


def test_the_installer_and_reuse_run_on_the_oldest_host_python(tmp_path: Path) -> None:
    """A probe imports every part on 3.8; this runs what a stage does there: make a venv, install a
    wheel (launchers, scripts, .pyc, RECORD), then a second release that links it from the first."""
    python = interpreter("{}.{}".format(*OLDEST))
    if python is None:
        pytest.skip("no python{}.{} on this machine".format(*OLDEST))
    wheel = make_wheel(tmp_path, TOOL_FILES)
    root = tmp_path / "srv"
    linked: list[str] = []
    for release, live in (("r1", None), ("r2", "r1")):
        request = {"root": str(root), "release": release, "wheels": wheel_request([wheel]), "live": live}
        done = subprocess.run([python, "-I", "-S", "-c", f"{SOURCE}\n{STAGE}"], input=json.dumps(request),
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        linked = json.loads(done.stdout.splitlines()[-1])
    assert linked == [hashlib.sha256(wheel.read_bytes()).hexdigest()]
    venv = root / "releases" / "r2" / "venv"
    tool = subprocess.run([str(venv / "bin" / "tool")], capture_output=True, text=True, check=False)
    assert (tool.returncode, tool.stdout) == (0, "tool main\n")
    assert "python3.8" in str(next((venv / "lib").iterdir()))
