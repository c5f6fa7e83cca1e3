"""The package's layout holds (issue 12): the folders show the architecture, and the imports agree.

The import graph of deploy/ is read from the source (every import statement, also those inside a
function or under TYPE_CHECKING), not from what happens to be imported at run time: a cycle, or a
lock-side module that reaches the deploy side, fails here even if no test runs that code path.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "deploy"
LIMIT = 350
# Modules still over LIMIT lines, each with its owner's reason; the list only ever shrinks.
KNOWN_LONG: dict[str, str] = {}
# What the lock side may never reach: it runs before anything is deployed, and without SSH.
DEPLOY_SIDE = ("deploy.release", "deploy.remote", "deploy.agent")
TRANSPORTS = ("fabric", "paramiko", "invoke")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str) -> Iterator[str]:
    """Every module `name` imports, by its full name, wherever the import statement stands."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            yield base
            # `from deploy.remote import kept` imports the module deploy.remote.kept
            yield from (f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)


def edges() -> dict[str, set[str]]:
    """Each deploy module and the deploy modules it imports (a package's __init__ aside)."""
    return {name: {other for other in imported(name) if other in MODULES and other != name and
                   not (MODULES[other].name == "__init__.py" and name.startswith(other + "."))}
            for name in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of more than one module, or of one that imports itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            part = []
            while True:
                member = stack.pop()
                part.append(member)
                if member == node:
                    break
            if len(part) > 1 or node in graph[node]:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def reachable(start: str, graph: dict[str, set[str]]) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for other in graph[todo.pop()] - seen:
            seen.add(other)
            todo.append(other)
    return seen


def test_the_import_graph_is_read_from_every_import_statement() -> None:
    graph = edges()

    # A function-local import, a relative one, and `from package import module` all count.
    assert "deploy.remote.ssh" in graph["deploy.remote.connect"]  # imported inside connect()
    assert "deploy.remote.kept" in graph["deploy.remote.connect"]
    assert "deploy.remote.wire" in graph["deploy.remote.keeper"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_of_deploy_is_part_of_an_import_cycle() -> None:
    assert cycles(edges()) == []


def test_the_lock_side_never_reaches_the_deploy_side_or_a_transport() -> None:
    graph = edges()
    for name in (name for name in MODULES if name.startswith("deploy.lock.")):
        reached = reachable(name, graph)
        assert not [other for other in reached if other.startswith(DEPLOY_SIDE)], name
        third_party = {each.split(".")[0] for module in reached for each in imported(module)}
        assert not third_party & set(TRANSPORTS), f"{name} reaches {sorted(third_party & set(TRANSPORTS))}"


def test_the_host_agent_imports_nothing_of_deploy_but_its_own_parts() -> None:
    for name in (name for name in MODULES if name.startswith("deploy.agent")):
        outside = [each for each in imported(name) if each.split(".")[0] == "deploy"
                   and not (each == "deploy.agent" or each.startswith("deploy.agent."))]
        assert outside == [], name


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_can_be_read_in_one_sitting(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    if name in KNOWN_LONG:
        assert lines > LIMIT, f"{name} is {lines} lines now: take it off KNOWN_LONG"
    else:
        assert lines <= LIMIT, f"{name} is {lines} lines, over {LIMIT}: split it by concern"
