"""PEP 508 environment markers (`; python_version < "3.12"`), evaluated for this machine.

A lock line's marker says whether pip installs it here. This evaluator covers what lock files
write: the marker variables, quoted strings, `and`/`or`/parentheses, `in`/`not in`, and version
comparisons of plain release numbers (deploy.lock.specifiers). Anything else, `extra` included,
is a MarkerError, so a caller can leave that line to pip (or to `packaging`) instead of guessing.

Stdlib only and no syntax newer than Python 3.7, like deploy.lock.specifiers: the onboarding script
imports it under any python3, before any venv exists.
"""

from __future__ import annotations

import os
import platform
import re
import sys

from deploy.errors import DeployError
from deploy.lock.specifiers import SpecifierError, clause_ok, parse_release

_TOKEN = re.compile(
    r"""\s*(?:('[^']*'|"[^"]*")|(===|==|!=|<=|>=|~=|<|>|\(|\))|([A-Za-z_][\w.]*))"""
)


class MarkerError(DeployError):
    """A marker this evaluator cannot read or decide; the caller says which line it came from."""


def marker_environment() -> dict[str, str]:
    """The marker variables of the running interpreter: the eleven PEP 508 defines, with the values
    `packaging` (and the host agent's own copy, deploy/agent/status.py) give them."""
    info = sys.implementation.version
    implementation_version = "{}.{}.{}".format(*info[:3])
    if info.releaselevel != "final":
        implementation_version += f"{info.releaselevel[0]}{info.serial}"
    return {
        "implementation_name": sys.implementation.name,
        "implementation_version": implementation_version,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": "{}.{}".format(*sys.version_info[:2]),
        "sys_platform": sys.platform,
    }


def evaluate_marker(marker: str, env: dict[str, str]) -> bool:
    """Evaluate a PEP 508 marker; raises MarkerError for what this small evaluator cannot do."""
    try:
        return _MarkerParser(marker, env).parse()
    except SpecifierError as error:
        raise MarkerError(str(error)) from error


def _tokenize(marker: str) -> list[str]:
    tokens, position = [], 0
    while marker[position:].strip():
        match = _TOKEN.match(marker, position)
        if match is None:
            raise MarkerError(f"cannot read {marker[position:].strip()!r}")
        tokens.append(match.group(match.lastindex or 0))
        position = match.end()
    return tokens


class _MarkerParser:
    """Recursive descent: or := and ("or" and)*; and := atom ("and" atom)*; atom := (or) | x op y"""

    def __init__(self, marker: str, env: dict[str, str]) -> None:
        self.tokens, self.env, self.position = _tokenize(marker), env, 0

    def parse(self) -> bool:
        result = self._or()
        if self.position != len(self.tokens):
            raise MarkerError(f"unexpected {self.tokens[self.position]!r}")
        return result

    def _next(self) -> str:
        if self.position >= len(self.tokens):
            raise MarkerError("unexpected end")
        self.position += 1
        return self.tokens[self.position - 1]

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _or(self) -> bool:
        results = [self._and()]
        while self._peek() == "or":
            self._next()
            results.append(self._and())
        return any(results)

    def _and(self) -> bool:
        results = [self._atom()]
        while self._peek() == "and":
            self._next()
            results.append(self._atom())
        return all(results)

    def _atom(self) -> bool:
        if self._peek() == "(":
            self._next()
            result = self._or()
            if self._next() != ")":
                raise MarkerError("missing )")
            return result
        left = self._value()
        op = self._next()
        if op == "not" and self._next() == "in":
            op = "not in"
        return _compare(left, op, self._value())

    def _value(self) -> str:
        token = self._next()
        if token[0] in "'\"":
            return token[1:-1]
        if token not in self.env:
            raise MarkerError(f"unknown variable {token!r}")
        return self.env[token]


def _compare(left: str, op: str, right: str) -> bool:
    if op in ("in", "not in"):
        return (left in right) == (op == "in")
    version = parse_release(left)
    if version is not None and parse_release(right[:-2] if right.endswith(".*") else right) is not None:
        return clause_ok(version, op, right)
    if op in ("==", "==="):
        return left == right
    if op == "!=":
        return left != right
    raise MarkerError(f"cannot compare {left!r} {op} {right!r}")
