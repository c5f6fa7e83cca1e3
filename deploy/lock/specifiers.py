"""PEP 440 version specifiers, for versions that are plain release numbers ("3.11.2").

This subset is what `requires-python`, `python_version` markers and most build requirements use,
and it needs no `packaging`: the onboarding script reads them before any venv exists. A specifier
outside it (pre-releases, local versions, `>=three`) is a SpecifierError, never a guess.

Stdlib only, and no syntax newer than Python 3.7 (tests/test_onboard.py checks): scripts/onboard.py
imports it under whatever python3 a user starts it with, to tell an interpreter that is too old so.
"""

from __future__ import annotations

import re

from deploy.errors import DeployError

_CLAUSE = re.compile(r"\s*(~=|===|==|!=|<=|>=|<|>)\s*(\S+?)\s*")
_RELEASE = re.compile(r"\d+(?:\.\d+)*")


class SpecifierError(DeployError):
    """A version or specifier outside this subset; the caller names the file it came from."""


def parse_release(text: str) -> tuple[int, ...] | None:
    """The numeric release of a version ("3.11.2" -> (3, 11, 2)), or None if it is not one."""
    if not _RELEASE.fullmatch(text):
        return None
    return tuple(int(part) for part in text.split("."))


def release_of(text: str) -> tuple[int, ...]:
    """Like parse_release, for a version a specifier names: anything else is a SpecifierError."""
    release = parse_release(text)
    if release is None:
        raise SpecifierError(f"{text!r} is not a version")
    return release


def pad(release: tuple[int, ...], length: int) -> tuple[int, ...]:
    """`release` with zeros appended up to `length` parts: PEP 440 compares 3.11 as 3.11.0."""
    return release + (0,) * (length - len(release))


def parse_specifier(specifier: str) -> list[tuple[str, str]]:
    """Split ">=3.11, !=3.12.*" into [(">=", "3.11"), ("!=", "3.12.*")]."""
    clauses = []
    for text in specifier.split(","):
        if not text.strip():
            continue
        match = _CLAUSE.fullmatch(text)
        if match is None:
            raise SpecifierError(f"{text.strip()!r} is not a version specifier")
        clauses.append((match.group(1), match.group(2)))
    return clauses


def clause_ok(version: tuple[int, ...], op: str, target: str) -> bool:
    """Whether `version` satisfies the single clause `op target`."""
    if op == "===":
        return ".".join(map(str, version)) == target
    if target.endswith(".*"):
        if op not in ("==", "!="):
            raise SpecifierError(f"{op}{target}: a wildcard needs == or !=")
        prefix = release_of(target[:-2])
        matches = pad(version, len(prefix))[: len(prefix)] == prefix
        return matches if op == "==" else not matches
    wanted = release_of(target)
    length = max(len(version), len(wanted))
    mine, theirs = pad(version, length), pad(wanted, length)
    if op == "~=":
        if len(wanted) < 2:
            raise SpecifierError(f"~={target}: ~= needs at least two parts, e.g. ~=3.11")
        return mine >= theirs and mine[: len(wanted) - 1] == wanted[:-1]
    results = {
        "==": mine == theirs,
        "!=": mine != theirs,
        "<": mine < theirs,
        "<=": mine <= theirs,
        ">": mine > theirs,
        ">=": mine >= theirs,
    }
    return results[op]


def satisfies(version: tuple[int, ...], specifier: str) -> bool:
    """Whether `version` satisfies every comma-separated clause of `specifier`."""
    return all(clause_ok(version, op, target) for op, target in parse_specifier(specifier))
