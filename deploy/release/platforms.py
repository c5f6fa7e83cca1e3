"""Which wheels fit which interpreter: the hosts', when it is not the one deploying.

The hosts say what they run (implementation, version, platform tags); wheels are then fetched
for that, with `pip download --platform … --python-version …`, and a cached wheel is used only
if its tags fit. A package that exists only as an sdist cannot be built for another platform
here, and says so.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from packaging import tags
from packaging.utils import parse_wheel_filename


@dataclass(frozen=True)
class Interpreter:
    implementation: str
    version: str  # "3.11"
    platform: str  # sys.platform
    machine: str
    platform_tags: tuple[str, ...] = ()

    @classmethod
    def here(cls) -> Interpreter:
        return cls(sys.implementation.name, f"{sys.version_info[0]}.{sys.version_info[1]}", sys.platform,
                   os.uname().machine)

    @classmethod
    def from_probe(cls, probe: dict[str, object]) -> Interpreter:
        python = probe["python"]
        assert isinstance(python, dict)
        found = probe.get("tags") or ()
        assert isinstance(found, list | tuple)
        return cls(python["implementation"], python["version"], python["platform"], python["machine"],
                   tuple(str(tag) for tag in found))

    def same_as(self, other: Interpreter) -> bool:
        key = (self.implementation, self.version, self.platform, self.machine)
        return key == (other.implementation, other.version, other.platform, other.machine)

    def describe(self) -> str:
        return f"{self.implementation} {self.version} on {self.platform}-{self.machine}"

    @cached_property
    def supported(self) -> frozenset[tags.Tag]:
        if self.same_as(Interpreter.here()) or not self.platform_tags:
            return frozenset(tags.sys_tags())
        version = tuple(int(part) for part in self.version.split("."))
        abi = f"cp{version[0]}{version[1]}"
        found: list[tags.Tag] = []
        if self.implementation == "cpython":
            found += tags.cpython_tags(version, [abi, "abi3", "none"], self.platform_tags)
        found += tags.compatible_tags(version, abi if self.implementation == "cpython" else None,
                                      self.platform_tags)
        return frozenset(found)

    def fits(self, filename: str) -> bool:
        _, _, _, wheel_tags = parse_wheel_filename(filename)
        return not self.supported.isdisjoint(wheel_tags)

    def download_options(self) -> list[str]:
        """`pip download` options that fetch wheels for this interpreter rather than ours."""
        major, minor = self.version.split(".")[:2]
        options = ["--only-binary=:all:", "--python-version", f"{major}.{minor}"]
        if self.implementation == "cpython":
            options += ["--implementation", "cp", "--abi", f"cp{major}{minor}", "--abi", "abi3", "--abi", "none"]
        return options + [arg for tag in self.platform_tags for arg in ("--platform", tag)]


def agree(found: Iterable[tuple[str, Interpreter]]) -> dict[Interpreter, list[str]]:
    """Hosts grouped by interpreter: one build serves them only if there is one group.

    Hosts of one interpreter on different libc versions share a group whose platform tags are
    those all of them accept, so every wheel chosen installs on each of them.
    """
    groups: dict[tuple[str, str, str, str], tuple[Interpreter, list[str]]] = {}
    for host, found_here in found:
        key = (found_here.implementation, found_here.version, found_here.platform, found_here.machine)
        if key in groups:
            known, hosts = groups[key]
            common = tuple(tag for tag in known.platform_tags if tag in found_here.platform_tags)
            groups[key] = (Interpreter(*key, common), [*hosts, host])
        else:
            groups[key] = (found_here, [host])
    return dict(groups.values())
